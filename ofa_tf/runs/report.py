"""`EpochReport`: after every epoch, the max and min subnets' validation accuracy (BN
recalibrated) and one row of metrics.csv."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time

import keras

from ofa_tf.data.decode import DecodeFailures
from ofa_tf.evaluation import ArchEvaluator
from ofa_tf import io as files
from ofa_tf.io import write_text
from ofa_tf.spaces import SearchSpace
from ofa_tf.training import PhaseController


def trim_metrics(path: str, last_epoch: int) -> None:
    """Drops metrics.csv rows past `last_epoch`: a run resumed from an earlier checkpoint
    (killed after its epoch's row, or its newest checkpoint damaged) writes them again."""
    if not files.exists(path):
        return
    rows = list(csv.reader(io.StringIO(files.read_text(path), newline="")))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= last_epoch]
    if len(kept) != len(rows):
        write_text(path, _csv_text(kept))


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # the same line ends as csv.DictWriter
    return buffer.getvalue()


class EpochReport(keras.callbacks.Callback):
    """Evaluates the max and min subnets (BN-recalibrated) and appends a row to metrics.csv.

    Times: `seconds` is the whole epoch (training steps and this evaluation); `train_seconds`
    its training steps only; `first_step_seconds`, in the first epoch a process runs, its
    first step, which includes tracing the train step (paid once). The max and min subnets
    are extracted once and refreshed each epoch (`ArchEvaluator`).
    `skipped_images`: the image files this process's input pipelines have skipped so far
    because they did not decode (`DecodeFailures`; each file counted once).
    Losses as the train step logs them (`OnceForAllModel`): `loss` the mean over the step's
    networks, `loss_min` / `loss_random` empty in an epoch that trained no such subnet;
    `epsilon` empty in a phase without an ε schedule (DεpS's FM-Warmup, other methods).
    For a Keras user's own `fit`, `ofa_tf.evaluation.SubnetAccuracy` measures the same
    recalibrated accuracies.
    """

    FIELDS = ["epoch", "phase", "loss", "loss_full", "loss_min", "loss_random", "epsilon", "learning_rate",
              "accuracy", "val_accuracy_max", "val_accuracy_min", "seconds", "train_seconds", "first_step_seconds",
              "skipped_images"]

    def __init__(self, space: SearchSpace, controller: PhaseController, calibration, validation,
                 num_calibration_images: int, path: str | None, failures: DecodeFailures | None = None):
        super().__init__()
        self.failures = failures
        self.space, self.controller = space, controller
        self.calibration, self.validation, self.path = calibration, validation, path
        self.num_calibration_images = num_calibration_images
        self.started = time.time()
        self.first_step_seconds: float | None = None  # set by the process's first step
        self._first_step_pending = True
        self._evaluators: dict[str, ArchEvaluator] = {}  # the max and min subnets, refreshed each epoch

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
               "loss_full": logs.get("loss_full"), "loss_min": logs.get("loss_min"),
               "loss_random": logs.get("loss_random"),  # (left out of the logs while no such subnet trained)
               "epsilon": self.controller.epsilon_in_use,  # (None in a phase without ε: FM-Warmup)
               "learning_rate": float(model.optimizer.learning_rate), "accuracy": logs.get("accuracy")}
        resolution = max(self.space.resolutions)
        for name in ("max", "min"):
            arch = self.space.max_arch(resolution) if name == "max" else self.space.min_arch(resolution)
            if name not in self._evaluators:
                self._evaluators[name] = ArchEvaluator(model, arch)
            result = self._evaluators[name](self.calibration, self.validation, self.num_calibration_images)
            row[f"val_accuracy_{name}"] = logs[f"val_accuracy_{name}"] = result["accuracy"]
        row["seconds"] = round(time.time() - self.started, 2)
        row["train_seconds"] = train_seconds
        row["first_step_seconds"], self.first_step_seconds = self.first_step_seconds, None
        row["skipped_images"] = self.failures.count if self.failures is not None else 0
        if self.path is None:  # a non-chief worker: it evaluates (collectives) but writes nothing
            return
        new = not files.exists(self.path)
        fields = self.FIELDS
        if files.is_url(self.path):  # object stores cannot append: the file is rewritten, staged and renamed
            old = "" if new else files.read_text(self.path)
            fields = next(csv.reader(io.StringIO(old, newline="")), None) or self.FIELDS
            buffer = io.StringIO(newline="")
            writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
            if not old:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            write_text(self.path, old + buffer.getvalue())
            return
        if not new:  # a run resumed from an older version keeps its file's columns
            with open(self.path, newline="") as f:
                fields = next(csv.reader(f), None) or self.FIELDS
        _append(self.path, fields, row, header=new)


def _append(path: str, fields: list[str], row: dict, header: bool) -> None:
    """Appends `row` (and first the header) to the local CSV `path`; a write that fails
    (no space left, over `ulimit -f`) cuts the file back to its rows before, never leaving
    half a row that a resumed run would append after."""
    existed = os.path.exists(path)
    size = os.path.getsize(path) if existed else 0
    try:
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if header:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            f.flush()
    except OSError as e:
        with contextlib.suppress(OSError):  # (cutting a file back frees space: it does not fail for want of it)
            if existed:
                os.truncate(path, size)
            else:
                os.remove(path)
        if e.filename is None:
            raise OSError(e.errno, e.strerror, path) from None
        raise
