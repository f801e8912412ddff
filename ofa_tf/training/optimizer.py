"""The training optimizer: SGD with Nesterov momentum in the reference implementations' form.

`ReferenceSGD` is Keras SGD with two settings the references differ on:

weight_decay_form
  "coupled"    L2 added to the gradient before momentum, as PyTorch's
               `torch.optim.SGD(weight_decay=...)` does, with PyTorch's momentum buffer
               (a sum of gradients; the step's learning rate multiplies it when applied):
                   g = g + wd * w;  buf = momentum * buf + g;
                   w -= lr * (g + momentum * buf)   (nesterov; w -= lr * buf without)
               DεpS, OFA, CompOFA, AttentiveNAS / BigNAS and TOFA train this way.
  "decoupled"  Keras's own SGD update with its decoupled decay `w -= lr * wd * w` applied
               before the step (about 1 / (1 - momentum) times weaker than coupled L2).
Neither decays BN gamma / beta or biases (OFA's `no_decay_keys = "bn#bias"`).

clip_mode
  "value"  each gradient element clipped to [-clip, clip] (AttentiveNAS's
           `clip_grad_value_`), "norm": the global norm over all gradients clipped to clip
           (`clip_grad_norm_`), "none".
Clipping acts on the step's gradient after the cross-replica reduction, as the references
clip after DDP's / Horovod's all-reduce: the mean gradient, not each replica's share. The
coupled decay term is added after clipping, as `optimizer.step()` adds it after the clip.

restart_steps: global steps at which the momentum buffers are zeroed before the update (a
fresh optimizer at each phase start, as OFA and CompOFA run each phase as its own job).

unused_parameters: what happens to a parameter no network of the step used (a block every
sampled depth left out, a kernel transform no network ran):
  "update"  it takes the step with a zero gradient: weight decay and momentum still move it.
            The references' runtime does this: Horovod's DistributedOptimizer (v0.19, OFA,
            CompOFA and DεpS) gives every parameter a zero gradient when it is built and
            all-reduces the ones no backward reached (`horovod/torch/__init__.py`
            `_register_hooks`, `synchronize`), and PyTorch 1.x's `zero_grad()` zeroes a
            gradient rather than clearing it; under DDP (AttentiveNAS) a parameter keeps its
            zeroed gradient from the first step that used it, and the max net uses every one.
  "freeze"  it is left alone entirely (no decay, no momentum, no update), as PyTorch's SGD
            skips a parameter whose gradient is None. The train step sets `skip_masks`
            ({variable index: scalar bool (or 0 / 1) tensor}, `Supernet.unused_variable_masks`)
            before each `apply`; the updates of the variables sharing one mask tensor (a
            block's) sit in one `tf.cond`, so a skipped block costs no optimizer work. With the
            coupled form only; "decoupled" is Keras's own update of every weight.
"""

from __future__ import annotations

import re
from typing import Sequence

import keras
import tensorflow as tf

from ofa_tf.choices import UNUSED_PARAMETERS
from ofa_tf.errors import OfaError

WEIGHT_DECAY_FORMS = ("coupled", "decoupled")
CLIP_MODES = ("none", "norm", "value")
NO_DECAY = ("gamma", "beta", "bias")  # BN scale / shift and biases: no weight decay


def check_optimizer_settings(weight_decay: float, weight_decay_form: str, clip_mode: str,
                             clip: float | None) -> None:
    """Raises OfaError naming the first bad setting."""
    if weight_decay_form not in WEIGHT_DECAY_FORMS:
        raise OfaError(f"weight_decay_form={weight_decay_form!r}: expected one of {list(WEIGHT_DECAY_FORMS)}")
    if clip_mode not in CLIP_MODES:
        raise OfaError(f"grad_clip_mode={clip_mode!r}: expected one of {list(CLIP_MODES)}")
    if not 0 <= weight_decay < float("inf"):
        raise OfaError(f"weight_decay={weight_decay}: expected >= 0")
    if clip_mode != "none" and not (clip is not None and 0 < clip < float("inf")):
        raise OfaError(f"grad_clip={clip}: expected a positive number with grad_clip_mode={clip_mode}")


def check_unused_parameters(mode: str) -> None:
    """`mode` is one of `UNUSED_PARAMETERS` (module docstring)."""
    if mode not in UNUSED_PARAMETERS:
        raise OfaError(f"unused_parameters={mode!r}: expected one of {list(UNUSED_PARAMETERS)}")


def variable_handle(variable) -> tf.Tensor:
    """The resource handle of a Keras or TensorFlow variable (in a distribution strategy's
    `update`, the handle of this replica's copy), for TensorFlow's fused update ops."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def decays(name: str) -> bool:
    """Whether a variable of this name takes weight decay (not BN gamma / beta, not biases)."""
    return re.search("|".join(NO_DECAY), name) is None


@keras.saving.register_keras_serializable(package="ofa_tf")
class ReferenceSGD(keras.optimizers.SGD):
    """SGD (Nesterov) with the reference code's weight decay and clipping (module docstring)."""

    def __init__(self, learning_rate=0.01, momentum: float = 0.9, nesterov: bool = True, *,
                 weight_decay: float = 0.0, weight_decay_form: str = "coupled", clip_mode: str = "none",
                 clip: float | None = None, restart_steps: Sequence[int] = (), unused_parameters: str = "update",
                 **kwargs):
        check_optimizer_settings(weight_decay, weight_decay_form, clip_mode, clip)
        check_unused_parameters(unused_parameters)
        decoupled = weight_decay_form == "decoupled" and weight_decay > 0
        super().__init__(learning_rate, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay if decoupled else None, **kwargs)
        if decoupled:
            self.exclude_from_weight_decay(var_names=list(NO_DECAY))
        self.reference_weight_decay = float(weight_decay)
        self.weight_decay_form = weight_decay_form
        self.clip_mode = clip_mode
        self.clip = None if clip is None else float(clip)
        self.restart_steps = sorted({int(s) for s in restart_steps if int(s) > 0})
        self._decay_mask: list[bool] = []
        self.unused_parameters = unused_parameters
        self.skip_masks: dict = {}  # read with unused_parameters="freeze" only

    def build(self, variables):
        super().build(variables)
        self._decay_mask = [decays(v.name) for v in variables]

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # Keras's TF backend: all-reduce, then update per variable; the clip goes in between.
        trainable_variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        reduced = self._all_reduce_sum_gradients(list(zip(grads, trainable_variables)))
        grads = self._clip_reduced([g for g, _ in reduced])
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step, self._distribution_strategy,
            list(zip(grads, trainable_variables)), learning_rate)

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """Keras's per-variable update, with the variables of each skip mask updated under one
        `tf.cond` on it (at a momentum restart a skipped variable's buffer is still zeroed: a
        fresh optimizer has no momentum for it either)."""
        def update(pairs, step):
            for grad, var in pairs:
                distribution.extended.update(var, step, args=(grad, learning_rate), group=False)

        apply_update = lambda var, grad, lr: self.update_step(grad, var, lr)  # noqa: E731
        restart_only = lambda var, grad, lr: self._restart_momentum(var)  # noqa: E731
        always, masked = [], {}
        freeze = self.weight_decay_form == "coupled" and self.unused_parameters == "freeze"
        for grad, var in grads_and_vars:
            mask = self.skip_masks.get(self._get_variable_index(var)) if freeze else None
            if mask is None:
                always.append((grad, var))
            else:
                masked.setdefault(id(mask), (mask, []))[1].append((grad, var))
        update(always, apply_update)
        restarts = bool(self.restart_steps) and self.momentum != 0
        for mask, pairs in masked.values():
            tf.cond(tf.cast(mask, tf.bool), lambda pairs=pairs: update(pairs, apply_update),
                    lambda pairs=pairs: update(pairs, restart_only) if restarts else None)

    def _clip_reduced(self, grads):
        if self.clip_mode == "value":
            return [None if g is None else tf.clip_by_value(g, -self.clip, self.clip) for g in grads]
        if self.clip_mode == "norm":
            present = [g for g in grads if g is not None]
            clipped, _ = tf.clip_by_global_norm(present, self.clip)
            clipped = iter(clipped)
            return [None if g is None else next(clipped) for g in grads]
        return grads

    def update_step(self, gradient, variable, learning_rate):
        if self.weight_decay_form == "decoupled":
            if self.restart_steps and self.momentum != 0:
                self._restart_momentum(variable)
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        learning_rate = tf.cast(learning_rate, variable.dtype)
        gradient = tf.cast(gradient, variable.dtype)
        if self.reference_weight_decay and self._decay_mask[index]:
            gradient = gradient + tf.cast(self.reference_weight_decay, variable.dtype) * variable
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        buf = self.momentums[index]
        if self.restart_steps:
            self.assign(buf, self._restarted(buf))
        # PyTorch's form in one fused op per variable (`accum` is PyTorch's buffer):
        #   buf = momentum * buf + g;  w -= lr * (g + momentum * buf)  (nesterov; w -= lr * buf without)
        tf.raw_ops.ResourceApplyMomentum(var=variable_handle(variable), accum=variable_handle(buf),
                                         lr=learning_rate, grad=gradient,
                                         momentum=tf.cast(self.momentum, variable.dtype),
                                         use_locking=False, use_nesterov=self.nesterov)

    def _restarted(self, buf):
        """The momentum buffer, zero at a restart step."""
        restart = tf.reduce_any(tf.equal(tf.cast(self.iterations, tf.int64),
                                         tf.constant(self.restart_steps, tf.int64)))
        return tf.where(restart, tf.zeros_like(buf), buf)

    def _restart_momentum(self, variable):
        buf = self.momentums[self._get_variable_index(variable)]
        self.assign(buf, self._restarted(buf))

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update(weight_decay=self.reference_weight_decay, weight_decay_form=self.weight_decay_form,
                      clip_mode=self.clip_mode, clip=self.clip, restart_steps=list(self.restart_steps),
                      unused_parameters=self.unused_parameters)
        return config


# BigNAS's RMSProp as DεpS's code builds it (`deps/utils/pytorch_utils.py` build_optimizer:
# `torch.optim.RMSprop(alpha=0.9, eps=0.0316227766, momentum=0.9)`): PyTorch adds eps after the square
# root, so sqrt(1e-3) there is the 1e-3 TensorFlow's RMSProp (EfficientNet's, which BigNAS follows) adds
# inside it.
RMSPROP_RHO = 0.9
RMSPROP_EPSILON = 1e-3 ** 0.5


@keras.saving.register_keras_serializable(package="ofa_tf")
class ReferenceRMSProp(ReferenceSGD):
    """RMSProp in PyTorch's form (`torch.optim.RMSprop(alpha=rho, eps=epsilon, momentum,
    weight_decay)`, not centred), as DεpS's code runs BigNAS on ImageNet:

        g = g + wd * w                    (coupled; not BN gamma / beta, not biases)
        v = rho * v + (1 - rho) * g^2     (v starts at 0)
        buf = momentum * buf + g / (sqrt(v) + epsilon);   w -= lr * buf
        (without momentum: w -= lr * g / (sqrt(v) + epsilon))

    Clipping, skip masks and restarts as `ReferenceSGD` (a restart zeroes both buffers, as a
    fresh optimizer has neither)."""

    def __init__(self, learning_rate=0.01, momentum: float = 0.9, *, rho: float = RMSPROP_RHO,
                 epsilon: float = RMSPROP_EPSILON, weight_decay: float = 0.0, clip_mode: str = "none",
                 clip: float | None = None, restart_steps: Sequence[int] = (), **kwargs):
        for fixed in ("nesterov", "weight_decay_form"):  # (in a saved config: always False, "coupled")
            kwargs.pop(fixed, None)
        if not (0 <= rho < 1 and epsilon > 0):
            raise OfaError(f"rmsprop rho={rho!r}, epsilon={epsilon!r}: expected 0 <= rho < 1 and epsilon > 0")
        super().__init__(learning_rate, momentum=momentum, nesterov=False, weight_decay=weight_decay,
                         weight_decay_form="coupled", clip_mode=clip_mode, clip=clip, restart_steps=restart_steps,
                         **kwargs)
        self.rho = float(rho)
        self.rms_epsilon = float(epsilon)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.square_averages = self.add_optimizer_variables(variables, "square_average")

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        learning_rate = tf.cast(learning_rate, variable.dtype)
        gradient = tf.cast(gradient, variable.dtype)
        if self.reference_weight_decay and self._decay_mask[index]:
            gradient = gradient + tf.cast(self.reference_weight_decay, variable.dtype) * variable
        square = self.square_averages[index]
        previous = self._restarted(square) if self.restart_steps else square
        rho = tf.cast(self.rho, variable.dtype)
        new_square = rho * previous + (1.0 - rho) * tf.square(gradient)
        self.assign(square, new_square)
        step = gradient / (tf.sqrt(new_square) + tf.cast(self.rms_epsilon, variable.dtype))
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * step)
            return
        buf = self.momentums[index]
        previous = self._restarted(buf) if self.restart_steps else buf
        new_buf = tf.cast(self.momentum, variable.dtype) * previous + step
        self.assign(buf, new_buf)
        self.assign_sub(variable, learning_rate * new_buf)

    def _restart_momentum(self, variable):
        if self.momentum != 0:
            super()._restart_momentum(variable)
        square = self.square_averages[self._get_variable_index(variable)]
        self.assign(square, self._restarted(square))

    def get_config(self):
        config = super().get_config()
        config.update(rho=self.rho, epsilon=self.rms_epsilon)
        return config


__all__ = ["CLIP_MODES", "NO_DECAY", "RMSPROP_EPSILON", "RMSPROP_RHO", "ReferenceRMSProp", "ReferenceSGD",
           "WEIGHT_DECAY_FORMS", "check_optimizer_settings", "check_unused_parameters", "decays"]
