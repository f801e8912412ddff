"""Measured accuracy of subnets of a trained run, on data the supernet never trained on.

Both the predictor's training set and search's "measured accuracy" come from here: each
subnet is BN-recalibrated on the run's training images, then scored on the first
`num_eval_images` of the run's held-out validation split (`split="test"` uses the
dataset's test split instead; `dataset` replaces the run's data, as for a run imported
with no training data, and `bn_calibration_images=0` keeps the checkpoint's BN
statistics). Calibration and evaluation batches are built once per
resolution (`RunDirectory.evaluation_data`), so every subnet is measured on the same
images, and a subnet measured twice is served from a cache.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.evaluation import evaluate_archs
from ofa_tf.runs.tool_dataset import require_dataset
from ofa_tf.runs.directory import EvaluationData, RunDirectory, check_split
from ofa_tf.spaces import Arch, SearchSpace


class SubnetMeter:
    """BN-recalibrated top-1 accuracy of archs of one trained run."""

    def __init__(self, model_dir: str, num_eval_images: int = 1000, bn_calibration_images: int = 2000,
                 split: str = "validation", dataset: str | None = None):
        self.check_settings(num_eval_images, bn_calibration_images, split)
        self.directory = RunDirectory(model_dir)
        require_dataset(self.directory.read(), dataset, model_dir, "measuring accuracy")  # imported: no data
        self.model, self.saved = self.directory.load_supernet()
        self.space: SearchSpace = self.model.space
        self.dataset = dataset
        self.settings = {"split": split, "eval_images": num_eval_images,
                         "bn_calibration_images": bn_calibration_images}
        if dataset:
            self.settings["dataset"] = dataset
        self._data: dict[int, EvaluationData] = {}
        self._cache: dict[Arch, dict[str, Any]] = {}

    @staticmethod
    def check_settings(num_eval_images: int, bn_calibration_images: int, split: str) -> None:
        """One-line errors for the measuring settings (tools call it before any work)."""
        if not num_eval_images > 0:
            raise OfaError(f"eval_images={num_eval_images}: expected a positive number")
        if not bn_calibration_images >= 0:
            raise OfaError(f"bn_calibration_images={bn_calibration_images}: expected an integer >= 0 (0: keep the "
                           "checkpoint's BN statistics)")
        check_split(split)

    def _data_at(self, resolution: int) -> EvaluationData:
        if resolution not in self._data:
            self._data[resolution] = self.directory.evaluation_data(
                self.saved, resolution, split=self.settings["split"], eval_images=self.settings["eval_images"],
                bn_calibration_images=self.settings["bn_calibration_images"],
                dataset=self.dataset)
        return self._data[resolution]

    def measure(self, archs: Sequence[Arch], progress: bool = False) -> list[dict[str, Any]]:
        """{"accuracy", "macs", "params", "arch"} per arch (same order), cached per arch."""
        todo = list(dict.fromkeys(a for a in archs if a not in self._cache))
        for resolution in sorted({a.resolution for a in todo}):
            group = [a for a in todo if a.resolution == resolution]
            data = self._data_at(resolution)
            results = evaluate_archs(self.model, group, data.calibration, data.evaluation,
                                     data.num_calibration_images, progress=progress)
            self._cache.update(zip(group, results))
        return [self._cache[a] for a in archs]

    def measured(self) -> list[dict[str, Any]]:
        """Every subnet measured so far, once each, in the order they were first measured (a
        measured search's candidates: ofa-search saves them beside its results)."""
        return list(self._cache.values())

    def accuracy(self, archs: Sequence[Arch], progress: bool = False) -> np.ndarray:
        """Batched fitness: measured accuracy per arch (searchers' `Fitness`)."""
        return np.array([r["accuracy"] for r in self.measure(archs, progress)], np.float64)
