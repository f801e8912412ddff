"""The run directory as one typed object: every tool reads runs through `RunDirectory`.

Layout (`model_dir`):
  config.json           every setting of the run (`RunConfig` under "run"), its method,
                        space, classes, steps per epoch and input normalisation
  checkpoints/ckpt-NNNNNNNN.weights.h5 + .optimizer.npz + .json
                        weights, optimizer state and {epoch, step} at global step N
  sampled_subnets.json  every subnet the run trained, with the last step that trained it
  metrics.csv           one row per epoch (`ofa_tf.runs.report.EpochReport`)
  logs/                 TensorBoard

`RunDirectory(model_dir).read()` gives a `SavedRun` (typed, checked once) without building
a model, so a tool rejects a directory with no trained supernet before any heavy work;
`load_supernet()` builds the model at the last checkpoint, and `evaluation_data()` the
BN-calibration and evaluation batches every tool that measures subnets uses.

`model_dir` may be a URL (`gs://bucket/run`, `ram://...`): every file goes through
`ofa_tf.io`, i.e. `tf.io.gfile` (docs/training.md, "Run directories in a bucket").
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from absl import logging
import tensorflow as tf

from ofa_tf.data import (MEAN, STD, DataSource, calibration_images, evaluation_batches, load_dataset,
                         split_validation)
from ofa_tf import io
from ofa_tf.errors import OfaError
from ofa_tf.io import local_copy, read_json, unwritable_reason
from ofa_tf.runs.checkpoints import verify_checkpoint
from ofa_tf.runs.config import RunConfig
from ofa_tf.runs.data_free import check_classes
from ofa_tf.runs.model import build_model
from ofa_tf.spaces import SearchSpace
from ofa_tf.training import Method, OnceForAllModel

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"
LOGS_DIR = "logs"
EVALUATION_SPLITS = ("validation", "test")
EVALUATION_BATCH = 256
_REPORTED_SKIPS: set[str] = set()  # damaged checkpoints already reported by this process


def check_split(split: str) -> None:
    """Subnets of a run are measured on its validation split or on the dataset's test split."""
    if split not in EVALUATION_SPLITS:
        raise OfaError(f"split={split!r}: expected validation or test")


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What a run's config.json says, parsed: its settings, space, method and classes."""

    config: RunConfig
    space: SearchSpace
    method: Method
    num_classes: int
    class_names: list[str]
    steps_per_epoch: int | None
    normalization: dict[str, list[float]]
    raw: dict[str, Any]  # config.json as written (for tools that report it)


@dataclasses.dataclass
class EvaluationData:
    """A run's data for measuring subnets at one resolution: BN-calibration batches from its
    training split and evaluation batches from its validation (or the test) split."""

    calibration: list
    evaluation: list
    num_calibration_images: int
    train_split: tf.data.Dataset
    source: DataSource


class RunDirectory:
    """One training run directory (see the module docstring for its layout)."""

    def __init__(self, model_dir: str | None):
        if not model_dir:
            raise OfaError("model_dir is required: the run directory")
        self.path = model_dir
        self.config_path = os.path.join(model_dir, CONFIG_FILE)
        self.checkpoint_dir = os.path.join(model_dir, CHECKPOINT_DIR)
        self.metrics_path = os.path.join(model_dir, METRICS_FILE)
        self.logs_dir = os.path.join(model_dir, LOGS_DIR)

    # --------------------------------------------------------------------- checkpoints

    def checkpoints(self) -> list[str]:
        """Checkpoints with a manifest (written last), oldest first, as base paths
        (`.../ckpt-NNNNNNNN`); `latest_checkpoint` verifies them."""
        return [p[:-len(".json")] for p in io.matching_files(self.checkpoint_dir, "ckpt-*.json")]

    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint that verifies (`verify_checkpoint`), or None when there is none.

        Each newer one skipped is logged with its reason; checkpoints that all fail are an
        error (a run must not silently start again from scratch)."""
        found = self.checkpoints()
        skipped = []
        for base in reversed(found):
            reason = verify_checkpoint(base)
            if reason is None:
                for name, why in skipped:
                    key = os.path.join(io.absolute(self.checkpoint_dir), name)
                    if key not in _REPORTED_SKIPS:  # said once per process, however often a tool asks
                        _REPORTED_SKIPS.add(key)
                        logging.warning("checkpoint %s skipped: %s; using %s", name, why, os.path.basename(base))
                return base
            skipped.append((os.path.basename(base), reason))
        if skipped:
            name, why = skipped[0]
            raise OfaError(f"model_dir={self.path}: no intact checkpoint ({name}: {why})")
        return None

    # --------------------------------------------------------------------- reading
    def has_config(self) -> bool:
        return io.isfile(self.config_path)

    def check_writable(self) -> None:
        """A run can be written here: the path is a directory or can be created as one (not
        a file, nor under one; its nearest existing folder writable). Checked before any work."""
        reason = unwritable_reason(self.path, directory=True)
        if reason:
            raise OfaError(f"model_dir={self.path}: {reason}")

    def read_raw(self) -> dict[str, Any]:
        """config.json as a dict; an unreadable one is a one-line error."""
        if not io.isdir(self.path):
            if io.exists(self.path):
                raise OfaError(f"model_dir={self.path}: is a file, not a directory")
            raise OfaError(f"model_dir={self.path}: no such directory")
        if not self.has_config():
            raise OfaError(f"model_dir={self.path}: no {CONFIG_FILE} (not a training run directory)")
        try:
            raw = read_json(self.config_path)
        except (OSError, ValueError):
            raise OfaError(f"model_dir={self.path}: unreadable {CONFIG_FILE}") from None
        if not isinstance(raw, dict):
            raise OfaError(f"model_dir={self.path}: unreadable {CONFIG_FILE}")
        return raw

    def read(self) -> SavedRun:
        """The run's saved settings, parsed and checked (no model is built)."""
        raw = self.read_raw()
        try:
            return SavedRun(
                config=RunConfig.from_dict(raw["run"]), space=SearchSpace.from_config(raw["space"]),
                method=Method.from_config(raw["method"]), num_classes=int(raw["num_classes"]),
                class_names=list(raw.get("class_names") or [str(i) for i in range(int(raw["num_classes"]))]),
                steps_per_epoch=raw.get("steps_per_epoch"),
                normalization=raw.get("normalization") or {"mean": list(MEAN), "std": list(STD)}, raw=raw)
        except OfaError as e:
            raise OfaError(f"model_dir={self.path}: {CONFIG_FILE} does not fit this version ({e})") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise OfaError(f"model_dir={self.path}: {CONFIG_FILE} is incomplete or corrupt ({e!r:.80})") from None

    def trained_checkpoint(self) -> str:
        """The newest checkpoint's base path; a run with none is a one-line error."""
        latest = self.latest_checkpoint()
        if latest is None:
            raise OfaError(f"model_dir={self.path}: no trained supernet (no checkpoint yet)")
        return latest

    def read_trained(self) -> SavedRun:
        """`read()` for tools that need a trained supernet: a run with no checkpoint yet is
        an error before any heavy work."""
        saved = self.read()
        self.trained_checkpoint()
        return saved

    def load_supernet(self) -> tuple[OnceForAllModel, SavedRun]:
        """The run's model at its last checkpoint, and its saved settings."""
        saved = self.read()
        checkpoint = self.trained_checkpoint()
        model = build_model(saved.config, saved.space, saved.num_classes, saved.method)
        try:
            with local_copy(checkpoint + ".weights.h5") as weights:
                model.load_weights(weights)
        except (OSError, ValueError) as e:
            raise OfaError(f"checkpoint {checkpoint}.weights.h5 does not match the run's space "
                           f"({str(e).splitlines()[0][:160]})") from None
        return model, saved

    def evaluation_data(self, saved: SavedRun, resolution: int, *, split: str = "validation",
                        max_images: int | None = None, bn_calibration_images: int | None = None,
                        dataset: str | None = None) -> EvaluationData:
        """BN-calibration and evaluation batches at `resolution`, made once per tool so every
        subnet is measured on the same images.

        The validation split is the run's own (its `validation_fraction` and `seed`), so the
        images were never trained on; `split="test"` uses the dataset's test split. `dataset`
        replaces the run's dataset spec (same classes expected). `bn_calibration_images=0`:
        no calibration batches (subnets keep the checkpoint's BN statistics)."""
        check_split(split)
        c = saved.config
        count = c.bn_calibration_images if bn_calibration_images is None else bn_calibration_images
        if count < 0:
            raise OfaError(f"bn_calibration_images={count}: expected a number >= 0 (0: keep the BN statistics)")
        if max_images is not None and max_images <= 0:
            raise OfaError(f"max_eval_images={max_images}: expected a positive number")
        spec = dataset or c.dataset
        data = load_dataset(spec, c.data_dir, label_offset=c.label_offset if spec.startswith("tfrecord:") else 0)
        if dataset:
            check_classes(spec, data.num_classes, saved.num_classes)
        train_split, validation_split = split_validation(data.train, c.validation_fraction, c.seed)
        if split == "test" and data.test is None:
            raise OfaError(f"split=test: dataset {data.name} has no test split")
        eval_split = data.test if split == "test" else validation_split
        if max_images:
            eval_split = eval_split.take(max_images)
        images = dict(augmentation=c.augmentation, encoding=data.encoding)
        calibration = calibration_images(train_split, resolution, count, c.seed + 1, **images) if count else []
        evaluation = evaluation_batches(eval_split, EVALUATION_BATCH, resolution, **images)
        return EvaluationData(calibration, evaluation, count, train_split, data)
