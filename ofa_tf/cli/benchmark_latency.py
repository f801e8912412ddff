"""ofa-benchmark-latency: latency of .tflite models on this machine (LiteRT) or on an Android phone (adb), as JSON.

  ofa-benchmark-latency --models=exports/max.tflite,exports/min.tflite --threads=1
  ofa-benchmark-latency --models=exports/max.tflite --device=android \\
      --benchmark_binary=bin/benchmark_model --delegate=gpu

Per model: median / p90 / min / mean / std in ms over --runs after --warmup, model load time
and peak memory (benchmark_model on Android prints no p90; its p5 / median / p95 are given
where the binary prints them). Several models are timed one after another with a progress
bar; --output also writes the JSON to a file.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import define  # noqa: E402
from ofa_tf.cli.latency_flags import check_latency_flags, define_latency_flags  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.export.interpreter import check_tflite_file  # noqa: E402
from ofa_tf.interrupts import raise_if_interrupted  # noqa: E402
from ofa_tf.io import getsize  # noqa: E402
from ofa_tf.latency.android import AndroidBenchmark  # noqa: E402

PROGRAM = "ofa-benchmark-latency"
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define("list", "models", None, "Comma-separated .tflite files.", group="run", flag_values=flag_values,
           path="input")
    define("string", "output", None, "Also write the JSON to this file.", group="run", flag_values=flag_values)
    define("integer", "warmup", 10, "Untimed runs before timing.", group="timing", flag_values=flag_values)
    define("integer", "runs", 100, "Timed runs per model.", group="timing", flag_values=flag_values)
    define_latency_flags(flag_values)


def check_flags() -> AndroidBenchmark | None:
    """Every flag checked before any work: each model a TFLite file (its header read, not
    the model), the output path writable, the counts, the device flags. Returns the
    `AndroidBenchmark` for --device=android (the phone not yet contacted), else None."""
    flag_checks.required("models", FLAGS.models, "comma-separated .tflite files")
    for path in FLAGS.models:
        try:
            check_tflite_file(path)
        except OfaError as e:
            raise OfaError(f"--models={path}: {str(e).removeprefix(path + ': ')}") from None
    flag_checks.output_file("output", FLAGS.output)
    flag_checks.at_least("warmup", FLAGS.warmup, 0, "an integer")
    flag_checks.positive("runs", FLAGS.runs)
    return check_latency_flags()


def _main(argv: list[str]) -> None:
    import keras

    from ofa_tf.latency.host import benchmark_host

    android = check_flags()
    if android is not None:
        android.check_device()
    bar = keras.utils.Progbar(len(FLAGS.models), unit_name="model")
    results = []
    for path in FLAGS.models:
        raise_if_interrupted()  # between models (the host benchmark also checks between runs)
        if android is None:
            result = benchmark_host(path, FLAGS.threads, FLAGS.warmup, FLAGS.runs, FLAGS.op_resolver)
        else:
            result = android.run(path, FLAGS.threads, FLAGS.delegate, FLAGS.warmup, FLAGS.runs)
        results.append({"model": path, "bytes": getsize(path), **result})
        bar.add(1, values=[("median_ms", result["median_ms"] or result["mean_ms"])])
    startup.print_json({"device": FLAGS.device, "results": results}, FLAGS.output)


def main() -> None:
    """The `ofa-benchmark-latency` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
