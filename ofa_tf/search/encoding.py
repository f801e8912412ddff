"""The accuracy predictor's input: OFA's one-hot arch encoding (`ArchEncoder`), and which
space an encoding belongs to (a saved predictor's inputs only mean something for the space
it was trained on)."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Sequence

import numpy as np

from ofa_tf.spaces import Arch, SearchSpace


def space_fingerprint(space: SearchSpace) -> str:
    """A short hash of the space's whole config (stages, choices, resolutions), so a saved
    predictor can tell whether it was trained for this space."""
    text = json.dumps(space.to_config(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ArchEncoder:
    """OFA's one-hot arch encoding, the accuracy predictor's input, for batches of archs.

    Per block slot: one-hot kernel and one-hot expand ratio (all zeros when the block is
    skipped); per stage a one-hot width; one-hot stem / head width and resolution. Only
    elastic choices (more than one option) contribute features. Evolution encodes 50,000
    archs per target, so where every choice's 1 goes is worked out once and a whole batch
    is filled with one index assignment.
    """

    def __init__(self, space: SearchSpace):
        self.space = space
        offset = 0

        def slot(choices: Sequence) -> dict[float, int]:
            nonlocal offset
            if len(choices) < 2:
                return {}
            start, offset = offset, offset + len(choices)
            return {float(c): start + i for i, c in enumerate(choices)}

        self._resolution = slot(space.resolutions)
        self._stem = slot(space.stem_widths)
        self._head = slot(space.head_widths)
        self._widths, self._kernels, self._expands = [], [], []
        for stage in space.stages:
            self._widths.append(slot(stage.widths))
            ks, es = [], []
            for _ in range(stage.max_depth):
                ks.append(slot(stage.kernels))
                es.append(slot(stage.expands))
            self._kernels.append(ks)
            self._expands.append(es)
        self.size = offset

    def columns(self, arch: Arch) -> list[int]:
        """Indices of the ones in `arch`'s encoding (arch assumed valid for the space)."""
        cols = []
        for table, value in ((self._resolution, arch.resolution), (self._stem, arch.stem_width),
                             (self._head, arch.head_width)):
            if table:
                cols.append(table[float(value)])
        for s, depth in enumerate(arch.depths):
            if self._widths[s]:
                cols.append(self._widths[s][float(arch.widths[s])])
            for b in range(depth):
                if self._kernels[s][b]:
                    cols.append(self._kernels[s][b][float(arch.kernels[s][b])])
                if self._expands[s][b]:
                    cols.append(self._expands[s][b][float(arch.expands[s][b])])
        return cols

    def encode(self, archs: Sequence[Arch]) -> np.ndarray:
        """(len(archs), size) float32 matrix of one-hot encodings."""
        rows, cols = [], []
        for i, arch in enumerate(archs):
            c = self.columns(arch)
            rows.extend([i] * len(c))
            cols.extend(c)
        out = np.zeros((len(archs), self.size), np.float32)
        out[rows, cols] = 1.0
        return out


@functools.lru_cache(maxsize=8)
def arch_encoder(space: SearchSpace) -> ArchEncoder:
    """The `ArchEncoder` of `space`, built once per space (a search encodes in many batches)."""
    return ArchEncoder(space)
