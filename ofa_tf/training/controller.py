"""`PhaseController`: the Keras callback that drives a method's phases during `fit`.

Before every batch it finds the phase of the global step, applies the phase's settings
when a new phase starts (teacher, weights, channel sort, the teacher snapshot at the
first frozen-teacher phase), draws the step's subnets from the phase's sampler seeded by
the step (so every replica, worker and resumed run draws the same ones), computes ε, and
writes all of it into the model's state variables, which the traced `train_step` reads.
At the start of training it gives the model the method's dropout placement.
"""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.training.channel_sorting import sort_mid_channels
from ofa_tf.training.methods import TEACHER_CODES, Method, Phase
from ofa_tf.training.model import OnceForAllModel
from ofa_tf.training.record import SampledRecord
from ofa_tf.training.samplers import step_rng


class PhaseController(keras.callbacks.Callback):
    """Runs `method` over `total_steps` steps of `fit` on an `OnceForAllModel`.

    Args:
      method: the phases to run.
      total_steps: steps of the whole run (epochs x steps per epoch); phase lengths are
        fractions of it.
      seed: sampler seed; subnets of step t come from `step_rng(seed, t)`.
      lr_at: scheduled learning rate at a global step (for ε's "lr_ratio" mode).
      record: where to note every trained subnet and its step (TOFA's zero-cost selection);
        a new empty record by default.
    """

    def __init__(self, method: Method, total_steps: int, seed: int = 0,
                 lr_at: Callable[[int], float] | None = None, record: SampledRecord | None = None):
        super().__init__()
        if total_steps <= 0:
            raise OfaError(f"total steps={total_steps}: expected a positive number of training steps")
        self.method = method
        self.total_steps = int(total_steps)
        self.seed = int(seed)
        self.lr_at = lr_at
        self.record = record if record is not None else SampledRecord()
        self.phase_index: int | None = None
        self.current_kinds: list[str] = []
        self.current_epsilon = 1.0
        self.history: list[dict] = []  # one entry per phase start: (step, phase name)

    @property
    def phase(self) -> Phase | None:
        return None if self.phase_index is None else self.method.phases[self.phase_index]

    def _check_model(self) -> OnceForAllModel:
        model = self.model
        if not isinstance(model, OnceForAllModel):
            raise OfaError("PhaseController drives an OnceForAllModel")
        needed = self.method.max_subnets
        if needed > model.max_subnets:
            raise OfaError(f"method {self.method.name!r} samples {needed} subnets per step; "
                           f"the model has max_subnets={model.max_subnets}")
        if any(p.teacher == "frozen" for p in self.method.phases) and model.teacher is None:
            raise OfaError(f"method {self.method.name!r} distils from a frozen teacher; "
                           "build the model with frozen_teacher=True")
        return model

    def on_train_begin(self, logs=None):
        self.apply_method_settings(self._check_model())

    def apply_method_settings(self, model: OnceForAllModel) -> None:
        """Gives `model` the method's run-wide train-step settings (`subnet_dropout`). They
        are read when the step is traced, so a change makes a new train function."""
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
            slots[j] = model.layout.encode(arch)
            active[j] = 1.0
        self.current_kinds = [kind for kind, _ in archs]
        trained = [arch for _, arch in archs]
        if phase.train_full:
            trained.append(model.space.max_arch())
        self.record.update(step, trained)
        model.step_archs.assign(slots)
        model.step_active.assign(active)
        self.current_epsilon = (phase.epsilon.value(step - start, self.lr_at, start) if phase.epsilon else 1.0)
        model.epsilon.assign(self.current_epsilon)

    def _enter_phase(self, model: OnceForAllModel, index: int, phase: Phase, step: int,
                     entering: bool = True) -> None:
        if entering and phase.sort_channels and step > 0:
            sort_mid_channels(model, model.optimizer, mode=phase.sort_mode)
        previous = self.method.phases[index - 1] if index > 0 else None
        if entering and phase.teacher == "frozen" and (previous is None or previous.teacher != "frozen"):
            # OFA's teacher is one snapshot, taken when the teacher phase ends: later
            # frozen-teacher phases keep distilling from it (a resumed run: the checkpoint's).
            model.copy_full_model_to_teacher()
        model.train_full.assign(1.0 if phase.train_full else 0.0)
        model.teacher_code.assign(TEACHER_CODES[phase.teacher])
        model.kd_weight.assign(phase.kd_weight)
        model.subnet_label_weight.assign(phase.subnet_label_weight)
        self.phase_index = index
        self.history.append({"step": step, "phase": phase.name})
