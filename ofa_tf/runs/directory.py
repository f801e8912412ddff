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

config.json is read strictly: a setting the run needs that is missing or of the wrong type
is one error naming the file and the setting, never today's default (a run saved before a
setting existed gets the value it computed, `ofa_tf.runs.config.LEGACY_VALUES`). Errors
about a saved setting name the file (`model_dir=R: config.json: dataset=...: ...`), so the
command line never words them as a flag the user did not pass. The dataset the run trained
on is fingerprinted in config.json (`ofa_tf.runs.fingerprint`); measuring the run on its own
dataset checks that it has not changed since, and any dataset (its own or another) that its
class count is the supernet's.

`model_dir` may be a URL (`gs://bucket/run`, `ram://...`): every file goes through
`ofa_tf.io`, i.e. `tf.io.gfile` (docs/training.md, "Run directories in a bucket").
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any, Callable

from absl import logging
import tensorflow as tf

from ofa_tf.data import (MEAN, STD, DataSource, calibration_images, evaluation_batches, load_dataset,
                         split_validation)
from ofa_tf import io
from ofa_tf.errors import OfaError, error_text
from ofa_tf.io import local_copy, read_json, unwritable_reason
from ofa_tf.layers.block_import import import_block_class
from ofa_tf.runs.checkpoints import verify_checkpoint
from ofa_tf.runs.config import RunConfig
from ofa_tf.runs.finetuned import finetuned_arch, finetuned_supernet, is_finetune_config
from ofa_tf.runs.tool_dataset import check_classes
from ofa_tf.runs.fingerprint import FINGERPRINT_KEY, check_fingerprint_record, dataset_fingerprint, fingerprint_change
from ofa_tf.runs.plan import build_model
from ofa_tf.spaces import SearchSpace
from ofa_tf.training import Method, OnceForAllModel
from ofa_tf.values import is_count, is_finite_number, shown

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


def room_inside() -> int:
    """Bytes of the longest path a run writes inside its directory, so a `model_dir` too long
    for it fails before any work (`check_writable`): its TensorBoard file,
    `logs/validation/events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2` (its checkpoints'
    temporary names, `checkpoints/.tmp-XXXXXXXX.optimizer.npz`, are shorter), counted with
    the longest pid and a 10-digit time and counter."""
    events = os.path.join(LOGS_DIR, "validation",
                          f"events.out.tfevents.{'9' * 10}.{socket.gethostname()}.{'9' * 7}.{'9' * 10}.v2")
    checkpoint = os.path.join(CHECKPOINT_DIR, io.temp_name(".optimizer.npz"))
    return max(len(os.fsencode(events)), len(os.fsencode(checkpoint)))


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
    dataset_fingerprint: dict[str, Any] | None = None  # of the data it trained on (None: an older run, or imported)


@dataclasses.dataclass
class EvaluationData:
    """A run's data for measuring subnets at one resolution: BN-calibration batches from its
    training split and evaluation batches from its validation (or the test) split."""

    calibration: list
    evaluation: list
    num_calibration_images: int
    train_split: tf.data.Dataset
    source: DataSource
    evaluation_split: tf.data.Dataset | None = None  # the images `evaluation` batches, undecoded and unresized


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
        self._checked_dataset: str | None = None  # the own dataset spec whose fingerprint matched

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
        a file, nor under one; its nearest existing folder writable), and every file a run
        writes inside it fits the filesystem's path limit (`room_inside`). Checked before any work."""
        reason = unwritable_reason(self.path, directory=True, room_inside=room_inside())
        if reason:
            raise OfaError(f"model_dir={self.path}: {reason}")

    def check_config_present(self) -> None:
        """A directory holding checkpoints but no config.json lost its settings: an error that
        says so (rather than "not a run directory"); the weights alone cannot be used."""
        if not self.has_config() and io.isdir(self.checkpoint_dir):
            raise OfaError(f"model_dir={self.path}: {CONFIG_FILE} is missing, but {CHECKPOINT_DIR}/ is there: the "
                           f"run's settings are lost (restore {CONFIG_FILE}, or use another model_dir)")

    def read_raw(self) -> dict[str, Any]:
        """config.json as a dict; an unreadable one is a one-line error."""
        if not io.isdir(self.path):
            if io.exists(self.path):
                raise OfaError(f"model_dir={self.path}: is a file, not a directory")
            raise OfaError(f"model_dir={self.path}: no such directory")
        self.check_config_present()
        if not self.has_config():
            raise OfaError(f"model_dir={self.path}: no {CONFIG_FILE} (not a training run directory)")
        try:
            raw = read_json(self.config_path)
        except (OSError, ValueError) as e:  # ValueError: not JSON (or not UTF-8)
            raise OfaError(f"model_dir={self.path}: unreadable {CONFIG_FILE} ({error_text(e, 100)})") from None
        except RecursionError:
            raise OfaError(f"model_dir={self.path}: unreadable {CONFIG_FILE} (nested too deeply)") from None
        if not isinstance(raw, dict):
            raise OfaError(f"model_dir={self.path}: unreadable {CONFIG_FILE} (expected a JSON object, got "
                           f"{shown(raw, 30, as_json=True)})")
        return raw

    def read(self) -> SavedRun:
        """The run's saved settings, parsed and checked (no model is built).

        Strict: a key the run needs that is missing or mistyped is an OfaError naming the
        file and the key (`model_dir=R: config.json: image_size=[]: expected ...`)."""
        raw = self.read_raw()
        try:
            return _parse_saved(raw)
        except OfaError as e:
            raise self.saved_setting_error(e) from None

    def read_settings(self) -> dict[str, Any]:
        """config.json's "run", read as strictly as `read` (every setting there, an older
        run's missing ones at their legacy values), as plain JSON values."""
        raw = self.read_raw()
        try:
            if "run" not in raw:
                raise OfaError("run is missing (every ofa_tf run records it)")
            return RunConfig.from_saved(raw["run"]).to_dict()
        except OfaError as e:
            raise self.saved_setting_error(e) from None

    def saved_setting_error(self, error: OfaError | str) -> OfaError:
        """`error` about a setting config.json holds, worded as such (`model_dir=R: config.json:
        ...`): the command line then words none of it as a flag the user did not pass."""
        return OfaError(f"model_dir={self.path}: {CONFIG_FILE}: {error}")

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
        """The run's model at its last checkpoint, and its saved settings (for a directory
        ofa-finetune wrote, a `FinetunedSupernet`: its subnet is the fine-tuned one)."""
        saved = self.read()
        checkpoint = self.trained_checkpoint()
        model = build_model(saved.config, saved.space, saved.num_classes, saved.method)
        if is_finetune_config(saved.raw):
            return finetuned_supernet(self.path, saved.raw, model, checkpoint), saved
        try:
            with local_copy(checkpoint + ".weights.h5") as weights:
                model.load_weights(weights)
        except (OSError, ValueError) as e:
            raise OfaError(f"checkpoint {checkpoint}.weights.h5 does not match the run's space "
                           f"({error_text(e)})") from None
        return model, saved

    def evaluation_data(self, saved: SavedRun, resolution: int, *, split: str = "validation",
                        eval_images: int | None = None, bn_calibration_images: int | None = None,
                        dataset: str | None = None) -> EvaluationData:
        """BN-calibration and evaluation batches at `resolution`, made once per tool so every
        subnet is measured on the same images.

        The validation split is the run's own (its `validation_fraction` and `seed`), so the
        images were never trained on; `split="test"` uses the dataset's test split. `dataset`
        replaces the run's dataset spec. `bn_calibration_images=0`: no calibration batches
        (subnets keep the checkpoint's BN statistics). `eval_images`: evaluate on at most this
        many images (None: all).

        Whatever the data, its class count must be the supernet's (`check_classes`); the
        run's own dataset must also match the fingerprint config.json recorded
        (`check_dataset_unchanged`; an older or imported run has none). Errors about the
        run's own dataset (it cannot load, it changed, its classes differ) are worded as
        errors of config.json's setting (`saved_setting_error`), not of a flag the user did
        not pass."""
        check_split(split)
        c = saved.config
        count = c.bn_calibration_images if bn_calibration_images is None else bn_calibration_images
        if count < 0:
            raise OfaError(f"bn_calibration_images={count}: expected a number >= 0 (0: keep the BN statistics)")
        if eval_images is not None and eval_images <= 0:
            raise OfaError(f"eval_images={eval_images}: expected a positive number")
        spec = dataset or c.dataset
        try:
            data = load_dataset(spec, c.data_dir, label_offset=c.label_offset if spec.startswith("tfrecord:") else 0)
        except OfaError as e:
            if dataset:  # the user's --dataset: its own error
                raise
            message = str(e)  # named `dataset=SPEC` (the spec's check) or `SPEC` (its loader): said once
            if not message.startswith("dataset="):
                message = f"dataset={spec}: {message.removeprefix(f'{spec}: ')}"
            raise self.saved_setting_error(message) from None
        if not dataset:
            self.check_dataset_unchanged(saved, spec, data)
        try:
            check_classes(spec, data.num_classes, saved.num_classes)
        except OfaError as e:
            raise (e if dataset else self.saved_setting_error(e)) from None
        try:
            train_split, validation_split = split_validation(data.train, c.validation_fraction, c.seed)
        except OfaError as e:  # the run's validation_fraction
            raise self.saved_setting_error(e) from None
        if split == "test" and data.test is None:
            raise OfaError(f"split=test: dataset {data.name} has no test split")
        eval_split = data.test if split == "test" else validation_split
        if eval_images:
            eval_split = eval_split.take(eval_images)
        images = dict(augmentation=c.augmentation, encoding=data.encoding)
        calibration = calibration_images(train_split, resolution, count, c.seed + 1, **images) if count else []
        evaluation = evaluation_batches(eval_split, EVALUATION_BATCH, resolution, **images)
        return EvaluationData(calibration, evaluation, count, train_split, data, eval_split)

    def dataset_change(self, saved: SavedRun, spec: str, data: DataSource) -> str | None:
        """How the run's own dataset `spec` (loaded: `data`) differs from the one it trained on
        by the fingerprint config.json recorded (`fingerprint_change`), or None: unchanged, or
        no fingerprint recorded (an older or imported run). Callers word the error: a tool
        (`check_dataset_unchanged`) and a resume (`ofa_tf.runs.train`)."""
        if saved.dataset_fingerprint is None:
            return None
        return fingerprint_change(saved.dataset_fingerprint, dataset_fingerprint(spec, data, saved.config.data_dir),
                                  spec)

    def check_dataset_unchanged(self, saved: SavedRun, spec: str, data: DataSource) -> None:
        """The run's own dataset `spec` (loaded: `data`) is the one it trained on
        (`dataset_change`). Checked once per `RunDirectory`."""
        if self._checked_dataset == spec:
            return
        change = self.dataset_change(saved, spec, data)
        if change:
            raise self.saved_setting_error(f"dataset={spec}: changed since the run was trained ({change}); pass "
                                           "--dataset explicitly to use it")
        self._checked_dataset = spec


# ------------------------------------------------------------------------ config.json
# keys every ofa_tf run has written at the top of config.json (besides these: class_names,
# steps_per_epoch and normalization, also always written, and the dataset's fingerprint, newer)
REQUIRED_KEYS = ("run", "space", "method", "num_classes")
MAX_CLASSES = 1 << 20  # beyond any classifier a run trains (ImageNet-21k has 21,841 classes)


def _parse_saved(raw: dict[str, Any]) -> SavedRun:
    """config.json's content as a `SavedRun`; raises OfaError naming the first bad key."""
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise OfaError(f"{missing[0]} is missing (every ofa_tf run records it)")
    config = RunConfig.from_saved(raw["run"])
    import_block_class(config.block_class)  # every tool rebuilds the run's own block, never the default in its place
    space = _parsed("space", raw["space"], SearchSpace.from_config)
    if is_finetune_config(raw):  # ofa-finetune's directory (ofa_tf/runs/finetuned.py): its arch is in the space
        finetuned_arch(raw, space)
    method = _parsed("method", raw["method"], Method.from_config)
    num_classes = raw["num_classes"]
    if not is_count(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
        raise OfaError(f"num_classes={shown(num_classes, as_json=True)}: expected a positive integer "
                       f"(at most {MAX_CLASSES})")
    class_names = raw["class_names"] if "class_names" in raw else [str(i) for i in range(num_classes)]
    if not (isinstance(class_names, list) and len(class_names) == num_classes
            and all(isinstance(name, str) for name in class_names)):
        raise OfaError(f"class_names={shown(class_names, as_json=True)}: expected a list of {num_classes} strings "
                       f"(num_classes={num_classes})")
    steps_per_epoch = raw.get("steps_per_epoch")
    if steps_per_epoch is not None and not (is_count(steps_per_epoch) and steps_per_epoch > 0):
        raise OfaError(f"steps_per_epoch={shown(steps_per_epoch, as_json=True)}: expected a positive integer (or null)")
    normalization = raw.get("normalization", {"mean": list(MEAN), "std": list(STD)})  # the only one ever written
    if not (isinstance(normalization, dict) and set(normalization) == {"mean", "std"}
            and all(_is_channel_triple(normalization[k], positive=k == "std") for k in ("mean", "std"))):
        raise OfaError(f"normalization={shown(normalization, as_json=True)}: expected {{\"mean\": [3 numbers], "
                       "\"std\": [3 positive numbers]}")
    fingerprint = raw.get(FINGERPRINT_KEY)
    if fingerprint is not None:
        check_fingerprint_record(fingerprint)
    imported = raw.get("imported_from")  # `ofa_tf.interop`: a supernet trained elsewhere (`tool_dataset.is_imported`)
    if "imported_from" in raw and not (isinstance(imported, dict) and isinstance(imported.get("net_id"), str)):
        raise OfaError(f"imported_from={shown(imported, as_json=True)}: expected an object naming the OFA net (net_id)")
    return SavedRun(config=config, space=space, method=method, num_classes=num_classes, class_names=class_names,
                    steps_per_epoch=steps_per_epoch, normalization=normalization, raw=raw,
                    dataset_fingerprint=fingerprint)


def _parsed(key: str, value: Any, parse: Callable[[Any], Any]) -> Any:
    """`parse(value)` of config.json's object `key`; any failure one OfaError naming the key."""
    if not isinstance(value, dict):
        raise OfaError(f"{key}={shown(value, as_json=True)}: expected an object (the run's {key} config)")
    try:
        return parse(value)
    except OfaError as e:
        raise OfaError(f"{key}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else error_text(e, 100)
        raise OfaError(f"{key}: does not fit this version of ofa_tf ({type(e).__name__}: {detail})") from None


def _is_channel_triple(value: Any, positive: bool) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(is_finite_number(v) and (v > 0 or not positive)
                                                               for v in value)
