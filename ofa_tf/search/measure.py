"""Measured accuracy of subnets of a trained run, on data the supernet never trained on.

Both the predictor's training set and search's "measured accuracy" come from here: each
subnet is BN-recalibrated on the run's training images, then scored on the first
`num_eval_images` of the run's held-out validation split (`split_validation` with the
run's own fraction and seed; `split="test"` uses the dataset's test split instead).
Calibration and evaluation batches are built once per resolution, so every subnet is
measured on the same images, and a subnet measured twice is served from a cache.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.spaces import Arch, SearchSpace


def read_run(model_dir: str) -> tuple[SearchSpace, dict[str, Any]]:
    """The space and saved config of a trained run, without building its model (see
    `ofa_tf.run.read_run_directory`)."""
    from ofa_tf.run import read_run_directory

    space, saved, _ = read_run_directory(model_dir)
    return space, saved


class SubnetMeter:
    """BN-recalibrated top-1 accuracy of archs of one trained run."""

    def __init__(self, model_dir: str, num_eval_images: int = 1000, bn_calibration_images: int = 2000,
                 split: str = "validation"):
        from ofa_tf.data import load_dataset, split_validation
        from ofa_tf.run import load_trained_supernet

        if num_eval_images <= 0 or bn_calibration_images <= 0:
            raise OfaError(f"--eval_images={num_eval_images}, --bn_calibration_images={bn_calibration_images}: "
                           "expected positive numbers")
        if split not in ("validation", "test"):
            raise OfaError(f"--split={split!r}: expected validation or test")
        self.model, saved = load_trained_supernet(model_dir)
        self.space: SearchSpace = self.model.space
        run = saved["run"]
        data = load_dataset(run["dataset"], run["data_dir"], max(run["image_size"]))
        self._train, validation = split_validation(data.train, run["validation_fraction"], run["seed"])
        if split == "test" and data.test is None:
            raise OfaError(f"--split=test: dataset {run['dataset']} has no test split")
        self._eval_split = (data.test if split == "test" else validation).take(num_eval_images)
        self._seed = int(run["seed"])
        self.settings = {"split": split, "eval_images": num_eval_images,
                         "bn_calibration_images": bn_calibration_images}
        self._batches: dict[int, tuple[list, list]] = {}
        self._cache: dict[Arch, dict[str, Any]] = {}

    def _data(self, resolution: int) -> tuple[list, list]:
        from ofa_tf.data import make_pipeline
        from ofa_tf.evaluation import calibration_images

        if resolution not in self._batches:
            calibration = calibration_images(self._train, resolution, self.settings["bn_calibration_images"],
                                             self._seed + 1)
            evaluation = list(make_pipeline(self._eval_split, 250, [resolution], training=False))
            self._batches[resolution] = (calibration, evaluation)
        return self._batches[resolution]

    def measure(self, archs: Sequence[Arch], progress: bool = False) -> list[dict[str, Any]]:
        """{"accuracy", "macs", "params", "arch"} per arch (same order), cached per arch."""
        from ofa_tf.evaluation import evaluate_archs

        todo = list(dict.fromkeys(a for a in archs if a not in self._cache))
        for resolution in sorted({a.resolution for a in todo}):
            group = [a for a in todo if a.resolution == resolution]
            calibration, evaluation = self._data(resolution)
            results = evaluate_archs(self.model, group, calibration, evaluation,
                                     self.settings["bn_calibration_images"], progress=progress)
            self._cache.update(zip(group, results))
        return [self._cache[a] for a in archs]

    def accuracy(self, archs: Sequence[Arch]) -> np.ndarray:
        """Batched fitness: measured accuracy per arch (searchers' `Fitness`)."""
        return np.array([r["accuracy"] for r in self.measure(archs)], np.float64)
