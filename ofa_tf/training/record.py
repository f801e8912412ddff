"""The record of which subnets a run trained, and when (TOFA's zero-cost selection).

TOFA (Transfer-Once-For-All, arXiv:2303.15485) picks a subnet for a budget without measuring any: the subnet trained
most recently under that budget, because it carries the latest shared weights. So a run
keeps, for every distinct subnet it trained (the full model included), the last global
step that trained it and how many steps did. `PhaseController` fills it; the run saves
it beside each checkpoint as `sampled_subnets.json`, so a resumed run continues it.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from ofa_tf.errors import OfaError
from ofa_tf.io import isfile, read_json, write_json
from ofa_tf.spaces import Arch

RECORD_FILE = "sampled_subnets.json"


class SampledRecord:
    """{arch: (last step trained, times trained)} for the subnets of one run."""

    def __init__(self) -> None:
        self._entries: dict[str, list[int]] = {}  # arch JSON -> [last_step, count]

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, step: int, archs: Iterable[Arch]) -> None:
        """Notes that global step `step` trained `archs`."""
        for arch in archs:
            entry = self._entries.setdefault(arch.to_json(), [step, 0])
            entry[0] = max(entry[0], int(step))
            entry[1] += 1

    def most_recent_first(self) -> list[tuple[int, Arch]]:
        """(last step, arch) pairs, the most recently trained first."""
        pairs = [(last, Arch.from_dict(json.loads(key))) for key, (last, _) in self._entries.items()]
        return sorted(pairs, key=lambda pair: -pair[0])

    def to_dict(self) -> dict:
        return {"entries": [{"arch": json.loads(key), "last_step": last, "count": count}
                            for key, (last, count) in sorted(self._entries.items(), key=lambda kv: -kv[1][0])]}

    @classmethod
    def from_dict(cls, data: dict) -> "SampledRecord":
        record = cls()
        for entry in data["entries"]:
            record._entries[Arch.from_dict(entry["arch"]).to_json()] = [int(entry["last_step"]),
                                                                         int(entry["count"])]
        return record

    def save(self, model_dir: str) -> None:
        """Writes `model_dir/sampled_subnets.json` atomically."""
        write_json(os.path.join(model_dir, RECORD_FILE), self.to_dict(), indent=None)

    @classmethod
    def load(cls, model_dir: str) -> "SampledRecord":
        path = os.path.join(model_dir, RECORD_FILE)
        if not isfile(path):
            raise OfaError(f"model_dir={model_dir}: no {RECORD_FILE} (the run recorded no trained subnets; "
                           "it was trained before the record existed or has not finished an epoch)")
        try:
            return cls.from_dict(read_json(path))
        except (OSError, ValueError, KeyError, TypeError):
            raise OfaError(f"{path}: unreadable sampled-subnet record") from None


def load_sampled_record(model_dir: str) -> list[tuple[int, Arch]]:
    """(last step trained, arch) of every subnet the run in `model_dir` trained, most recent first."""
    return SampledRecord.load(model_dir).most_recent_first()
