"""Latency of .tflite models on this machine (LiteRT) or on an Android phone (adb), as JSON.

  python -m tools.benchmark_latency --models=exports/max.tflite,exports/min.tflite --threads=1
  python -m tools.benchmark_latency --models=exports/max.tflite --device=android \\
      --benchmark_binary=bin/benchmark_model --delegate=gpu

Per model: median / p90 / min / mean / std in ms over --runs after --warmup, model load time
and peak memory (benchmark_model on Android prints no p90; its p5 / median / p95 are given
where the binary prints them). Several models are timed one after another with a progress
bar; --output also writes the JSON to a file.
"""

from __future__ import annotations

import tools._quiet_tf  # noqa: F401  (first: silences TensorFlow start-up logs)
import json
import os

import keras
from absl import flags

from flags.export_flags import android_from_flags, define_latency_flags
from ofa_tf.errors import OfaError
from ofa_tf.latency import benchmark_host
from ofa_tf.io import atomic_write
from tools._runner import run

define_latency_flags()
flags.DEFINE_list("models", None, "Comma-separated .tflite files.")
flags.DEFINE_integer("warmup", 10, "Untimed runs before timing.")
flags.DEFINE_integer("runs", 100, "Timed runs per model.")
flags.DEFINE_string("output", None, "Also write the JSON to this file.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if not FLAGS.models:
        raise OfaError("--models is required: comma-separated .tflite files")
    for path in FLAGS.models:
        if not os.path.isfile(path):
            raise OfaError(f"--models: {path}: no such file")
    if FLAGS.runs <= 0 or FLAGS.warmup < 0 or FLAGS.threads <= 0:
        raise OfaError(f"--runs={FLAGS.runs}, --warmup={FLAGS.warmup}, --threads={FLAGS.threads}: "
                       "expected runs > 0, warmup >= 0, threads > 0")
    android = android_from_flags()
    bar = keras.utils.Progbar(len(FLAGS.models), unit_name="model")
    results = []
    for path in FLAGS.models:
        if android is None:
            result = benchmark_host(path, FLAGS.threads, FLAGS.warmup, FLAGS.runs, FLAGS.op_resolver)
        else:
            result = android.run(path, FLAGS.threads, FLAGS.delegate, FLAGS.warmup, FLAGS.runs)
        results.append({"model": path, "bytes": os.path.getsize(path), **result})
        bar.add(1, values=[("median_ms", result["median_ms"] or result["mean_ms"])])
    text = json.dumps({"device": FLAGS.device, "results": results})
    if FLAGS.output:
        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write(text)
        atomic_write(FLAGS.output, write)
    print(text)


if __name__ == "__main__":
    run(main)
