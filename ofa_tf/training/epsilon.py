"""ε-Shrinking (DεpS, arXiv:2407.06167, §4.2, eq. 4): the weight of the subnets' gradients after the switch.

The step's gradient is G_full + ε_t Σ G_subnet. ε starts small when shrinking starts and
grows to 1, so the subnets' effective learning rate warms up (η ε_t) while the full
model keeps η. With SGD (with or without momentum) this equals scaling the subnet losses
by ε_t, which is how `OnceForAllModel.train_step` applies it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ofa_tf.errors import OfaError

EPSILON_MODES = ("linear", "lr_ratio")


@dataclasses.dataclass(frozen=True)
class EpsilonSchedule:
    """ε as a function of the steps since shrinking started.

    Attributes:
      start: ε at the first shrinking step, in (0, 1] (the paper: 1e-4); "linear" only.
      ramp_steps: steps over which ε rises to 1; 0 means ε = 1 from the start (no
        ε-Shrinking, as BigNAS / fOFA / OFA train).
      ramp_fraction: the ramp as a share of the run's total steps instead, for a method
        built before the run's step count is known (one pass over data not yet loaded);
        `for_run` turns it into `ramp_steps`.
      mode: "linear": ε rises by a constant per step from `start` to 1 (the paper).
        "lr_ratio": the public DεpS code's rule (`adjust_beta_value`): subnets get an LR
        rising linearly, (t + 1) / ramp_steps of the scheduled LR at the end of the ramp, and
        ε = ramped LR / scheduled LR (never above 1). DεpS looks the ramp's end up in a table
        (`lrs.py`) whose entry for epoch e holds the rate at the start of epoch e + 1, one
        epoch after the ramp ends: its ε is that much lower (the cosine's ratio over one
        epoch, about 1.4% at DεpS's epoch 150 of 270).
    """

    start: float = 1e-4
    ramp_steps: int = 0
    mode: str = "linear"
    ramp_fraction: float | None = None

    def __post_init__(self):
        if not 0 < self.start <= 1:
            raise OfaError(f"epsilon_start={self.start!r}: expected a value in (0, 1]")
        if self.ramp_steps < 0:
            raise OfaError(f"epsilon ramp steps={self.ramp_steps!r}: expected >= 0")
        if self.ramp_fraction is not None and not 0 <= self.ramp_fraction < float("inf"):
            raise OfaError(f"epsilon ramp fraction={self.ramp_fraction!r}: expected >= 0")
        if self.mode not in EPSILON_MODES:
            raise OfaError(f"epsilon_mode={self.mode!r}: expected one of {list(EPSILON_MODES)}")

    def for_run(self, total_steps: int) -> "EpsilonSchedule":
        """This schedule with its ramp in steps of a run of `total_steps` steps."""
        if self.ramp_fraction is None:
            return self
        return dataclasses.replace(self, ramp_steps=int(round(self.ramp_fraction * total_steps)), ramp_fraction=None)

    def value(self, steps_since_start: int, lr_at: Callable[[int], float] | None = None,
              shrink_start_step: int = 0) -> float:
        """ε at `steps_since_start` steps after shrinking began (0 = first shrinking step).

        `lr_at(step)` (the scheduled LR at a global step) is needed by "lr_ratio" only.
        """
        if self.ramp_fraction is not None:
            raise OfaError("an ε ramp given as a share of the run needs the run's steps (`for_run`)")
        if steps_since_start < 0:
            return 0.0
        if self.ramp_steps == 0 or steps_since_start >= self.ramp_steps:
            return 1.0
        if self.mode == "linear":
            return self.start + (1.0 - self.start) * steps_since_start / self.ramp_steps
        if lr_at is None:
            raise OfaError("epsilon_mode='lr_ratio' needs the learning-rate schedule")
        # DεpS's `adjust_beta_value`: the subnets' rate climbs (T_cur = t + 1) / T_total of the rate
        # at the ramp's end (`smallnet_warmup_adjust_learning_rate`, warmup_lr 0), over the scheduled rate
        target = lr_at(shrink_start_step + self.ramp_steps)
        scheduled = lr_at(shrink_start_step + steps_since_start)
        ratio = (steps_since_start + 1) / self.ramp_steps * target / scheduled if scheduled > 0 else 1.0
        return float(min(1.0, ratio))
