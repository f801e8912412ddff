"""Training methods as data: each method is a list of phases built from shared pieces.

A `Phase` says, for a share of the run's steps, which subnets a step trains (sampler),
whether the full model trains on the labels, where distillation targets come from
(teacher), how the subnet gradients are weighted (ε schedule, label / KD weights), and
whether mid channels are re-sorted by importance when the phase starts. The training
loop reads phases; it has no code per method.

Phase lengths are fractions of the run's total steps, so a preset works for any budget
(the defaults follow the papers' epoch splits).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ofa_tf.errors import OfaError
from ofa_tf.spaces import SearchSpace
from ofa_tf.training.epsilon import EpsilonSchedule
from ofa_tf.training.samplers import (FullOnlySampler, RestrictedSampler, Sampler, SandwichSampler,
                                      UpperAttentiveSampler, check_subnet_count, sampler_from_config)

# Where a phase's distillation targets come from (`Phase.teacher`), and the code the
# traced train step reads for each (`OnceForAllModel.teacher_code`).
TEACHER_CODES = {"none": 0, "inplace": 1, "frozen": 2}
# OFA's reference scripts: kernel phase 3e-2; depth / expand stage 1 2.5e-3, stage 2 7.5e-3.
OFA_STAGE1_LR = 2.5e-3 / 3e-2
OFA_STAGE2_LR = 7.5e-3 / 3e-2


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stretch of training.

    Attributes:
      name: shown in logs and the run's CSV.
      fraction: share of the run's total steps.
      sampler: subnets per step besides the full model.
      train_full: the full model trains on the labels each step (DεpS, BigNAS, fOFA, TOFA;
        not OFA / CompOFA's shrinking phases, where a frozen teacher stands in for it).
      teacher: "inplace" (the full model's detached output, DεpS paper §4.3), "frozen" (a
        snapshot of the full model taken when the phase starts: OFA's vanilla KD) or "none".
      epsilon: ε schedule of the subnets' gradient weight (None: ε = 1).
      subnet_label_weight: weight of the subnets' own label loss (OFA: 1, in-place KD: 0).
      kd_weight: weight of the subnets' distillation loss.
      sort_channels: re-sort mid channels by importance when the phase starts.
      lr_scale: multiplier of the run's learning rate during the phase (OFA's shrinking
        phases run at a fraction of its first elastic phase's rate; ofa_tf/training/lr_schedule.py).
    """

    name: str
    fraction: float
    sampler: Sampler
    train_full: bool = True
    teacher: str = "none"
    epsilon: EpsilonSchedule | None = None
    subnet_label_weight: float = 0.0
    kd_weight: float = 1.0
    sort_channels: bool = False
    lr_scale: float = 1.0

    def __post_init__(self):
        if self.teacher not in TEACHER_CODES:
            raise OfaError(f"teacher={self.teacher!r}: expected one of {list(TEACHER_CODES)}")
        if self.fraction < 0:
            raise OfaError(f"phase {self.name!r}: fraction={self.fraction!r}: expected >= 0")
        if self.lr_scale < 0:
            raise OfaError(f"phase {self.name!r}: lr_scale={self.lr_scale!r}: expected >= 0")
        if self.teacher == "inplace" and not self.train_full:
            raise OfaError(f"phase {self.name!r}: an in-place teacher is the full model's output, "
                           "so the phase must train the full model (train_full=True)")

    def to_config(self) -> dict[str, Any]:
        config = dataclasses.asdict(self)
        config["sampler"] = self.sampler.to_config()
        config["epsilon"] = dataclasses.asdict(self.epsilon) if self.epsilon else None
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Phase":
        config = dict(config)
        config["sampler"] = sampler_from_config(config["sampler"])
        config["epsilon"] = EpsilonSchedule(**config["epsilon"]) if config.get("epsilon") else None
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class Method:
    """A named list of phases plus the optimiser settings the method prescribes."""

    name: str
    phases: tuple[Phase, ...]
    clipnorm: float | None = None

    @property
    def max_subnets(self) -> int:
        return max(p.sampler.num_subnets for p in self.phases)

    def phase_bounds(self, total_steps: int) -> list[tuple[int, int]]:
        """[start, end) global steps of each phase; they tile [0, total_steps)."""
        total = sum(p.fraction for p in self.phases)
        bounds, start, acc = [], 0, 0.0
        for phase in self.phases:
            acc += phase.fraction
            end = total_steps if phase is self.phases[-1] else int(round(total_steps * acc / total))
            bounds.append((start, end))
            start = end
        return bounds

    def phase_at(self, step: int, total_steps: int) -> tuple[int, Phase, int]:
        """(index, phase, first step of the phase) of global `step`."""
        for index, ((start, end), phase) in enumerate(zip(self.phase_bounds(total_steps), self.phases)):
            if start <= step < end or index == len(self.phases) - 1:
                return index, phase, start
        raise AssertionError("unreachable")

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, "clipnorm": self.clipnorm, "phases": [p.to_config() for p in self.phases]}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Method":
        return cls(config["name"], tuple(Phase.from_config(p) for p in config["phases"]), config.get("clipnorm"))


def _check_fraction(name: str, value: float) -> float:
    if not 0 <= value < 1:
        raise OfaError(f"{name}={value!r}: expected a fraction in [0, 1)")
    return float(value)


def build_method(name: str, space: SearchSpace | None = None, *, steps_per_epoch: int = 1,
                 epochs: float | None = None, warmup_fraction: float | None = None, epsilon_start: float = 1e-4,
                 epsilon_ramp_epochs: float | None = None, epsilon_mode: str = "linear",
                 num_subnets: int | None = None, clipnorm: float | None = None) -> Method:
    """The preset `name` with its knobs; None means the paper's default for that method.

    Presets: full, deps, bignas, fofa, ofa, compofa, tofa.
    """
    if name not in PRESETS:
        raise OfaError(f"method={name!r}: expected one of {sorted(PRESETS)}")
    if warmup_fraction is not None:
        _check_fraction("warmup_fraction", warmup_fraction)
    if num_subnets is not None:
        check_subnet_count(num_subnets)
    if epsilon_ramp_epochs is not None and not (0 <= epsilon_ramp_epochs < float("inf")):
        raise OfaError(f"epsilon_ramp_epochs={epsilon_ramp_epochs!r}: expected >= 0")
    EpsilonSchedule(epsilon_start, 0, epsilon_mode)  # validates start and mode
    knobs = dict(steps_per_epoch=max(1, int(steps_per_epoch)), epochs=epochs, warmup_fraction=warmup_fraction,
                 epsilon_start=epsilon_start, epsilon_ramp_epochs=epsilon_ramp_epochs,
                 epsilon_mode=epsilon_mode, num_subnets=num_subnets)
    method = PRESETS[name](space, **knobs)
    if clipnorm is not None:
        method = dataclasses.replace(method, clipnorm=clipnorm)
    return method


def _full(space, **_) -> Method:
    return Method("full", (Phase("full", 1.0, FullOnlySampler()),))


def _deps(space, *, steps_per_epoch, epochs, warmup_fraction, epsilon_start, epsilon_ramp_epochs, epsilon_mode,
          num_subnets, **_) -> Method:
    """DεpS (arXiv:2407.06167): FM-Warmup for P_fm of the run, then sandwich shrinking (max + min
    + random, as the public code) with in-place KD from the warmed-up full model and ε
    ramping from 1e-4 to 1; channels sorted at the switch. The paper ramps over 5 of 270
    epochs, so the default ramp is that share of the run (`epochs`; 5 epochs when unknown)."""
    warmup = 0.5 if warmup_fraction is None else warmup_fraction
    if epsilon_ramp_epochs is None:
        epsilon_ramp_epochs = 5.0 if epochs is None else 5.0 / 270.0 * epochs
    ramp_steps = int(round(epsilon_ramp_epochs * steps_per_epoch))
    subnets = 3 if num_subnets is None else num_subnets
    return Method("deps", (
        Phase("fm_warmup", warmup, FullOnlySampler()),
        Phase("shrink", 1.0 - warmup, SandwichSampler(subnets) if subnets else FullOnlySampler(), teacher="inplace",
              epsilon=EpsilonSchedule(epsilon_start, ramp_steps, epsilon_mode), sort_channels=True),
    ))


def _bignas(space, *, num_subnets, **_) -> Method:
    """BigNAS: sandwich rule (max + min + 2 random) with in-place KD from the start; grad clip 1."""
    subnets = 3 if num_subnets is None else num_subnets
    return Method("bignas", (Phase("sandwich", 1.0, SandwichSampler(subnets), teacher="inplace"),), clipnorm=1.0)


def _tofa(space, *, num_subnets, **_) -> Method:
    """TOFA's supervised part: sandwich rule with in-place KD (from pretrained weights)."""
    subnets = 3 if num_subnets is None else num_subnets
    return Method("tofa", (Phase("sandwich", 1.0, SandwichSampler(subnets), teacher="inplace"),))


def _fofa(space, *, warmup_fraction, num_subnets, **_) -> Method:
    """fOFA ("Fast and Efficient Once-For-All Networks for Diverse Hardware Deployment"): a short
    full-model warmup (5 of 185 epochs), then upper-attentive sampling (full + n-1 random, n = 3) with in-place KD."""
    warmup = 5 / 185 if warmup_fraction is None else warmup_fraction
    subnets = 2 if num_subnets is None else num_subnets
    return Method("fofa", (
        Phase("warmup", warmup, FullOnlySampler()),
        Phase("upper_attentive", 1.0 - warmup, UpperAttentiveSampler(subnets), teacher="inplace"),
    ))


def _ofa(space, *, num_subnets, warmup_fraction, **_) -> Method:
    """OFA progressive shrinking: full net (the teacher), then elastic kernel (120 ep, 1
    subnet / step), depth (25 + 120 ep, 2 / step), expand (25 + 120 ep, 4 / step), with
    vanilla KD from the frozen full net plus each subnet's own label loss.

    Learning-rate scales follow the reference scripts' per-phase rates relative to the
    kernel phase's 3e-2: 2.5e-3 for each stage 1 (x 1/12), 7.5e-3 for each stage 2 (x 1/4).
    """
    kernels = _all_choices(space, "kernels")
    depths = _all_choices(space, "depths")
    expands = _all_choices(space, "expands")

    def n(default: int) -> int:
        return default if num_subnets is None else max(1, num_subnets)

    teacher_share = 180 if warmup_fraction is None else None
    shares = [("kernel", 120, RestrictedSampler(n(1), kernels=kernels), False, 1.0),
              ("depth_1", 25, RestrictedSampler(n(2), kernels=kernels, depths=depths[-2:]), False, OFA_STAGE1_LR),
              ("depth_2", 120, RestrictedSampler(n(2), kernels=kernels, depths=depths), False, OFA_STAGE2_LR),
              ("expand_1", 25, RestrictedSampler(n(4), kernels=kernels, depths=depths, expands=expands[-2:]), True,
               OFA_STAGE1_LR),
              ("expand_2", 120, RestrictedSampler(n(4), kernels=kernels, depths=depths, expands=expands), False,
               OFA_STAGE2_LR)]
    shrink_total = sum(share for _, share, *_ in shares)
    warmup = teacher_share / (teacher_share + shrink_total) if teacher_share else warmup_fraction
    phases = [Phase("full", warmup, FullOnlySampler())]
    for name, share, sampler, sort, lr_scale in shares:
        phases.append(Phase(name, (1 - warmup) * share / shrink_total, sampler, train_full=False, teacher="frozen",
                            subnet_label_weight=1.0, sort_channels=sort, lr_scale=lr_scale))
    return Method("ofa", tuple(phases))


def _compofa(space, *, num_subnets, warmup_fraction, **_) -> Method:
    """CompOFA: teacher (180 ep), then compound phases (25 + 125 ep, 4 subnets / step) over
    the coupled depth/expand space, vanilla KD from the frozen teacher. The two phases take
    OFA's stage 1 / stage 2 learning-rate ratios (CompOFA runs OFA's phase structure)."""
    if space is not None and not any(stage.expand_for_depth for stage in space.stages):
        raise OfaError(f"method=compofa needs a space with coupled depth and expand "
                       f"(space='compofa'), not {space.name!r}")
    depths = _all_choices(space, "depths")
    subnets = 4 if num_subnets is None else max(1, num_subnets)
    warmup = 180 / 330 if warmup_fraction is None else warmup_fraction
    return Method("compofa", (
        Phase("full", warmup, FullOnlySampler()),
        Phase("compound_1", (1 - warmup) * 25 / 150, RestrictedSampler(subnets, kernels=_all_choices(space, "kernels"),
                                                                        depths=depths[-2:]),
              train_full=False, teacher="frozen", subnet_label_weight=1.0, lr_scale=OFA_STAGE1_LR),
        Phase("compound_2", (1 - warmup) * 125 / 150, RestrictedSampler(subnets, kernels=_all_choices(space, "kernels"),
                                                                         depths=depths),
              train_full=False, teacher="frozen", subnet_label_weight=1.0, lr_scale=OFA_STAGE2_LR),
    ))


def _all_choices(space: SearchSpace | None, field: str) -> list:
    if space is None:
        return {"kernels": [3, 5, 7], "depths": [2, 3, 4], "expands": [3.0, 4.0, 6.0]}[field]
    return sorted({v for stage in space.stages for v in getattr(stage, field)})


PRESETS = {"full": _full, "deps": _deps, "bignas": _bignas, "fofa": _fofa, "ofa": _ofa, "compofa": _compofa,
           "tofa": _tofa}
