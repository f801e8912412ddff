"""ofa-build-lut: builds latency look-up tables for a search space: every op configuration timed alone.

  ofa-build-lut --model_dir=runs/demo --output=luts/demo_host.json
  ofa-build-lut --space=ofa_mbv3 --resolutions=32 --num_classes=10 --output=lut.json
  ofa-build-lut ... --device=android --benchmark_binary=bin/benchmark_model

One table per resolution (--lut_resolutions, default all of the space's), keyed by op
configuration, each entry count / mean / std / median in ms, calibrated on
--calibration_archs whole subnets timed end to end (see ofa_tf/latency/lut.py). Search uses the file through
`ofa_tf.latency.LatencyTable.load(path).predict_ms(arch)`. With --model_dir the run's space
and class count are used.
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import json  # noqa: E402
import os  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.cli.latency_flags import android_from_flags, define_latency_flags  # noqa: E402
from ofa_tf.cli.space_flags import define_space_flags, space_from_flags  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.latency.ops import build_table  # noqa: E402
from ofa_tf.runs import RunDirectory  # noqa: E402

PROGRAM = "ofa-build-lut"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "output", None, "The table file (JSON) to write.", "run")
    add("string", "model_dir", None, "Take the space and class count from this run directory (instead of "
        "--space, --width_mult, --resolutions, --num_classes).", "run")
    define_space_flags(flag_values)
    add("list", "lut_resolutions", None, "Resolutions to build tables for (default: all of the space's).", "timing")
    add("integer", "rounds", 200, "Round-robin timing rounds (host): each round runs every op model.", "timing")
    add("integer", "runs_per_round", 1, "Timed runs of each op per round; 1 (the default) times every op after "
        "all the others ran, as inside a whole model (Android: rounds x this runs per op).", "timing")
    add("integer", "calibration_archs", 8, "Whole subnets (max, min, then random) timed end to end per "
        "resolution to calibrate the op sums (0: raw sums, no calibration).", "timing")
    define_latency_flags(flag_values)


def _space_and_classes():
    if not FLAGS.model_dir:
        return space_from_flags(), FLAGS.num_classes
    saved = RunDirectory(FLAGS.model_dir).read()
    return saved.space, saved.num_classes


def _main(argv: list[str]) -> None:
    if not FLAGS.output:
        raise OfaError("--output is required: the latency table file to write")
    directory = os.path.dirname(os.path.abspath(FLAGS.output))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise OfaError(f"--output={FLAGS.output}: directory {directory} does not exist or is not writable")
    if FLAGS.rounds <= 0 or FLAGS.runs_per_round <= 0:
        raise OfaError(f"--rounds={FLAGS.rounds}, --runs_per_round={FLAGS.runs_per_round}: expected positive numbers")
    if FLAGS.calibration_archs < 0:
        raise OfaError(f"--calibration_archs={FLAGS.calibration_archs}: expected 0 or more")
    space, num_classes = _space_and_classes()
    try:
        resolutions = [int(r) for r in FLAGS.lut_resolutions] if FLAGS.lut_resolutions else list(space.resolutions)
    except ValueError:
        raise OfaError(f"--lut_resolutions={','.join(FLAGS.lut_resolutions)}: expected integers") from None
    for r in resolutions:
        space.parse_arch("max", resolution=r)
    android = android_from_flags()
    table = build_table(space, num_classes, resolutions, FLAGS.threads, FLAGS.op_resolver, FLAGS.rounds,
                        FLAGS.runs_per_round, android, num_calibration_archs=FLAGS.calibration_archs)
    table.save(FLAGS.output)
    print(json.dumps({"output": FLAGS.output, "space": table.space_name, "resolutions": table.resolutions,
                      "device": table.device, "ops": {str(r): len(t["ops"]) for r, t in table.tables.items()},
                      "overhead_ms": {str(r): t["overhead_ms"] for r, t in table.tables.items()},
                      "calibration_scale": {str(r): table.calibration_scale(r) for r in table.resolutions}}))


def main() -> None:
    """The `ofa-build-lut` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
