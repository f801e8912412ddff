"""`FinetuneConfig`: the settings of `ofa-finetune` (`ofa_tf.runs.finetune`).

Light on purpose (no TensorFlow): ofa-finetune generates its flags from these fields and
answers `--help` before TensorFlow loads.
"""

from __future__ import annotations

import dataclasses
import math

from ofa_tf.errors import OfaError
from ofa_tf.runs.config import DATA, OPTIMIZER, SCHEDULE, setting

MOMENTUM = 0.9  # SGD's, with Nesterov's update


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """The settings of a fine-tune (`ofa-finetune`'s flags are generated from these fields)."""

    epochs: int = setting(5, "Fine-tuning epochs.", SCHEDULE)
    steps_per_epoch: int | None = setting(
        None, "Steps per epoch (default: one pass over the run's training split).", SCHEDULE)
    batch_size: int = setting(64, "Fine-tuning batch size.", DATA)
    learning_rate: float = setting(
        0.01, "Peak learning rate: cosine decay to 0 over the fine-tuning (SGD, Nesterov momentum 0.9).", OPTIMIZER)
    distill_from_supernet: bool = setting(
        False, "Also distil from the supernet's max net (BN-recalibrated, inference mode) at the run's "
        "kd_temperature: loss = label loss + distillation.", OPTIMIZER)
    seed: int = setting(0, "Seed of the data order and augmentation.", SCHEDULE)
    checkpoint_every_steps: int | None = setting(
        None, "Also checkpoint every N steps (besides every epoch), so a killed fine-tune loses at most N steps.",
        SCHEDULE)

    def check(self) -> "FinetuneConfig":
        """Each setting in its range; returns self."""
        positive = [("epochs", self.epochs), ("batch_size", self.batch_size), ("steps_per_epoch", self.steps_per_epoch),
                    ("checkpoint_every_steps", self.checkpoint_every_steps)]
        for name, value in positive:
            if value is not None and not value > 0:
                raise OfaError(f"{name}={value}: expected a positive number")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise OfaError(f"learning_rate={self.learning_rate}: expected a positive number")
        if self.seed < 0:
            raise OfaError(f"seed={self.seed}: expected an integer >= 0")
        return self


__all__ = ["FinetuneConfig", "MOMENTUM"]
