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
`full_arch`'s tensor (the max arch, or CompOFA's kernel-7 network with `full_kernel`): its
every slice is a whole weight, which costs what the static max model costs. The loop body is traced once and appears once in the graph, so tracing and
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
from ofa_tf.training.controller import SUBNET_LOSSES, PhaseController
from ofa_tf.training.gradients import zero_gradients
from ofa_tf.training.methods import TEACHER_CODES, Method


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

    The Keras way: `model.compile(optimizer=..., method="deps", metrics=["accuracy"])`, then
    `model.fit(...)` with any Keras callbacks. `fit` builds the model if it is not built yet
    and attaches the method's `PhaseController` (or runs the one passed among the callbacks);
    without either it raises, since its train step would otherwise train the max net alone.
    The losses are the method's (label smoothing, distillation), so `compile` takes no `loss`.
    Logs: `loss` is the mean over the step's networks of their own losses (it does not jump
    when a phase adds subnets), beside `loss_full`, `loss_min` and `loss_random` (left out
    while no such subnet trained), `epsilon` and `phase` (`PhaseController`).

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
      resolution_per_network: each network of a step runs at its own input size, as
        AttentiveNAS trains BigNAS: the full model at the largest of the space's resolutions,
        each subnet at its arch's (the min net the smallest, random ones a random size; the
        `PhaseController` writes them into `step_resolutions`), the batch resized to it with
        bicubic interpolation (AttentiveNAS `forward`: `interpolate(mode="bicubic")`) inside the
        step's loop, so one trace serves every size. False: every network runs on the batch as
        it comes (one resolution per batch).
    """

    def __init__(self, *args: Any, max_subnets: int = 3, kd_temperature: float = 1.0,
                 label_smoothing: float = 0.1, frozen_teacher: bool = False, fixmatch_threshold: float = 0.95,
                 unlabelled_weight: float = 1.0, subnet_dropout: bool = True, resolution_per_network: bool = False,
                 **kwargs: Any):
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
        self.resolution_per_network = bool(resolution_per_network)
        # OFA's teacher is a converged net built with dropout_rate=0 (train_ofa_net.py)
        self.teacher = (Supernet(self.space.to_config(), self.num_classes, dropout=0.0,
                                 kernel_mode=self.kernel_mode, block_class=self.block_class,
                                 bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                                 full_kernel=self.full_kernel, name="teacher")
                        if self.frozen_teacher else None)
        self.loss_trackers = {name: keras.metrics.Mean(name=name) for name in
                              ["loss", "loss_full", *SUBNET_LOSSES, *semi_supervised.LOG_NAMES]}
        self.method: Method | str | None = None  # `compile(method=...)`: the controller `fit` attaches
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
        # only with per-network resolution: a model without it keeps the variables (and the
        # checkpoint layout) it always had
        self.step_resolutions = (state(np.full((slots,), max(self.space.resolutions), np.int32), "int32",
                                       "step_resolutions") if self.resolution_per_network else None)

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
                                     self.kd_weight, self.subnet_label_weight, self.teacher_code,
                                     getattr(self, "step_resolutions", None)) if v is not None}
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
        archs = tf.concat([self.step_archs[:slots], self.full_arch_tensor()[None]], axis=0)
        sizes = (tf.concat([self.step_resolutions[:slots], [max(self.space.resolutions)]], axis=0)
                 if self.resolution_per_network else None)
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
                logits = self(x if sizes is None else self._resized(x, sizes[j]), arch=archs[j], training=True,
                              dropout=dropout_of(is_full))
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

    @staticmethod
    def _resized(x: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
        """The batch at `size` x `size` (bicubic), or as it is when it has that size already."""
        same = tf.logical_and(tf.equal(tf.shape(x)[1], size), tf.equal(tf.shape(x)[2], size))
        return tf.cond(same, lambda: tf.identity(x),
                       lambda: tf.cast(tf.image.resize(x, tf.stack([size, size]), method="bicubic"), x.dtype))

    def _slots_are_min(self) -> tf.Tensor:
        """(max_subnets,) bool: which subnet slots hold the space's min subnet (whichever
        sampler drew it), so that `loss_min` is the min net's loss and `loss_random` the others'."""
        min_vector = tf.constant(self.layout.to_vector(self.space.min_arch()), tf.int32)
        return tf.reduce_all(tf.equal(self.step_archs[:self.max_subnets], min_vector[None]), axis=1)

    def _skipped_block_masks(self, variables) -> dict[int, tf.Tensor]:
        """`Supernet.unused_variable_masks` of this step's networks: its active subnet slots,
        and the full model if the phase trains it. `ReferenceSGD(unused_parameters="freeze")`
        reads them."""
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

        grads, loop_full_loss, loop_full_logits, subnet_losses, first_subnet_logits, _ = \
            self._train_networks(x, y, teacher_logits, grads, variables, full_model=not semi_supervised_batch)
        if not semi_supervised_batch:
            full_loss, full_logits = loop_full_loss, loop_full_logits
        # `loss` is the mean of the networks' own losses (the objective, full + ε x the subnets'
        # sum, grows with the number of networks and with ε: it would jump at a phase switch)
        active = self.step_active[:self.max_subnets]
        networks = self.train_full + tf.reduce_sum(active)
        mean_loss = tf.math.divide_no_nan(full_loss * self.train_full + tf.reduce_sum(active * subnet_losses),
                                          networks)
        logs["loss_full"] = full_loss
        is_min = tf.cast(self._slots_are_min(), tf.float32) * active
        is_random = active - is_min
        logs["loss_min"] = (tf.math.divide_no_nan(tf.reduce_sum(is_min * subnet_losses), tf.reduce_sum(is_min)),
                            tf.reduce_sum(is_min))
        logs["loss_random"] = (tf.math.divide_no_nan(tf.reduce_sum(is_random * subnet_losses),
                                                     tf.reduce_sum(is_random)), tf.reduce_sum(is_random))
        if semi_supervised_batch:
            metric_logits = full_logits  # (TOFA always trains the full model)
        else:  # phases that do not run the full model report their first subnet's accuracy
            metric_logits = tf.where(self.train_full > 0, full_logits, first_subnet_logits)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # the optimizer sums replicas' gradients; each is its local batch's mean
            grads = [g / replicas for g in grads]
        optimizer = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # (under loss scaling)
        if getattr(optimizer, "unused_parameters", None) == "freeze":  # ("update": every weight takes the step)
            optimizer.skip_masks = self._skipped_block_masks(variables)
        self.optimizer.apply(grads, variables)

        self.loss_trackers["loss"].update_state(mean_loss)
        for name, value in logs.items():
            if isinstance(value, tuple):  # (mean over the step's subnets of a kind, how many): weighted by the count
                self.loss_trackers[name].update_state(value[0], sample_weight=value[1])
            else:
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
                if k not in SUBNET_LOSSES and k not in semi_supervised.LOG_NAMES}

    # ------------------------------------------------------------------ Keras's compile / fit
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, loss_weights: Any = None, metrics: Any = None,
                *, method: Method | str | None = None, **kwargs: Any) -> None:
        """Keras's `compile`, plus the once-for-all method `fit` runs (`method`: a preset's name
        such as `"deps"`, or a `Method`; `fit` attaches its `PhaseController`).

        Raises:
          OfaError: for a `loss` or `loss_weights` (the train step's losses are the method's:
            label loss with `label_smoothing`, distillation at `kd_temperature`; a loss given
            here would be ignored), for `steps_per_execution` other than 1 (the controller
            sets each step's subnets before it runs), for an unknown method.
        """
        if loss is not None or loss_weights is not None:
            raise OfaError(f"compile(loss={loss!r}): OnceForAllModel trains with its method's losses (label loss with "
                           "label_smoothing, distillation at kd_temperature, set on the model) and would ignore it; "
                           "compile it without loss")
        if kwargs.get("steps_per_execution", 1) != 1:
            raise OfaError(f"compile(steps_per_execution={kwargs['steps_per_execution']!r}): expected 1 (the "
                           "PhaseController sets the subnets of every step before it runs)")
        if method is not None:
            PhaseController(method)  # checks it: a preset's name or a Method
        self.method = method
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1, verbose: Any = "auto",
            callbacks: Any = None, **kwargs: Any):
        """Keras's `fit`, which cannot train the wrong thing: it builds the model first (so
        callbacks such as `BackupAndRestore` find it built) and runs the method's
        `PhaseController` before every other callback (`fit_callbacks`)."""
        self.build_for_keras()
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                           callbacks=self.fit_callbacks(callbacks), **kwargs)

    def train_on_batch(self, *args: Any, **kwargs: Any):
        self.build_for_keras()
        return super().train_on_batch(*args, **kwargs)

    def build_for_keras(self) -> None:
        """Builds the model (under its strategy's scope) if it is not built yet: Keras's own
        symbolic build of a batch does not make the per-step state the train step reads."""
        if not self.built:
            with self.distribute_strategy.scope():
                self.build()

    def fit_callbacks(self, callbacks: Any) -> Any:
        """`callbacks` as `fit` runs them: with a `PhaseController` for `compile(method=...)`
        when none is given, and the callbacks that add to the logs (`LOGS_FIRST`: the
        controller's ε and phase, `SubnetAccuracy`'s recalibrated accuracies) before the
        others (TensorBoard, CSVLogger, EarlyStopping read them).

        Raises:
          OfaError: no method (neither `compile(method=...)` nor a `PhaseController`; the train
            step would train the max net only), or both.
        """
        if isinstance(callbacks, keras.callbacks.CallbackList):  # built by the caller: taken as it is
            return callbacks
        callbacks = list(callbacks or [])
        given = [c for c in callbacks if isinstance(c, PhaseController)]
        if given and self.method is not None:
            raise OfaError("fit: compile(method=...) and a PhaseController among the callbacks both set the "
                           "method; pass one of them")
        if not given:
            if self.method is None:
                raise OfaError("fit: OnceForAllModel has no method to train (its subnets would never train): "
                               "compile it with method='deps' (or another preset, or a Method), or pass a "
                               "PhaseController(method) among the callbacks")
            callbacks.insert(0, PhaseController(self.method))
        return ([c for c in callbacks if getattr(c, "LOGS_FIRST", False)]
                + [c for c in callbacks if not getattr(c, "LOGS_FIRST", False)])

    def get_config(self):
        config = super().get_config()
        config.update(max_subnets=self.max_subnets, kd_temperature=self.kd_temperature,
                      label_smoothing=self.label_smoothing, frozen_teacher=self.frozen_teacher,
                      fixmatch_threshold=self.fixmatch_threshold, unlabelled_weight=self.unlabelled_weight,
                      subnet_dropout=self.subnet_dropout, resolution_per_network=self.resolution_per_network)
        return config
