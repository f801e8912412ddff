"""Train-step time of the elastic supernet vs static Keras models, as one JSON object.

  python benchmarks/step_time.py [--space=ofa_mbv3] [--steps=20] [--batch=64] [--resolution=32]

(or `python -m benchmarks.step_time ...`, from a checkout with ofa_tf installed.)

Every step is SGD (plain by default; --momentum to add it) on one batch (batch 64,
32x32, 2 threads by default), with the same `tf.function` train step for all models and the
optimizer training uses, `ReferenceSGD` (PyTorch's SGD form). As in training and in PyTorch,
the elastic step leaves the blocks its subnet's depth skipped untouched
(`Supernet.unused_variable_masks`); a weight the subnet uses in part is updated whole. Keys
(median seconds per step):
  max_step_s / min_step_s: the elastic supernet running its max / min subnet;
  random_step_s: the elastic supernet with a new random subnet every step;
  static_max_step_s / static_min_step_s: plain Keras models of the max / min arch
    (from `get_subnet`: standard Conv2D / DepthwiseConv2D / BatchNormalization layers);
  traces: how many times the elastic step was traced over all archs it ran (1 = one graph);
  elastic_trace_s: time of the elastic step's first call (tracing + graph optimisation);
  static_first_call_s: first call of the static max model: what retracing per subnet
    (the Python-config alternative) would pay for every new subnet;
plus the ratios the design targets.
"""

from __future__ import annotations

from ofa_tf.cli import startup

tf = startup.load_tensorflow()  # first: TensorFlow loads silently; its runtime starts after the thread settings

import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.models import Supernet  # noqa: E402
from ofa_tf.training.optimizer import ReferenceSGD  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/step_time.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, ROOT)
from benchmarks import common  # noqa: E402

flags.DEFINE_string("space", "ofa_mbv3", "Search space.")
flags.DEFINE_integer("steps", 20, "Timed steps per model.")
flags.DEFINE_integer("batch", 64, "Batch size.")
flags.DEFINE_integer("resolution", 32, "Input resolution.")
flags.DEFINE_integer("threads", 2, "TensorFlow intra- and inter-op threads.")
flags.DEFINE_integer("num_classes", 10, "Classifier outputs.")
flags.DEFINE_float("momentum", 0.0, "SGD momentum (0: plain SGD).")
FLAGS = flags.FLAGS


def make_step(model, momentum: float, traces: list | None = None):
    """The step for every model: SGD in training's form (`ReferenceSGD`, PyTorch's), without Nesterov,
    leaving the blocks a subnet skipped alone (`unused_parameters="freeze"`, PyTorch's SGD without
    Horovod): the static twin has no such weights to update."""
    return common.make_step(model, ReferenceSGD(0.01, momentum=momentum, nesterov=False, unused_parameters="freeze"),
                            traces=traces)


def main(argv: list[str]) -> None:
    args = FLAGS

    model = Supernet(args.space, num_classes=args.num_classes, resolutions=[args.resolution])
    model.build()
    x = tf.random.normal((args.batch, args.resolution, args.resolution, 3))
    y = tf.random.uniform((args.batch,), 0, args.num_classes, tf.int32)
    traces: list = []
    step = make_step(model, args.momentum, traces)
    max_vec, min_vec = model.arch_tensor("max"), model.arch_tensor("min")
    rng = random.Random(0)

    result = {"space": args.space, "batch": args.batch, "resolution": args.resolution, "threads": args.threads,
              "momentum": args.momentum, "steps": args.steps}
    result["elastic_trace_s"] = common.timed(step, x, y, max_vec)
    static_steps = {}
    for kind in ("max", "min"):
        static = model.get_subnet(kind)
        static_steps[kind] = make_step(static, args.momentum)
        first = common.timed(static_steps[kind], x, y)
        if kind == "max":
            result["static_first_call_s"] = first

    runs = {
        "max_step_s": lambda: common.timed(step, x, y, max_vec),
        "min_step_s": lambda: common.timed(step, x, y, min_vec),
        "random_step_s": lambda: common.timed(step, x, y, model.arch_tensor(model.space.sample(rng))),
        "static_max_step_s": lambda: common.timed(static_steps["max"], x, y),
        "static_min_step_s": lambda: common.timed(static_steps["min"], x, y),
    }
    samples = common.interleaved(runs, args.steps, warmup=2)  # warm-up: every kernel shape seen once

    for key, values in samples.items():
        result[key] = statistics.median(values)
    result["traces"] = len(traces)
    result["elastic_over_static_max"] = result["max_step_s"] / result["static_max_step_s"]
    result["elastic_over_static_min"] = result["min_step_s"] / result["static_min_step_s"]
    result["min_over_max"] = result["min_step_s"] / result["max_step_s"]
    result["targets_met"] = (result["elastic_over_static_max"] <= 1.05 and result["elastic_over_static_min"] <= 1.10
                             and result["min_over_max"] <= 0.4 and result["traces"] == 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/step_time.py", doc=__doc__,
                before_first_op=lambda: common.set_threads(FLAGS.threads))
