"""Interoperation with OFA's PyTorch code (arXiv:1908.09791): its published supernets as
run directories and back, tensor by tensor. Only `ofa_tf.interop.torch_files` imports
torch, an optional dependency; `import ofa_tf` never does.

Names load on first use (`ofa_tf.lazy`): the nets (`NETS`) come without TensorFlow."""

from ofa_tf.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.interop.mapping": ("export_state_dict", "import_state_dict"),
    "ofa_tf.interop.nets": ("NETS", "OfaNet", "get_net"),
    "ofa_tf.interop.runs": ("export_run", "import_run"),
    "ofa_tf.interop.specialized": ("import_specialized",),
})
