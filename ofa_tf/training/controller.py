"""`PhaseController`: the Keras callback that drives a method's phases during `fit`.

Before every batch it finds the phase of the global step, applies the phase's settings
when a new phase starts (teacher, weights, channel sort, the teacher snapshot at the
first frozen-teacher phase), draws the step's subnets from the phase's sampler seeded by
the step (so every replica, worker and resumed run draws the same ones), computes ε, and
writes all of it into the model's state variables, which the traced `train_step` reads.
At the start of training it gives the model the method's dropout placement.

It also speaks for the method in the logs every later callback sees (TensorBoard, CSVLogger,
EarlyStopping, metrics.csv): after each batch and each epoch it adds `epsilon` (ε of the last
step, only in phases that have an ε schedule) and `phase` (the index of the current phase in
`method.phases`), and it leaves out `loss_min` / `loss_random` while no such subnet has
trained in the epoch (a DεpS FM-Warmup epoch trains none: a 0.0 there would be no loss at all).
`OnceForAllModel.fit` runs it before the other callbacks (`LOGS_FIRST`).

`OnceForAllModel` attaches one itself when `compile(method=...)` names the method, and this
module does not import the model (the model imports it): `_check_model` checks what the
controller drives by the state it needs.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
from absl import logging

from ofa_tf.errors import OfaError
from ofa_tf.training.channel_sorting import sort_mid_channels
from ofa_tf.training.epsilon import EpsilonSchedule
from ofa_tf.training.methods import PRESETS, TEACHER_CODES, Method, Phase, build_method
from ofa_tf.training.record import SampledRecord
from ofa_tf.training.samplers import step_rng

# per-kind subnet losses of the train step, left out of the logs while none has trained
SUBNET_LOSSES = ("loss_min", "loss_random")
# the model state a controller writes (`OnceForAllModel.build` makes it)
_STATE = ("step_archs", "step_active", "epsilon", "train_full", "kd_weight", "subnet_label_weight", "teacher_code")


class PhaseController(keras.callbacks.Callback):
    """Runs `method` over `total_steps` steps of `fit` on an `OnceForAllModel`.

    Args:
      method: the phases to run, or a preset's name (`deps`, `bignas`, ...: built with the
        model's space and fit's epochs and steps when training begins, as `build_method`
        builds it with its defaults).
      total_steps: steps of the whole run (epochs x steps per epoch); phase lengths are
        fractions of it. None: fit's `epochs` x steps per epoch, when training begins.
      seed: sampler seed; subnets of step t come from `step_rng(seed, t)`.
      lr_at: scheduled learning rate at a global step (for ε's "lr_ratio" mode).
      record: where to note every trained subnet and its step (TOFA's zero-cost selection);
        a new empty record by default.
    """

    LOGS_FIRST = True  # `OnceForAllModel.fit` runs it before callbacks that read the logs

    def __init__(self, method: Method | str, total_steps: int | None = None, seed: int = 0,
                 lr_at: Callable[[int], float] | None = None, record: SampledRecord | None = None):
        super().__init__()
        if total_steps is not None and total_steps <= 0:
            raise OfaError(f"total steps={total_steps}: expected a positive number of training steps")
        if isinstance(method, str) and method not in PRESETS:
            raise OfaError(f"method={method!r}: expected one of {sorted(PRESETS)} or a Method")
        if not isinstance(method, (str, Method)):
            raise OfaError(f"method={method!r}: expected one of {sorted(PRESETS)} or a Method")
        self.method: Method | str = method
        self.total_steps: int | None = None if total_steps is None else int(total_steps)
        self.seed = int(seed)
        self.lr_at = lr_at
        self.record = record if record is not None else SampledRecord()
        self.phase_index: int | None = None
        self.current_kinds: list[str] = []
        self.current_epsilon = 1.0
        self.phase_epsilon: EpsilonSchedule | None = None  # the phase's ε schedule, its ramp in this run's steps
        self.history: list[dict] = []  # one entry per phase start: (step, phase name)

    @property
    def phase(self) -> Phase | None:
        return None if self.phase_index is None else self.method.phases[self.phase_index]

    @property
    def epsilon_in_use(self) -> float | None:
        """ε of the last prepared step, or None in a phase without an ε schedule (where ε has
        no meaning: FM-Warmup trains no subnet, and other methods weigh every subnet 1)."""
        phase = self.phase
        return self.current_epsilon if phase is not None and phase.epsilon is not None else None

    def _resolve(self) -> None:
        """Builds a method given by name and the run's length, from fit's `params` (epochs,
        steps per epoch) and the model's space, once, when training begins."""
        steps, epochs = (self.params or {}).get("steps"), (self.params or {}).get("epochs")
        if isinstance(self.method, str) or self.total_steps is None:
            if not steps or not epochs:
                raise OfaError("fit: the number of steps per epoch is unknown (a dataset of unknown size); pass "
                               "steps_per_epoch to fit, or total_steps to PhaseController: the method's phases are "
                               "shares of the whole run")
        if isinstance(self.method, str):
            self.method = build_method(self.method, self.model.space, steps_per_epoch=steps, epochs=epochs)
        if self.total_steps is None:
            self.total_steps = int(steps) * int(epochs)

    def _check_model(self) -> keras.Model:
        model = self.model
        if any(not hasattr(model, name) for name in _STATE) or not hasattr(model, "max_subnets"):
            raise OfaError("PhaseController drives an OnceForAllModel (a built one: fit builds it)")
        needed = self.method.max_subnets
        if needed > model.max_subnets:
            raise OfaError(f"method {self.method.name!r} samples {needed} subnets per step; "
                           f"the model has max_subnets={model.max_subnets}")
        if any(p.teacher == "frozen" for p in self.method.phases) and model.teacher is None:
            raise OfaError(f"method {self.method.name!r} distils from a frozen teacher; "
                           "build the model with frozen_teacher=True")
        return model

    def on_train_begin(self, logs=None):
        self._resolve()
        self.apply_method_settings(self._check_model())

    def on_train_batch_end(self, batch, logs=None):
        self.add_to_logs(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.add_to_logs(logs)

    def add_to_logs(self, logs: dict[str, Any] | None) -> None:
        """Adds ε and the phase index to `logs` and removes the losses of subnet kinds that
        have not trained in the epoch so far (see the module docstring)."""
        if logs is None or self.phase_index is None:
            return
        epsilon = self.epsilon_in_use
        if epsilon is not None:
            logs["epsilon"] = float(epsilon)
        else:
            logs.pop("epsilon", None)
        logs["phase"] = float(self.phase_index)
        trackers = getattr(self.model, "loss_trackers", {})
        for name in SUBNET_LOSSES:
            tracker = trackers.get(name)
            if tracker is not None and float(tracker.count.numpy()) == 0:
                logs.pop(name, None)

    def apply_method_settings(self, model: keras.Model) -> None:
        """Gives `model` the method's run-wide train-step settings (`subnet_dropout`). They
        are read when the step is traced, so a change makes a new train function. A method
        that gives each network its own resolution (`Method.resolution_per_network`) on a model
        built without it trains every network at the batch's size, with one warning."""
        if (getattr(self.method, "resolution_per_network", False) and len(model.space.resolutions) > 1
                and getattr(model, "step_resolutions", None) is None):
            logging.warning(f"method {self.method.name!r} runs each network at its own resolution; this model was "
                            "built without resolution_per_network=True, so every network of a step runs at the "
                            "batch's size")
        if model.subnet_dropout != self.method.subnet_dropout:
            model.subnet_dropout = self.method.subnet_dropout
            if getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)

    def step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_batch_begin(self, batch, logs=None):
        self.prepare_step(self.step())

    def prepare_step(self, step: int) -> None:
        """Writes the state of global step `step` into the model (what a batch will train)."""
        model = self._check_model()
        index, phase, start = self.method.phase_at(step, self.total_steps)
        if index != self.phase_index:
            # A run resumed in the middle of a phase restores the phase's settings but not its
            # one-off entry actions (channel sort, teacher snapshot): the checkpoint has them.
            self._enter_phase(model, index, phase, step, entering=step == start)
        archs = phase.sampler.sample(model.space, step_rng(self.seed, step))
        slots = np.zeros(model.step_archs.shape, np.int32)
        active = np.zeros(model.step_active.shape, np.float32)
        for j, (_, arch) in enumerate(archs):
            slots[j] = model.layout.to_vector(arch)
            active[j] = 1.0
        self.current_kinds = [kind for kind, _ in archs]
        trained = [arch for _, arch in archs]
        if phase.train_full:
            trained.append(model.space.max_arch())
        self.record.update(step, trained)
        model.step_archs.assign(slots)
        model.step_active.assign(active)
        sizes = getattr(model, "step_resolutions", None)
        if sizes is not None:  # per-network resolution: each subnet at its arch's size
            values = np.full(sizes.shape, max(model.space.resolutions), np.int32)
            values[:len(archs)] = [arch.resolution for _, arch in archs]
            sizes.assign(values)
        self.current_epsilon = (self.phase_epsilon.value(step - start, self.lr_at, start)
                                if self.phase_epsilon else 1.0)
        model.epsilon.assign(self.current_epsilon)

    def _enter_phase(self, model: keras.Model, index: int, phase: Phase, step: int,
                     entering: bool = True) -> None:
        if entering and phase.sort_channels and step > 0:
            # the optimizer's momentum stays in the old channel order, as DεpS's sort leaves it
            # (`Method.sort_momentum`), or follows the channels
            permuted = model.optimizer if getattr(self.method, "sort_momentum", "stay") == "permute" else None
            sort_mid_channels(model, permuted, mode=phase.sort_mode)
        previous = self.method.phases[index - 1] if index > 0 else None
        if entering and phase.teacher == "frozen" and (previous is None or previous.teacher != "frozen"):
            # OFA's teacher is one snapshot, taken when the teacher phase ends: later
            # frozen-teacher phases keep distilling from it (a resumed run: the checkpoint's).
            model.copy_full_model_to_teacher()
        model.train_full.assign(1.0 if phase.train_full else 0.0)
        model.teacher_code.assign(TEACHER_CODES[phase.teacher])
        model.kd_weight.assign(phase.kd_weight)
        model.subnet_label_weight.assign(phase.subnet_label_weight)
        self.phase_epsilon = phase.epsilon.for_run(self.total_steps) if phase.epsilon else None
        self.phase_index = index
        self.history.append({"step": step, "phase": phase.name})
