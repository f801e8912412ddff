"""Batched arch encoding for the accuracy predictor: `SearchSpace.encode`, fast.

`SearchSpace.encode` (OFA's one-hot encoding: per block slot one-hot kernel + expand,
zeros for skipped blocks; one-hot width, stem / head width and resolution) validates and
builds one vector per call (~0.1 ms). Evolution encodes 50,000 archs per target, so
`ArchEncoder` precomputes where every choice's 1 goes and fills a whole batch with one
index assignment; `tests/test_search_predictor.py` checks it equals `SearchSpace.encode`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np

from ofa_tf.spaces import Arch, SearchSpace


class ArchEncoder:
    """Maps archs of one space to rows of the predictor's input matrix."""

    def __init__(self, space: SearchSpace):
        self.space = space
        offset = 0

        def slot(choices: Sequence) -> tuple[int, dict]:
            nonlocal offset
            start = offset
            if len(choices) > 1:
                offset += len(choices)
                return start, {float(c): start + i for i, c in enumerate(choices)}
            return start, {}

        _, self._resolution = slot(space.resolutions)
        _, self._stem = slot(space.stem_widths)
        self._head = slot(space.head_widths)[1] if space.head_widths else {}
        self._widths, self._kernels, self._expands = [], [], []
        for stage in space.stages:
            self._widths.append(slot(stage.widths)[1])
            ks, es = [], []
            for _ in range(stage.max_depth):
                ks.append(slot(stage.kernels)[1])
                es.append(slot(stage.expands)[1])
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


def space_fingerprint(space: SearchSpace) -> str:
    """A short hash of the space's whole config (stages, choices, resolutions), so a saved
    predictor can tell whether it was trained for this space."""
    text = json.dumps(space.to_config(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
