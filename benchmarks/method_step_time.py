"""Train-step time of every phase of every method, and what it makes of a run's budget, as JSON.

  python benchmarks/method_step_time.py [--methods=deps,bignas,fofa,ofa,full] [--steps=150] \
      [--rounds=8] [--batch=64] [--resolution=32]

(or `python -m benchmarks.method_step_time ...`, from a checkout with ofa_tf installed.)

The wall time of a short run is mostly fixed costs (tracing the train step, per-epoch
evaluation); this isolates what a method's phases cost per step. One `OnceForAllModel`
(ofa_mbv3, 10 classes, a frozen-teacher slot so OFA's phases run too) is traced once;
then, in --rounds interleaved rounds (machine noise hits every phase alike), each phase of
each method is set up by the method's own `PhaseController` at one of its steps and one
`train_on_batch` is timed. Reported per method: median seconds per step of each phase, and
`steps_s`, the phases' median step times weighted by their lengths in a --steps-step run
(what the run's training steps cost without the fixed costs), plus ratios to BigNAS.
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ofa_tf.spaces import get_space  # noqa: E402
from ofa_tf.training import OnceForAllModel, PhaseController, build_method  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/method_step_time.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, ROOT)
from benchmarks import common  # noqa: E402

flags.DEFINE_string("methods", "deps,bignas,fofa,ofa,full", "Methods, comma-separated.")
flags.DEFINE_string("space", "ofa_mbv3", "Search space.")
flags.DEFINE_integer("steps", 150, "Run length the phase shares are taken of.")
flags.DEFINE_integer("rounds", 8, "Interleaved timing rounds.")
flags.DEFINE_integer("batch", 64, "Batch size.")
flags.DEFINE_integer("resolution", 32, "Input resolution.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    args = FLAGS

    space = get_space(args.space, resolutions=(args.resolution,))
    methods = {name: build_method(name, space, steps_per_epoch=args.steps, epochs=1)
               for name in args.methods.split(",")}
    model = OnceForAllModel(space, num_classes=10, max_subnets=max(m.max_subnets for m in methods.values()),
                            frozen_teacher=any(p.teacher == "frozen" for m in methods.values() for p in m.phases))
    model.build()
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9, nesterov=True), metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.resolution, args.resolution, 3)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch,)).astype("int32")

    # (method, phase index) -> (controller, first step, length)
    cells = {}
    for name, method in methods.items():
        controller = PhaseController(method, args.steps, seed=0)
        controller.set_model(model)
        for index, (start, end) in enumerate(method.phase_bounds(args.steps)):
            if end > start:
                cells[(name, index)] = (controller, start, end - start)

    def time_cell(cell, offset: int) -> float:
        controller, start, length = cells[cell]
        controller.phase_index = None  # re-apply the phase's settings (another method ran in between)
        controller.prepare_step(start + offset % length)
        return common.timed(model.train_on_batch, x, y)

    trace_s = common.timed(time_cell, next(iter(cells)), 0)  # the first call: tracing, the phase's set-up included
    for cell in cells:  # warm-up: every phase once
        time_cell(cell, 0)
    samples = {cell: [] for cell in cells}
    for r in range(args.rounds):
        for cell in cells:
            samples[cell].append(time_cell(cell, r + 1))

    result = {"space": args.space, "batch": args.batch, "resolution": args.resolution, "steps": args.steps,
              "rounds": args.rounds, "trace_s": round(trace_s, 1), "methods": {}}
    for name, method in methods.items():
        phases, steps_s = [], 0.0
        for index, phase in enumerate(method.phases):
            if (name, index) not in cells:
                continue
            _, _, length = cells[(name, index)]
            median = statistics.median(samples[(name, index)])
            steps_s += median * length
            phases.append({"phase": phase.name, "steps": length, "median_step_s": round(median, 4)})
        result["methods"][name] = {"phases": phases, "steps_s": round(steps_s, 1)}
    if "bignas" in result["methods"]:
        base = result["methods"]["bignas"]["steps_s"]
        for entry in result["methods"].values():
            entry["steps_over_bignas"] = round(entry["steps_s"] / base, 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/method_step_time.py", doc=__doc__)
