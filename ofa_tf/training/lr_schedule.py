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
A phase can also warm up on its own (`phase_warmups`, OFA / CompOFA: 5 of a phase's 125
epochs): its rate rises linearly from 0 over its first steps; in "phase" mode its cosine
starts when that warm-up ends, in "run" mode the ramp multiplies the run's cosine.
The rate is a pure function of the global step, so a resumed run continues exactly.

The step arrives as a tensor inside the traced train step, so the phase lookup is a
tensor computation: one trace serves the whole run.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import tensorflow as tf

from ofa_tf.choices import LR_SCHEDULES
from ofa_tf.errors import OfaError



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
      phase_warmups: warm-up steps at the start of each phase (default: none); each must be
        shorter than its phase.
    """

    def __init__(self, learning_rate: float, phase_starts: Sequence[int], total_steps: int,
                 phase_scales: Sequence[float] | None = None, mode: str = "run", warmup_steps: int = 0,
                 phase_warmups: Sequence[int] | None = None):
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
        warmups = [0] * len(starts) if phase_warmups is None else [int(w) for w in phase_warmups]
        if len(warmups) != len(starts):
            raise OfaError(f"{len(warmups)} phase LR warm-ups for {len(starts)} phases")
        ends = starts[1:] + [max(1, int(total_steps))]
        for start, end, warm in zip(starts, ends, warmups):
            if warm < 0 or (warm and warm >= end - start):
                raise OfaError(f"phase LR warm-ups {warmups}: expected >= 0 and shorter than each phase "
                               f"(steps {start}..{end})")
        self.phase_warmups = warmups
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
        ramp = 1.0
        if any(self.phase_warmups):
            warm = tf.gather(tf.constant([max(1, w) for w in self.phase_warmups], tf.float32), index)
            since = step - tf.gather(tf.constant(self.phase_starts, tf.float32), index)
            has_warmup = tf.gather(tf.constant([w > 0 for w in self.phase_warmups]), index)
            ramp = tf.where(has_warmup, tf.clip_by_value(since / warm, 0.0, 1.0), 1.0)
        if self.mode == "phase":
            # the first (non-empty) phase's cosine starts after the warmup, a phase's after its own
            starts = [max(start, self.warmup_steps, start + own)
                      for start, own in zip(self.phase_starts, self.phase_warmups)]
            ends = self.phase_starts[1:] + [self.total_steps]
            start = tf.gather(tf.constant(starts, tf.float32), index)
            length = tf.gather(tf.constant([max(1, e - s) for s, e in zip(starts, ends)], tf.float32), index)
            progress = (step - start) / length
        else:
            decay_steps = float(max(1, self.total_steps - self.warmup_steps))
            progress = (step - float(self.warmup_steps)) / decay_steps
        cosine = 0.5 * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        rate = self.learning_rate * scale * cosine * ramp
        if self.warmup_steps:
            run_warmup = self.learning_rate * scale * step / float(self.warmup_steps)
            rate = tf.where(step < float(self.warmup_steps), run_warmup, rate)
        return rate

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "phase_starts": list(self.phase_starts),
                "total_steps": self.total_steps, "phase_scales": list(self.phase_scales), "mode": self.mode,
                "warmup_steps": self.warmup_steps, "phase_warmups": list(self.phase_warmups)}


__all__ = ["LR_SCHEDULES", "PhaseCosineSchedule"]
