"""Interoperation with OFA's PyTorch code (arXiv:1908.09791): its published supernets as
run directories and back, tensor by tensor. Only `ofa_tf.interop.torch_files` imports
torch, an optional dependency; `import ofa_tf` never does."""

from ofa_tf.interop.mapping import export_state_dict, import_state_dict, tensor_slots
from ofa_tf.interop.nets import NETS, OfaNet, get_net, net_of_space, ofa_space
from ofa_tf.interop.runs import export_run, import_run
from ofa_tf.interop.specialized import import_specialized

__all__ = ["NETS", "OfaNet", "export_run", "export_state_dict", "get_net", "import_run", "import_specialized",
           "import_state_dict", "net_of_space", "ofa_space", "tensor_slots"]
