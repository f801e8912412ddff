"""ofa-build-lut: builds latency look-up tables for a search space: every op configuration timed alone.

  ofa-build-lut --model_dir=runs/demo --output=luts/demo_host.json
  ofa-build-lut --space=ofa_mbv3 --image_size=32 --num_classes=10 --output=lut.json
  ofa-build-lut ... --device=android --benchmark_binary=bin/benchmark_model

One table per input size (--image_size, default all of the space's), keyed by op
configuration, each entry count / mean / std / median in ms, calibrated on
--calibration_archs whole subnets timed end to end (see ofa_tf/latency/lut.py). Search uses the file through
`ofa_tf.latency.LatencyTable.load(path).predict_ms(arch)`. With --model_dir the run's space
and class count are used.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

import json  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.cli.latency_flags import check_latency_flags, define_latency_flags  # noqa: E402
from ofa_tf.cli.space_flags import check_space_flags, define_space_flags, read_run  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402

PROGRAM = "ofa-build-lut"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "output", None, "The table file (JSON) to write.", "run")
    define_space_flags(flag_values, "One table per size.")
    add("integer", "rounds", 200, "Round-robin timing rounds (host): each round runs every op model.", "timing")
    add("integer", "runs_per_round", 1, "Timed runs of each op per round; 1 (the default) times every op after "
        "all the others ran, as inside a whole model (Android: rounds x this runs per op).", "timing")
    add("integer", "calibration_archs", 8, "Whole subnets (max, min, then random) timed end to end per "
        "input size to calibrate the op sums (0: raw sums, no calibration).", "timing")
    define_latency_flags(flag_values)


def check_flags():
    """Every flag checked before any work: the output path writable, the counts, the space
    (from the flags, or the run's with --model_dir, then the space flags are an error) at
    the --image_size sizes, the device flags. Returns (space, classes, input sizes,
    AndroidBenchmark or None)."""
    flag_checks.required("output", FLAGS.output, "the latency table file to write")
    flag_checks.output_file("output", FLAGS.output)
    flag_checks.positive("rounds", FLAGS.rounds)
    flag_checks.positive("runs_per_round", FLAGS.runs_per_round)
    flag_checks.at_least("calibration_archs", FLAGS.calibration_archs, 0, "an integer")
    android = check_latency_flags()
    space, num_classes = check_space_flags()
    resolutions = list(space.resolutions)
    for r in resolutions:
        try:
            space.parse_arch("max", resolution=r)
        except OfaError as e:
            raise OfaError(f"--image_size={','.join(map(str, resolutions))}: {e}") from None
    return space, num_classes, resolutions, android


def _main(argv: list[str]) -> None:
    from ofa_tf.latency.ops import build_table
    from ofa_tf.layers.block_import import import_block_class

    space, num_classes, resolutions, android = check_flags()
    if android is not None:
        android.check_device()
    block_class = import_block_class(read_run(FLAGS.model_dir).config.block_class) if FLAGS.model_dir else None
    table = build_table(space, num_classes, resolutions, FLAGS.threads, FLAGS.op_resolver, FLAGS.rounds,
                        FLAGS.runs_per_round, android, num_calibration_archs=FLAGS.calibration_archs,
                        delegate=FLAGS.delegate, block_class=block_class)
    table.save(FLAGS.output)
    print(json.dumps({"output": FLAGS.output, "space": table.space_name, "image_size": table.resolutions,
                      "device": table.device, "ops": {str(r): len(t["ops"]) for r, t in table.tables.items()},
                      "overhead_ms": {str(r): t["overhead_ms"] for r, t in table.tables.items()},
                      "calibration_scale": {str(r): table.calibration_scale(r) for r in table.resolutions}}))


def main() -> None:
    """The `ofa-build-lut` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
