"""How an arch reaches a traced function: one int32 vector of concrete channel counts.

The vector holds, in a fixed layout per space, the stem / final-expand / head widths,
each stage's depth and width, and for every block slot its kernel size, mid channels and
SE channels (all from `spaces.arch_plan.plan`). Because it is a tensor of fixed length, one
`tf.function` trace serves every arch at a given input resolution.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ofa_tf.layers.stage import BLOCK_CHOICE_FIELDS
from ofa_tf.spaces import Arch, SearchSpace
from ofa_tf.spaces.arch_plan import plan

_HEADER = ("stem_width", "final_expand_width", "head_width")
_PER_STAGE = ("depth", "width")


class ArchTensorLayout:
    """Encodes archs of `space` to int32 vectors and reads fields back inside a graph."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self._stage_base = len(_HEADER)
        self._block_base = self._stage_base + len(_PER_STAGE) * space.num_stages
        self._slot_offsets = []
        offset = self._block_base
        for stage in space.stages:
            self._slot_offsets.append(offset)
            offset += stage.max_depth * len(BLOCK_CHOICE_FIELDS)
        self.size = offset

    def to_vector(self, arch: Arch) -> np.ndarray:
        """The int32 vector of a validated arch. Skipped block slots repeat the last
        active block's values, so every field stays a valid choice."""
        p = plan(self.space, arch)
        vec = np.zeros(self.size, np.int32)
        vec[:3] = (p.stem_width, p.final_expand_width, p.head_width)
        by_stage: dict[int, list] = {}
        for block in p.blocks:
            by_stage.setdefault(block.stage, []).append(block)
        for s, stage in enumerate(self.space.stages):
            vec[self._stage_base + 2 * s: self._stage_base + 2 * s + 2] = (arch.depths[s], arch.widths[s])
            blocks = by_stage[s]
            for b in range(stage.max_depth):
                block = blocks[min(b, len(blocks) - 1)]
                start = self._slot_offsets[s] + b * len(BLOCK_CHOICE_FIELDS)
                vec[start:start + 3] = (block.kernel_size, block.mid_channels, block.se_channels)
        return vec

    # Graph-side accessors: `vec` is the int32 tensor made by `encode`, or its `unpack`ed list.
    def stem_width(self, vec: tf.Tensor) -> tf.Tensor:
        return vec[0]

    def final_expand_width(self, vec: tf.Tensor) -> tf.Tensor:
        return vec[1]

    def head_width(self, vec: tf.Tensor) -> tf.Tensor:
        return vec[2]

    def depth(self, vec: tf.Tensor, stage: int) -> tf.Tensor:
        return vec[self._stage_base + 2 * stage]

    def width(self, vec: tf.Tensor, stage: int) -> tf.Tensor:
        return vec[self._stage_base + 2 * stage + 1]

    def block_choices(self, vec: tf.Tensor | Sequence[tf.Tensor], stage: int) -> tf.Tensor | list[tuple]:
        """(kernel, mid, se) of the stage's block slots: a `(max_depth, 3)` matrix of a vector
        `vec`, or a list of `max_depth` 3-tuples of an `unpack`ed one."""
        start = self._slot_offsets[stage]
        rows, fields = self.space.stages[stage].max_depth, len(BLOCK_CHOICE_FIELDS)
        if isinstance(vec, (list, tuple)):
            return [tuple(vec[start + fields * b:start + fields * (b + 1)]) for b in range(rows)]
        return tf.reshape(vec[start:start + rows * fields], (rows, fields))

    def unpack(self, vec: tf.Tensor) -> list[tf.Tensor]:
        """The vector's fields as scalar tensors, made by one op: every accessor here takes the
        list as it takes the vector, and reading a field is then free (indexing the tensor is
        one slice op per field, a hundred per forward pass)."""
        return tf.unstack(vec, num=self.size)
