"""A training run: validate everything, then train into a run directory, resumably.

Run directory layout (`--model_dir`):
  config.json           every setting of the run (a re-run must match it to resume)
  checkpoints/ckpt-NNNN.weights.h5 + ckpt-NNNN.optimizer.npz + ckpt-NNNN.json
                        model weights, optimizer state, and {epoch, step} after epoch NNNN
  sampled_subnets.json  every subnet the run trained, with the last step that trained it
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
import shutil
import tempfile
import time
from typing import Any

import keras
import numpy as np

from ofa_tf.distribute import (PEER_FAILURES, STRATEGIES, WorkerLost, current_strategy, is_chief, replica_batches,
                               worker_name)
from ofa_tf.data import MEAN, STD, DataSource, load_dataset, make_pipeline, split_validation
from ofa_tf.errors import OfaError
from ofa_tf.evaluation import calibration_images, evaluate_arch
from ofa_tf.layers import KERNEL_MODES
from ofa_tf.spaces import SearchSpace, get_space
from ofa_tf.training import OnceForAllModel, PhaseController, build_method
from ofa_tf.training.loop import train_steps
from ofa_tf.training.lr_schedule import LR_SCHEDULES, PhaseCosineSchedule
from ofa_tf.training.methods import Method
from ofa_tf.training.record import RECORD_FILE, SampledRecord
from ofa_tf.transfer import (check_semi_supervised_method, load_init_checkpoint, prepare_transfer,
                             semi_supervised_pipeline)

CONFIG_FILE = "config.json"
# settings a resumed run may change: how it runs, not what it computes
RESUMABLE_CHANGES = frozenset({"strategy", "checkpoint_every_steps"})
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
    lr_schedule: str = "run"
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
    checkpoint_every_steps: int | None = None
    # TOFA transfer and semi-supervised training (ofa_tf/transfer.py); defaults: off
    labelled_per_class: int = 0
    unlabelled_dataset: str | None = None
    unlabelled_ratio: int = 1
    unlabelled_weight: float = 1.0
    fixmatch_threshold: float = 0.95
    init_checkpoint: str | None = None

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
        # labelled subset, unlabelled images (None: supervised run), pretrained start (None: random)
        transfer = prepare_transfer(config, self.data, self.train_split, self.space, download)
        self.train_split, self.unlabelled, self.init_checkpoint = transfer.labelled, transfer.unlabelled, transfer.init
        self.calibration_split = transfer.calibration
        self.steps_per_epoch = config.steps_per_epoch or self._count_steps()
        self.method: Method = build_method(
            config.method, self.space, steps_per_epoch=self.steps_per_epoch, epochs=config.epochs,
            warmup_fraction=config.warmup_fraction, epsilon_start=config.epsilon_start,
            epsilon_ramp_epochs=config.epsilon_ramp_epochs, epsilon_mode=config.epsilon_mode,
            num_subnets=config.num_subnets, clipnorm=config.grad_clip)
        if self.unlabelled is not None:
            check_semi_supervised_method(self.method)
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
            (c.checkpoint_every_steps is None or c.checkpoint_every_steps > 0,
             f"--checkpoint_every_steps={c.checkpoint_every_steps}: expected a positive number"),
            (c.bn_calibration_images > 0, f"--bn_calibration_images={c.bn_calibration_images}: expected > 0"),
            (c.kernel_mode in KERNEL_MODES, f"--kernel_mode={c.kernel_mode!r}: expected one of {list(KERNEL_MODES)}"),
            (c.lr_schedule in LR_SCHEDULES, f"--lr_schedule={c.lr_schedule!r}: expected one of {list(LR_SCHEDULES)}"),
            (c.lr_warmup_epochs >= 0, f"--lr_warmup_epochs={c.lr_warmup_epochs}: expected >= 0"),
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
        current, defaults = self.config.to_dict(), RunConfig().to_dict()  # a key missing there: its default
        changed = sorted(k for k in set(saved) | set(current)
                         if k not in RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != current.get(k))
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
        label_smoothing=config.label_smoothing, frozen_teacher=any(p.teacher == "frozen" for p in method.phases),
        fixmatch_threshold=config.fixmatch_threshold, unlabelled_weight=config.unlabelled_weight)
    model.build()
    return model


def learning_rate_schedule(run: PreparedRun) -> PhaseCosineSchedule:
    """Cosine schedule over the run (default) or restarted per phase (`--lr_schedule`),
    each phase's `lr_scale` applied, optional warmup (ofa_tf/training/lr_schedule.py)."""
    c = run.config
    total = c.epochs * run.steps_per_epoch
    bounds = run.method.phase_bounds(total)
    return PhaseCosineSchedule(c.learning_rate, [start for start, _ in bounds], total,
                               [phase.lr_scale for phase in run.method.phases], c.lr_schedule,
                               int(round(c.lr_warmup_epochs * run.steps_per_epoch)))


def make_optimizer(run: PreparedRun, schedule) -> keras.optimizers.Optimizer:
    c = run.config
    clip = run.method.clipnorm
    optimizer = keras.optimizers.SGD(schedule, momentum=c.momentum, nesterov=c.momentum > 0,
                                      weight_decay=c.weight_decay or None, global_clipnorm=clip)
    if c.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


class RunCheckpoint(keras.callbacks.Callback):
    """Weights, optimizer state and {epoch, step} after every epoch and, with `every_steps`,
    every that many global steps (Keras `BackupAndRestore` semantics: a killed run resumes
    from the last one). Each file is written atomically, the `.json` last: a checkpoint
    exists only once complete. Files are named by global step (`ckpt-00000300.*`).

    Under multi-worker training every worker runs this callback (reading replicated state
    is a collective operation), but only the chief keeps the files.
    """

    def __init__(self, directory: str, keep: int = 2, record: SampledRecord | None = None,
                 every_steps: int | None = None, steps_per_epoch: int = 1, chief: bool = True):
        super().__init__()
        self.directory = directory
        self.keep = keep
        self.record = record
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.chief = chief

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.every_steps and step % self.every_steps == 0 and step % self.steps_per_epoch:
            self.save(step)

    def on_epoch_end(self, epoch, logs=None):
        self.save(int(self.model.optimizer.iterations.numpy()))

    def save(self, step: int) -> None:
        directory = self.directory if self.chief else tempfile.mkdtemp(prefix=".worker-")
        os.makedirs(directory, exist_ok=True)
        base = os.path.join(directory, f"ckpt-{step:08d}")
        atomic_write(base + ".weights.h5", self.model.save_weights)
        state = {f"v{i:05d}": v.numpy() for i, v in enumerate(self.model.optimizer.variables)}
        state.update({f"rng{i:05d}": v.numpy() for i, v in enumerate(random_state_variables(self.model))})
        atomic_write(base + ".optimizer.npz", lambda tmp: np.savez(tmp, **state))
        if not self.chief:
            shutil.rmtree(directory, ignore_errors=True)
            return
        if self.record is not None:
            self.record.save(os.path.dirname(self.directory))
        _write_json(base + ".json", {"epoch": step // self.steps_per_epoch, "step": step})
        for old in sorted(glob.glob(os.path.join(self.directory, "ckpt-*.json")))[:-self.keep]:
            for path in glob.glob(old[:-len(".json")] + ".*"):
                os.remove(path)


def random_state_variables(model: keras.Model) -> list:
    """The model's random-generator states (dropout's SeedGenerator): part of `variables`
    but not of the saved weights, yet a resumed run needs them to draw the same masks."""
    weight_ids = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


def restore_checkpoint(model: OnceForAllModel, base: str) -> int:
    """Loads a RunCheckpoint; returns the global step it was taken at. Raises OfaError when
    it does not fit the model."""
    try:
        model.load_weights(base + ".weights.h5")
        model.optimizer.build(model.supernet_trainable_variables)
        with np.load(base + ".optimizer.npz") as saved:
            values = [saved[k] for k in sorted(saved.files) if k.startswith("v")]
            random_states = [saved[k] for k in sorted(saved.files) if k.startswith("rng")]
        if len(values) != len(model.optimizer.variables):
            raise ValueError("optimizer state has another layout")
        for variable, value in zip(model.optimizer.variables, values):
            variable.assign(value)
        for variable, value in zip(random_state_variables(model), random_states):
            variable.assign(value)
        with open(base + ".json") as f:
            step = int(json.load(f)["step"])
    except (OSError, ValueError, KeyError) as e:
        raise OfaError(f"checkpoint {base}.weights.h5 does not match this run's space and model "
                       f"({str(e).splitlines()[0][:160]})") from None
    if int(model.optimizer.iterations.numpy()) != step:
        raise OfaError(f"checkpoint {base}: optimizer step {int(model.optimizer.iterations.numpy())} "
                       f"!= recorded step {step}")
    return step


class EpochReport(keras.callbacks.Callback):
    """Evaluates the max and min subnets (BN-recalibrated) and appends a row to metrics.csv.

    Times: `seconds` is the whole epoch (training steps and this evaluation); `train_seconds`
    its training steps only; `first_step_seconds`, in the first epoch a process runs, its
    first step, which includes tracing the train step (minutes for ofa_mbv3, paid once).
    """

    FIELDS = ["epoch", "phase", "loss", "loss_full", "loss_min", "loss_random", "epsilon", "learning_rate",
              "accuracy", "val_accuracy_max", "val_accuracy_min", "seconds", "train_seconds", "first_step_seconds"]

    def __init__(self, run: PreparedRun, controller: PhaseController, calibration, validation, path: str):
        super().__init__()
        self.run, self.controller = run, controller
        self.calibration, self.validation, self.path = calibration, validation, path
        self.started = time.time()
        self.first_step_seconds: float | None = None  # set by the process's first step
        self._first_step_pending = True

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if self._first_step_pending:
            self._first_step_pending = False
            self.first_step_seconds = round(time.time() - self.started, 2)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        train_seconds = round(time.time() - self.started, 2)
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
        row["train_seconds"] = train_seconds
        row["first_step_seconds"], self.first_step_seconds = self.first_step_seconds, None
        if self.path is None:  # a non-chief worker: it evaluates (collectives) but writes nothing
            return
        new = not os.path.exists(self.path)
        fields = self.FIELDS
        if not new:  # a run resumed from an older version keeps its file's columns
            with open(self.path, newline="") as f:
                fields = next(csv.reader(f), None) or self.FIELDS
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            f.flush()


def train(config: RunConfig, model_dir: str, verbose: int = 1, download: bool = False) -> dict[str, Any]:
    """Runs (or resumes) a training run; returns a summary dict.

    Re-running the same config on the same `model_dir` continues from the last checkpoint
    at its exact global step: weights, optimizer state (and so the LR schedule), phase,
    ε, the subnets of each step (sampled from the step's seed) and the data stream
    (`make_pipeline(start_batch=...)`) all come back as an uninterrupted run has them.
    """
    if not model_dir:
        raise OfaError("--model_dir is required: the run directory to write (or resume)")
    if config.strategy not in STRATEGIES:  # before anything starts TensorFlow's runtime
        raise OfaError(f"--strategy={config.strategy!r}: expected one of {list(STRATEGIES)}")
    strategy = current_strategy(config.strategy)
    run = PreparedRun(config, model_dir, download)  # every input checked; nothing written yet
    if config.batch_size % strategy.num_replicas_in_sync:
        raise OfaError(f"--batch_size={config.batch_size}: must be divisible by the "
                       f"{strategy.num_replicas_in_sync} replicas of --strategy={config.strategy}")
    chief = is_chief(strategy)
    keras.utils.set_random_seed(config.seed)
    schedule = learning_rate_schedule(run)
    with strategy.scope():
        model = build_model(config, run.space, run.data.num_classes, run.method)
        model.compile(optimizer=make_optimizer(run, schedule), metrics=["accuracy"])
        model.optimizer.build(model.supernet_trainable_variables)
    initial_step = restore_checkpoint(model, run.previous_checkpoint) if run.previous_checkpoint else 0
    if run.init_checkpoint is not None and not run.previous_checkpoint:
        load_init_checkpoint(model, run.init_checkpoint)  # a mismatch raises before anything is written

    total_steps = config.epochs * run.steps_per_epoch
    if chief:
        os.makedirs(model_dir, exist_ok=True)
        config_path = os.path.join(model_dir, CONFIG_FILE)
        if not os.path.exists(config_path):
            _write_json(config_path, {"run": config.to_dict(), "method": run.method.to_config(),
                                      "space": run.space.to_config(), "class_names": run.data.class_names,
                                      "num_classes": run.data.num_classes, "steps_per_epoch": run.steps_per_epoch,
                                      "normalization": {"mean": list(MEAN), "std": list(STD)}})
    if initial_step >= total_steps:
        return {"model_dir": model_dir, "epochs": config.epochs, "resumed_from": initial_step // run.steps_per_epoch,
                "resumed_from_step": initial_step}

    record = (SampledRecord.load(model_dir) if initial_step and os.path.exists(os.path.join(model_dir, RECORD_FILE))
              else SampledRecord())
    controller = PhaseController(run.method, total_steps, seed=config.seed, lr_at=lambda s: float(schedule(s)),
                                 record=record)
    resolutions = run.space.resolutions
    batches = replica_batches(
        strategy, lambda: make_pipeline(run.train_split, config.batch_size, resolutions, training=True,
                                        seed=config.seed, repeat=True, start_batch=initial_step)
        if run.unlabelled is None else semi_supervised_pipeline(
            run.train_split, run.unlabelled, config.batch_size, config.unlabelled_ratio, resolutions,
            seed=config.seed, start_batch=initial_step),
        config.batch_size)
    calibration = calibration_images(run.calibration_split, max(resolutions), config.bn_calibration_images,
                                     config.seed + 1)
    validation = list(make_pipeline(run.validation_split, 256, resolutions, training=False))
    metrics_path = os.path.join(model_dir, METRICS_FILE) if chief else None
    callbacks = [controller, EpochReport(run, controller, calibration, validation, metrics_path),
                 RunCheckpoint(os.path.join(model_dir, CHECKPOINT_DIR), record=record,
                               every_steps=config.checkpoint_every_steps, steps_per_epoch=run.steps_per_epoch,
                               chief=chief)]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(model_dir, "logs"), update_freq="epoch"))
    try:
        history = train_steps(model, batches, strategy=strategy, epochs=config.epochs,
                              steps_per_epoch=run.steps_per_epoch, initial_step=initial_step, callbacks=callbacks,
                              verbose=verbose if chief else 0)
    except PEER_FAILURES as e:
        if config.strategy != "multi_worker":
            raise
        raise WorkerLost(f"{worker_name(strategy)}: a peer worker was lost at step "
                         f"{int(model.optimizer.iterations.numpy())} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]})") from None
    last = {k: float(v[-1]) for k, v in history.items() if v}
    return {"model_dir": model_dir, "epochs": config.epochs, "resumed_from": initial_step // run.steps_per_epoch,
            "resumed_from_step": initial_step, "replicas": strategy.num_replicas_in_sync,
            "worker": worker_name(strategy), "weights_sha256": weights_fingerprint(model), **last}


def weights_fingerprint(model: OnceForAllModel) -> str:
    """sha256 of this process's copy of the trainable weights (replica 0): equal on every
    worker of a healthy multi-worker run; reading it needs no collective operation."""
    import hashlib

    import tensorflow as tf
    digest = hashlib.sha256()
    for variable in model.supernet_trainable_variables:
        value = tf.distribute.get_strategy().experimental_local_results(variable.value)[0]
        digest.update(np.ascontiguousarray(value.numpy()).tobytes())
    return digest.hexdigest()


def read_run_directory(model_dir: str) -> tuple[SearchSpace, dict[str, Any], str]:
    """The space, saved config and last checkpoint path of a trained run, without building
    its model (cheap), so tools reject a directory with no trained supernet before any work."""
    if not model_dir:
        raise OfaError("--model_dir is required: a run directory written by tools.train")
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise OfaError(f"--model_dir={model_dir}: no {CONFIG_FILE} (not a training run directory)")
    try:
        with open(config_path) as f:
            saved = json.load(f)
        space = SearchSpace.from_config(saved["space"])
    except (OSError, ValueError, KeyError, TypeError):
        raise OfaError(f"--model_dir={model_dir}: unreadable {CONFIG_FILE}") from None
    checkpoints = sorted(glob.glob(os.path.join(model_dir, CHECKPOINT_DIR, "ckpt-*.weights.h5")))
    if not checkpoints:
        raise OfaError(f"--model_dir={model_dir}: no trained supernet (no checkpoint yet)")
    return space, saved, checkpoints[-1]


def load_trained_supernet(model_dir: str) -> tuple[OnceForAllModel, dict[str, Any]]:
    """The supernet of a run directory at its last checkpoint, and the run's config."""
    space, saved, checkpoint = read_run_directory(model_dir)
    config = RunConfig(**{**saved["run"], "image_size": tuple(saved["run"]["image_size"])})
    model = build_model(config, space, saved["num_classes"], Method.from_config(saved["method"]))
    try:
        model.load_weights(checkpoint)
    except (OSError, ValueError) as e:
        raise OfaError(f"checkpoint {checkpoint} does not match the run's space "
                       f"({str(e).splitlines()[0][:160]})") from None
    return model, saved
