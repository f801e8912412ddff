"""`OnceForAllModel`: a supernet whose `train_step` trains the full model and sampled subnets.

One step (DεpS, arXiv:2407.06167, eq. 4):

    gradient = train_full * G_full  +  ε * Σ_j active_j * G_subnet_j

where train_full is 1 or 0 (whether the phase trains the full model), G_full is the
gradient of the full model's label loss (label smoothing), and each
subnet's loss is `kd_weight * KD(subnet, teacher) + subnet_label_weight * CE(subnet)`.
The teacher is the full model's detached output (in-place KD), a frozen snapshot of the
full model (OFA / CompOFA; run in training mode, batch statistics, as OFA's code does), or
none.

Which subnets, ε and the weights are *state*, held in non-trainable variables that the
`PhaseController` callback sets before each batch from the method's phases and a sampler
seeded by the step. The train step reads them as tensors, so one trace serves every
subnet and every phase. The full model and the active subnet slots run in one
`tf.while_loop`, the full model first (its logits are the subnets' in-place teacher), as
the max arch's tensor: its every slice is a whole weight, which costs what the static max
model costs. The loop body is traced once and appears once in the graph, so tracing and
graph optimisation cost about one elastic step's whatever the number of networks, and a
network that does not run costs nothing.

A semi-supervised batch (`({labelled, unlabelled_weak, unlabelled_strong}, labels)`, TOFA,
arXiv:2303.15485) changes two things only: the full model's loss adds λ_u x FixMatch on the
unlabelled views, and the subnets distil on labelled + weakly augmented unlabelled images
(`semi_supervised.py`). It is a second batch structure, so a second trace; the supervised
step is unchanged.

Under mixed precision (`precision.py`) the layers compute in 16 bits and everything here
stays float32: logits, losses, gradients (the weights are float32) and their sums; with
float16 each loss is scaled before its gradients (`optimizer.scale_loss`) and the
`LossScaleOptimizer` unscales the sum and skips a step whose gradients overflowed.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.models.supernet import Supernet
from ofa_tf.training import semi_supervised
from ofa_tf.training.distillation import distillation_loss, label_loss
from ofa_tf.training.gradients import zero_gradients
from ofa_tf.training.methods import TEACHER_CODES


def check_loss_settings(kd_temperature: float, label_smoothing: float, fixmatch_threshold: float,
                        unlabelled_weight: float) -> None:
    """The loss settings of `OnceForAllModel`, each in its range."""
    checks = [(kd_temperature > 0, f"kd_temperature={kd_temperature!r}: expected a positive number"),
              (0 <= label_smoothing < 1, f"label_smoothing={label_smoothing!r}: expected a value in [0, 1)"),
              (0 < fixmatch_threshold <= 1, f"fixmatch_threshold={fixmatch_threshold!r}: expected a value in (0, 1]"),
              (unlabelled_weight >= 0, f"unlabelled_weight={unlabelled_weight!r}: expected a number >= 0")]
    for ok, message in checks:
        if not ok:
            raise OfaError(message)


@keras.saving.register_keras_serializable(package="ofa_tf")
class OnceForAllModel(Supernet):
    """A `Supernet` trained once-for-all with `compile` / `fit`.

    Args (besides `Supernet`'s):
      max_subnets: subnet slots per step (the largest `num_subnets` of the method's phases).
      kd_temperature: distillation temperature T (losses are T^2-scaled).
      label_smoothing: label smoothing of the label losses.
      frozen_teacher: keep a second supernet as a frozen teacher (OFA / CompOFA phases), with
        dropout 0.
      fixmatch_threshold, unlabelled_weight: confidence threshold and weight λ_u of the
        max net's FixMatch loss on semi-supervised batches (TOFA; see semi_supervised.py).
      subnet_dropout: the subnet slots run the classifier's dropout too; False: the full
        model only (`Method.subnet_dropout`; `PhaseController` sets it from its method). A
        Python bool read when the step is traced, so one trace serves every subnet.
    """

    def __init__(self, *args: Any, max_subnets: int = 3, kd_temperature: float = 1.0,
                 label_smoothing: float = 0.1, frozen_teacher: bool = False, fixmatch_threshold: float = 0.95,
                 unlabelled_weight: float = 1.0, subnet_dropout: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if isinstance(max_subnets, bool) or not isinstance(max_subnets, (int, np.integer)) or max_subnets < 0:
            raise OfaError(f"max_subnets={max_subnets!r}: expected a non-negative integer")
        check_loss_settings(kd_temperature, label_smoothing, fixmatch_threshold, unlabelled_weight)
        self.max_subnets = int(max_subnets)
        self.kd_temperature = float(kd_temperature)
        self.label_smoothing = float(label_smoothing)
        self.frozen_teacher = bool(frozen_teacher)
        self.fixmatch_threshold = float(fixmatch_threshold)
        self.unlabelled_weight = float(unlabelled_weight)
        self.subnet_dropout = bool(subnet_dropout)
        # OFA's teacher is a converged net built with dropout_rate=0 (train_ofa_net.py)
        self.teacher = (Supernet(self.space.to_config(), self.num_classes, dropout=0.0,
                                 kernel_mode=self.kernel_mode, block_class=self.block_class,
                                 bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon, name="teacher")
                        if self.frozen_teacher else None)
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in
                              ["loss", "loss_full"] + [f"loss_subnet{j}" for j in range(self.max_subnets)]
                              + list(semi_supervised.LOG_NAMES)}
        # Python side effect: runs only while `train_step` is traced. One per input
        # resolution is expected; more means something retraces per step.
        self.train_step_traces = 0

    # ------------------------------------------------------------------ state
    def build(self, input_shape=None):
        super().build(input_shape)
        if self.teacher is not None:
            self.teacher.build()
            self.teacher.trainable = False
        state = lambda value, dtype, name: keras.Variable(  # noqa: E731
            value, dtype=dtype, trainable=False, name=name)
        slots = max(1, self.max_subnets)
        self.step_archs = state(np.zeros((slots, self.layout.size), np.int32), "int32", "step_archs")
        self.step_active = state(np.zeros((slots,), np.float32), "float32", "step_active")
        self.epsilon = state(1.0, "float32", "epsilon")
        self.train_full = state(1.0, "float32", "train_full")
        self.kd_weight = state(1.0, "float32", "kd_weight")
        self.subnet_label_weight = state(0.0, "float32", "subnet_label_weight")
        self.teacher_code = state(TEACHER_CODES["inplace"], "int32", "teacher_code")

    @property
    def metrics(self):
        compiled = getattr(self, "_compile_metrics", None)
        return list(self.loss_trackers.values()) + ([compiled] if compiled is not None else [])

    def _update_compiled_metrics(self, y, logits) -> None:
        compiled = getattr(self, "_compile_metrics", None)
        if compiled is not None:
            compiled.update_state(y, logits)

    def build_metrics(self) -> None:
        """Creates the compiled metrics' variables now (call under the strategy's scope):
        variables must not first appear inside a distributed or traced train step."""
        compiled = getattr(self, "_compile_metrics", None)
        if compiled is not None and not compiled.built:
            compiled.update_state(tf.zeros((1,), tf.int32), tf.zeros((1, self.num_classes)))
            compiled.reset_state()

    def copy_full_model_to_teacher(self) -> None:
        """Snapshots the current weights into the frozen teacher (OFA's teacher network)."""
        if self.teacher is None:
            raise OfaError("this model was built without frozen_teacher=True")
        for target, source in zip(self.teacher.weights, self._supernet_weights()):
            target.assign(source)

    def _teacher_ids(self) -> set[int]:
        return {id(v) for v in self.teacher.weights} if self.teacher is not None else set()

    def _supernet_weights(self) -> list:
        teacher_ids = self._teacher_ids()
        own_state = {id(v) for v in (self.step_archs, self.step_active, self.epsilon, self.train_full,
                                     self.kd_weight, self.subnet_label_weight, self.teacher_code)}
        return [v for v in self.weights if id(v) not in teacher_ids and id(v) not in own_state]

    @property
    def supernet_weights(self) -> list:
        """Every weight of the supernet itself: no frozen teacher, no per-step state."""
        return self._supernet_weights()

    @property
    def supernet_trainable_variables(self) -> list:
        teacher_ids = self._teacher_ids()
        return [v for v in self.trainable_variables if id(v) not in teacher_ids]

    # ------------------------------------------------------------------ training
    def _train_networks(self, x, y, teacher_logits, grads, variables, full_model: bool):
        """Trains the step's networks in one `tf.while_loop`, adding each one's weighted
        gradients to `grads`: the full model first (when `full_model` and the phase trains it),
        then the active subnet slots.

        The loop body (forward, loss, backward of one network) is traced once and appears once
        in the graph however many networks a phase trains, so tracing and graph optimisation
        cost about one elastic step's, and a network that does not run costs nothing. The full
        model runs in it as the max arch's tensor: the whole of every weight, so each slice is
        the whole tensor (the same numbers as `self(x)`, and as fast as the static max model:
        docs/results.md).

        The full model's loss is its label loss; its detached logits become the in-place
        teacher of the subnets after it (unless the phase has a frozen teacher). A subnet's loss
        is `kd_weight * KD(subnet, teacher) + subnet_label_weight * CE(subnet)`, weighted ε.

        Returns (gradients, full model's loss and logits (zeros when it did not run), per-slot
        losses (0 for inactive slots), logits of the first active slot (zeros if none), total
        weighted subnet loss).
        """
        slots = self.max_subnets
        active = self.step_active[:slots]
        full = slots  # the full model's index: its arch and weight come after the slots'
        archs = tf.concat([self.step_archs[:slots], self.encode_arch("max")[None]], axis=0)
        weights = tf.concat([self.epsilon * active, [1.0]], axis=0)  # (train_full is 1 when it runs)
        full_runs = tf.logical_and(self.train_full > 0, full_model)
        order = tf.boolean_mask(tf.constant([full, *range(slots)], tf.int32),  # the full model first
                                tf.concat([full_runs[None], active > 0], axis=0))
        first_subnet = tf.cast(full_runs, tf.int32)  # the first subnet's place in `order`
        kd_weight = tf.where(tf.equal(self.teacher_code, TEACHER_CODES["none"]), 0.0, self.kd_weight)
        label_weight = tf.convert_to_tensor(self.subnet_label_weight)
        inplace_teacher = tf.not_equal(self.teacher_code, TEACHER_CODES["frozen"])
        logits_shape = teacher_logits.shape
        zero_logits = tf.zeros_like(teacher_logits)
        # the classifier's dropout: every network, or (a tensor) the full model's only
        dropout_of = (lambda is_full: True) if self.subnet_dropout else (lambda is_full: is_full)  # noqa: E731

        def body(k, grads, full_loss, full_logits, losses, first_logits, teacher, total):
            j = order[k]
            is_full = tf.equal(j, full)
            weight = weights[j]
            with tf.GradientTape() as tape:
                logits = self(x, arch=archs[j], training=True, dropout=dropout_of(is_full))
                logits.set_shape(logits_shape)
                loss = tf.where(is_full, 0.0, kd_weight) * distillation_loss(logits, teacher, self.kd_temperature)
                loss += tf.where(is_full, 1.0, label_weight) * label_loss(y, logits, self.label_smoothing)
                # the weight x the loss: its gradients come out weighted (one multiply, not one per variable)
                scaled = self.optimizer.scale_loss(weight * loss)  # (float16 loss scaling, else the loss)
            network_grads = tape.gradient(scaled, variables)
            grads = tuple(g if gj is None else g + gj for g, gj in zip(grads, network_grads))
            return (k + 1, grads, tf.where(is_full, loss, full_loss), tf.where(is_full, logits, full_logits),
                    tf.tensor_scatter_nd_update(losses, [[j]], loss[None]),
                    tf.where(tf.equal(k, first_subnet), logits, first_logits),
                    tf.where(tf.logical_and(is_full, inplace_teacher), tf.stop_gradient(logits), teacher),
                    total + tf.where(is_full, 0.0, weight * loss))

        loop_vars = (tf.constant(0), tuple(grads), tf.constant(0.0), zero_logits, tf.zeros((slots + 1,)), zero_logits,
                     teacher_logits, tf.constant(0.0))
        _, grads, full_loss, full_logits, losses, first_logits, _, total = tf.while_loop(
            lambda k, *_: k < tf.shape(order)[0], body, loop_vars, parallel_iterations=1)
        return list(grads), full_loss, full_logits, losses[:slots], first_logits, total

    def _skipped_block_masks(self, variables) -> dict[int, tf.Tensor]:
        """`Supernet.unused_variable_masks` of this step's networks: its active subnet slots,
        and the full model if the phase trains it. `ReferenceSGD` reads them."""
        n = self.max_subnets
        return self.unused_variable_masks(variables, self.step_archs[:n], self.step_active[:n] > 0,
                                          self.train_full > 0)

    def train_step(self, data):
        self.train_step_traces += 1
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.supernet_trainable_variables
        labels = y

        semi_supervised_batch = semi_supervised.is_semi_supervised_batch(x)
        if semi_supervised_batch:
            # TOFA: the max net learns from labels + FixMatch on the unlabelled views; the
            # subnets distil from it on labelled and weakly augmented unlabelled images.
            full_loss, full_logits, grads, x, y, teacher_source, logs = semi_supervised.full_model_part(
                self, x, y, variables)
            teacher_logits = tf.stop_gradient(teacher_source)
        else:  # the full model is the first network of the loop below
            grads, logs = zero_gradients(variables), {}
            teacher_logits = tf.zeros((tf.shape(x)[0], self.num_classes))
        if self.teacher is not None:
            # Training mode, as OFA's scripts run it (`teacher_model.train()` under no_grad):
            # batch statistics. A teacher snapshotted early in a short run has moving BN
            # averages that lag its weights; in inference mode its targets were noise.
            teacher_logits = tf.cond(tf.equal(self.teacher_code, TEACHER_CODES["frozen"]),
                                     lambda: tf.stop_gradient(self.teacher(x, training=True)),
                                     lambda: teacher_logits)
        teacher_logits.set_shape((x.shape[0], self.num_classes))

        grads, loop_full_loss, loop_full_logits, subnet_losses, first_subnet_logits, subnet_total = \
            self._train_networks(x, y, teacher_logits, grads, variables, full_model=not semi_supervised_batch)
        if not semi_supervised_batch:
            full_loss, full_logits = loop_full_loss, loop_full_logits
        total = full_loss * self.train_full + subnet_total
        logs["loss_full"] = full_loss
        for j in range(self.max_subnets):
            logs[f"loss_subnet{j}"] = subnet_losses[j]
        if semi_supervised_batch:
            metric_logits = full_logits  # (TOFA always trains the full model)
        else:  # phases that do not run the full model report their first subnet's accuracy
            metric_logits = tf.where(self.train_full > 0, full_logits, first_subnet_logits)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # the optimizer sums replicas' gradients; each is its local batch's mean
            grads = [g / replicas for g in grads]
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # (under loss scaling)
        if hasattr(optimizer, "skip_masks"):
            optimizer.skip_masks = self._skipped_block_masks(variables)
        self.optimizer.apply(grads, variables)

        self.loss_trackers["loss"].update_state(total)
        for name, value in logs.items():
            self.loss_trackers[name].update_state(value)
        self._update_compiled_metrics(labels, metric_logits)
        return {k: v for k, v in self.get_metrics_result().items()
                if k in logs or k not in semi_supervised.LOG_NAMES}  # no FixMatch logs in supervised runs

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=False)
        loss = label_loss(y, logits, self.label_smoothing)
        self.loss_trackers["loss"].update_state(loss)
        self.loss_trackers["loss_full"].update_state(loss)
        self._update_compiled_metrics(y, logits)
        return {k: v for k, v in self.get_metrics_result().items()
                if not k.startswith("loss_subnet") and k not in semi_supervised.LOG_NAMES}

    def get_config(self):
        config = super().get_config()
        config.update(max_subnets=self.max_subnets, kd_temperature=self.kd_temperature,
                      label_smoothing=self.label_smoothing, frozen_teacher=self.frozen_teacher,
                      fixmatch_threshold=self.fixmatch_threshold, unlabelled_weight=self.unlabelled_weight,
                      subnet_dropout=self.subnet_dropout)
        return config
