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

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.cli.latency_flags import check_latency_flags, define_latency_flags  # noqa: E402
from ofa_tf.cli.space_flags import SPACE_FLAGS, check_space_flags, define_space_flags  # noqa: E402
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
    add("list", "lut_resolutions", None, "Resolutions to build tables for (default: all of the space's).", "timing",
        item_type=int)
    add("integer", "rounds", 200, "Round-robin timing rounds (host): each round runs every op model.", "timing")
    add("integer", "runs_per_round", 1, "Timed runs of each op per round; 1 (the default) times every op after "
        "all the others ran, as inside a whole model (Android: rounds x this runs per op).", "timing")
    add("integer", "calibration_archs", 8, "Whole subnets (max, min, then random) timed end to end per "
        "resolution to calibrate the op sums (0: raw sums, no calibration).", "timing")
    define_latency_flags(flag_values)


def _space_and_classes():
    if not FLAGS.model_dir:
        return check_space_flags(), FLAGS.num_classes
    saved = RunDirectory(FLAGS.model_dir).read()
    flag_checks.only_with(FLAGS, SPACE_FLAGS, False, "no --model_dir (the run's space and classes are used)")
    return saved.space, saved.num_classes


def check_flags():
    """Every flag checked before any work: the output path writable, the counts, the space
    (from the flags, or the run's with --model_dir, then the space flags are an error), the
    table resolutions (the space's), the device flags. Returns (space, classes,
    resolutions, AndroidBenchmark or None)."""
    flag_checks.required("output", FLAGS.output, "the latency table file to write")
    flag_checks.output_file("output", FLAGS.output)
    flag_checks.positive("rounds", FLAGS.rounds)
    flag_checks.positive("runs_per_round", FLAGS.runs_per_round)
    flag_checks.at_least("calibration_archs", FLAGS.calibration_archs, 0, "an integer")
    android = check_latency_flags()
    space, num_classes = _space_and_classes()
    resolutions = list(FLAGS.lut_resolutions) if FLAGS.lut_resolutions else list(space.resolutions)
    for r in resolutions:
        try:
            space.parse_arch("max", resolution=r)
        except OfaError as e:
            raise OfaError(f"--lut_resolutions={','.join(map(str, resolutions))}: {e}") from None
    return space, num_classes, resolutions, android


def _main(argv: list[str]) -> None:
    space, num_classes, resolutions, android = check_flags()
    if android is not None:
        android.check_device()
    table = build_table(space, num_classes, resolutions, FLAGS.threads, FLAGS.op_resolver, FLAGS.rounds,
                        FLAGS.runs_per_round, android, num_calibration_archs=FLAGS.calibration_archs,
                        delegate=FLAGS.delegate)
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
