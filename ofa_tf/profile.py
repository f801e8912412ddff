"""Weight-free cost of an arch: multiply-adds and parameters, from the layer plan alone.

MACs count convolution and dense multiply-adds only, the way OFA's profiler does (no
BN, activation, pooling or residual adds), so numbers are comparable with the papers.
Parameters count every trainable weight of the static subnet (conv/dense kernels and
biases, BN gamma and beta).
"""

from __future__ import annotations

import math
from typing import Any

from ofa_tf.errors import OfaError
from ofa_tf.spaces import Arch, SearchSpace, get_space
from ofa_tf.spaces.walk import plan


def _out_size(size: int, stride: int) -> int:
    return math.ceil(size / stride)  # "same" padding


def profile(space: SearchSpace | str, arch: Arch | Any, num_classes: int,
            resolution: int | None = None) -> dict[str, Any]:
    """MACs and params of `arch` (any form `SearchSpace.parse_arch` takes).

    Returns:
      {"macs": int, "params": int, "resolution": int}.
    Raises:
      OfaError: unknown space, bad arch, resolution outside the space, num_classes <= 0.
    """
    space = get_space(space)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise OfaError(f"num_classes={num_classes!r}: expected a positive integer")
    arch = space.parse_arch(arch, resolution=resolution)
    p = plan(space, arch)
    size = _out_size(arch.resolution, 2)
    macs = size * size * 9 * 3 * p.stem_width
    params = 9 * 3 * p.stem_width + 2 * p.stem_width
    for b in p.blocks:
        if b.has_expand_conv:
            macs += size * size * b.in_channels * b.mid_channels
            params += b.in_channels * b.mid_channels + 2 * b.mid_channels
        size = _out_size(size, b.stride)
        macs += size * size * b.kernel_size ** 2 * b.mid_channels
        params += b.kernel_size ** 2 * b.mid_channels + 2 * b.mid_channels
        if b.se_channels:
            macs += 2 * b.mid_channels * b.se_channels
            params += 2 * b.mid_channels * b.se_channels + b.mid_channels + b.se_channels
        macs += size * size * b.mid_channels * b.out_channels
        params += b.mid_channels * b.out_channels + 2 * b.out_channels
    channels = p.blocks[-1].out_channels
    if p.final_expand_width:
        macs += size * size * channels * p.final_expand_width
        params += channels * p.final_expand_width + 2 * p.final_expand_width
        channels = p.final_expand_width
    if p.head_width:
        macs += channels * p.head_width
        params += channels * p.head_width + p.head_width
        channels = p.head_width
    macs += channels * num_classes
    params += channels * num_classes + num_classes
    return {"macs": int(macs), "params": int(params), "resolution": arch.resolution}
