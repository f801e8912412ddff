"""What the benchmark scripts share: thread settings, the plain SGD train step, and timing.

One copy of each, so that every script times the same step the same way and a fix lands in
all of them. A script imports it after `startup.load_tensorflow()`, as it imports ofa_tf:

    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if ROOT not in sys.path:  # `python benchmarks/NAME.py` puts benchmarks/, not the root, on the path
        sys.path.insert(0, ROOT)
    from benchmarks import common

That works both as `python benchmarks/NAME.py` and as `python -m benchmarks.NAME` from the
repository root.
"""

from __future__ import annotations

import time
from typing import Callable

from ofa_tf.cli import startup

tf = startup.load_tensorflow()  # the module the script loaded already (silenced); no runtime start here

import keras  # noqa: E402


def set_threads(threads: int) -> None:
    """TensorFlow's intra- and inter-op threads (0: TensorFlow's default). Call it before
    TensorFlow's first op (`startup.run(..., before_first_op=...)`): the counts cannot change
    once it runs."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def make_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, arch=None, traces: list | None = None,
              loss_fn: Callable | None = None):
    """A plain train step of `model` on one batch: the loss, its gradients, `optimizer.apply`;
    compiled as a `tf.function` without AutoGraph or XLA. It returns the loss.

    Args:
      optimizer: built here on the model's trainable variables (slot variables made outside
        the trace: no second trace).
      arch: an encoded arch (`Supernet.arch_tensor`) the step always runs: `step(x, y)`.
        Without it, `step(x, y)` runs the model as it is (a static Keras model, or the
        supernet's max net), and `step(x, y, arch)` runs the encoded `arch` passed at call
        time (one trace serves every arch).
      traces: a list that gets one entry each time the step is traced.
      loss_fn: `(labels, logits) -> loss`; default sparse categorical cross-entropy on logits.

    When the step runs an arch and the optimizer freezes unused parameters
    (`ReferenceSGD(unused_parameters="freeze")`), the blocks that subnet skipped get no update
    (`Supernet.unused_variable_masks`), as PyTorch's SGD leaves a parameter without gradient; a
    weight the subnet uses in part is updated whole. By default (`"update"`) every weight takes
    the step, the skipped ones with a zero gradient, as the references' runtime does.
    """
    loss_fn = loss_fn or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    optimizer.build(variables)
    masked = getattr(optimizer, "unused_parameters", None) == "freeze"

    def step(x, y, *call_arch):
        if traces is not None:
            traces.append(1)
        vector = call_arch[0] if call_arch else arch
        with tf.GradientTape() as tape:
            logits = model(x, training=True) if vector is None else model(x, arch=vector, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        if vector is not None and masked:
            optimizer.skip_masks = model.unused_variable_masks(variables, vector[None], tf.constant([True]), False)
        optimizer.apply(grads, variables)
        return loss

    return tf.function(step, autograph=False, jit_compile=False)


def train_step_function(model: keras.Model):
    """`model.train_step` on one `(x, y)` batch, compiled as the training loop compiles it
    (`ofa_tf.training.loop`: no AutoGraph, under the current strategy). It returns the logs."""
    return tf.function(lambda x, y: tf.distribute.get_strategy().run(model.train_step, args=((x, y),)),
                       autograph=False)


def timed(fn: Callable, *args) -> float:
    """Seconds of one call `fn(*args)`, up to when its results are ready: every tensor in them
    is read back (`.numpy()`), since TensorFlow may return before its ops have run."""
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn(*args))
    return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], float]], rounds: int, warmup: int = 0, alternate: bool = False,
                before_round: Callable[[int], object] | None = None) -> dict[str, list[float]]:
    """{key: `rounds` samples} of each run (a callable that returns its own seconds, e.g. a
    `timed` call), in rounds that call every run once in turn, so machine noise hits every
    run alike; after `warmup` untimed rounds (traces and first-call costs paid, every kernel
    shape seen once). `alternate`: every other round runs in reverse order, so that no run
    always follows the same one. `before_round(r)` (untimed) runs before round r, counting
    the warm-up rounds from 0."""
    order = list(runs)
    samples: dict[str, list[float]] = {key: [] for key in order}
    for r in range(warmup + rounds):
        if before_round is not None:
            before_round(r)
        for key in (order[::-1] if alternate and r % 2 else order):
            seconds = runs[key]()
            if r >= warmup:
                samples[key].append(seconds)
    return samples
