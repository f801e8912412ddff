"""Run checkpoints: weights, optimizer and random-generator state, and the global step.

A checkpoint at global step N is three files in `checkpoints/`: `ckpt-N.weights.h5`,
`ckpt-N.optimizer.npz` and the manifest `ckpt-N.json` ({epoch, step, sha256 of the other
two}); each is written atomically and the manifest last, so a checkpoint exists only once
complete, and one damaged later (a truncated copy, a torn disk write) fails its checksum:
`verify_checkpoint` says why, and readers fall back to the newest one that verifies.

The folder may be a URL (`ofa_tf.io`): Keras and NumPy write local temporary files that are
then staged and renamed there, and read local copies of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import keras
import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf import io
from ofa_tf.io import atomic_write, file_sha256, local_copy, read_json, write_json
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


class RunCheckpoint(keras.callbacks.Callback):
    """Checkpoints after every epoch and, with `every_steps`, every that many global steps
    (Keras `BackupAndRestore` semantics: a killed run resumes from the last one). Files are
    named by global step (`ckpt-00000300.*`); the newest `keep` are kept.

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
        io.makedirs(directory)
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
        manifest = {suffix: file_sha256(base + suffix) for suffix in CHECKPOINT_FILES}
        write_json(base + ".json", {"epoch": step // self.steps_per_epoch, "step": step, "sha256": manifest})
        for old in io.matching_files(self.directory, "ckpt-*.json")[:-self.keep]:
            stem = os.path.basename(old)[:-len(".json")]  # ckpt-NNNNNNNN: no wildcard characters
            for path in io.matching_files(self.directory, stem + ".*"):
                io.remove(path)


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
    at. Raises OfaError when it does not fit the model."""
    try:
        with local_copy(base + ".weights.h5") as weights:
            model.load_weights(weights)
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
                       f"({str(e).splitlines()[0][:160]})") from None
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
    atomic_write(base + ".weights.h5", model.save_weights)
    atomic_write(base + ".optimizer.npz", lambda tmp: np.savez(tmp))
    manifest = {suffix: file_sha256(base + suffix) for suffix in CHECKPOINT_FILES}
    write_json(base + ".json", {"epoch": 0, "step": step, "sha256": manifest})
    return base
