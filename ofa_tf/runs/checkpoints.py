"""Run checkpoints: weights, optimizer and random-generator state, and the global step.

A checkpoint at global step N is three files in `checkpoints/`: `ckpt-N.weights.h5`,
`ckpt-N.optimizer.npz` and the manifest `ckpt-N.json` ({epoch, step, sha256 of the other
two}); each is written atomically and the manifest last, so a checkpoint exists only once
complete, and one damaged later (a truncated copy, a torn disk write) fails its checksum:
`verify_checkpoint` says why, and readers fall back to the newest one that verifies.

The folder may be a URL (`ofa_tf.io`): Keras and NumPy write local temporary files that are
then staged and renamed there, and read local copies of them.

The optimizer state is stored once, in `.optimizer.npz`: the weights file holds the model's
weights only (`weights_file_bytes` leaves the compiled model's optimizer out, which Keras's
`save_weights` would write there as well), which is all that a reader of a run needs.
Checkpoints written before this also carry the optimizer's variables in the weights file
(an `optimizer` group); readers skip it, and a run resumes from such a checkpoint exactly
(its `.optimizer.npz` has held the full state all along).

The weights file is made in memory and written with a plain file write (`weights_file_bytes`):
HDF5 writing to disk itself crashes the process when a write fails. A save that fails (out
of space, over `ulimit -f`) removes what it wrote of its checkpoint and raises the OSError
(`ofa_tf.io.SPACE_ERRNOS`); earlier checkpoints are untouched.

A checkpoint also holds the running sums of the model's metrics (`metric_states`), so a run
resumed in the middle of an epoch reports that epoch's loss and accuracy over all its steps.
They are saved as totals over every replica (of every worker), not per replica, so a run
resumed with another replica count or strategy (a resumable change) gets them right too.
"""

from __future__ import annotations

from io import BytesIO
import os
import shutil
import tempfile

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError, error_text
from ofa_tf import io
from ofa_tf.io import atomic_write, file_sha256, local_copy, read_json, write_bytes, write_json
from ofa_tf.training.record import SampledRecord


CHECKPOINT_FILES = (".weights.h5", ".optimizer.npz")


def verify_checkpoint(base: str) -> str | None:
    """Why the checkpoint `base` (`.../ckpt-N`) cannot be used, or None when it verifies.

    Checkpoints written before manifests carried checksums are checked for their files only."""
    try:
        manifest = read_json(base + ".json")
        int(manifest["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its manifest .json is unreadable"
    for suffix in CHECKPOINT_FILES:
        if not io.isfile(base + suffix):
            return f"{os.path.basename(base) + suffix} is missing"
        expected = (manifest.get("sha256") or {}).get(suffix)
        if expected is not None and file_sha256(base + suffix) != expected:
            return f"{os.path.basename(base) + suffix} does not match its checksum (truncated or damaged)"
    return None


def weights_file_bytes(model: keras.Model) -> bytes:
    """The `.weights.h5` that `model.save_weights` writes (the same groups and datasets;
    `load_weights` reads it), made in memory, without the optimizer's variables: a run
    checkpoint keeps those in its `.optimizer.npz`, and no reader of the weights needs them.

    Why not `save_weights(path)`: when a write of HDF5's fails (no space left, `ulimit -f`
    exceeded) the process dies of a segmentation fault. HDF5 (1.14) closes each dataset as
    h5py drops it; a close whose flush fails leaves the dataset half freed but still listed
    in the file, and closing the file flushes every listed dataset (`H5D__flush_all_cb`),
    this one included. In memory no write fails; the bytes are then written by Python,
    where a full disk is an OSError. This uses Keras's saving internals (`H5IOStore` over a
    BytesIO, `_save_state`), as `saving_lib.save_weights_only` does with a path."""
    from keras.src.saving import saving_lib

    optimizer = getattr(model, "optimizer", None)
    skipped = {id(optimizer)} if optimizer is not None else set()  # as `save_weights(objects_to_skip=)`
    buffer = BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                               visited_saveables=skipped)
    finally:
        store.close()
    return buffer.getvalue()


def write_weights(path: str, model: keras.Model) -> None:
    """Writes `model`'s weights to the `.weights.h5` `path` atomically (`weights_file_bytes`)."""
    data = weights_file_bytes(model)
    atomic_write(path, lambda tmp: write_bytes(tmp, data))


def _components(variable) -> list:
    """The per-replica variables of a (distributed) Keras variable: one without a strategy."""
    value = variable.value
    return list(value.values) if isinstance(value, tf.distribute.DistributedValues) else [value]


def metric_variables(model: keras.Model) -> list:
    """The variables of the model's metrics (running sums and counts), in a fixed order."""
    return [v for metric in model.metrics for v in metric.variables]


def metric_states(model: keras.Model) -> dict[str, np.ndarray]:
    """Each metric variable's value as saved with a checkpoint: read outside a replica, which
    gives a distributed metric variable's value over every replica of every worker (a
    running sum's total; a collective read under multi-worker training)."""
    return {f"metric{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(metric_variables(model))}


def saved_metric_states(base: str) -> list[np.ndarray] | None:
    """The metric states saved with the checkpoint `base`; None for a checkpoint written
    before they were saved."""
    with local_copy(base + ".optimizer.npz") as path, np.load(path) as saved:
        keys = sorted(k for k in saved.files if k.startswith("metric"))
        return [saved[k] for k in keys] if keys else None


def restore_metric_states(model: keras.Model, states: list[np.ndarray], first_worker: bool = True) -> None:
    """Sets the model's metric variables to `states` (`saved_metric_states`), so that reading
    them gives the saved values whatever the replica count now: a summed variable (a
    running sum or count) gets its saved total in the first replica of the first worker
    (`first_worker`: this process is it) and zero in every other replica; any other
    variable gets its value in every replica. States of another layout (another version's
    metrics) are left out, with a warning: the resume itself does not depend on them."""
    variables = metric_variables(model)
    if len(variables) != len(states) or any(s.shape != tuple(v.shape) for s, v in zip(states, variables)):
        logging.warning("the checkpoint's metric sums do not fit this model's metrics; the resumed epoch's "
                        "averages count only its steps after the resume")
        return
    for variable, saved in zip(variables, states):
        summed = variable.aggregation == "sum"
        for i, component in enumerate(_components(variable)):
            component.assign(saved if not summed or (i == 0 and first_worker) else np.zeros_like(saved))


class RunCheckpoint(keras.callbacks.Callback):
    """Checkpoints after every epoch and, with `every_steps`, every that many global steps
    (Keras `BackupAndRestore` semantics: a killed run resumes from the last one). Files are
    named by global step (`ckpt-00000300.*`); the newest `keep` are kept.

    `metric_states` (`saved_metric_states` of the checkpoint a run resumes from in the
    middle of an epoch) are put back at the start of that epoch, after the training loop
    has reset the metrics, so the epoch's averages count its steps before the resume.

    Under multi-worker training every worker runs this callback (reading replicated state
    is a collective operation), but only the chief keeps the files.
    """

    def __init__(self, directory: str, keep: int = 2, record: SampledRecord | None = None,
                 every_steps: int | None = None, steps_per_epoch: int = 1, chief: bool = True,
                 metric_states: list[np.ndarray] | None = None):
        super().__init__()
        self.directory = directory
        self.keep = keep
        self.record = record
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.chief = chief
        self.metric_states = metric_states

    def on_epoch_begin(self, epoch, logs=None):
        if self.metric_states is not None:  # the first epoch of a run resumed inside it
            restore_metric_states(self.model, self.metric_states, first_worker=self.chief)
            self.metric_states = None

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.every_steps and step % self.every_steps == 0 and step % self.steps_per_epoch:
            self.save(step)

    def on_epoch_end(self, epoch, logs=None):
        self.save(int(self.model.optimizer.iterations.numpy()))

    def save(self, step: int) -> None:
        directory = self.directory if self.chief else tempfile.mkdtemp(prefix=".worker-")
        io.makedirs(directory)
        base = os.path.join(directory, f"ckpt-{step:08d}")
        try:
            write_weights(base + ".weights.h5", self.model)
            state = {f"v{i:05d}": v.numpy() for i, v in enumerate(self.model.optimizer.variables)}
            state.update({f"rng{i:05d}": v.numpy() for i, v in enumerate(random_state_variables(self.model))})
            state.update(metric_states(self.model))
            atomic_write(base + ".optimizer.npz", lambda tmp: np.savez(tmp, **state))
            if not self.chief:
                return
            if self.record is not None:
                self.record.save(os.path.dirname(self.directory))
            manifest = {suffix: file_sha256(base + suffix) for suffix in CHECKPOINT_FILES}
            write_json(base + ".json", {"epoch": step // self.steps_per_epoch, "step": step, "sha256": manifest})
        except BaseException:
            if self.chief:  # a checkpoint without its manifest is none: leave no part of it
                _remove_unfinished(base)
            raise
        finally:
            if not self.chief:
                shutil.rmtree(directory, ignore_errors=True)
        for old in io.matching_files(self.directory, "ckpt-*.json")[:-self.keep]:
            stem = os.path.basename(old)[:-len(".json")]  # ckpt-NNNNNNNN: no wildcard characters
            for path in io.matching_files(self.directory, stem + ".*"):
                io.remove(path)


def _remove_unfinished(base: str) -> None:
    """Removes the files of the checkpoint `base` if its manifest was not written (best
    effort: a failure here must not hide the one that stopped the save)."""
    try:
        if io.exists(base + ".json"):
            return
        for suffix in CHECKPOINT_FILES:
            if io.exists(base + suffix):
                io.remove(base + suffix)
    except OSError:
        pass  # remove_incomplete_checkpoints clears them when the run resumes


def remove_incomplete_checkpoints(directory: str) -> list[str]:
    """Removes checkpoint files whose manifest was never written (their process was killed
    while saving); returns their names. Call it only while holding the run's lock."""
    removed = []
    for path in io.matching_files(directory, "ckpt-*.*"):
        name = os.path.basename(path)
        base = os.path.join(directory, name.split(".", 1)[0])
        if not path.endswith(".json") and not io.exists(base + ".json"):
            io.remove(path)
            removed.append(name)
    return removed


def random_state_variables(model: keras.Model) -> list:
    """The model's random-generator states (dropout's SeedGenerator): part of `variables`
    but not of the saved weights, yet a resumed run needs them to draw the same masks."""
    weight_ids = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weight_ids]


def restore_checkpoint(model: keras.Model, base: str) -> int:
    """Loads a `RunCheckpoint` into a compiled model; returns the global step it was taken
    at. Raises OfaError when it does not fit the model.

    The optimizer state comes from `.optimizer.npz` only: an optimizer group in the weights
    file (checkpoints written before the state was stored once) is skipped."""
    try:
        with local_copy(base + ".weights.h5") as weights:
            model.load_weights(weights, objects_to_skip=[model.optimizer])
        if not model.optimizer.built:  # building twice adds variables (LossScaleOptimizer's scale)
            model.optimizer.build(model.supernet_trainable_variables)
        with local_copy(base + ".optimizer.npz") as optimizer, np.load(optimizer) as saved:
            values = [saved[k] for k in sorted(saved.files) if k.startswith("v")]
            random_states = [saved[k] for k in sorted(saved.files) if k.startswith("rng")]
        if len(values) != len(model.optimizer.variables):
            raise ValueError("optimizer state has another layout")
        for variable, value in zip(model.optimizer.variables, values):
            variable.assign(value)
        for variable, value in zip(random_state_variables(model), random_states):
            variable.assign(value)
        step = int(read_json(base + ".json")["step"])
    except (OSError, ValueError, KeyError) as e:
        raise OfaError(f"checkpoint {base}.weights.h5 does not match this run's space and model "
                       f"({error_text(e)})") from None
    if int(model.optimizer.iterations.numpy()) != step:
        raise OfaError(f"checkpoint {base}: optimizer step {int(model.optimizer.iterations.numpy())} "
                       f"!= recorded step {step}")
    return step


def write_weights_checkpoint(directory: str, model: keras.Model, step: int = 0) -> str:
    """Writes a checkpoint of `model`'s weights with no optimizer state (an empty
    `.optimizer.npz`), manifest last, as `RunCheckpoint` does; returns its base path.

    For runs whose weights come from elsewhere (`ofa_tf.interop`): every reader of a
    trained run accepts it; resuming training from it is not meant."""
    io.makedirs(directory)
    base = os.path.join(directory, f"ckpt-{step:08d}")
    write_weights(base + ".weights.h5", model)
    atomic_write(base + ".optimizer.npz", lambda tmp: np.savez(tmp))
    manifest = {suffix: file_sha256(base + suffix) for suffix in CHECKPOINT_FILES}
    write_json(base + ".json", {"epoch": 0, "step": step, "sha256": manifest})
    return base
