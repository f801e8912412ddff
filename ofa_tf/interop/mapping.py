"""Every tensor of a PyTorch OFA supernet's state dict, and the `Supernet` variable it is.

Tensors are numpy arrays here (`ofa_tf.interop.torch_files` reads and writes them), so the
mapping itself needs no torch. Layouts: a PyTorch conv kernel (O, I, kh, kw) is Keras'
(kh, kw, I, O); a depthwise kernel (C, 1, kh, kw) is (kh, kw, C, 1); a linear weight
(O, I) is (I, O); OFA's kernel-transform matrix M maps a flattened kernel x to x M^T
(`F.linear`), ours to x T, so T = M^T. BN weight / bias / running mean / running variance
are gamma / beta / moving mean / moving variance, the variance plus the difference of the
two BN epsilons when they differ (so var + eps is the same: exact in inference);
`num_batches_tracked` (a counter that eval mode does not read) is accepted and dropped on
import and written as 0 on export.

The module trees: OFAMobileNetV3 and OFAProxylessNASNets both have first_conv, blocks.N (the
first a static MBConvLayer, the others DynamicMBConvLayers whose conv / BN modules nest one
level deeper) and classifier; the MobileNetV3 ends with final_expand_layer (our
final_expand_conv + BN) and feature_mix_layer (our head_conv), the ProxylessNAS net with
feature_mix_layer (our final_expand_conv + BN).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.interop.nets import OfaNet
from ofa_tf.models import Supernet

BN_TENSORS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
              ("running_var", "moving_variance"))
COUNTER = "num_batches_tracked"

# (to Keras, to PyTorch) for each kind of tensor
_LAYOUTS = {
    "conv": (lambda t: np.transpose(t, (2, 3, 1, 0)), lambda k: np.transpose(k, (3, 2, 0, 1))),
    "depthwise": (lambda t: np.transpose(t, (2, 3, 0, 1)), lambda k: np.transpose(k, (2, 3, 0, 1))),
    "matrix": (np.transpose, np.transpose),
    "linear": (np.transpose, np.transpose),
    "vector": (lambda t: t, lambda k: k),
}


@dataclasses.dataclass(frozen=True)
class TensorSlot:
    """One state-dict tensor: its name, the variable holding it and its layout kind."""

    name: str
    variable: object  # keras.Variable
    kind: str
    offset: float = 0.0  # added on import, taken off on export (BN variances, see above)

    def to_keras(self, tensor: np.ndarray) -> np.ndarray:
        value = _LAYOUTS[self.kind][0](tensor)
        return value + np.float32(self.offset) if self.offset else value

    def to_torch(self, value: np.ndarray) -> np.ndarray:
        value = value - np.float32(self.offset) if self.offset else value
        return np.ascontiguousarray(_LAYOUTS[self.kind][1](value))


def tensor_slots(supernet: Supernet, net: OfaNet) -> list[TensorSlot]:
    """Every tensor of `net`'s state dict (but the BN counters), in OFA's order, with its
    variable in `supernet` (which must be built)."""
    return list(_slots(supernet, net.bn_epsilon - supernet.bn_epsilon))


def _bn(prefix: str, layer, variance_offset: float) -> Iterator[TensorSlot]:
    for torch_name, attr in BN_TENSORS:
        offset = variance_offset if torch_name == "running_var" else 0.0
        yield TensorSlot(f"{prefix}.{torch_name}", getattr(layer, attr), "vector", offset)


def _slots(net: Supernet, variance_offset: float) -> Iterator[TensorSlot]:
    """The module tree of the module docstring, walked over `net`'s layers."""
    def bn(prefix: str, layer) -> Iterator[TensorSlot]:
        return _bn(prefix, layer, variance_offset)

    yield TensorSlot("first_conv.conv.weight", net.stem_conv.kernel, "conv")
    yield from bn("first_conv.bn", net.stem_bn)
    index = 0
    for s, stage in enumerate(net.stages):
        nest = ".conv" if s else ""  # a dynamic layer's torch module sits one level deeper
        bn_nest = ".bn" if s else ""
        for block in stage.blocks:
            p = f"blocks.{index}.conv"
            if block.has_expand_conv:
                yield TensorSlot(f"{p}.inverted_bottleneck.conv{nest}.weight", block.expand_conv.kernel, "conv")
                yield from bn(f"{p}.inverted_bottleneck.bn{bn_nest}", block.expand_bn)
            depthwise = block.depthwise
            sizes = depthwise.kernel_sizes
            for small, big in zip(sizes[:-1], sizes[1:]):
                if small in depthwise.transforms:
                    yield TensorSlot(f"{p}.depth_conv.conv.{big}to{small}_matrix", depthwise.transforms[small],
                                     "matrix")
            yield TensorSlot(f"{p}.depth_conv.conv{nest}.weight", depthwise.depthwise_kernel, "depthwise")
            yield from bn(f"{p}.depth_conv.bn{bn_nest}", block.depthwise_bn)
            if block.use_se:
                for part, conv in (("reduce", block.se.reduce_conv), ("expand", block.se.expand_conv)):
                    yield TensorSlot(f"{p}.depth_conv.se.fc.{part}.weight", conv.kernel, "conv")
                    yield TensorSlot(f"{p}.depth_conv.se.fc.{part}.bias", conv.bias, "vector")
            yield TensorSlot(f"{p}.point_linear.conv{nest}.weight", block.project_conv.kernel, "conv")
            yield from bn(f"{p}.point_linear.bn{bn_nest}", block.project_bn)
            index += 1
    final = "final_expand_layer" if net.head_conv is not None else "feature_mix_layer"
    yield TensorSlot(f"{final}.conv.weight", net.final_expand_conv.kernel, "conv")
    yield from bn(f"{final}.bn", net.final_expand_bn)
    if net.head_conv is not None:
        yield TensorSlot("feature_mix_layer.conv.weight", net.head_conv.kernel, "conv")
        if net.head_conv.use_bias:
            yield TensorSlot("feature_mix_layer.conv.bias", net.head_conv.bias, "vector")
    yield TensorSlot("classifier.linear.weight", net.classifier.kernel, "linear")
    yield TensorSlot("classifier.linear.bias", net.classifier.bias, "vector")


def _strip_module_prefix(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A state dict saved from `nn.DataParallel` has every name under "module."."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def import_state_dict(supernet: Supernet, state: dict[str, np.ndarray], net: OfaNet, source: str) -> None:
    """Assigns every tensor of `state` (OFA's names, numpy values) to `supernet`.

    Every tensor is checked before any variable changes: a tensor missing from `state`,
    one left over in it, or one of another shape is a one-line error naming it (`source`
    names the file in the message)."""
    if not supernet.built:
        supernet.build()
    state = _strip_module_prefix(state)
    slots = tensor_slots(supernet, net)
    names = {slot.name for slot in slots}
    counters = {name.rsplit(".", 1)[0] + "." + COUNTER for name in names if name.endswith(".running_mean")}
    for slot in slots:
        if slot.name not in state:
            raise OfaError(f"{source}: tensor {slot.name} is missing (is it a {net.net_id} checkpoint?)")
    for name in state:
        if name not in names and name not in counters:
            raise OfaError(f"{source}: tensor {name} has no place in {net.net_id} (a checkpoint of another net?)")
    values = []
    for slot in slots:
        tensor = np.asarray(state[slot.name])
        value = slot.to_keras(tensor) if tensor.ndim == len(slot.variable.shape) else None
        if value is None or tuple(value.shape) != tuple(slot.variable.shape):
            expected = tuple(slot.to_torch(np.zeros(slot.variable.shape)).shape)
            raise OfaError(f"{source}: tensor {slot.name} has shape {tuple(tensor.shape)}, {net.net_id} has "
                           f"{expected} (a checkpoint of another net?)")
        if not np.issubdtype(tensor.dtype, np.floating):
            raise OfaError(f"{source}: tensor {slot.name} is {tensor.dtype}, expected floating point")
        values.append(value.astype(np.float32))
    for slot, value in zip(slots, values):
        slot.variable.assign(value)


def export_state_dict(supernet: Supernet, net: OfaNet) -> dict[str, np.ndarray]:
    """`supernet`'s weights as `net`'s state dict (OFA's names and order, numpy values;
    BN counters 0)."""
    if not supernet.built:
        supernet.build()
    state: dict[str, np.ndarray] = {}
    for slot in tensor_slots(supernet, net):
        state[slot.name] = slot.to_torch(np.asarray(slot.variable.numpy(), np.float32))
        if slot.name.endswith(".running_var"):
            state[slot.name[:-len("running_var")] + COUNTER] = np.zeros((), np.int64)
    return state
