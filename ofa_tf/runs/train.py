"""A training run: check everything, then train into a run directory, resumably.

`train(config, model_dir)` is what `ofa-train` runs. Nothing is written until every input
has been checked (`PreparedRun`); every file is written to a temporary name and renamed,
so a killed run never leaves a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ofa_tf.data import (MEAN, PIXELS, REST, STD, DataSource, DecodeFailures, ImageCount, calibration_images,
                         decoded_pixels, evaluation_batches, labelled_subset, load_dataset, make_pipeline,
                         semi_supervised_pipeline, split_validation, unlabelled_images)
from ofa_tf.distribute import (PEER_FAILURES, WorkerLost, check_global_batch, current_strategy, is_chief,
                               replica_batches, worker_name)
from ofa_tf.errors import OfaError
from ofa_tf.interrupts import Interrupted, interrupted_now, stop_on_signals
from ofa_tf import io as files
from ofa_tf.io import TEMP_PREFIX, read_json, remove_stale_temp_files, write_json
from ofa_tf.runs.checkpoints import RunCheckpoint, remove_incomplete_checkpoints, restore_checkpoint
from ofa_tf.runs.config import LEGACY_VALUES, RESUMABLE_CHANGES, RunConfig
from ofa_tf.runs.directory import EVALUATION_BATCH, RunDirectory
from ofa_tf.runs.init_checkpoint import InitCheckpoint, check_init_checkpoint, load_init_checkpoint, validation_leak
from ofa_tf.runs.model import build_model
from ofa_tf.runs.lock import LOCK_FILE, RunLock
from ofa_tf.runs.report import EpochReport, trim_metrics
from ofa_tf.spaces import SearchSpace, get_space
from ofa_tf.training import Method, OnceForAllModel, PhaseController, PhaseCosineSchedule, build_method
from ofa_tf.training.loop import train_steps
from ofa_tf.training.optimizer import ReferenceSGD
from ofa_tf.training.precision import needs_loss_scaling, precision_policy
from ofa_tf.training.record import RECORD_FILE, SampledRecord


class PreparedRun:
    """All inputs of a run, checked; nothing written yet.

    With TOFA settings (`labelled_per_class`, `unlabelled_dataset`, `init_checkpoint`) the
    run keeps a labelled subset, an unlabelled image stream and a pretrained start; BN
    recalibration (per-epoch evaluation) then uses the labelled images and, with `rest`, the
    unlabelled ones (it needs no labels), repeated so that a few labelled images per class
    still fill its batches.
    """

    def __init__(self, config: RunConfig, model_dir: str, download: bool = False):
        self.config = config.validate()
        self.directory = RunDirectory(model_dir)
        c = config
        self.space: SearchSpace = get_space(c.space, c.width_mult, c.image_size)
        self.data: DataSource = load_dataset(c.dataset, c.data_dir, download, c.label_offset)
        self.decode_failures = DecodeFailures()  # images the pipelines skipped (metrics.csv's skipped_images)
        self.images_read = ImageCount()  # this worker's training images read (the summary's training_images_read)
        self.encoding = self.data.encoding  # of the train split (TOFA's streams need pixels: decoded as read)
        train_split, self.validation_split = split_validation(self.data.train, c.validation_fraction, c.seed)
        self.train_split, rest = train_split, None
        if c.labelled_per_class:
            self.train_split, rest = labelled_subset(train_split, c.labelled_per_class, self.data.class_names, c.seed)
        if (c.labelled_per_class or c.unlabelled_dataset) and self.encoding != PIXELS:
            decode = lambda split: decoded_pixels(split, self.encoding, max(c.image_size),  # noqa: E731
                                                  self.decode_failures) if split is not None else None
            train_split, self.train_split, rest = decode(train_split), decode(self.train_split), decode(rest)
            self.encoding = PIXELS
        self.unlabelled: tf.data.Dataset | None = (
            unlabelled_images(c.unlabelled_dataset, rest, c.data_dir, max(c.image_size), download)
            if c.unlabelled_dataset else None)
        self.init_checkpoint: InitCheckpoint | None = (
            check_init_checkpoint(c.init_checkpoint, self.space, self.data.num_classes, c.width_mult)
            if c.init_checkpoint else None)
        leak = validation_leak(self.init_checkpoint, c) if self.init_checkpoint is not None else None
        if leak:
            logging.warning(leak)
        self.calibration_split = train_split
        if c.labelled_per_class or self.unlabelled is not None:
            labelled = self.train_split
            self.calibration_split = (labelled if c.unlabelled_dataset != REST else labelled.concatenate(
                self.unlabelled.map(lambda x: (x, tf.constant(-1, labelled.element_spec[1].dtype))))).repeat()
        self.steps_per_epoch = c.steps_per_epoch or self._count_steps()
        self.method: Method = build_method(
            c.method, self.space, steps_per_epoch=self.steps_per_epoch, epochs=c.epochs,
            warmup_fraction=c.warmup_fraction, epsilon_start=c.epsilon_start,
            epsilon_ramp_epochs=c.epsilon_ramp_epochs, epsilon_mode=c.epsilon_mode,
            num_subnets=c.num_subnets, **c.optimizer_overrides())
        if self.unlabelled is not None:
            check_semi_supervised_method(self.method)
        self.previous_checkpoint = self._check_model_dir()

    def _count_steps(self) -> int:
        count = int(self.train_split.reduce(np.int64(0), lambda n, _: n + 1).numpy())
        steps = count // self.config.batch_size
        if steps == 0:
            raise OfaError(f"batch_size={self.config.batch_size}: larger than the {count} training examples")
        return steps

    def _check_model_dir(self) -> str | None:
        """The checkpoint to resume from (None: a new run). A path that is or lies under a
        file, a directory holding something else, or a trained run of another config is an
        error; a run of another config that never reached a checkpoint is replaced
        (`replaces_untrained`)."""
        directory, path = self.directory, self.directory.path
        self.replaces_untrained = False
        directory.check_writable()
        if not directory.has_config():
            leftovers = [n for n in files.listdir(path) if n != LOCK_FILE and not n.startswith(TEMP_PREFIX)
                         ] if files.isdir(path) else []
            if leftovers:
                raise OfaError(f"model_dir={path}: exists and is not an ofa_tf run directory")
            return None
        try:
            saved = directory.read_raw()["run"]
        except KeyError:
            raise OfaError(f"model_dir={path}: unreadable config.json") from None
        current, defaults = self.config.to_dict(), RunConfig().to_dict()
        defaults.update(LEGACY_VALUES)  # a key missing there: what that run computed (its default then)
        changed = sorted(k for k in set(saved) | set(current)
                         if k not in RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != current.get(k))
        if changed and directory.checkpoints():
            k = changed[0]
            raise OfaError(f"model_dir={path} holds a run with a different config: "
                           f"{k}={saved.get(k)!r} there, {current.get(k)!r} now (use another model_dir)")
        self.replaces_untrained = bool(changed)
        return directory.latest_checkpoint()

    def run_config_json(self) -> dict[str, Any]:
        """What config.json holds (read back by `RunDirectory.read`)."""
        return {"run": self.config.to_dict(), "method": self.method.to_config(), "space": self.space.to_config(),
                "class_names": self.data.class_names, "num_classes": self.data.num_classes,
                "steps_per_epoch": self.steps_per_epoch, "normalization": {"mean": list(MEAN), "std": list(STD)}}


def check_semi_supervised_method(method: Method) -> None:
    """FixMatch trains the max net and the subnets distil from it, so every phase must train
    the full model (not OFA / CompOFA, whose shrinking phases freeze it)."""
    for phase in method.phases:
        if not phase.train_full:
            raise OfaError(f"unlabelled_dataset: method={method.name} does not train the full model in "
                           f"phase {phase.name!r}; semi-supervised training needs a method that always does "
                           "(tofa, bignas, fofa, deps, full)")


def learning_rate_schedule(run: PreparedRun) -> PhaseCosineSchedule:
    """The method's cosine (over the run or restarted per phase), each phase's `lr_scale` and
    warm-up applied, at `learning_rate` or the method's rate for the batch size
    (`ofa_tf.training.lr_schedule`). `lr_warmup_epochs` replaces the method's warm-ups."""
    c, method = run.config, run.method
    total = c.epochs * run.steps_per_epoch
    bounds = method.phase_bounds(total)
    peak = c.learning_rate if c.learning_rate is not None else method.peak_learning_rate(c.batch_size)
    if c.lr_warmup_epochs is None:
        warmup, phase_warmups = 0, method.phase_warmup_steps(total)
    else:
        warmup, phase_warmups = int(round(c.lr_warmup_epochs * run.steps_per_epoch)), None
    return PhaseCosineSchedule(peak, [start for start, _ in bounds], total, [phase.lr_scale for phase in method.phases],
                               method.lr_schedule, warmup, phase_warmups)


def make_optimizer(run: PreparedRun, schedule) -> keras.optimizers.Optimizer:
    """SGD with Nesterov momentum and the method's weight decay form and gradient clip,
    restarted at each phase start if the method runs phases as separate jobs
    (`ofa_tf.training.optimizer`)."""
    c, method = run.config, run.method
    restarts = ([start for start, _ in method.phase_bounds(c.epochs * run.steps_per_epoch)]
                if method.restart_optimizer else [])
    return ReferenceSGD(schedule, momentum=c.momentum, nesterov=c.momentum > 0, weight_decay=method.weight_decay,
                        weight_decay_form=method.weight_decay_form, clip_mode=method.grad_clip_mode,
                        clip=method.grad_clip, restart_steps=restarts)


def train(config: RunConfig, model_dir: str, verbose: int = 1, download: bool = False) -> dict[str, Any]:
    """Runs (or resumes) a training run; returns a summary dict.

    Re-running the same config on the same `model_dir` continues from the last checkpoint
    that verifies, at its exact global step: weights, optimizer state (and so the LR
    schedule), phase, ε, the subnets of each step (sampled from the step's seed) and the
    data stream (`make_pipeline(start_batch=...)`) all come back as an uninterrupted run has
    them. The run holds the directory's lock (`RunLock`) while it writes there. SIGINT and
    SIGTERM end it with `Interrupted`, whose message says where a re-run resumes; a run
    stopped before its first checkpoint removes what it wrote, so the directory is free.
    """
    RunDirectory(model_dir).check_writable()  # a missing or unwritable model_dir: an error before anything starts
    config.validate()  # before anything starts TensorFlow's runtime
    with stop_on_signals():
        strategy = current_strategy(config.strategy)
        run = PreparedRun(config, model_dir, download)  # every input checked; nothing written yet
        check_global_batch(strategy, config.batch_size)
        chief = is_chief(strategy)
        keras.utils.set_random_seed(config.seed)
        schedule = learning_rate_schedule(run)
        with strategy.scope():
            with precision_policy(config.mixed_precision):  # the layers' policy is fixed when they are made
                model = build_model(config, run.space, run.data.num_classes, run.method)
            optimizer = make_optimizer(run, schedule)
            if needs_loss_scaling(config.mixed_precision):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model.compile(optimizer=optimizer, metrics=["accuracy"])
            model.optimizer.build(model.supernet_trainable_variables)
        initial_step = restore_checkpoint(model, run.previous_checkpoint) if run.previous_checkpoint else 0
        if run.init_checkpoint is not None and not run.previous_checkpoint:
            load_init_checkpoint(model, run.init_checkpoint)  # a mismatch raises before anything is written
        signum = interrupted_now()
        if signum is not None:  # a Ctrl-C while the model was being built: nothing is written yet
            raise Interrupted(signum, f"interrupted at step {initial_step}, before training started; nothing was written")
        created = not files.isdir(model_dir)
        lock = None
        if chief:
            files.makedirs(model_dir)
            lock = RunLock(model_dir).acquire()  # a second run into this directory stops here
        try:
            if chief:
                _prepare_directory(run, initial_step)
            return _train_from(run, model, strategy, schedule, initial_step, chief, verbose)
        except Interrupted as stop:
            raise Interrupted(stop.signum, _interruption_message(run, model, chief, created)) from None
        finally:
            if lock is not None:
                lock.release()


def _prepare_directory(run: PreparedRun, initial_step: int) -> None:
    """With the lock held: removes what killed processes left (temporary files, checkpoint
    files without a manifest, metrics rows past the resumed step), then writes config.json."""
    directory = run.directory
    for folder in (directory.path, directory.checkpoint_dir):
        for name in remove_stale_temp_files(folder) + remove_incomplete_checkpoints(folder):
            logging.warning("removed %s, left by an interrupted run", os.path.join(folder, name))
    if run.replaces_untrained:
        logging.warning("model_dir=%s held a run of another config with no checkpoint; starting this one there",
                        directory.path)
        _remove_run_files(directory)
    trim_metrics(directory.metrics_path, initial_step // run.steps_per_epoch)
    if not directory.has_config():
        write_json(directory.config_path, run.run_config_json())


def _remove_run_files(directory: RunDirectory) -> None:
    """Removes what a run writes before its first checkpoint (config, metrics, record, logs)."""
    for path in (directory.config_path, directory.metrics_path, os.path.join(directory.path, RECORD_FILE)):
        if files.exists(path):
            files.remove(path)
    for folder in (directory.logs_dir, directory.checkpoint_dir):
        files.rmtree(folder)


def _interruption_message(run: PreparedRun, model: OnceForAllModel, chief: bool, created: bool) -> str:
    step = int(model.optimizer.iterations.numpy())
    latest = run.directory.checkpoints()
    if latest:
        resume = int(read_json(latest[-1] + ".json")["step"])
        return f"interrupted at step {step}; re-run the same command to resume from step {resume}"
    if chief:
        _remove_run_files(run.directory)
        if created and not [n for n in files.listdir(run.directory.path) if n != LOCK_FILE]:
            files.rmtree(run.directory.path)
    return f"interrupted at step {step}, before the first checkpoint; nothing was kept"


def _train_from(run: PreparedRun, model: OnceForAllModel, strategy, schedule, initial_step: int, chief: bool,
                verbose: int) -> dict[str, Any]:
    config, directory = run.config, run.directory
    total_steps = config.epochs * run.steps_per_epoch
    if initial_step >= total_steps:
        return {"model_dir": directory.path, "epochs": config.epochs,
                "resumed_from": initial_step // run.steps_per_epoch, "resumed_from_step": initial_step}
    record_path = os.path.join(directory.path, RECORD_FILE)
    record = SampledRecord.load(directory.path) if initial_step and files.exists(record_path) else SampledRecord()
    controller = PhaseController(run.method, total_steps, seed=config.seed, lr_at=lambda s: float(schedule(s)),
                                 record=record)
    resolutions = run.space.resolutions
    images = dict(augmentation=config.augmentation, encoding=run.encoding, failures=run.decode_failures)

    def supervised(rows=None):
        return make_pipeline(run.train_split, config.batch_size, resolutions, training=True, seed=config.seed,
                             repeat=True, start_batch=initial_step, rows=rows, images_read=run.images_read,
                             **images)

    batches = replica_batches(
        strategy, supervised if run.unlabelled is None else lambda: semi_supervised_pipeline(
            run.train_split, run.unlabelled, config.batch_size, config.unlabelled_ratio, resolutions,
            seed=config.seed, start_batch=initial_step),
        config.batch_size,
        worker_rows=(lambda start, stop: supervised((start, stop))) if run.unlabelled is None else None)
    calibration = calibration_images(run.calibration_split, max(resolutions), config.bn_calibration_images,
                                     config.seed + 1, **images)
    validation = evaluation_batches(run.validation_split, EVALUATION_BATCH, max(resolutions),
                                    augmentation=config.augmentation, encoding=run.data.encoding,
                                    failures=run.decode_failures)
    callbacks = [controller,
                 EpochReport(run.space, controller, calibration, validation, config.bn_calibration_images,
                             directory.metrics_path if chief else None, run.decode_failures),
                 RunCheckpoint(directory.checkpoint_dir, record=record, every_steps=config.checkpoint_every_steps,
                               steps_per_epoch=run.steps_per_epoch, chief=chief)]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(directory.logs_dir, update_freq="epoch"))
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
    return {"model_dir": directory.path, "epochs": config.epochs, "resumed_from": initial_step // run.steps_per_epoch,
            "resumed_from_step": initial_step, "replicas": strategy.num_replicas_in_sync,
            "worker": worker_name(strategy), "weights_sha256": weights_fingerprint(model),
            "training_images_read": run.images_read.value, **last}


def weights_fingerprint(model: OnceForAllModel) -> str:
    """sha256 of this process's copy of the trainable weights (replica 0): equal on every
    worker of a healthy multi-worker run; reading it needs no collective operation."""
    digest = hashlib.sha256()
    for variable in model.supernet_trainable_variables:
        value = tf.distribute.get_strategy().experimental_local_results(variable.value)[0]
        digest.update(np.ascontiguousarray(value.numpy()).tobytes())
    return digest.hexdigest()
