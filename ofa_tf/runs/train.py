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

from ofa_tf.data import (MEAN, STD, DataSource, calibration_images, evaluation_batches, load_dataset, make_pipeline,
                         semi_supervised_pipeline, training_splits)
from ofa_tf.data.decode import DecodeFailures, ImageCount
from ofa_tf.distribute import (PEER_FAILURES, WorkerLost, check_global_batch, current_strategy, is_chief,
                               replica_batches, worker_name)
from ofa_tf.errors import OfaError, error_text
from ofa_tf.interrupts import Interrupted, interrupted_now, stop_on_signals
from ofa_tf import io as files
from ofa_tf.io import TEMP_PREFIX, remove_stale_temp_files, write_json
from ofa_tf.runs.checkpoints import (RunCheckpoint, remove_incomplete_checkpoints, restore_checkpoint,
                                     saved_metric_states)
from ofa_tf.runs.config import LEGACY_VALUES, METHOD_DEFAULTED, RESUMABLE_CHANGES, RunConfig
from ofa_tf.runs.tool_dataset import check_classes
from ofa_tf.runs.directory import EVALUATION_BATCH, RunDirectory
from ofa_tf.runs.fingerprint import FINGERPRINT_KEY, dataset_fingerprint
from ofa_tf.runs.init_checkpoint import InitCheckpoint, check_init_checkpoint, load_init_checkpoint, validation_leak
from ofa_tf.runs.plan import RunPlan
from ofa_tf.runs.lock import LOCK_FILE, RunLock
from ofa_tf.runs.report import EpochReport, trim_metrics
from ofa_tf.training import Method, OnceForAllModel, PhaseController
from ofa_tf.training.loop import NonFiniteLoss, train_steps
from ofa_tf.training.precision import needs_loss_scaling, precision_policy
from ofa_tf.training.record import RECORD_FILE, SampledRecord

NOTHING_KEPT = "nothing was kept (no checkpoint yet)"  # a run stopped before its first checkpoint


class PreparedRun:
    """All inputs of a run, checked; nothing written yet.

    Takes the run's `RunPlan` (a `RunConfig` is resolved into one). With TOFA settings
    (`labelled_per_class`, `unlabelled_dataset`, `init_checkpoint`) the run keeps a labelled
    subset, an unlabelled image stream (`ofa_tf.data.training_splits`) and a pretrained start.
    """

    def __init__(self, plan: RunPlan | RunConfig, model_dir: str, download: bool = False, chief: bool = True):
        plan = plan if isinstance(plan, RunPlan) else RunPlan.resolve(plan)
        self.plan, self.config, self.space = plan, plan.config, plan.space
        self.directory = RunDirectory(model_dir)
        self.chief = chief  # only the chief of a multi-worker run takes the lock (the others find it held)
        self.previous_checkpoint = self._check_model_dir()  # before the data loads: a bad directory fails in seconds
        c = self.config
        self.data: DataSource = load_dataset(c.dataset, c.data_dir, download, c.label_offset)
        self.decode_failures = DecodeFailures()  # images the pipelines skipped (metrics.csv's skipped_images)
        self.images_read = ImageCount()  # this worker's training images read (the summary's training_images_read)
        splits = training_splits(self.data, validation_fraction=c.validation_fraction, seed=c.seed,
                                 labelled_per_class=c.labelled_per_class, unlabelled_dataset=c.unlabelled_dataset,
                                 data_dir=c.data_dir, image_size=max(c.image_size), download=download,
                                 failures=self.decode_failures)
        self.train_split, self.validation_split = splits.train, splits.validation
        self.calibration_split, self.unlabelled, self.encoding = splits.calibration, splits.unlabelled, splits.encoding
        self.init_checkpoint: InitCheckpoint | None = (
            check_init_checkpoint(c.init_checkpoint, self.space, self.data.num_classes, c.width_mult)
            if c.init_checkpoint else None)
        leak = validation_leak(self.init_checkpoint, c) if self.init_checkpoint is not None else None
        if leak:
            logging.warning(leak)
        self.steps_per_epoch = c.steps_per_epoch or self._count_steps()
        self.method: Method = plan.method
        if self.unlabelled is not None:
            check_semi_supervised_method(self.method)
        if self.previous_checkpoint is not None:
            self._check_resumed_data()

    def _count_steps(self) -> int:
        count = int(self.train_split.reduce(np.int64(0), lambda n, _: n + 1).numpy())
        steps = count // self.config.batch_size
        if steps == 0:
            raise OfaError(f"batch_size={self.config.batch_size}: larger than the {count} training examples")
        return steps

    def _check_model_dir(self) -> str | None:
        """The checkpoint to resume from (None: a new run), found before any data is loaded.
        A path that is or lies under a file, a directory holding something else, a lock
        another run holds (or that ofa_tf did not write; `train` takes the lock only once the
        model is built), or a trained run of another config is an error; a run of another
        config that never reached a checkpoint is replaced (`replaces_untrained`). A setting
        the saved run predates has the value it computed then (`LEGACY_VALUES`); when that
        differs from today's default, the error names the flag value that resumes it. A
        resume on changed data is refused once the data is loaded (`_check_resumed_data`)."""
        directory, path = self.directory, self.directory.path
        self.replaces_untrained = False
        directory.check_writable()
        if self.chief:
            RunLock(path).check()
        if not directory.has_config():
            leftovers = [n for n in files.listdir(path) if n != LOCK_FILE and not n.startswith(TEMP_PREFIX)
                         ] if files.isdir(path) else []
            if leftovers:
                directory.check_config_present()  # checkpoints without config.json: say that it is missing
                raise OfaError(f"model_dir={path}: exists and is not an ofa_tf run directory")
            return None
        saved = directory.read_settings()  # strict, and every setting: an older run's at its legacy values
        current = self.config.to_dict()
        resolved = self.plan.method_defaults()  # None ("the method's") as this run's method has it
        changed = sorted(k for k in saved if k not in RESUMABLE_CHANGES and saved[k] != current[k]
                         and not (k in METHOD_DEFAULTED and current[k] is None and saved[k] == resolved[k]))
        if changed and directory.checkpoints():
            raise OfaError(_config_change_message(path, changed[0], saved[changed[0]], current[changed[0]]))
        self.replaces_untrained = bool(changed)
        return directory.latest_checkpoint()  # (None when `changed`: that run has no checkpoint)

    def _check_resumed_data(self) -> None:
        """A resumed run's dataset is the one its checkpoints were trained on: the fingerprint
        config.json recorded (`RunDirectory.dataset_change`; an older run has none) and the
        class count of its classifier."""
        directory, spec = self.directory, self.config.dataset
        saved = directory.read()
        change = directory.dataset_change(saved, spec, self.data)
        try:
            if change:
                raise OfaError(f"dataset={spec} changed since ({change})")
            check_classes(spec, self.data.num_classes, saved.num_classes)
        except OfaError as e:
            raise OfaError(f"model_dir={directory.path} holds a run trained on other data: {e}; use another "
                           "model_dir") from None

    def run_config_json(self) -> dict[str, Any]:
        """What config.json holds (read back by `RunDirectory.read`), with the fingerprint of
        the dataset, so tools that measure the run on it notice if it changes."""
        c = self.config
        return {"run": c.to_dict(), "method": self.method.to_config(), "space": self.space.to_config(),
                "class_names": self.data.class_names, "num_classes": self.data.num_classes,
                "steps_per_epoch": self.steps_per_epoch, "normalization": {"mean": list(MEAN), "std": list(STD)},
                FINGERPRINT_KEY: dataset_fingerprint(c.dataset, self.data, c.data_dir)}  # tools check it (directory.py)


def _config_change_message(path: str, key: str, saved: Any, current: Any) -> str:
    """Why a trained run in `path` is not resumed: setting `key` is `saved` there, `current`
    now. When `saved` is the value a run from before the setting existed computed
    (`LEGACY_VALUES`) and `current` today's default, the user changed nothing: the flag
    value that resumes the run is named."""
    message = f"model_dir={path} holds a run with a different config: {key}={saved!r} there, {current!r} now"
    legacy = LEGACY_VALUES.get(key)
    if (legacy is not None and saved == legacy and current == getattr(RunConfig(), key)) or (
            key in METHOD_DEFAULTED and current is None and saved is not None):  # the method's default changed
        return f"{message}; pass --{key}={saved} to resume it (or use another model_dir)"
    return f"{message} (use another model_dir)"


def check_semi_supervised_method(method: Method) -> None:
    """FixMatch trains the max net and the subnets distil from it, so every phase must train
    the full model (not OFA / CompOFA, whose shrinking phases freeze it)."""
    for phase in method.phases:
        if not phase.train_full:
            raise OfaError(f"unlabelled_dataset: method={method.name} does not train the full model in "
                           f"phase {phase.name!r}; semi-supervised training needs a method that always does "
                           "(tofa, bignas, fofa, deps, full)")


def train(plan: RunPlan | RunConfig, model_dir: str, verbose: int = 1, download: bool = False) -> dict[str, Any]:
    """Runs (or resumes) a training run (its `RunPlan`, or a `RunConfig` resolved into one);
    returns a summary dict.

    Re-running the same config on the same `model_dir` continues from the last checkpoint
    that verifies, at its exact global step: weights, optimizer state (and so the LR
    schedule), phase, ε, the subnets of each step (sampled from the step's seed) and the
    data stream (`make_pipeline(start_batch=...)`) all come back as an uninterrupted run has
    them. The run holds the directory's lock (`RunLock`) while it writes there. SIGINT and
    SIGTERM end it with `Interrupted`, whose message says where a re-run resumes. A run
    that stops before its first checkpoint, interrupted or failing, removes what it wrote
    (the folders it created included), so the directory is free; once it has a checkpoint
    no file is removed. Running out of room while writing (no space left, over the quota or
    `ulimit -f`) is an OfaError naming the file and where a re-run resumes.
    """
    RunDirectory(model_dir).check_writable()  # a missing or unwritable model_dir: an error before anything starts
    plan = plan if isinstance(plan, RunPlan) else RunPlan.resolve(plan)  # before TensorFlow's runtime starts
    config = plan.config
    with stop_on_signals():
        strategy = current_strategy(config.strategy)
        chief = is_chief(strategy)
        run = PreparedRun(plan, model_dir, download, chief)  # every input checked; nothing written yet
        check_global_batch(strategy, config.batch_size)
        keras.utils.set_random_seed(config.seed)
        schedule = plan.learning_rate_schedule(run.steps_per_epoch)
        with strategy.scope():
            with precision_policy(config.mixed_precision):  # the layers' policy is fixed when they are made
                model = plan.build_model(run.data.num_classes)
            optimizer = plan.optimizer(schedule, run.steps_per_epoch)
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
        created = files.topmost_missing_folder(model_dir)  # the topmost folder this run creates (None: it exists)
        lock = None
        if chief:
            try:
                files.makedirs(model_dir)
                lock = RunLock(model_dir).acquire()  # a second run into this directory stops here
            except BaseException:
                _remove_created(model_dir, created, holding_lock=False)
                raise
        try:
            if chief:
                _prepare_directory(run, initial_step)
            return _train_from(run, model, strategy, schedule, initial_step, chief, verbose)
        except Interrupted as stop:
            raise Interrupted(stop.signum, _interruption_message(run, model, chief, created)) from None
        except BaseException as error:
            resume = _clean_up(run, chief, created)
            problem = files.space_problem(error)
            if problem is not None:
                raise OfaError(_out_of_room_message(model_dir, problem, resume)) from None
            if isinstance(error, NonFiniteLoss) and resume is None:  # its message speaks of a last checkpoint
                raise NonFiniteLoss(error.where, NOTHING_KEPT) from None
            raise
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


def _remove_created(path: str, created: str | None, holding_lock: bool) -> None:
    """Removes the run directory `path` and the empty parents this run created (up to
    `created`), when nothing but its lock (held: `holding_lock`) is in it. Best effort."""
    if created is None:
        return
    try:
        if files.isdir(path):
            if [n for n in files.listdir(path) if not (holding_lock and n == LOCK_FILE)]:
                return
            if holding_lock:
                files.rmtree(path)
            else:
                os.rmdir(path)
        if not files.is_url(path):
            files.remove_empty_folders(os.path.dirname(os.path.abspath(path)), created)
    except OSError:
        pass


def _clean_up(run: PreparedRun, chief: bool, created: str | None) -> int | None:
    """After the run stopped early (interrupted or failing): the step a re-run resumes from,
    or None when there is no checkpoint, in which case the chief removes what the run
    wrote (and the folders it created), so the directory is free. Never raises: the error
    that stopped the run is the one to report."""
    try:
        latest = run.directory.checkpoints()
        if latest:
            return int(os.path.basename(latest[-1])[len("ckpt-"):])
        if chief:
            _remove_run_files(run.directory)
            _remove_created(run.directory.path, created, holding_lock=True)
    except Exception as e:  # noqa: BLE001 - see the docstring
        logging.warning("model_dir=%s: could not remove what the stopped run wrote (%s)", run.directory.path, e)
    return None


def _interruption_message(run: PreparedRun, model: OnceForAllModel, chief: bool, created: str | None) -> str:
    step = int(model.optimizer.iterations.numpy())
    resume = _clean_up(run, chief, created)
    if resume is not None:
        return f"interrupted at step {step}; re-run the same command to resume from step {resume}"
    return f"interrupted at step {step}, before the first checkpoint; nothing was kept"


def _out_of_room_message(model_dir: str, problem: tuple[str, str | None], resume: int | None) -> str:
    """One line: why a write failed (`ofa_tf.io.space_problem`), which file (relative to
    the run directory), and what a re-run does once there is room."""
    why, path = problem
    root = model_dir.rstrip("/") + "/"
    if path and not files.is_url(model_dir):
        path, root = os.path.abspath(path), os.path.abspath(model_dir) + os.sep
    writing = f" while writing {path[len(root):] if path.startswith(root) else path}" if path else ""
    then = (f"the checkpoint at step {resume} is kept: re-run the same command to resume once there is room"
            if resume is not None else
            f"{NOTHING_KEPT}: re-run the same command once there is room")
    return f"model_dir={model_dir}: {why}{writing}; {then}"


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
    resolutions = run.plan.training_resolutions  # (the largest only when each network resizes the batch)
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
    # resumed inside an epoch: that epoch's metric sums so far, put back when it starts
    metric_states = (saved_metric_states(run.previous_checkpoint)
                     if run.previous_checkpoint and initial_step % run.steps_per_epoch else None)
    callbacks = [controller,
                 EpochReport(run.space, controller, calibration, validation, config.bn_calibration_images,
                             directory.metrics_path if chief else None, run.decode_failures),
                 RunCheckpoint(directory.checkpoint_dir, record=record, every_steps=config.checkpoint_every_steps,
                               steps_per_epoch=run.steps_per_epoch, chief=chief, metric_states=metric_states)]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(directory.logs_dir,
                                                     update_freq=config.tensorboard_update_freq or "epoch"))
    try:
        history = train_steps(model, batches, strategy=strategy, epochs=config.epochs,
                              steps_per_epoch=run.steps_per_epoch, initial_step=initial_step, callbacks=callbacks,
                              verbose=verbose if chief else 0)
    except PEER_FAILURES as e:
        if config.strategy != "multi_worker":
            raise
        raise WorkerLost(f"{worker_name(strategy)}: a peer worker was lost at step "
                         f"{int(model.optimizer.iterations.numpy())} ({type(e).__name__}: "
                         f"{error_text(e, 120)})") from None
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
