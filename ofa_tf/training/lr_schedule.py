"""The learning-rate schedule of a run: cosine, scaled per phase, over the run or per phase.

Two shapes, one class:
  "run"    one cosine decay over the whole run (no restart at phase switches): what
           DεpS, BigNAS and fOFA use, and the default for every method;
  "phase"  a cosine decay restarted at each phase start and reaching 0 at its end: what
           OFA's progressive-shrinking scripts do (each phase is a separate run there).
In both, a phase's `lr_scale` multiplies the rate while it runs. OFA's shrinking phases
use far lower rates than its first elastic phase (the reference scripts: kernel 3e-2,
depth/expand stage 1 2.5e-3, stage 2 7.5e-3), so the `ofa` preset carries those ratios.
An optional linear warmup from 0 opens the run, in either shape; in "phase" mode the
first phase's cosine then starts when the warmup ends (later phases restart at their peak).

The step arrives as a tensor inside the traced train step, so the phase lookup is a
tensor computation: one trace serves the whole run.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import tensorflow as tf

from ofa_tf.errors import OfaError

LR_SCHEDULES = ("run", "phase")


@keras.saving.register_keras_serializable(package="ofa_tf")
class PhaseCosineSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine learning rate with per-phase scales, over the run or restarted per phase.

    Args:
      learning_rate: peak rate (before a phase's scale).
      phase_starts: first step of each phase, ascending, starting at 0.
      total_steps: steps of the whole run (the last phase ends there).
      phase_scales: multiplier of each phase (default: all 1).
      mode: "run" or "phase" (module docstring).
      warmup_steps: linear warmup from 0 at the start of the run; the cosine that follows
        (the run's, or the first phase's in "phase" mode) starts at the end of the warmup.
        In "phase" mode it must end before the first phase does.
    """

    def __init__(self, learning_rate: float, phase_starts: Sequence[int], total_steps: int,
                 phase_scales: Sequence[float] | None = None, mode: str = "run", warmup_steps: int = 0):
        if mode not in LR_SCHEDULES:
            raise OfaError(f"lr_schedule={mode!r}: expected one of {list(LR_SCHEDULES)}")
        starts = [int(s) for s in phase_starts] or [0]
        scales = [1.0] * len(starts) if phase_scales is None else [float(s) for s in phase_scales]
        if len(scales) != len(starts):
            raise OfaError(f"{len(scales)} phase LR scales for {len(starts)} phases")
        if starts[0] != 0 or any(b < a for a, b in zip(starts, starts[1:])):
            raise OfaError(f"phase starts {starts}: expected ascending steps from 0")
        if any(s < 0 for s in scales):
            raise OfaError(f"phase LR scales {scales}: expected >= 0")
        self.learning_rate = float(learning_rate)
        self.phase_starts = starts
        self.total_steps = max(1, int(total_steps))
        self.phase_scales = scales
        self.mode = mode
        self.warmup_steps = max(0, int(warmup_steps))
        if mode == "phase" and self.warmup_steps:
            ends = starts[1:] + [self.total_steps]
            first_end = next((end for start, end in zip(starts, ends) if end > start), self.total_steps)
            if self.warmup_steps >= first_end:
                raise OfaError(f"LR warmup of {self.warmup_steps} steps does not end before the first phase does "
                               f"(step {first_end}); shorten warmup_steps")

    def phase_index(self, step: tf.Tensor) -> tf.Tensor:
        """Index of the phase `step` falls in (a tensor; an empty phase is skipped)."""
        if len(self.phase_starts) == 1:
            return tf.constant(0)
        later_starts = tf.constant(self.phase_starts[1:], tf.float32)
        return tf.reduce_sum(tf.cast(step >= later_starts, tf.int32))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        index = self.phase_index(step)
        scale = tf.gather(tf.constant(self.phase_scales, tf.float32), index)
        if self.mode == "phase":
            # the first (non-empty) phase's cosine starts after the warmup
            starts = [max(start, self.warmup_steps) for start in self.phase_starts]
            ends = self.phase_starts[1:] + [self.total_steps]
            start = tf.gather(tf.constant(starts, tf.float32), index)
            length = tf.gather(tf.constant([max(1, e - s) for s, e in zip(starts, ends)], tf.float32), index)
            progress = (step - start) / length
        else:
            decay_steps = float(max(1, self.total_steps - self.warmup_steps))
            progress = (step - float(self.warmup_steps)) / decay_steps
        cosine = 0.5 * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        rate = self.learning_rate * scale * cosine
        if self.warmup_steps:
            warm = self.learning_rate * scale * step / float(self.warmup_steps)
            rate = tf.where(step < float(self.warmup_steps), warm, rate)
        return rate

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "phase_starts": list(self.phase_starts),
                "total_steps": self.total_steps, "phase_scales": list(self.phase_scales), "mode": self.mode,
                "warmup_steps": self.warmup_steps}


__all__ = ["LR_SCHEDULES", "PhaseCosineSchedule"]
