"""Re-sorting mid channels by importance (OFA §3.2; DεpS does it once, at the switch).

Elastic expand keeps the *first* N mid channels, so before subnets start using fewer
channels the most important ones are moved to the front. Every tensor indexed by mid
channel (expand conv outputs, BNs, depthwise, SE, projection inputs) is permuted together,
so the full model computes exactly the same function. The optimizer's slots (momentum) are
permuted with them when the optimizer is passed; the references leave them where they were
(DεpS's sort assigns the weights' `.data`, PyTorch's optimizer state does not follow;
OFA sorts before a fresh optimizer), which `Method.sort_momentum="stay"` reproduces.

Two rankings: `global` ranks all mid channels of a block at once; `grouped` is OFA's
`re_organize_middle_weights(expand_ratio_stage=len(ratios) - 2)`, what OFA runs before its
last expand phase and DεpS's code at its switch: the mid channels are split at the widths
of every expand ratio but the smallest and each group is sorted within itself, so channels
that only the larger ratios use stay behind those of the smaller; it then sorts the SE
hidden channels too, by the L1 norm of their SE expand weights (the SE keeps its first N
hidden channels the same way).
"""

from __future__ import annotations

import keras
import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.layers import ElasticInvertedResidual
from ofa_tf.spaces.divisible import expanded_channels

SORT_MODES = ("global", "grouped")


def _permute(variable, order: np.ndarray, axis: int) -> None:
    variable.assign(np.take(variable.numpy(), order, axis=axis))


def mid_channel_groups(block: ElasticInvertedResidual) -> list[tuple[int, int]]:
    """[start, end) of each mid-channel group of `block` under the grouped sort: the
    channels its second smallest expand ratio uses, then those each next ratio adds (at the
    block's largest input width, as OFA computes them)."""
    total = block.max_mid_channels
    larger = sorted(block.expand_ratios)[1:]
    ends = sorted({min(total, expanded_channels(block.max_in_channels, e)) for e in larger} | {total})
    return list(zip([0] + ends[:-1], ends))


def _order(importance: np.ndarray, groups: list[tuple[int, int]]) -> np.ndarray:
    """Most important first within each group; the groups keep their places."""
    return np.concatenate([start + np.argsort(-importance[start:end], kind="stable") for start, end in groups])


def sort_mid_channels(model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None,
                      mode: str = "global") -> int:
    """Sorts the mid channels of every elastic block of `model`; returns how many blocks.

    `mode`: "global" (one ranking of a block's mid channels) or "grouped" (within each
    expand ratio's group, then the SE hidden channels; see the module's docstring).
    With `optimizer`, its slot variables (momentum, Adam moments) of the permuted weights
    are permuted too, so the state follows its channels; without, the state stays in the old
    order, as the references' `.data` assignment leaves PyTorch's optimizer state.
    """
    if mode not in SORT_MODES:
        raise OfaError(f"channel sort mode={mode!r}: expected one of {list(SORT_MODES)}")
    slots: dict[str, list] = {}
    if optimizer is not None and getattr(optimizer, "built", False):
        for slot in optimizer.variables:
            slots.setdefault(slot.name, []).append(slot)
    sorted_blocks = 0
    for block in model._flatten_layers(include_self=False):
        if not isinstance(block, ElasticInvertedResidual) or not block.mid_channel_variables():
            continue
        importance = block.mid_channel_importance()
        groups = mid_channel_groups(block) if mode == "grouped" else [(0, len(importance))]
        _permute_all(block.mid_channel_variables(), _order(importance, groups), slots)
        if mode == "grouped" and block.use_se:
            se = block.se
            hidden_importance = np.abs(se.expand_conv.kernel.numpy()).sum(axis=(0, 1, 3))
            _permute_all([(se.reduce_conv.kernel, 3), (se.reduce_conv.bias, 0), (se.expand_conv.kernel, 2)],
                         np.argsort(-hidden_importance, kind="stable"), slots)
        sorted_blocks += 1
    return sorted_blocks


def _permute_all(pairs, order: np.ndarray, slots: dict[str, list]) -> None:
    """Permutes each (variable, axis) of `pairs` and its optimizer slots by `order`."""
    for variable, axis in pairs:
        _permute(variable, order, axis)
        prefix = variable.path.replace("/", "_") + "_"
        for name, owned in slots.items():
            if name.startswith(prefix):
                for slot in owned:
                    if tuple(slot.shape) == tuple(variable.shape):
                        _permute(slot, order, axis)
