"""Re-sorting mid channels by importance (OFA §3.2; DεpS does it once, at the switch).

Elastic expand keeps the *first* N mid channels, so before subnets start using fewer
channels the most important ones are moved to the front. Every tensor indexed by mid
channel (expand conv outputs, BNs, depthwise, SE, projection inputs) and its optimizer
slots are permuted together, so the full model computes exactly the same function.
"""

from __future__ import annotations

import keras
import numpy as np

from ofa_tf.layers import ElasticInvertedResidual


def _permute(variable, order: np.ndarray, axis: int) -> None:
    variable.assign(np.take(variable.numpy(), order, axis=axis))


def sort_mid_channels(model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None) -> int:
    """Sorts the mid channels of every elastic block of `model`; returns how many blocks.

    Optimizer slot variables (momentum, Adam moments) of the permuted weights are
    permuted too, so the optimizer state stays attached to the right channels.
    """
    slots: dict[str, list] = {}
    if optimizer is not None and getattr(optimizer, "built", False):
        for slot in optimizer.variables:
            slots.setdefault(slot.name, []).append(slot)
    sorted_blocks = 0
    for block in model._flatten_layers(include_self=False):
        if not isinstance(block, ElasticInvertedResidual) or not block.mid_channel_variables():
            continue
        order = np.argsort(-block.mid_channel_importance(), kind="stable")
        for variable, axis in block.mid_channel_variables():
            _permute(variable, order, axis)
            prefix = variable.path.replace("/", "_") + "_"
            for name, owned in slots.items():
                if name.startswith(prefix):
                    for slot in owned:
                        if tuple(slot.shape) == tuple(variable.shape):
                            _permute(slot, order, axis)
        sorted_blocks += 1
    return sorted_blocks
