"""Weight-free cost of an arch: multiply-adds and parameters of each piece of its plan.

MACs count convolution and dense multiply-adds only, the way OFA's profiler does (no
BN, activation, pooling or residual adds), so numbers are comparable with the papers.
Parameters count every trainable weight of the static subnet (conv/dense kernels and
biases, BN gamma and beta).

This is the one place those counts are written: `profile` sums them over an arch's plan
(`plan_cost`) for any arch form, checking it, and the searchers' `ofa_tf.search.costs.ArchCostTable`
memoises `block_cost` per block configuration, so both give the same numbers.
"""

from __future__ import annotations

from typing import Any, Iterable

from ofa_tf.errors import OfaError
from ofa_tf.spaces.arch import Arch
from ofa_tf.spaces.arch_plan import IMAGE_CHANNELS, STEM_KERNEL, ArchPlan, BlockPlan, plan
from ofa_tf.spaces.registry import get_space
from ofa_tf.spaces.space import SearchSpace

Cost = tuple[int, int]  # (MACs, params)


def _conv_bn(size: int, fan_in: int, out_channels: int, kernel_size: int = 1) -> Cost:
    """A bias-free convolution with a `size` x `size` output, then BN (gamma, beta).
    `fan_in` is the input channels each output channel sees (1 for a depthwise conv)."""
    weights = kernel_size * kernel_size * fan_in * out_channels
    return size * size * weights, weights + 2 * out_channels


def _dense(in_features: int, out_features: int) -> Cost:
    """A dense layer with bias, or a 1x1 convolution with bias on a pooled 1x1 map."""
    weights = in_features * out_features
    return weights, weights + out_features


def total_cost(costs: Iterable[Cost]) -> Cost:
    macs = params = 0
    for m, p in costs:
        macs += m
        params += p
    return macs, params


def stem_cost(stem_size: int, stem_width: int) -> Cost:
    """The stem convolution + BN on the RGB image (`stem_size`: side of its output)."""
    return _conv_bn(stem_size, IMAGE_CHANNELS, stem_width, STEM_KERNEL)


def block_cost(block: BlockPlan) -> Cost:
    """One inverted-residual block: 1x1 expand (when the stage has one), kxk depthwise,
    squeeze-excite (two 1x1 convs with bias on the pooled map), 1x1 project; each conv
    followed by BN."""
    mid = block.mid_channels
    parts = [_conv_bn(block.out_size, 1, mid, block.kernel_size), _conv_bn(block.out_size, mid, block.out_channels)]
    if block.has_expand_conv:
        parts.append(_conv_bn(block.in_size, block.in_channels, mid))
    if block.se_channels:
        parts += [_dense(mid, block.se_channels), _dense(block.se_channels, mid)]
    return total_cost(parts)


def head_cost(feature_size: int, channels: int, final_expand_width: int, head_width: int, num_classes: int,
              head_bias: bool = True) -> Cost:
    """Everything after the last block: the pre-pool 1x1 expansion + BN (when
    `final_expand_width`), the post-pool 1x1 conv, with a bias when `head_bias` (when
    `head_width`) and the classifier, on `channels` input channels of side `feature_size`."""
    parts = []
    if final_expand_width:
        parts.append(_conv_bn(feature_size, channels, final_expand_width))
        channels = final_expand_width
    if head_width:
        macs, params = _dense(channels, head_width)
        parts.append((macs, params if head_bias else params - head_width))
        channels = head_width
    parts.append(_dense(channels, num_classes))
    return total_cost(parts)


def plan_cost(p: ArchPlan, num_classes: int) -> Cost:
    """(MACs, params) of a whole subnet from its plan."""
    head = head_cost(p.feature_size, p.blocks[-1].out_channels, p.final_expand_width, p.head_width, num_classes,
                     p.head_bias)
    return total_cost([stem_cost(p.stem_size, p.stem_width), *(block_cost(b) for b in p.blocks), head])


def profile(space: SearchSpace | str, arch: Arch | Any, num_classes: int,
            resolution: int | None = None) -> dict[str, Any]:
    """MACs and params of `arch` (any form `SearchSpace.parse_arch` takes), checked first; the
    searchers' `ArchCostTable` takes valid archs only and memoises per block.

    Returns:
      {"macs": int, "params": int, "resolution": int}.
    Raises:
      OfaError: unknown space, bad arch, resolution outside the space, num_classes <= 0.
    """
    space = get_space(space)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise OfaError(f"num_classes={num_classes!r}: expected a positive integer")
    arch = space.parse_arch(arch, resolution=resolution)
    macs, params = plan_cost(plan(space, arch), num_classes)
    return {"macs": int(macs), "params": int(params), "resolution": arch.resolution}
