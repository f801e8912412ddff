"""The training loop of a run: `model.train_step` under any tf.distribute strategy.

Why not `model.fit`: under MultiWorkerMirroredStrategy Keras 3's `fit` fails
(keras-team/keras#20585), and a run must be able to start in the middle of an epoch
(resume after a crash) with the data stream at exactly that step. This loop does what
`fit` does with the same callbacks (progress bar, `PhaseController`, checkpoints,
TensorBoard, history), one compiled step per batch, and two things `fit` does not:
it starts at any global step, and it stops at the first non-finite loss (`NonFiniteLoss`)
before any callback can save the broken weights. Under `ofa_tf.interrupts.stop_on_signals`
a Ctrl-C stops it inside a step (trace included) or, during callbacks, before the next one.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.interrupts import interruptible, raise_if_interrupted


class NonFiniteLoss(OfaError):
    """The loss became NaN or Inf; training stopped and nothing after the last checkpoint was saved.

    `where` says which loss at which step; `then`, what is left, for a caller that knows
    better than the loop (a run with no checkpoint yet keeps nothing)."""

    def __init__(self, where: str, then: str = "the last checkpoint is the last good state"):
        super().__init__(f"{where}; training stopped, {then}")
        self.where, self.then = where, then

    def __reduce__(self):
        return type(self), (self.where, self.then)


def _local(strategy: tf.distribute.Strategy, value) -> float:
    """Replica 0's value (logs are per-replica running means; replica 0 speaks for all)."""
    return float(strategy.experimental_local_results(value)[0])


def train_steps(model: keras.Model, batches, *, strategy: tf.distribute.Strategy, epochs: int,
                steps_per_epoch: int, initial_step: int = 0, callbacks: Sequence[keras.callbacks.Callback] = (),
                verbose: int = 1) -> dict[str, list[float]]:
    """Trains global steps [initial_step, epochs * steps_per_epoch) and returns the history.

    Args:
      model: a compiled model whose optimizer's `iterations` equals `initial_step`.
      batches: a (distributed) dataset whose first element is the batch of `initial_step`.
      strategy: the strategy `model` was built under (`batches` must come from it too).
    Raises:
      NonFiniteLoss: at the first step whose loss is NaN or Inf (epoch-end callbacks of that
        epoch do not run, so checkpoints stay at the last good epoch).
    """
    if hasattr(model, "build_metrics"):
        with strategy.scope():
            model.build_metrics()
    iterator = iter(batches)

    # No AutoGraph: the step's control flow is written as tf.cond / tf.while_loop already, and
    # converting every call of the trace costs a fifth of its tracing time.
    @tf.function(autograph=False)
    def one_step(iterator):
        return strategy.run(model.train_step, args=(next(iterator),))

    callback_list = keras.callbacks.CallbackList(list(callbacks), add_history=True, add_progbar=verbose != 0,
                                                 model=model, verbose=verbose, epochs=epochs,
                                                 steps=steps_per_epoch)
    model.stop_training = False
    logs: dict[str, Any] = {}
    callback_list.on_train_begin()
    first_epoch = initial_step // steps_per_epoch
    for epoch in range(first_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        first_batch = initial_step - epoch * steps_per_epoch if epoch == first_epoch else 0
        for batch in range(first_batch, steps_per_epoch):
            raise_if_interrupted()  # a Ctrl-C during the callbacks stops here, between steps
            callback_list.on_train_batch_begin(batch)
            with interruptible():  # tracing and running the step: safe to unwind at any instruction
                outputs = one_step(iterator)
            logs = {name: _local(strategy, value) for name, value in outputs.items()}
            if not math.isfinite(logs.get("loss", 0.0)):
                step = epoch * steps_per_epoch + batch
                raise NonFiniteLoss(f"loss became {logs['loss']} at step {step} (epoch {epoch + 1})")
            callback_list.on_train_batch_end(batch, logs)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history.history if model.history is not None else {}
