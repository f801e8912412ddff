"""Start-up cost: first-call (trace + graph optimisation) seconds of the train steps, and the
tools' time to their result on a small run, as one JSON object.

  python benchmarks/startup.py [--space=ofa_mbv3] [--batch=64] [--resolution=32] [--tools] \
      [--graph_optimization=auto|on|off]

(or `python -m benchmarks.startup ...`, from a checkout with ofa_tf installed.)

Keys:
  static_step_trace_s: first call of a plain SGD step of the static Keras max subnet;
  elastic_step_trace_s: the same step of the elastic supernet (one graph for every subnet);
  ofa_step_trace_s: first call of `OnceForAllModel.train_step` in DεpS's shrinking phase
    (the full model + 3 subnet slots, in-place distillation, ε), as the training loop runs it;
  ofa_step_s: median seconds of that step after tracing; elastic_step_s: median seconds of
    the plain elastic max-subnet step (the same batch), and the ratios
    `ofa_trace_over_elastic` and `ofa_step_over_elastic`; `ofa_step_by_active_slots_s`: median
    seconds of that step with 0, 1, 2 and 3 of its subnet slots active (the full model always);
  with --tools, `train_s`, `evaluate_s`, `search_s` (zero-cost) and `export_s`: wall
    seconds of each command on a small run (1 epoch of 2 steps on the shipped Fashion-MNIST
    subset), TensorFlow's start-up and every trace included.

`graph_optimization`: whether TensorFlow's Grappler rewrote the traced steps (the commands'
default, `auto`, turns it off on a host with no GPU or TPU; `ofa_tf/graph_optimization.py`);
run with `=on` and `=off` to see what it costs and what it buys. With --tools the commands run
with the same setting.

Machines here are shared: compare ratios within one run, not seconds across runs.
"""

from __future__ import annotations

from ofa_tf.cli import startup

tf = startup.load_tensorflow()  # first: TensorFlow loads silently; its runtime starts after the thread settings

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from ofa_tf.graph_optimization import (ENVIRONMENT_VARIABLE, MODES, configure_graph_optimization,  # noqa: E402
                                       graph_optimization_enabled)
from ofa_tf.spaces import get_space  # noqa: E402
from ofa_tf.training import OnceForAllModel, PhaseController, build_method  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/startup.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, ROOT)
from benchmarks import common  # noqa: E402

flags.DEFINE_string("space", "ofa_mbv3", "Search space.")
flags.DEFINE_integer("batch", 64, "Batch size.")
flags.DEFINE_integer("resolution", 32, "Input resolution.")
flags.DEFINE_integer("steps", 5, "Timed steps after tracing.")
flags.DEFINE_integer("threads", 2, "TensorFlow intra- and inter-op threads.")
flags.DEFINE_enum("graph_optimization", None, list(MODES), "Grappler on the traced steps (default: "
                  f"${ENVIRONMENT_VARIABLE}, else auto: off without a GPU or TPU).")
flags.DEFINE_bool("tools", False, "Also time the commands (train, evaluate, search, export) on a small run.")
FLAGS = flags.FLAGS

SHIPPED_DATA = os.path.join(ROOT, "data", "fashion_mnist_small.npz")


def plain_step(model: keras.Model, arch=None):
    """A plain SGD step (Keras SGD, momentum 0.9) of `model`, compiled as benchmarks/step_time.py does."""
    return common.make_step(model, keras.optimizers.SGD(0.01, momentum=0.9), arch=arch)


def ofa_step(space, steps_per_run: int = 100):
    """The DεpS shrinking-phase step of a fresh `OnceForAllModel`, compiled as the training
    loop (`ofa_tf.training.loop`) compiles it."""
    method = build_method("deps", space, steps_per_epoch=steps_per_run, epochs=1)
    model = OnceForAllModel(space, num_classes=10, max_subnets=method.max_subnets)
    model.build()
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), metrics=["accuracy"])
    model.optimizer.build(model.supernet_trainable_variables)
    model.build_metrics()
    controller = PhaseController(method, steps_per_run, seed=0)
    controller.set_model(model)
    controller.prepare_step(steps_per_run - 1)  # the last step: shrinking, every slot active, ε = 1
    return model, common.train_step_function(model)


def tool_seconds(work: str) -> dict[str, float]:
    """Wall seconds of each command on a small run in `work`."""
    run = os.path.join(work, "run")
    commands = {
        "train_s": ["tools.train", "--method=deps", f"--space={FLAGS.space}", f"--dataset=npz:{SHIPPED_DATA}",
                    f"--image_size={FLAGS.resolution}", "--epochs=1", "--steps_per_epoch=2",
                    f"--batch_size={FLAGS.batch}", f"--model_dir={run}"],
        "evaluate_s": ["tools.evaluate", f"--model_dir={run}", "--archs=max", "--num_random=0",
                       f"--output={os.path.join(work, 'evaluation.json')}"],
        "search_s": ["tools.search", f"--model_dir={run}", "--searcher=zero_cost", "--flops=8M",
                     "--bn_calibration_images=200", "--eval_images=200", f"--output_dir={os.path.join(work, 'search')}"],
        "export_s": ["tools.export_tflite", f"--model_dir={run}", "--arch=min", "--quantize=none",
                     "--bn_calibration_images=200", "--eval_images=200",
                     f"--output={os.path.join(work, 'min.tflite')}"],
    }
    seconds = {}
    env = {**os.environ, ENVIRONMENT_VARIABLE: "on" if graph_optimization_enabled() else "off"}
    for key, command in commands.items():
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        seconds[key] = time.perf_counter() - start
    return seconds


def set_threads() -> None:
    """Before TensorFlow's first op: thread counts cannot change once it runs."""
    common.set_threads(FLAGS.threads)
    if FLAGS.graph_optimization is not None:
        configure_graph_optimization(FLAGS.graph_optimization)


def main(argv: list[str]) -> None:
    args = FLAGS
    space = get_space(args.space, resolutions=(args.resolution,))
    x = tf.random.normal((args.batch, args.resolution, args.resolution, 3))
    y = tf.random.uniform((args.batch,), 0, 10, tf.int32)
    result: dict = {"space": args.space, "batch": args.batch, "resolution": args.resolution,
                    "threads": args.threads, "cpus": os.cpu_count(),
                    "graph_optimization": graph_optimization_enabled()}

    ofa_model, ofa = ofa_step(space)
    static = plain_step(ofa_model.get_subnet("max"))
    elastic = plain_step(ofa_model, arch=ofa_model.arch_tensor("max"))
    # the static model first: it also pays the process's one-off first-trace costs
    result["static_step_trace_s"] = common.timed(static, x, y)
    result["elastic_step_trace_s"] = common.timed(elastic, x, y)
    result["ofa_step_trace_s"] = common.timed(ofa, x, y)
    samples = common.interleaved({"ofa_step_s": lambda: common.timed(ofa, x, y),
                                  "elastic_step_s": lambda: common.timed(elastic, x, y)}, args.steps)
    for key, values in samples.items():
        result[key] = statistics.median(values)
    # the step with 0..3 of its subnet slots active (what each extra subnet costs)
    active = ofa_model.step_active.numpy().copy()
    by_slots: dict[int, list[float]] = {n: [] for n in range(len(active) + 1)}
    for _ in range(args.steps):
        for n in by_slots:
            ofa_model.step_active.assign(np.where(np.arange(len(active)) < n, active, 0.0))
            by_slots[n].append(common.timed(ofa, x, y))
    ofa_model.step_active.assign(active)
    result["ofa_step_by_active_slots_s"] = [statistics.median(v) for v in by_slots.values()]
    result["ofa_trace_over_elastic"] = result["ofa_step_trace_s"] / result["elastic_step_trace_s"]
    result["ofa_step_over_elastic"] = result["ofa_step_s"] / result["elastic_step_s"]
    result["train_step_traces"] = ofa_model.train_step_traces
    if args.tools:
        with tempfile.TemporaryDirectory() as work:
            result.update(tool_seconds(work))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/startup.py", doc=__doc__, before_first_op=set_threads)
