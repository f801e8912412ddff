"""The concrete layer plan of one arch: every block's channels, kernel, stride and SE size.

This is the single place where an arch's choices become channel counts (mid channels
from in-width x expand ratio, SE hidden channels, final-expand width). The profiler,
the graph-side arch tensor and static extraction all read it, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

from ofa_tf.spaces.arch import Arch
from ofa_tf.spaces.divisible import expanded_channels, squeeze_channels
from ofa_tf.spaces.space import SearchSpace


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """One active inverted-residual block of an arch."""

    stage: int
    index: int
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    has_expand_conv: bool
    se_channels: int  # 0 when the block has no squeeze-excite
    residual: bool
    activation: str


@dataclasses.dataclass(frozen=True)
class ArchPlan:
    stem_width: int
    blocks: tuple[BlockPlan, ...]
    final_expand_width: int  # 0 when the space has no pre-pool expansion
    head_width: int  # 0 when the space has no post-pool convolution
    feature_width: int  # channels reaching the classifier


def block_has_expand_conv(space: SearchSpace, stage_index: int) -> bool:
    return max(space.stages[stage_index].expands) != 1


def plan(space: SearchSpace, arch: Arch) -> ArchPlan:
    """Channel-level plan of a (validated) arch of `space`."""
    blocks = []
    in_ch = arch.stem_width
    for s, stage in enumerate(space.stages):
        for b in range(arch.depths[s]):
            has_expand = block_has_expand_conv(space, s)
            mid = expanded_channels(in_ch, arch.expands[s][b]) if has_expand else in_ch
            blocks.append(BlockPlan(
                stage=s, index=b, in_channels=in_ch, mid_channels=mid, out_channels=arch.widths[s],
                kernel_size=arch.kernels[s][b], stride=stage.stride if b == 0 else 1,
                has_expand_conv=has_expand, se_channels=squeeze_channels(mid) if stage.use_se else 0,
                residual=space.block_residual(s, b), activation=stage.activation))
            in_ch = arch.widths[s]
    final = space.final_expand_width(in_ch)
    feature = arch.head_width or final or in_ch
    return ArchPlan(stem_width=arch.stem_width, blocks=tuple(blocks), final_expand_width=final,
                    head_width=arch.head_width, feature_width=feature)


def iter_block_slots(space: SearchSpace) -> Iterator[tuple[int, int]]:
    """(stage, block) for every block slot of the supernet, in order."""
    for s, stage in enumerate(space.stages):
        for b in range(stage.max_depth):
            yield s, b
