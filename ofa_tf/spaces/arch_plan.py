"""The concrete layer plan of one arch: every block's channels, kernel, stride, SE size and
feature-map sizes.

This is the single place where an arch's choices become channel counts (mid channels
from in-width x expand ratio, SE hidden channels, final-expand width) and feature maps
get their sizes (`conv_out_size`). The profiler and the search cost table
(`ofa_tf.spaces.costs`), the latency tables' op list, the graph-side arch tensor and
static extraction all read it, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses

from ofa_tf.spaces.arch import Arch
from ofa_tf.spaces.divisible import expanded_channels, squeeze_channels
from ofa_tf.spaces.space import SearchSpace

# The stem every space starts with: a 3x3 stride-2 convolution of the RGB image.
STEM_KERNEL = 3
STEM_STRIDE = 2
IMAGE_CHANNELS = 3


def conv_out_size(size: int, stride: int) -> int:
    """Side of a "same"-padded convolution's output: ceil(size / stride).

    Every convolution of a supernet and its subnets pads "same" or "symmetric" (odd kernels,
    k//2 zeros each side), which give this same size, so this one rule gives
    the plan's feature-map sizes and the elastic layers' `compute_output_shape`."""
    return -(-size // stride)


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis of `size`: the zeros (before, after)."""
    total = max((conv_out_size(size, stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """One active inverted-residual block of an arch."""

    stage: int
    index: int
    in_size: int  # side of the block's input feature map
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    has_expand_conv: bool
    se_channels: int  # 0 when the block has no squeeze-excite
    residual: bool
    activation: str

    @property
    def out_size(self) -> int:
        """Side of the block's output (and of its depthwise / project convolutions)."""
        return conv_out_size(self.in_size, self.stride)


@dataclasses.dataclass(frozen=True)
class ArchPlan:
    resolution: int
    stem_size: int  # side of the stem's output
    stem_width: int
    blocks: tuple[BlockPlan, ...]
    feature_size: int  # side of the last block's output, which the head pools
    final_expand_width: int  # 0 when the space has no pre-pool expansion
    head_width: int  # 0 when the space has no post-pool convolution
    feature_width: int  # channels reaching the classifier
    head_bias: bool = True  # whether the post-pool convolution has a bias


def block_has_expand_conv(space: SearchSpace, stage_index: int) -> bool:
    return max(space.stages[stage_index].expands) != 1


def block_plan(space: SearchSpace, stage_index: int, block_index: int, in_size: int, in_channels: int,
               out_channels: int, kernel_size: int, expand_ratio: float) -> BlockPlan:
    """A block from the few values it depends on: `plan` walks an arch with it, and
    `ofa_tf.search.costs.ArchCostTable` memoises block costs by exactly these arguments."""
    stage = space.stages[stage_index]
    has_expand = block_has_expand_conv(space, stage_index)
    mid = expanded_channels(in_channels, expand_ratio) if has_expand else in_channels
    return BlockPlan(
        stage=stage_index, index=block_index, in_size=in_size, in_channels=in_channels, mid_channels=mid,
        out_channels=out_channels, kernel_size=kernel_size, stride=stage.stride if block_index == 0 else 1,
        has_expand_conv=has_expand, se_channels=squeeze_channels(mid) if stage.use_se else 0,
        residual=space.block_residual(stage_index, block_index), activation=stage.activation)


def plan(space: SearchSpace, arch: Arch) -> ArchPlan:
    """Channel-level plan of a (validated) arch of `space`."""
    blocks = []
    stem_size = conv_out_size(arch.resolution, STEM_STRIDE)
    size, in_ch = stem_size, arch.stem_width
    for s in range(space.num_stages):
        for b in range(arch.depths[s]):
            block = block_plan(space, s, b, size, in_ch, arch.widths[s], arch.kernels[s][b], arch.expands[s][b])
            blocks.append(block)
            size, in_ch = block.out_size, block.out_channels
    final = space.final_expand_width(in_ch)
    feature = arch.head_width or final or in_ch
    return ArchPlan(resolution=arch.resolution, stem_size=stem_size, stem_width=arch.stem_width,
                    blocks=tuple(blocks), feature_size=size, final_expand_width=final, head_width=arch.head_width,
                    feature_width=feature, head_bias=space.head_bias)
