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

from absl import logging

from ofa_tf.choices import OPTIMIZERS, PER_NETWORK, SIZE_SAMPLING, SORT_MOMENTUM, check_choice
from ofa_tf.errors import OfaError
from ofa_tf.spaces import SearchSpace
from ofa_tf.training.channel_sorting import SORT_MODES
from ofa_tf.training.epsilon import EpsilonSchedule
from ofa_tf.training.lr_schedule import LR_SCHEDULES, PhaseCosineSchedule
from ofa_tf.training.optimizer import (ReferenceRMSProp, ReferenceSGD, check_optimizer_settings,
                                      check_unused_parameters)
from ofa_tf.training.samplers import (FullOnlySampler, RestrictedSampler, Sampler, SandwichSampler,
                                      UpperAttentiveSampler, check_subnet_count, sampler_from_config)

# Where a phase's distillation targets come from (`Phase.teacher`), and the code the
# traced train step reads for each (`OnceForAllModel.teacher_code`).
TEACHER_CODES = {"none": 0, "inplace": 1, "frozen": 2}
# OFA's learning rates relative to its teacher's 2.6 per 2048 images (paper §4; CompOFA's
# train_ofa_net.py `2.6 * base_batch_size / 2048`): OFA's train_ofa_net.py sets kernel 3e-2,
# depth / expand stage 1 2.5e-3 and stage 2 7.5e-3 per GPU of 64 images, i.e. 0.96, 0.08 and
# 0.24 per 2048 (CompOFA: compound stage 1 0.08, stage 2 0.24 per 2048).
OFA_TEACHER_LR_PER_256 = 2.6 * 256 / 2048  # 0.325
OFA_KERNEL_LR = 0.96 / 2.6
OFA_STAGE1_LR = 0.08 / 2.6
OFA_STAGE2_LR = 0.24 / 2.6
# OFA / CompOFA warm up a phase's LR for 5 epochs on top of its 120 (kernel, stage 2), none in stage 1,
# from one GPU's rate (`warmup_lr = base_lr`) to all GPUs' (`init_lr = base_lr * num_gpus`), reaching it at
# the warm-up's last step (run_config.py `warmup_adjust_learning_rate`: T_cur = batch + 1).
OFA_PHASE_WARMUP = 5 / 125
# AttentiveNAS's warm-up factor starts at `warmup_lr` 0.001 of the peak (solver/build.py, lr_scheduler.py).
ATTENTIVENAS_WARMUP_START = 0.001
# DεpS floors its cosine at `--min_lr` 2.5e-3 (train_options.py; pytorch_utils.py `max(min_lr, lr)`).
DEPS_MIN_LR = 2.5e-3
# CompOFA's teacher is OFA's kernel-7 / depth-4 / expand-6 network (train_ofa_net.py: the compound phases
# distil from `OFAMobileNetV3(ks_list=7, expand_ratio_list=6, depth_list=4)` loaded from OFA's released
# `ofa_D4_E6_K7`, also their starting weights); the fOFA paper's Table 1 agrees.
COMPOFA_TEACHER_KERNEL = 7
# BigNAS's regularisation of the max net in AttentiveNAS's config (train_attentive_nas_models.yml:
# dropout 0.2, drop_connect 0.2, drop_connect_only_last_two_stages).
BIGNAS_DROPOUT = 0.2
BIGNAS_DROP_CONNECT = 0.2
# BigNAS's ImageNet optimizer (the DεpS paper, §5.2: "RMSProp optimizer with its proposed
# hyper-parameters for ImageNet-1k"): RMSProp as DεpS's code builds it (`deps/utils/pytorch_utils.py`
# build_optimizer: alpha 0.9, eps sqrt(1e-3), momentum 0.9), at EfficientNet's 0.256 per 4096 images
# (BigNAS trains with EfficientNet's recipe), decayed exponentially with a constant ending
# (`ofa_tf.training.lr_schedule`).
BIGNAS_RMSPROP_LR_PER_256 = 0.256 * 256 / 4096  # 0.016
DEFAULT_DROPOUT = 0.1


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stretch of training.

    Attributes:
      name: shown in logs and the run's CSV.
      fraction: share of the run's total steps.
      sampler: subnets per step besides the full model.
      train_full: the full model trains on the labels each step (DεpS, BigNAS, fOFA, TOFA;
        not OFA / CompOFA's shrinking phases, where a frozen teacher stands in for it).
      teacher: "inplace" (the full model's detached output, DεpS paper §4.3), "frozen" (OFA's
        vanilla KD from a snapshot of the full model, taken once, when the first of a run of
        frozen-teacher phases starts, i.e. at the end of the teacher phase; it runs with
        dropout 0 and batch statistics, as OFA's `teacher_model.train()`) or "none".
      epsilon: ε schedule of the subnets' gradient weight (None: ε = 1).
      subnet_label_weight: weight of the subnets' own label loss (OFA: 1, in-place KD: 0).
      kd_weight: weight of the subnets' distillation loss.
      sort_channels: re-sort mid channels by importance when the phase starts.
      sort_mode: how (`channel_sorting.py`): "global" (one ranking per block) or "grouped"
        (OFA's and DεpS's: within the groups of the expand ratios, then SE hidden channels).
      lr_scale: multiplier of the run's learning rate during the phase (OFA's shrinking
        phases run at a fraction of its teacher's rate; ofa_tf/training/lr_schedule.py).
      lr_warmup: share of the phase's steps over which its learning rate rises linearly
        from 0 (OFA / CompOFA: 5 of a phase's 125 epochs).
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
    sort_mode: str = "global"
    lr_scale: float = 1.0
    lr_warmup: float = 0.0

    def __post_init__(self):
        if self.teacher not in TEACHER_CODES:
            raise OfaError(f"teacher={self.teacher!r}: expected one of {list(TEACHER_CODES)}")
        if self.fraction < 0:
            raise OfaError(f"phase {self.name!r}: fraction={self.fraction!r}: expected >= 0")
        if self.sort_mode not in SORT_MODES:
            raise OfaError(f"phase {self.name!r}: sort_mode={self.sort_mode!r}: expected one of {list(SORT_MODES)}")
        if self.lr_scale < 0:
            raise OfaError(f"phase {self.name!r}: lr_scale={self.lr_scale!r}: expected >= 0")
        if not 0 <= self.lr_warmup < 1:
            raise OfaError(f"phase {self.name!r}: lr_warmup={self.lr_warmup!r}: expected a fraction in [0, 1)")
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
    """A named list of phases plus the optimiser settings the method prescribes
    (docs/methods.md gives each preset's values and their sources).

    Attributes:
      lr_per_256: peak learning rate per 256 images of the global batch (scaled linearly).
      lr_schedule: "run" (one cosine) or "phase" (a cosine per phase).
      weight_decay, weight_decay_form: L2 strength and "coupled" / "decoupled"
        (ofa_tf/training/optimizer.py).
      grad_clip_mode, grad_clip: "none", "norm" or "value", and the threshold.
      restart_optimizer: zero the momentum at every phase start (a fresh optimizer per phase).
      subnet_dropout: the subnets run the classifier's dropout too (OFA, CompOFA); False:
        only the max net does (DεpS's and AttentiveNAS's code), the subnets run without it.
      dropout: the classifier's dropout rate (`Supernet(dropout=...)`; a run's `dropout` setting
        overrides it).
      drop_connect: the max net's drop-connect rate in the last two stages (BigNAS; 0: none).
      zero_residual_gamma: blocks with an identity skip start with the last BN's gamma at 0
        (BigNAS's initialisation for training from scratch).
      resolution_per_network: each network of a step at its own input size (AttentiveNAS:
        the max net at the largest, the min net at the smallest, random ones at a random one;
        `OnceForAllModel(resolution_per_network=True)`), not the batch's.
      full_kernel: the depthwise kernel of the full network, when the method trains a larger
        one than the space's max net (CompOFA: its teacher is OFA's kernel-7 network);
        `Supernet(full_kernel=...)`. None: the space's max net.
      optimizer_name: "sgd" (Nesterov) or "rmsprop" (BigNAS's ImageNet recipe,
        `ofa_tf.training.optimizer.ReferenceRMSProp`).
      unused_parameters: "update" (a parameter no network of a step used takes the step with a
        zero gradient, so weight decay and momentum move it, as in every reference's runtime:
        Horovod, DDP) or "freeze" (left alone); `ofa_tf.training.optimizer`.
      sort_momentum: at a channel sort, the optimizer's momentum "stay"s in the old channel
        order (DεpS assigns the sorted weights' `.data`, which PyTorch's optimizer state does not
        follow) or is "permute"d with the weights.
      device_batch: the images per GPU the reference trains with (OFA 64, DεpS 128, CompOFA and
        fOFA 256, AttentiveNAS 32); its BN normalises over that many, and OFA's warm-up starts at
        one GPU's rate.
      lr_warmup_start, lr_warmup_offset: a phase warm-up's first rate as a share of the phase's
        peak (None: one GPU's share, `device_batch` / the batch, as OFA's warm-up starts at the
        per-GPU `base_lr`; BigNAS: AttentiveNAS's 0.001), and whether its first step already
        climbs one step (OFA's `(t + 1) / T`: 1) or not (AttentiveNAS's `t / T`: 0);
        `PhaseCosineSchedule`.
      min_learning_rate: the cosine's floor, an absolute rate (DεpS's `--min_lr` 2.5e-3; 0: none).
    """

    name: str
    phases: tuple[Phase, ...]
    grad_clip: float | None = None
    grad_clip_mode: str = "none"
    lr_per_256: float = OFA_TEACHER_LR_PER_256
    lr_schedule: str = "run"
    weight_decay: float = 3e-5
    weight_decay_form: str = "coupled"
    restart_optimizer: bool = False
    subnet_dropout: bool = True
    dropout: float = DEFAULT_DROPOUT
    drop_connect: float = 0.0
    zero_residual_gamma: bool = False
    resolution_per_network: bool = False
    full_kernel: int | None = None
    optimizer_name: str = "sgd"
    unused_parameters: str = "update"
    sort_momentum: str = "stay"
    device_batch: int | None = None
    lr_warmup_start: float | None = 0.0
    lr_warmup_offset: int = 0
    min_learning_rate: float = 0.0

    def __post_init__(self):
        if self.lr_schedule not in LR_SCHEDULES:
            raise OfaError(f"lr_schedule={self.lr_schedule!r}: expected one of {list(LR_SCHEDULES)}")
        if not 0 < self.lr_per_256 < float("inf"):
            raise OfaError(f"lr_per_256={self.lr_per_256!r}: expected a positive number")
        check_optimizer_settings(self.weight_decay, self.weight_decay_form, self.grad_clip_mode, self.grad_clip)
        check_choice("optimizer", self.optimizer_name, OPTIMIZERS)
        check_unused_parameters(self.unused_parameters)
        check_choice("sort_momentum", self.sort_momentum, SORT_MOMENTUM)
        if self.optimizer_name == "rmsprop" and self.weight_decay_form != "coupled":
            raise OfaError(f"weight_decay_form={self.weight_decay_form}: optimizer=rmsprop decays in the coupled form "
                           "(PyTorch's RMSprop, as DεpS's code runs BigNAS)")
        for name in ("dropout", "drop_connect"):
            if not 0 <= getattr(self, name) < 1:
                raise OfaError(f"{name}={getattr(self, name)!r}: expected a rate in [0, 1)")
        if self.lr_warmup_start is None and not self.device_batch:
            raise OfaError("lr_warmup_start=None (one GPU's share) needs device_batch")

    def peak_learning_rate(self, batch_size: int) -> float:
        """The method's peak rate at a global batch of `batch_size` images (linear scaling)."""
        return self.lr_per_256 * batch_size / 256

    def phase_warmup_steps(self, total_steps: int) -> list[int]:
        """Each phase's LR warm-up in steps (`Phase.lr_warmup` of its length)."""
        return [int(phase.lr_warmup * (end - start))
                for phase, (start, end) in zip(self.phases, self.phase_bounds(total_steps))]

    def learning_rate_schedule(self, total_steps: int, batch_size: int, learning_rate: float | None = None,
                               warmup_steps: int | None = None) -> PhaseCosineSchedule:
        """The method's cosine (over the run or restarted per phase), each phase's `lr_scale`
        and warm-up applied, peaking at `learning_rate` or the method's rate for the batch
        size; `warmup_steps` (a run-wide warm-up from 0) replaces the phases' warm-ups."""
        peak = learning_rate if learning_rate is not None else self.peak_learning_rate(batch_size)
        if warmup_steps is None:
            warmup, phase_warmups = 0, self.phase_warmup_steps(total_steps)
        else:
            warmup, phase_warmups = int(warmup_steps), None
        start = (min(1.0, self.device_batch / batch_size) if self.lr_warmup_start is None
                 else self.lr_warmup_start)
        return PhaseCosineSchedule(peak, [start for start, _ in self.phase_bounds(total_steps)], total_steps,
                                   [phase.lr_scale for phase in self.phases], self.lr_schedule, warmup, phase_warmups,
                                   warmup_start=start, warmup_offset=self.lr_warmup_offset,
                                   min_rate=self.min_learning_rate)

    def optimizer(self, learning_rate, total_steps: int, momentum: float = 0.9) -> ReferenceSGD:
        """SGD with Nesterov momentum (when `momentum` > 0), or RMSProp (`optimizer_name`), with
        the method's weight decay form and gradient clip, restarted at each phase start if the
        method runs its phases as separate jobs (`ofa_tf.training.optimizer`)."""
        restarts = [start for start, _ in self.phase_bounds(total_steps)] if self.restart_optimizer else []
        if self.optimizer_name == "rmsprop":
            return ReferenceRMSProp(learning_rate, momentum=momentum, weight_decay=self.weight_decay,
                                    clip_mode=self.grad_clip_mode, clip=self.grad_clip, restart_steps=restarts,
                                    unused_parameters=self.unused_parameters)
        return ReferenceSGD(learning_rate, momentum=momentum, nesterov=momentum > 0, weight_decay=self.weight_decay,
                            weight_decay_form=self.weight_decay_form, clip_mode=self.grad_clip_mode,
                            clip=self.grad_clip, restart_steps=restarts, unused_parameters=self.unused_parameters)

    @property
    def clipnorm(self) -> float | None:
        """The global-norm clip, if the method clips by norm."""
        return self.grad_clip if self.grad_clip_mode == "norm" else None

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
        config = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "phases"}
        config["phases"] = [p.to_config() for p in self.phases]
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Method":
        """A saved method; a run saved before the optimizer settings were part of it clipped
        by global norm (`clipnorm`) and decayed weights in decoupled form; one saved before
        `unused_parameters` / `sort_momentum` froze unused parameters and permuted momentum."""
        config = dict(config)
        config.setdefault("unused_parameters", "freeze")
        config.setdefault("sort_momentum", "permute")
        phases = tuple(Phase.from_config(p) for p in config.pop("phases"))
        if "clipnorm" in config:
            clipnorm = config.pop("clipnorm")
            config.update(grad_clip=clipnorm, grad_clip_mode="norm" if clipnorm else "none",
                          weight_decay_form="decoupled")
        return cls(phases=phases, **config)


def _check_fraction(name: str, value: float) -> float:
    if not 0 <= value < 1:
        raise OfaError(f"{name}={value!r}: expected a fraction in [0, 1)")
    return float(value)


def build_method(name: str, space: SearchSpace | None = None, *, steps_per_epoch: int | None = 1,
                 epochs: float | None = None, warmup_fraction: float | None = None, epsilon_start: float = 1e-4,
                 epsilon_ramp_epochs: float | None = None, epsilon_mode: str = "linear",
                 num_subnets: int | None = None, grad_clip: float | None = None, grad_clip_mode: str | None = None,
                 weight_decay: float | None = None, weight_decay_form: str | None = None,
                 lr_schedule: str | None = None, dropout: float | None = None, drop_connect: float | None = None,
                 size_sampling: str | None = None, optimizer: str | None = None,
                 full_kernel: int | None = None, unused_parameters: str | None = None,
                 sort_momentum: str | None = None) -> Method:
    """The preset `name` with its knobs; None means the preset's default (its reference's).

    Presets: full, deps, bignas, fofa, ofa, compofa, tofa. `grad_clip` alone on a preset
    that does not clip clips by global norm. `steps_per_epoch=None` (not known yet): epoch
    counts become shares of the run (`epochs` then needed for the ε ramp). `optimizer="rmsprop"`
    brings BigNAS's ImageNet rate and schedule with it (0.016 per 256 images, `exponential`)
    unless `lr_schedule` is given. `full_kernel=0` trains the space's own max net as the full network.
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
    knobs = dict(steps_per_epoch=None if steps_per_epoch is None else max(1, int(steps_per_epoch)), epochs=epochs, warmup_fraction=warmup_fraction,
                 epsilon_start=epsilon_start, epsilon_ramp_epochs=epsilon_ramp_epochs,
                 epsilon_mode=epsilon_mode, num_subnets=num_subnets)
    method = PRESETS[name](space, **knobs)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_choice("size_sampling", size_sampling, SIZE_SAMPLING)
    overrides = {k: v for k, v in dict(grad_clip=grad_clip, grad_clip_mode=grad_clip_mode, weight_decay=weight_decay,
                                       weight_decay_form=weight_decay_form, lr_schedule=lr_schedule, dropout=dropout,
                                       drop_connect=drop_connect, optimizer_name=optimizer,
                                       unused_parameters=unused_parameters, sort_momentum=sort_momentum).items()
                 if v is not None}
    if size_sampling is not None:
        overrides["resolution_per_network"] = size_sampling == PER_NETWORK
    if full_kernel is not None:
        overrides["full_kernel"] = full_kernel or None
    if optimizer == "rmsprop" and method.optimizer_name != "rmsprop":
        overrides["lr_per_256"] = BIGNAS_RMSPROP_LR_PER_256
        overrides.setdefault("lr_schedule", "exponential")
    if grad_clip is not None and grad_clip_mode is None and method.grad_clip_mode == "none":
        overrides["grad_clip_mode"] = "norm"
    if grad_clip_mode in ("norm", "value") and grad_clip is None and method.grad_clip is None:
        raise OfaError(f"grad_clip_mode={grad_clip_mode}: needs grad_clip (method={name} sets no threshold)")
    if overrides.get("grad_clip_mode") == "none":
        overrides["grad_clip"] = None
    return dataclasses.replace(method, **overrides) if overrides else method


def _full(space, **_) -> Method:
    """The static baseline: the full model alone, with OFA's teacher recipe (2.6 per 2048
    images, coupled L2 3e-5, no clipping, no warm-up)."""
    return Method("full", (Phase("full", 1.0, FullOnlySampler()),))


def _deps(space, *, steps_per_epoch, epochs, warmup_fraction, epsilon_start, epsilon_ramp_epochs, epsilon_mode,
          num_subnets, **_) -> Method:
    """DεpS (arXiv:2407.06167): FM-Warmup for P_fm of the run, then sandwich shrinking (max + min
    + random, as the public code) with in-place KD from the warmed-up full model and ε
    ramping from 1e-4 to 1; channels sorted at the switch (grouped, as its code). The paper ramps over 5 of 270
    epochs, so the default ramp is that share of the run (`epochs`; 5 epochs when unknown).
    Optimizer as its README's command: 0.1625 per 128 images (0.325 per 256), coupled L2
    3e-5 (not BN / bias), one cosine, no LR warm-up, no clipping; dropout on the max net only."""
    warmup = 0.5 if warmup_fraction is None else warmup_fraction
    if epsilon_ramp_epochs is None:
        epsilon_ramp_epochs = 5.0 if epochs is None else 5.0 / 270.0 * epochs
    if steps_per_epoch is not None:
        epsilon = EpsilonSchedule(epsilon_start, int(round(epsilon_ramp_epochs * steps_per_epoch)), epsilon_mode)
    elif epochs is not None:
        epsilon = EpsilonSchedule(epsilon_start, 0, epsilon_mode, ramp_fraction=epsilon_ramp_epochs / epochs)
    else:
        raise OfaError("method=deps: the ε ramp needs the run's steps per epoch or its epochs")
    subnets = 3 if num_subnets is None else num_subnets
    return Method("deps", (
        Phase("fm_warmup", warmup, FullOnlySampler()),
        Phase("shrink", 1.0 - warmup, SandwichSampler(subnets) if subnets else FullOnlySampler(), teacher="inplace",
              epsilon=epsilon, sort_channels=True,
              sort_mode="grouped"),
    ), subnet_dropout=False, device_batch=128, min_learning_rate=DEPS_MIN_LR)


def _bignas(space, *, num_subnets, **_) -> Method:
    """BigNAS as AttentiveNAS's public code trains it: sandwich rule (max + min + 2 random) with
    in-place KD from the start; 0.1 per 256 images, coupled L2 1e-5 (not BN / bias), each
    gradient value clipped at 1 after the all-reduce, a linear warm-up over 5 of 360 epochs;
    dropout 0.2 and drop-connect 0.2 (last two stages) on the max net only; the last BN gamma
    of each residual block zero-initialised; each network at its own resolution (the max net
    at the largest, the min net at the smallest, random ones at a random one).
    `optimizer="rmsprop"` gives BigNAS's own ImageNet optimizer (`build_method`)."""
    subnets = 3 if num_subnets is None else num_subnets
    return Method("bignas", (Phase("sandwich", 1.0, SandwichSampler(subnets), teacher="inplace",
                                   lr_warmup=5 / 360),),
                  grad_clip=1.0, grad_clip_mode="value", lr_per_256=0.1, weight_decay=1e-5, subnet_dropout=False,
                  dropout=BIGNAS_DROPOUT, drop_connect=BIGNAS_DROP_CONNECT, zero_residual_gamma=True,
                  resolution_per_network=True, device_batch=32, lr_warmup_start=ATTENTIVENAS_WARMUP_START)


def _tofa(space, *, num_subnets, **_) -> Method:
    """TOFA's supervised part: sandwich rule with in-place KD (from pretrained weights); paper
    §4.2: 0.01 at 32 images (0.08 per 256), L2 1e-5 except biases, cosine."""
    subnets = 3 if num_subnets is None else num_subnets
    return Method("tofa", (Phase("sandwich", 1.0, SandwichSampler(subnets), teacher="inplace"),),
                  lr_per_256=0.01 * 256 / 32, weight_decay=1e-5)


def _fofa(space, *, warmup_fraction, num_subnets, **_) -> Method:
    """fOFA ("Fast and Efficient Once-For-All Networks for Diverse Hardware Deployment"): a short
    full-model warmup (5 of 185 epochs), then upper-attentive sampling (full + n-1 random, n = 3) with in-place KD.
    Optimizer (paper §4): 0.325 per 256 images, OFA / CompOFA's coupled L2 3e-5, gradient clip
    1.0 "following BigNAS", in the form BigNAS's public code clips (each value; the paper does
    not state the form, and a global-norm clip of 1.0 kept a short run near chance).

    fOFA is defined on CompOFA's coupled space (paper §3.1), and its case for dropping the
    min net rests on that space's 243 networks (§3.4); nothing in the method needs the
    coupling, and the paper states its goal for "the design space of OFA and CompOFA" (§2),
    so another space is allowed with one warning."""
    if space is not None and not any(stage.expand_for_depth for stage in space.stages):
        logging.warning(f"method=fofa: fOFA is defined on CompOFA's coupled space (--space=compofa); training it on "
                   f"{space.name!r}, whose depth and expand are independent")
    warmup = 5 / 185 if warmup_fraction is None else warmup_fraction
    subnets = 2 if num_subnets is None else num_subnets
    return Method("fofa", (
        Phase("warmup", warmup, FullOnlySampler()),
        Phase("upper_attentive", 1.0 - warmup, UpperAttentiveSampler(subnets), teacher="inplace"),
    ), grad_clip=1.0, grad_clip_mode="value", device_batch=256)


def _ofa(space, *, num_subnets, warmup_fraction, **_) -> Method:
    """OFA progressive shrinking: full net (the teacher), then elastic kernel (120 ep, 1
    subnet / step), depth (25 + 120 ep, 2 / step), expand (25 + 120 ep, 4 / step), with
    vanilla KD from the frozen full net plus each subnet's own label loss.

    Learning rates: the teacher's 2.6 per 2048 images (0.325 per 256), the shrinking phases
    the reference scripts' rates relative to it (OFA_KERNEL_LR, OFA_STAGE1_LR,
    OFA_STAGE2_LR); a cosine per phase with a fresh optimizer, each kernel / stage 2 phase
    warmed up over 5 of its 125 epochs; coupled L2 3e-5, not on BN / bias; no clipping.
    Channels sorted before expand_1 (one ranking: OFA's stage 0) and before expand_2 (OFA's
    grouped sort, SE hidden channels too).
    """
    kernels = _all_choices(space, "kernels")
    depths = _all_choices(space, "depths")
    expands = _all_choices(space, "expands")

    def n(default: int) -> int:
        return default if num_subnets is None else max(1, num_subnets)

    teacher_share = 180 if warmup_fraction is None else None
    shares = [("kernel", 125, RestrictedSampler(n(1), kernels=kernels), False, OFA_KERNEL_LR, OFA_PHASE_WARMUP),
              ("depth_1", 25, RestrictedSampler(n(2), kernels=kernels, depths=depths[-2:]), False, OFA_STAGE1_LR, 0.0),
              ("depth_2", 125, RestrictedSampler(n(2), kernels=kernels, depths=depths), False, OFA_STAGE2_LR,
               OFA_PHASE_WARMUP),
              ("expand_1", 25, RestrictedSampler(n(4), kernels=kernels, depths=depths, expands=expands[-2:]), True,
               OFA_STAGE1_LR, 0.0),
              ("expand_2", 125, RestrictedSampler(n(4), kernels=kernels, depths=depths, expands=expands), "grouped",
               OFA_STAGE2_LR, OFA_PHASE_WARMUP)]
    shrink_total = sum(share for _, share, *_ in shares)
    warmup = teacher_share / (teacher_share + shrink_total) if teacher_share else warmup_fraction
    phases = [Phase("full", warmup, FullOnlySampler())]
    for name, share, sampler, sort, lr_scale, lr_warmup in shares:
        phases.append(Phase(name, (1 - warmup) * share / shrink_total, sampler, train_full=False, teacher="frozen",
                            subnet_label_weight=1.0, sort_channels=bool(sort),
                            sort_mode=sort if isinstance(sort, str) else "global", lr_scale=lr_scale,
                            lr_warmup=lr_warmup))
    return Method("ofa", tuple(phases), lr_schedule="phase", restart_optimizer=True, device_batch=64,
                  lr_warmup_start=None, lr_warmup_offset=1)


def _compofa(space, *, num_subnets, warmup_fraction, **_) -> Method:
    """CompOFA: teacher (180 ep), then compound phases (25 + 125 ep, 4 subnets / step), both
    over all networks of the coupled depth/expand space (243 in CompOFA's), vanilla KD from
    the frozen teacher. The teacher is OFA's kernel-7 / depth-4 / expand-6 network
    (`COMPOFA_TEACHER_KERNEL`): the `full` phase trains it, the compound phases start from its
    weights (the subnets' 3x3 / 5x5 kernels are the centres of its 7x7 ones) and distil from
    its snapshot. Its train_ofa_net.py:
    teacher 2.6, compound stage 1 0.08, stage 2 0.24 per 2048 images (OFA's stage ratios), a
    cosine per phase with a fresh optimizer, stage 2 warmed up over 5 of its 125 epochs,
    coupled L2 3e-5 (not BN / bias), no clipping."""
    if space is not None and not any(stage.expand_for_depth for stage in space.stages):
        raise OfaError(f"method=compofa needs a space with coupled depth and expand "
                       f"(space='compofa'), not {space.name!r}")
    depths = _all_choices(space, "depths")
    subnets = 4 if num_subnets is None else max(1, num_subnets)
    warmup = 180 / 330 if warmup_fraction is None else warmup_fraction
    return Method("compofa", (
        Phase("full", warmup, FullOnlySampler()),
        Phase("compound_1", (1 - warmup) * 25 / 150, RestrictedSampler(subnets, kernels=_all_choices(space, "kernels"),
                                                                        depths=depths),
              train_full=False, teacher="frozen", subnet_label_weight=1.0, lr_scale=OFA_STAGE1_LR),
        Phase("compound_2", (1 - warmup) * 125 / 150, RestrictedSampler(subnets, kernels=_all_choices(space, "kernels"),
                                                                         depths=depths),
              train_full=False, teacher="frozen", subnet_label_weight=1.0, lr_scale=OFA_STAGE2_LR,
              lr_warmup=OFA_PHASE_WARMUP),
    ), lr_schedule="phase", restart_optimizer=True, full_kernel=COMPOFA_TEACHER_KERNEL, device_batch=256,
       lr_warmup_start=None, lr_warmup_offset=1)


def _all_choices(space: SearchSpace | None, field: str) -> list:
    if space is None:
        return {"kernels": [3, 5, 7], "depths": [2, 3, 4], "expands": [3.0, 4.0, 6.0]}[field]
    return sorted({v for stage in space.stages for v in getattr(stage, field)})


PRESETS = {"full": _full, "deps": _deps, "bignas": _bignas, "fofa": _fofa, "ofa": _ofa, "compofa": _compofa,
           "tofa": _tofa}
