"""A training run: validate everything, then train into a run directory, resumably.

Run directory layout (`--model_dir`):
  config.json           every setting of the run (a re-run must match it to resume)
  checkpoints/ckpt-NNNN.weights.h5 + ckpt-NNNN.optimizer.npz + ckpt-NNNN.json
                        model weights, optimizer state, and {epoch, step} after epoch NNNN
  metrics.csv           one row per epoch: losses per subnet kind, ε, LR, max / min accuracy
  logs/                 TensorBoard
Every file is written to a temporary name and renamed, so a killed run never leaves a
half-written checkpoint; nothing is written at all until every input has been checked.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import tempfile
import time
from typing import Any

import keras
import numpy as np

from ofa_tf.data import MEAN, STD, DataSource, load_dataset, make_pipeline, split_validation
from ofa_tf.errors import OfaError
from ofa_tf.evaluation import calibration_images, evaluate_arch
from ofa_tf.layers import KERNEL_MODES
from ofa_tf.spaces import SearchSpace, get_space
from ofa_tf.training import OnceForAllModel, PhaseController, build_method
from ofa_tf.training.methods import Method

# tf.distribute strategies a run can use (multi-worker arrives with the scale-out work).
STRATEGIES = ("default",)
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.csv"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (what `config.json` holds)."""

    method: str = "deps"
    space: str = "ofa_mbv3"
    width_mult: float = 1.0
    image_size: tuple[int, ...] = (32,)
    dataset: str = "npz:data/fashion_mnist_small.npz"
    data_dir: str | None = None
    validation_fraction: float = 0.1
    epochs: int = 4
    steps_per_epoch: int | None = None
    batch_size: int = 64
    seed: int = 0
    strategy: str = "default"
    learning_rate: float = 0.05
    lr_warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-5
    grad_clip: float | None = None
    label_smoothing: float = 0.1
    dropout: float = 0.1
    warmup_fraction: float | None = None
    epsilon_start: float = 1e-4
    epsilon_ramp_epochs: float | None = None
    epsilon_mode: str = "linear"
    num_subnets: int | None = None
    kd_temperature: float = 1.0
    kernel_mode: str = "center_crop"
    bn_calibration_images: int = 2000

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def atomic_write(path: str, write) -> None:
    """Calls `write(tmp_path)`, then renames tmp_path to `path` (same directory)."""
    directory = os.path.dirname(path) or "."
    name = os.path.basename(path)
    suffix = name[name.index("."):] if "." in name else ""  # keep e.g. ".weights.h5": Keras checks it
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_json(path: str, data: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
    atomic_write(path, write)


class PreparedRun:
    """All inputs of a run, checked; nothing written yet."""

    def __init__(self, config: RunConfig, model_dir: str, download: bool = False):
        self.config = config
        self.model_dir = model_dir
        self._check_numbers()
        self.space: SearchSpace = get_space(config.space, config.width_mult, config.image_size)
        self.data: DataSource = load_dataset(config.dataset, config.data_dir, max(config.image_size), download)
        self.train_split, self.validation_split = split_validation(self.data.train, config.validation_fraction,
                                                                   config.seed)
        self.steps_per_epoch = config.steps_per_epoch or self._count_steps()
        self.method: Method = build_method(
            config.method, self.space, steps_per_epoch=self.steps_per_epoch,
            warmup_fraction=config.warmup_fraction, epsilon_start=config.epsilon_start,
            epsilon_ramp_epochs=config.epsilon_ramp_epochs, epsilon_mode=config.epsilon_mode,
            num_subnets=config.num_subnets, clipnorm=config.grad_clip)
        self.previous_checkpoint = self._check_model_dir()

    def _check_numbers(self) -> None:
        c = self.config
        checks = [
            (c.epochs > 0, f"--epochs={c.epochs}: expected a positive number"),
            (c.steps_per_epoch is None or c.steps_per_epoch > 0,
             f"--steps_per_epoch={c.steps_per_epoch}: expected a positive number"),
            (c.batch_size > 0, f"--batch_size={c.batch_size}: expected a positive number"),
            (c.learning_rate > 0, f"--learning_rate={c.learning_rate}: expected a positive number"),
            (c.strategy in STRATEGIES, f"--strategy={c.strategy!r}: expected one of {list(STRATEGIES)}"),
            (c.bn_calibration_images > 0, f"--bn_calibration_images={c.bn_calibration_images}: expected > 0"),
            (c.kernel_mode in KERNEL_MODES, f"--kernel_mode={c.kernel_mode!r}: expected one of {list(KERNEL_MODES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise OfaError(message)

    def _count_steps(self) -> int:
        count = int(self.train_split.reduce(np.int64(0), lambda n, _: n + 1).numpy())
        steps = count // self.config.batch_size
        if steps == 0:
            raise OfaError(f"--batch_size={self.config.batch_size}: larger than the {count} training examples")
        return steps

    def _check_model_dir(self) -> str | None:
        config_path = os.path.join(self.model_dir, CONFIG_FILE)
        if not os.path.exists(config_path):
            if os.path.isdir(self.model_dir) and os.listdir(self.model_dir):
                raise OfaError(f"--model_dir={self.model_dir}: exists and is not an ofa_tf run directory")
            return None
        try:
            with open(config_path) as f:
                saved = json.load(f)["run"]
        except (OSError, ValueError, KeyError):
            raise OfaError(f"--model_dir={self.model_dir}: unreadable {CONFIG_FILE}") from None
        current = self.config.to_dict()
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            k = changed[0]
            raise OfaError(f"--model_dir={self.model_dir} holds a run with a different config: "
                           f"{k}={saved.get(k)!r} there, {current.get(k)!r} now (use another --model_dir)")
        checkpoints = sorted(glob.glob(os.path.join(self.model_dir, CHECKPOINT_DIR, "ckpt-*.json")))
        return checkpoints[-1][:-len(".json")] if checkpoints else None


def build_model(config: RunConfig, space: SearchSpace, num_classes: int, method: Method) -> OnceForAllModel:
    """The (built) model a run trains: the same for a new run and for a loaded one."""
    model = OnceForAllModel(
        space, num_classes=num_classes, dropout=config.dropout, kernel_mode=config.kernel_mode,
        max_subnets=method.max_subnets, kd_temperature=config.kd_temperature,
        label_smoothing=config.label_smoothing, frozen_teacher=any(p.teacher == "frozen" for p in method.phases))
    model.build()
    return model


def learning_rate_schedule(run: PreparedRun) -> keras.optimizers.schedules.LearningRateSchedule:
    """One cosine schedule over the whole run (no restart at phase switches), optional warmup."""
    c = run.config
    total = c.epochs * run.steps_per_epoch
    warmup = int(round(c.lr_warmup_epochs * run.steps_per_epoch))
    if warmup:
        return keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warmup), warmup_target=c.learning_rate,
                                                      warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(c.learning_rate, total)


def make_optimizer(run: PreparedRun, schedule) -> keras.optimizers.Optimizer:
    c = run.config
    clip = run.method.clipnorm
    optimizer = keras.optimizers.SGD(schedule, momentum=c.momentum, nesterov=c.momentum > 0,
                                      weight_decay=c.weight_decay or None, global_clipnorm=clip)
    if c.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: weights, optimizer state and {epoch, step}, each written atomically."""

    def __init__(self, directory: str, keep: int = 2):
        super().__init__()
        self.directory = directory
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        base = os.path.join(self.directory, f"ckpt-{epoch + 1:04d}")
        atomic_write(base + ".weights.h5", self.model.save_weights)
        optimizer_state = {f"v{i:05d}": v.numpy() for i, v in enumerate(self.model.optimizer.variables)}
        atomic_write(base + ".optimizer.npz", lambda tmp: np.savez(tmp, **optimizer_state))
        _write_json(base + ".json", {"epoch": epoch + 1, "step": int(self.model.optimizer.iterations.numpy())})
        for old in sorted(glob.glob(os.path.join(self.directory, "ckpt-*.json")))[:-self.keep]:
            for path in glob.glob(old[:-len(".json")] + ".*"):
                os.remove(path)


def restore_checkpoint(model: OnceForAllModel, base: str) -> int:
    """Loads a RunCheckpoint; returns the epoch it ended. Raises OfaError when it does not fit."""
    try:
        model.load_weights(base + ".weights.h5")
        model.optimizer.build(model.supernet_trainable_variables)
        with np.load(base + ".optimizer.npz") as saved:
            values = [saved[k] for k in sorted(saved.files)]
        if len(values) != len(model.optimizer.variables):
            raise ValueError("optimizer state has another layout")
        for variable, value in zip(model.optimizer.variables, values):
            variable.assign(value)
        with open(base + ".json") as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError) as e:
        raise OfaError(f"checkpoint {base}.weights.h5 does not match this run's space and model "
                       f"({str(e).splitlines()[0][:160]})") from None


class EpochReport(keras.callbacks.Callback):
    """Evaluates the max and min subnets (BN-recalibrated) and appends a row to metrics.csv."""

    FIELDS = ["epoch", "phase", "loss", "loss_full", "loss_min", "loss_random", "epsilon", "learning_rate",
              "accuracy", "val_accuracy_max", "val_accuracy_min", "seconds"]

    def __init__(self, run: PreparedRun, controller: PhaseController, calibration, validation, path: str):
        super().__init__()
        self.run, self.controller = run, controller
        self.calibration, self.validation, self.path = calibration, validation, path
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        model, phase = self.model, self.controller.phase
        row = {"epoch": epoch + 1, "phase": phase.name if phase else "", "loss": logs.get("loss"),
               "loss_full": logs.get("loss_full"), "epsilon": self.controller.current_epsilon,
               "learning_rate": float(model.optimizer.learning_rate), "accuracy": logs.get("accuracy")}
        kinds = phase.sampler.kinds() if phase else []
        for kind in ("min", "random"):
            values = [logs[f"loss_subnet{j}"] for j, k in enumerate(kinds) if k == kind and f"loss_subnet{j}" in logs]
            row[f"loss_{kind}"] = float(np.mean(values)) if values else None
        resolution = max(self.run.space.resolutions)
        for name in ("max", "min"):
            arch = model.space.max_arch(resolution) if name == "max" else model.space.min_arch(resolution)
            result = evaluate_arch(model, arch, self.calibration, self.validation,
                                   self.run.config.bn_calibration_images)
            row[f"val_accuracy_{name}"] = logs[f"val_accuracy_{name}"] = result["accuracy"]
        row["seconds"] = round(time.time() - self.started, 2)
        new = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            f.flush()


def train(config: RunConfig, model_dir: str, verbose: int = 1, download: bool = False) -> dict[str, Any]:
    """Runs (or resumes) a training run; returns a summary dict."""
    if not model_dir:
        raise OfaError("--model_dir is required: the run directory to write (or resume)")
    run = PreparedRun(config, model_dir, download)  # every input checked; nothing written yet
    keras.utils.set_random_seed(config.seed)
    model = build_model(config, run.space, run.data.num_classes, run.method)
    schedule = learning_rate_schedule(run)
    model.compile(optimizer=make_optimizer(run, schedule), metrics=["accuracy"])
    initial_epoch = restore_checkpoint(model, run.previous_checkpoint) if run.previous_checkpoint else 0

    os.makedirs(model_dir, exist_ok=True)
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(config_path):
        _write_json(config_path, {"run": config.to_dict(), "method": run.method.to_config(),
                                  "space": run.space.to_config(), "class_names": run.data.class_names,
                                  "num_classes": run.data.num_classes, "steps_per_epoch": run.steps_per_epoch,
                                  "normalization": {"mean": list(MEAN), "std": list(STD)}})
    if initial_epoch >= config.epochs:
        return {"model_dir": model_dir, "epochs": initial_epoch, "resumed_from": initial_epoch}

    total_steps = config.epochs * run.steps_per_epoch
    controller = PhaseController(run.method, total_steps, seed=config.seed, lr_at=lambda s: float(schedule(s)))
    resolutions = run.space.resolutions
    train_batches = make_pipeline(run.train_split, config.batch_size, resolutions, training=True,
                                  seed=config.seed, repeat=True)
    calibration = calibration_images(run.train_split, max(resolutions), config.bn_calibration_images,
                                     config.seed + 1)
    validation = list(make_pipeline(run.validation_split, 256, resolutions, training=False))
    report = EpochReport(run, controller, calibration, validation, os.path.join(model_dir, METRICS_FILE))
    callbacks = [controller, report, RunCheckpoint(os.path.join(model_dir, CHECKPOINT_DIR)),
                 keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), update_freq="epoch")]
    history = model.fit(train_batches, epochs=config.epochs, steps_per_epoch=run.steps_per_epoch,
                        initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
                        shuffle=False)  # the pipeline shuffles (seeded)
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    return {"model_dir": model_dir, "epochs": config.epochs, "resumed_from": initial_epoch, **last}


def load_trained_supernet(model_dir: str) -> tuple[OnceForAllModel, dict[str, Any]]:
    """The supernet of a run directory at its last checkpoint, and the run's config."""
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise OfaError(f"--model_dir={model_dir}: no {CONFIG_FILE} (not a training run directory)")
    try:
        with open(config_path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        raise OfaError(f"--model_dir={model_dir}: unreadable {CONFIG_FILE}") from None
    checkpoints = sorted(glob.glob(os.path.join(model_dir, CHECKPOINT_DIR, "ckpt-*.weights.h5")))
    if not checkpoints:
        raise OfaError(f"--model_dir={model_dir}: no trained supernet (no checkpoint yet)")
    config = RunConfig(**{**saved["run"], "image_size": tuple(saved["run"]["image_size"])})
    model = build_model(config, SearchSpace.from_config(saved["space"]), saved["num_classes"],
                        Method.from_config(saved["method"]))
    try:
        model.load_weights(checkpoints[-1])
    except (OSError, ValueError) as e:
        raise OfaError(f"checkpoint {checkpoints[-1]} does not match the run's space "
                       f"({str(e).splitlines()[0][:160]})") from None
    return model, saved
