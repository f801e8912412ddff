"""`finetune`: one subnet of a trained supernet fine-tuned as a plain Keras model (`ofa-finetune`).

OFA's published specialised nets are fine-tuned after the search ("finetune@25",
"finetune@75", in "Once-for-All: Train One Network and Specialize it for Efficient
Deployment", arXiv:1908.09791): the subnet leaves the supernet's shared weights and trains
on its own. Here:

1. The subnet (an arch, as ofa-export takes it: max, min, a JSON object or a search result
   file) is extracted from the run's last checkpoint and its BN statistics recalibrated on
   `bn_calibration_images` training images (as every tool measures a subnet); its accuracy
   then is `accuracy_before`.
2. It trains as a plain Keras model for `epochs` on the run's own training split (the images
   the supernet trained on, not its validation split), with the run's augmentation and
   label smoothing: SGD with Nesterov momentum 0.9, a cosine decay from `learning_rate`.
   `distill_from_supernet` adds distillation from the supernet's max net (extracted, BN
   recalibrated on the same images, inference mode) at the run's `kd_temperature`:
   loss = label loss + distillation, as OFA's scripts add `kd_ratio` x KD to the label loss.
3. Its BN statistics are recalibrated on the same images again and it is measured on the same
   evaluation images: `accuracy_after`.

The output directory is a run directory of its own (`ofa_tf.runs.finetuned`): config.json
is the source run's plus a "finetune" record, checkpoints/ the fine-tuned subnet's
(`RunCheckpoint`: weights, optimizer and random-generator state, per epoch and every
`checkpoint_every_steps`), metrics.csv one row per epoch, result.json the accuracies before
and after. Re-running the same command resumes at the last checkpoint's step (the data stream
restarts at that batch), a finished one reports again; another fine-tune there (another arch,
source or setting) is refused. `ofa-export --model_dir=OUTPUT_DIR` exports the fine-tuned
subnet (its arch by default); `ofa-evaluate` measures it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from typing import Any

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ofa_tf import io as files
from ofa_tf.data import make_pipeline
from ofa_tf.errors import OfaError
from ofa_tf.evaluation import accuracy, recalibrate_bn
from ofa_tf.interrupts import Interrupted, interruptible, raise_if_interrupted, stop_on_signals
from ofa_tf.io import absolute, remove_stale_temp_files, unwritable_reason, write_json, write_text
from ofa_tf.runs.checkpoints import RunCheckpoint, remove_incomplete_checkpoints, restore_checkpoint
from ofa_tf.runs.directory import CONFIG_FILE, RunDirectory, SavedRun, check_split, room_inside
from ofa_tf.runs.finetune_config import MOMENTUM, FinetuneConfig
from ofa_tf.runs.finetuned import ARCH_FILE, FINETUNE_KEY, is_finetune_config
from ofa_tf.runs.lock import LOCK_FILE, RunLock
from ofa_tf.spaces import Arch
from ofa_tf.training.distillation import distillation_loss, label_loss
from ofa_tf.training.loop import NonFiniteLoss

RESULT_FILE = "result.json"
METRICS_FIELDS = ["epoch", "loss", "accuracy", "learning_rate", "steps", "seconds"]


def check_request(model_dir: str, arch_spec: Any, output_dir: str, config: FinetuneConfig, *,
                  split: str = "validation", eval_images: int | None = None,
                  bn_calibration_images: int | None = None) -> tuple[SavedRun, Arch]:
    """Every input of a fine-tune checked, nothing loaded or written: the settings, the source
    run (trained, a supernet's), the arch in its space, the output directory (writable, not
    the source, not another fine-tune's or run's). Returns the source's settings and the arch."""
    config.check()
    check_split(split)
    if eval_images is not None and not eval_images > 0:
        raise OfaError(f"eval_images={eval_images}: expected a positive number")
    if bn_calibration_images is not None and not bn_calibration_images >= 0:
        raise OfaError(f"bn_calibration_images={bn_calibration_images}: expected an integer >= 0 (0: keep the "
                       "supernet's BN statistics)")
    if not output_dir:
        raise OfaError("output_dir is required: the fine-tune's run directory")
    source = RunDirectory(model_dir)
    saved = source.read_trained()
    if is_finetune_config(saved.raw):
        raise OfaError(f"model_dir={model_dir}: holds a subnet fine-tuned by ofa-finetune; fine-tune from the "
                       "supernet's run directory")
    arch = saved.space.parse_arch(arch_spec)
    output = RunDirectory(output_dir)
    reason = unwritable_reason(output_dir, directory=True, room_inside=room_inside())
    if reason:
        raise OfaError(f"output_dir={output_dir}: {reason}")
    if absolute(output_dir).rstrip("/") == absolute(model_dir).rstrip("/"):
        raise OfaError(f"output_dir={output_dir}: is the source run directory (model_dir); use another one")
    if files.isdir(output_dir) and not output.has_config():
        output.check_config_present()
        leftovers = [n for n in files.listdir(output_dir) if n != LOCK_FILE and not n.startswith(files.TEMP_PREFIX)]
        if leftovers:
            raise OfaError(f"output_dir={output_dir}: exists and is not a fine-tune directory")
    if output.has_config():
        raw = output.read_raw()
        if not is_finetune_config(raw):
            raise OfaError(f"output_dir={output_dir}: holds a training run, not a fine-tune; use another one")
    RunLock(output_dir).check()
    return saved, arch


def _record(model_dir: str, saved: SavedRun, checkpoint: str, arch: Arch, config: FinetuneConfig,
            bn_calibration_images: int) -> dict[str, Any]:
    """config.json's "finetune": what the fine-tune computes from (a resume must match it)."""
    return {"arch": arch.to_dict(), "source": {"model_dir": absolute(model_dir),
                                               "checkpoint": os.path.basename(checkpoint)},
            "settings": {**dataclasses.asdict(config), "bn_calibration_images": bn_calibration_images}}


def _changed(saved_record: Any, record: dict[str, Any]) -> str | None:
    """The first difference of a fine-tune directory's record from this fine-tune's, worded."""
    if not isinstance(saved_record, dict):
        return f"{FINETUNE_KEY} is not an object"
    for key in ("arch", "source"):
        if saved_record.get(key) != record[key]:
            return f"{key}={json.dumps(saved_record.get(key))} there, {json.dumps(record[key])} now"
    settings = saved_record.get("settings") if isinstance(saved_record.get("settings"), dict) else {}
    for key, value in record["settings"].items():
        if settings.get(key) != value:
            return f"{key}={settings.get(key)!r} there, {value!r} now"
    return None


def finetune(model_dir: str, arch_spec: Any, output_dir: str, config: FinetuneConfig = FinetuneConfig(), *,
             split: str = "validation", eval_images: int | None = None, bn_calibration_images: int | None = None,
             verbose: int = 1) -> dict[str, Any]:
    """Fine-tunes the subnet `arch_spec` of the run in `model_dir` into `output_dir` (see the
    module docstring); returns the result (accuracies before and after, the resume step, ...).

    `split` / `eval_images`: where both accuracies are measured (validation: the run's own
    held-out images; test: the dataset's test split), `bn_calibration_images` (default: the
    run's) how many training images recalibrate BN before each measurement and before training.

    Raises:
      OfaError: a bad input (before anything is written), or a changed fine-tune in `output_dir`.
      Interrupted: SIGINT / SIGTERM; the message says where a re-run resumes.
    """
    saved, arch = check_request(model_dir, arch_spec, output_dir, config, split=split, eval_images=eval_images,
                                bn_calibration_images=bn_calibration_images)
    source = RunDirectory(model_dir)
    checkpoint = source.trained_checkpoint()
    n_calibration = saved.config.bn_calibration_images if bn_calibration_images is None else bn_calibration_images
    record = _record(model_dir, saved, checkpoint, arch, config, n_calibration)
    output = RunDirectory(output_dir)
    previous, replace = None, False
    if output.has_config():
        change = _changed(output.read_raw().get(FINETUNE_KEY), record)
        if change and output.checkpoints():
            raise OfaError(f"output_dir={output_dir} holds another fine-tune: {change} (use another output_dir)")
        replace = bool(change)  # another fine-tune that never reached a checkpoint: this one starts there
        previous = None if change else output.latest_checkpoint()
    with stop_on_signals():
        return _finetune(source, saved, arch, output, config, record, previous, replace, n_calibration, split,
                         eval_images, verbose)


def _finetune(source: RunDirectory, saved: SavedRun, arch: Arch, output: RunDirectory, config: FinetuneConfig,
              record: dict[str, Any], previous: str | None, replace: bool, n_calibration: int, split: str,
              eval_images: int | None, verbose: int) -> dict[str, Any]:
    supernet, saved = source.load_supernet()
    data = source.evaluation_data(saved, arch.resolution, split=split, eval_images=eval_images,
                                  bn_calibration_images=n_calibration)
    keras.utils.set_random_seed(config.seed)  # (after the data: see `_train`) the subnet's dropout seed
    subnet = supernet.get_subnet(arch, name="finetuned_subnet")
    if n_calibration:
        recalibrate_bn(subnet, data.calibration, n_calibration)
    before = accuracy(subnet, data.evaluation)
    teacher = None
    if config.distill_from_supernet:
        teacher = supernet.get_subnet(saved.space.max_arch(arch.resolution), name="teacher")
        if n_calibration:
            recalibrate_bn(teacher, data.calibration, n_calibration)
        teacher.trainable = False
    del supernet
    steps = config.steps_per_epoch or _one_pass(data.train_split, config.batch_size)
    total = config.epochs * steps
    subnet.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(config.learning_rate, total),
                                                  momentum=MOMENTUM, nesterov=True))
    subnet.optimizer.build(subnet.trainable_variables)
    initial_step = restore_checkpoint(subnet, previous) if previous else 0
    created = files.topmost_missing_folder(output.path)
    files.makedirs(output.path)
    lock = RunLock(output.path).acquire()
    try:
        _prepare_directory(output, saved, arch, record, initial_step // steps, replace)
        if initial_step < total:
            _train(subnet, teacher, saved, data, output, config, arch.resolution, steps, initial_step, verbose)
    except BaseException as error:
        resume = _clean_up(output, created)
        if isinstance(error, Interrupted):
            step = int(subnet.optimizer.iterations.numpy())
            then = (f"re-run the same command to resume from step {resume}" if resume is not None
                    else "before the first checkpoint; nothing was kept")
            raise Interrupted(error.signum, f"interrupted at step {step}; {then}") from None
        raise
    finally:
        lock.release()
    used = recalibrate_bn(subnet, data.calibration, n_calibration) if n_calibration else 0
    after = accuracy(subnet, data.evaluation)
    result = {"output_dir": output.path, "model_dir": record["source"]["model_dir"], "arch": arch.to_dict(),
              "split": split, "eval_images": eval_images, "bn_calibration_images": used,
              "accuracy_before": before, "accuracy_after": after, "epochs": config.epochs, "steps_per_epoch": steps,
              "distill_from_supernet": config.distill_from_supernet, "resumed_from_step": initial_step}
    write_json(os.path.join(output.path, RESULT_FILE), result)
    return result


def _one_pass(train_split: tf.data.Dataset, batch_size: int) -> int:
    count = int(train_split.reduce(np.int64(0), lambda n, _: n + 1).numpy())
    if count < batch_size:
        raise OfaError(f"batch_size={batch_size}: larger than the run's {count} training examples")
    return count // batch_size


def _prepare_directory(output: RunDirectory, saved: SavedRun, arch: Arch, record: dict[str, Any],
                       done_epochs: int, replace: bool) -> None:
    """With the lock held: removes what a killed fine-tune left (temporary files, checkpoints
    without a manifest, metrics rows past the resumed epoch; with `replace`, the files of
    another fine-tune that never reached a checkpoint), writes config.json and arch.json."""
    if replace:
        logging.warning("output_dir=%s held another fine-tune with no checkpoint; starting this one there",
                        output.path)
        for name in (CONFIG_FILE, ARCH_FILE, RESULT_FILE, os.path.basename(output.metrics_path)):
            if files.exists(os.path.join(output.path, name)):
                files.remove(os.path.join(output.path, name))
    for folder in (output.path, output.checkpoint_dir):
        for name in remove_stale_temp_files(folder) + remove_incomplete_checkpoints(folder):
            logging.warning("removed %s, left by an interrupted fine-tune", os.path.join(folder, name))
    if files.exists(output.metrics_path):
        rows = list(csv.reader(io.StringIO(files.read_text(output.metrics_path), newline="")))
        kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= done_epochs]
        if len(kept) != len(rows):
            write_text(output.metrics_path, _csv(kept))
    if not output.has_config():
        write_json(os.path.join(output.path, ARCH_FILE), arch.to_dict())
        write_json(output.config_path, {**saved.raw, FINETUNE_KEY: record})


def _csv(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def _clean_up(output: RunDirectory, created: str | None) -> int | None:
    """After a fine-tune stopped early: the step a re-run resumes from, or None when it has no
    checkpoint, in which case what it wrote is removed (and the folders it created)."""
    try:
        latest = output.checkpoints()
        if latest:
            return int(os.path.basename(latest[-1])[len("ckpt-"):])
        for name in (CONFIG_FILE, ARCH_FILE, os.path.basename(output.metrics_path)):
            path = os.path.join(output.path, name)
            if files.exists(path):
                files.remove(path)
        files.rmtree(output.checkpoint_dir)
        if created is not None and not [n for n in files.listdir(output.path) if n != LOCK_FILE]:
            files.rmtree(output.path)
            if not files.is_url(output.path):
                files.remove_empty_folders(os.path.dirname(os.path.abspath(output.path)), created)
    except Exception as e:  # noqa: BLE001 - the error that stopped the fine-tune is the one to report
        logging.warning("output_dir=%s: could not remove what the stopped fine-tune wrote (%s)", output.path, e)
    return None


def _train(subnet: keras.Model, teacher: keras.Model | None, saved: SavedRun, data, output: RunDirectory,
           config: FinetuneConfig, resolution: int, steps: int, initial_step: int, verbose: int) -> None:
    """The epochs from `initial_step` on: one traced step per batch, a checkpoint after every
    epoch (and every `checkpoint_every_steps`), a metrics.csv row per epoch (its steps in
    this process: a resumed epoch's row averages the steps after the resume)."""
    c = saved.config
    label_smoothing, temperature = c.label_smoothing, c.kd_temperature
    # seeded again here, and not before the evaluation data: the global seed changes the images
    # of the BN-calibration batches, and those must be the ones every tool recalibrates this
    # subnet on; the training stream must be the same in a fresh and in a resumed process
    keras.utils.set_random_seed(config.seed)
    batches = make_pipeline(data.train_split, config.batch_size, [resolution], training=True,
                            seed=config.seed, repeat=True, start_batch=initial_step, augmentation=c.augmentation,
                            encoding=data.source.encoding)
    variables = subnet.trainable_variables

    @tf.function(autograph=False)
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = subnet(images, training=True)
            loss = label_loss(labels, logits, label_smoothing)
            if teacher is not None:
                loss += distillation_loss(logits, teacher(images, training=False), temperature)
        subnet.optimizer.apply(tape.gradient(loss, variables), variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                 tf.cast(labels, tf.int32)), tf.float32))
        return loss, correct

    saver = RunCheckpoint(output.checkpoint_dir, every_steps=config.checkpoint_every_steps, steps_per_epoch=steps)
    saver.set_model(subnet)
    iterator = iter(batches)
    for epoch in range(initial_step // steps, config.epochs):
        started = time.time()
        first = initial_step - epoch * steps if epoch == initial_step // steps else 0
        bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "accuracy"]) if verbose else None
        if bar is not None:
            print(f"Epoch {epoch + 1}/{config.epochs}", flush=True)
            bar.update(first)
        losses, correct, seen = [], 0.0, 0
        for batch in range(first, steps):
            raise_if_interrupted()
            images, labels = next(iterator)
            with interruptible():
                loss, hits = step(images, labels)
            loss = float(loss)
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"loss became {loss} at step {epoch * steps + batch} (epoch {epoch + 1})")
            losses.append(loss)
            correct, seen = correct + float(hits), seen + int(labels.shape[0])
            saver.on_train_batch_end(batch)
            if bar is not None:
                bar.update(batch + 1, [("loss", float(np.mean(losses))), ("accuracy", correct / seen)])
        saver.on_epoch_end(epoch)
        _append_row(output.metrics_path, {
            "epoch": epoch + 1, "loss": float(np.mean(losses)), "accuracy": correct / max(seen, 1),
            "learning_rate": float(subnet.optimizer.learning_rate), "steps": len(losses),
            "seconds": round(time.time() - started, 2)})


def _append_row(path: str, row: dict[str, Any]) -> None:
    old = files.read_text(path) if files.exists(path) else ""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=METRICS_FIELDS)
    if not old:
        writer.writeheader()
    writer.writerow(row)
    write_text(path, old + buffer.getvalue())


__all__ = ["FinetuneConfig", "RESULT_FILE", "check_request", "finetune"]
