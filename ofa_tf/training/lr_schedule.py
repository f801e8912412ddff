"""The learning-rate schedule of a run: cosine, scaled per phase, over the run or per phase.

Three shapes, one class:
  "run"    one cosine decay over the whole run (no restart at phase switches): what
           DεpS, BigNAS and fOFA use, and the default for every method;
  "phase"  a cosine decay restarted at each phase start and reaching 0 at its end: what
           OFA's progressive-shrinking scripts do (each phase is a separate run there);
  "exponential"
           BigNAS's "exponentially decaying with constant ending" on ImageNet, as DεpS's code
           runs it (`multistep_periodic_constant`: the rate times `decay_rate` every period,
           never below `floor` of the peak): x 0.97 every 2.4 of 400 epochs (EfficientNet's
           period, over DεpS's 400 BigNAS epochs, kept as a share of the run), floor 5%.
In both, a phase's `lr_scale` multiplies the rate while it runs. OFA's shrinking phases
use far lower rates than its first elastic phase (the reference scripts: kernel 3e-2,
depth/expand stage 1 2.5e-3, stage 2 7.5e-3), so the `ofa` preset carries those ratios.
An optional linear warmup from 0 opens the run, in either shape; in "phase" mode the
first phase's cosine then starts when the warmup ends (later phases restart at their peak).
A phase can also warm up on its own (`phase_warmups`, OFA / CompOFA: 5 of a phase's 125
epochs): its rate rises linearly over its first steps, from `warmup_start` of its peak (0 by
default), reaching the peak at the warm-up's last step with `warmup_offset=1` (OFA's
`warmup_adjust_learning_rate`: `(t + 1) / T * (init_lr - warmup_lr) + warmup_lr`, starting at
one GPU's rate) or one step later with 0 (AttentiveNAS's `WarmupCosineLR`: a factor
`s + (1 - s) * t / T` from s = 0.001); in "phase" mode its cosine starts when that warm-up ends,
in "run" mode the ramp multiplies the run's cosine. `min_rate` floors the cosine (DεpS's
`max(min_lr, lr)`).
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

EXPONENTIAL_DECAY_RATE = 0.97
EXPONENTIAL_DECAY_PERIOD = 2.4 / 400  # a share of the run's steps
EXPONENTIAL_FLOOR = 0.05


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
      warmup_start, warmup_offset: where a phase warm-up starts, as a share of the phase's
        peak, and 1 to count its first step as one step of the ramp (OFA) or 0 (module docstring).
      min_rate: the lowest rate of the cosine shapes after any warm-up (DεpS's `min_lr`; 0: none).
      decay_rate, decay_steps, floor: the "exponential" shape's factor per period of
        `decay_steps` steps after the warm-up (default: `EXPONENTIAL_DECAY_PERIOD` of the run)
        and its lowest share of the peak.
    """

    def __init__(self, learning_rate: float, phase_starts: Sequence[int], total_steps: int,
                 phase_scales: Sequence[float] | None = None, mode: str = "run", warmup_steps: int = 0,
                 phase_warmups: Sequence[int] | None = None, decay_rate: float = EXPONENTIAL_DECAY_RATE,
                 decay_steps: int | None = None, floor: float = EXPONENTIAL_FLOOR, warmup_start: float = 0.0,
                 warmup_offset: int = 0, min_rate: float = 0.0):
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
        if not (0 < decay_rate <= 1 and 0 <= floor <= 1):
            raise OfaError(f"decay_rate={decay_rate!r}, floor={floor!r}: expected 0 < decay_rate <= 1 and 0 <= floor <= 1")
        self.decay_rate, self.floor = float(decay_rate), float(floor)
        if not (0 <= warmup_start <= 1 and warmup_offset in (0, 1) and 0 <= min_rate < float("inf")):
            raise OfaError(f"warmup_start={warmup_start!r}, warmup_offset={warmup_offset!r}, min_rate={min_rate!r}: "
                           "expected a share in [0, 1], 0 or 1, and a rate >= 0")
        self.warmup_start, self.warmup_offset, self.min_rate = float(warmup_start), int(warmup_offset), float(min_rate)
        self.decay_steps = (max(1, int(round(self.total_steps * EXPONENTIAL_DECAY_PERIOD))) if decay_steps is None
                            else max(1, int(decay_steps)))
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
            rising = tf.clip_by_value((since + float(self.warmup_offset)) / warm, 0.0, 1.0)
            ramp = tf.where(has_warmup, self.warmup_start + (1.0 - self.warmup_start) * rising, 1.0)
        if self.mode == "phase":
            # the first (non-empty) phase's cosine starts after the warmup, a phase's after its own
            starts = [max(start, self.warmup_steps, start + own)
                      for start, own in zip(self.phase_starts, self.phase_warmups)]
            ends = self.phase_starts[1:] + [self.total_steps]
            start = tf.gather(tf.constant(starts, tf.float32), index)
            length = tf.gather(tf.constant([max(1, e - s) for s, e in zip(starts, ends)], tf.float32), index)
            progress = (step - start) / length
        elif self.mode == "run":
            decay_steps = float(max(1, self.total_steps - self.warmup_steps))
            progress = (step - float(self.warmup_steps)) / decay_steps
        if self.mode == "exponential":
            periods = tf.floor(tf.maximum(step - float(self.warmup_steps), 0.0) / float(self.decay_steps))
            shape = tf.maximum(self.floor, tf.pow(self.decay_rate, periods))
        else:
            shape = 0.5 * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
        rate = self.learning_rate * scale * shape * ramp
        if self.min_rate and self.mode != "exponential":  # DεpS: max(min_lr, the cosine's rate), not in a warm-up
            floored = tf.maximum(rate, tf.minimum(self.min_rate, self.learning_rate * scale))
            rate = tf.where(tf.convert_to_tensor(ramp) < 1.0, rate, floored)
        if self.warmup_steps:
            run_warmup = self.learning_rate * scale * step / float(self.warmup_steps)
            rate = tf.where(step < float(self.warmup_steps), run_warmup, rate)
        return rate

    def get_config(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "phase_starts": list(self.phase_starts),
                "total_steps": self.total_steps, "phase_scales": list(self.phase_scales), "mode": self.mode,
                "warmup_steps": self.warmup_steps, "phase_warmups": list(self.phase_warmups),
                "decay_rate": self.decay_rate, "decay_steps": self.decay_steps, "floor": self.floor,
                "warmup_start": self.warmup_start, "warmup_offset": self.warmup_offset, "min_rate": self.min_rate}


__all__ = ["LR_SCHEDULES", "PhaseCosineSchedule"]
