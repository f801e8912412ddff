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
      start: ε at the first shrinking step, in (0, 1] (the paper: 1e-4).
      ramp_steps: steps over which ε rises to 1; 0 means ε = 1 from the start (no
        ε-Shrinking, as BigNAS / fOFA / OFA train).
      mode: "linear": ε rises by a constant per step from `start` to 1 (the paper).
        "lr_ratio": the public DεpS code's rule: subnets get a linearly warmed-up LR that
        reaches the scheduled LR at the end of the ramp, and ε = ramped LR / scheduled LR
        (never below `start`, never above 1).
    """

    start: float = 1e-4
    ramp_steps: int = 0
    mode: str = "linear"

    def __post_init__(self):
        if not 0 < self.start <= 1:
            raise OfaError(f"epsilon_start={self.start!r}: expected a value in (0, 1]")
        if self.ramp_steps < 0:
            raise OfaError(f"epsilon ramp steps={self.ramp_steps!r}: expected >= 0")
        if self.mode not in EPSILON_MODES:
            raise OfaError(f"epsilon_mode={self.mode!r}: expected one of {list(EPSILON_MODES)}")

    def value(self, steps_since_start: int, lr_at: Callable[[int], float] | None = None,
              shrink_start_step: int = 0) -> float:
        """ε at `steps_since_start` steps after shrinking began (0 = first shrinking step).

        `lr_at(step)` (the scheduled LR at a global step) is needed by "lr_ratio" only.
        """
        if steps_since_start < 0:
            return 0.0
        if self.ramp_steps == 0 or steps_since_start >= self.ramp_steps:
            return 1.0
        fraction = steps_since_start / self.ramp_steps
        if self.mode == "linear":
            return self.start + (1.0 - self.start) * fraction
        if lr_at is None:
            raise OfaError("epsilon_mode='lr_ratio' needs the learning-rate schedule")
        target = lr_at(shrink_start_step + self.ramp_steps)
        scheduled = lr_at(shrink_start_step + steps_since_start)
        ratio = fraction * target / scheduled if scheduled > 0 else 1.0
        return float(min(1.0, max(self.start, ratio)))
