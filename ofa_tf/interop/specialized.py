"""OFA's specialised subnets (`ofa.model_zoo.ofa_specialized`) as plain Keras models.

A specialised net is a folder with `net.config` (the static network's JSON config: a
`MobileNetV3` or `ProxylessNASNets` of `MBConvLayer` blocks), `init` (its state dict,
fine-tuned) and optionally `run.config` (its `image_size`). It is a subnet of a published
supernet's space, so it is read as one: its blocks give an `Arch` (blocks are grouped into
stages by their output width), each static tensor is written into the matching supernet
variable at the place the subnet reads it (the first channels; a kxk kernel at the centre
of the largest, with `kernel_mode="center_crop"`, so no transform applies), and
`Supernet.get_subnet` extracts the plain Keras model. A tensor missing or left over, or a
block the space does not have, is a one-line error naming it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import keras
import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.interop.mapping import COUNTER, tensor_slots
from ofa_tf.interop.nets import OfaNet, ofa_space
from ofa_tf.layers.base import prefix_slice
from ofa_tf.models import Supernet
from ofa_tf.spaces import Arch, SearchSpace

NET_CONFIG, WEIGHTS, RUN_CONFIG = "net.config", "init", "run.config"


def read_specialized_config(directory: str, flag: str = "specialized") -> tuple[dict[str, Any], int | None]:
    """The folder's `net.config` and, when `run.config` says it, the input size."""
    try:
        with open(os.path.join(directory, NET_CONFIG)) as f:
            config = json.load(f)
    except OSError:
        raise OfaError(f"{flag}={directory}: no readable {NET_CONFIG} (not a specialised OFA net)") from None
    except ValueError as e:
        raise OfaError(f"{flag}={directory}: {NET_CONFIG} is not JSON ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("blocks"), list) or not config["blocks"]:
        raise OfaError(f"{flag}={directory}: {NET_CONFIG} lists no blocks")
    size = None
    try:
        with open(os.path.join(directory, RUN_CONFIG)) as f:
            size = int(json.load(f)["image_size"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return config, size


def specialized_arch(space: SearchSpace, config: dict[str, Any], resolution: int) -> Arch:
    """The `Arch` of a specialised net's config: its first block is stage 0, the following
    blocks fall into stages by output width."""
    convs = []
    for j, block in enumerate(config["blocks"]):
        conv = block.get("conv") if isinstance(block, dict) else None
        if not isinstance(conv, dict) or conv.get("name") != "MBConvLayer":
            raise OfaError(f"{NET_CONFIG}: block {j} is not an MBConvLayer block")
        convs.append(conv)
    depths, kernels, expands = [], [], []
    j = 0
    for s, stage in enumerate(space.stages):
        width = max(stage.widths)
        start = j
        while j < len(convs) and convs[j].get("out_channels") == width and j - start < stage.max_depth:
            j += 1
        if j == start:
            raise OfaError(f"{NET_CONFIG}: block {j} has {convs[j].get('out_channels') if j < len(convs) else 'no'} "
                           f"output channels; stage {s} of space {space.name!r} has {width}")
        depths.append(j - start)
        kernels.append([int(c["kernel_size"]) for c in convs[start:j]])
        expands.append([float(c["expand_ratio"]) for c in convs[start:j]])
    if j != len(convs):
        raise OfaError(f"{NET_CONFIG}: block {j} has no place in space {space.name!r}")
    return space.validate(Arch.from_dict({"resolution": resolution, "depths": depths, "kernels": kernels,
                                          "expands": expands}))


def _block_index_map(space: SearchSpace, arch: Arch) -> dict[int, int]:
    """Supernet block index (`blocks.N` of the supernet's state dict) -> the subnet's."""
    mapping, supernet_index, subnet_index = {}, 0, 0
    for s, stage in enumerate(space.stages):
        for i in range(stage.max_depth):
            if i < arch.depths[s]:
                mapping[supernet_index] = subnet_index
                subnet_index += 1
            supernet_index += 1
    return mapping


def _static_name(name: str, blocks: dict[int, int]) -> str | None:
    """The static subnet's name of a supernet tensor (None: a block the subnet skips).
    Dynamic layers nest one level deeper (`...conv.conv.weight`, `...bn.bn.weight`)."""
    match = re.match(r"blocks\.(\d+)\.(.*)$", name)
    if not match:
        return name
    index = int(match.group(1))
    if index not in blocks:
        return None
    rest = match.group(2).replace(".conv.conv.", ".conv.").replace(".bn.bn.", ".bn.")
    return f"blocks.{blocks[index]}.{rest}"


def import_specialized(net: OfaNet, config: dict[str, Any], state: dict[str, np.ndarray], resolution: int,
                       source: str) -> keras.Model:
    """The plain Keras model of a specialised net of `net`'s space (see the module doc)."""
    space = ofa_space(net)
    if resolution not in space.resolutions:
        space = space.with_resolutions(sorted({*space.resolutions, resolution}))
    arch = specialized_arch(space, config, resolution)
    classifier = state.get("classifier.linear.weight")
    if classifier is None or np.ndim(classifier) != 2:
        raise OfaError(f"{source}: tensor classifier.linear.weight is missing")
    supernet = Supernet(space, num_classes=int(np.shape(classifier)[0]), kernel_mode="center_crop")
    supernet.build()
    blocks = _block_index_map(space, arch)
    slots = {}
    for slot in tensor_slots(supernet, net):
        static = _static_name(slot.name, blocks)
        if static is not None:
            slots[static] = slot
    counters = {n.rsplit(".", 1)[0] + "." + COUNTER for n in slots if n.endswith(".running_mean")}
    for name in slots:
        if name not in state:
            raise OfaError(f"{source}: tensor {name} is missing")
    for name in state:
        if name not in slots and name not in counters:
            raise OfaError(f"{source}: tensor {name} has no place in this {net.net_id} subnet")
    updates = []
    for name, slot in slots.items():
        tensor = np.asarray(state[name])
        value = slot.to_keras(tensor).astype(np.float32) if tensor.ndim == len(slot.variable.shape) else None
        big = tuple(slot.variable.shape)
        if value is None or any(a > b for a, b in zip(value.shape, big)):
            raise OfaError(f"{source}: tensor {name} has shape {tuple(tensor.shape)}, more than {net.net_id} holds")
        full = np.array(slot.variable.numpy())
        full[prefix_slice(value.shape, big)] = value
        updates.append((slot.variable, full))
    for variable, full in updates:
        variable.assign(full)
    model = supernet.get_subnet(arch, name=f"{net.net_id}_specialized")
    _check_shapes(model, slots, state, source)
    return model


def _check_shapes(model: keras.Model, slots: dict, state: dict[str, np.ndarray], source: str) -> None:
    """Every static tensor was taken whole: the subnet's weights hold as many numbers."""
    expected = sum(int(np.size(state[name])) for name in slots)
    held = sum(int(np.prod(w.shape)) for w in model.weights)
    if held != expected:
        raise OfaError(f"{source}: the net's tensors hold {expected} numbers, its subnet in this space {held} "
                       "(a block's channels differ from the space's)")
