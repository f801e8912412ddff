"""How well a host latency look-up table predicts measured end-to-end latency, as JSON.

  python benchmarks/lut_accuracy.py --lut=runs/export/lut_ofa_mbv3_32_host.json [--num_archs=30]

(or `python -m benchmarks.lut_accuracy ...`, from a checkout with ofa_tf installed.)

Samples --num_archs random subnets of the table's space at its first resolution,
converts each to float32 TFLite, times them (LiteRT, the table's thread count and op
resolver) and compares with `LatencyTable.predict_ms`: Spearman rank correlation, mean
absolute percentage error, and the mean ratio predicted / measured, for the calibrated
estimate (`predict_ms`, what search uses) and the raw op sums. The subnets are drawn with
--seed (default 0); the table's calibration subnets (seed 1, plus max and min) are skipped.

End-to-end latency is measured two ways, in one interleaved session:
  round_robin: every subnet invoked once per round (--round_robin_rounds rounds), so each
    run follows runs of the other models - the cache state the table's ops were timed in
    (ofa-build-lut's default) and what an app that does other work between inferences sees;
  back_to_back: --rounds rounds of --runs_per_round consecutive runs each, median - a
    model run in a tight loop (benchmark_model's protocol), whose small subnets can keep
    their weights in cache between runs.
Also reports how noisy the machine was (per-arch coefficient of variation of the runs).
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import contextlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.export.tflite import keras_to_tflite  # noqa: E402
from ofa_tf.latency import LatencyTable
from ofa_tf.latency.host import time_interleaved  # noqa: E402
from ofa_tf.models import Supernet  # noqa: E402
from ofa_tf.search.predictor import spearman  # noqa: E402
from ofa_tf.spaces import Arch  # noqa: E402

flags.DEFINE_string("lut", None, "Required: the latency table (ofa-build-lut's output) to check.")
flags.DEFINE_integer("num_archs", 30, "Random subnets timed end to end.")
flags.DEFINE_integer("seed", 0, "Seed of the random subnets.")
flags.DEFINE_integer("rounds", 20, "back_to_back: rounds.")
flags.DEFINE_integer("runs_per_round", 10, "back_to_back: consecutive runs per round.")
flags.DEFINE_integer("round_robin_rounds", 200, "round_robin: rounds (each subnet once per round).")
FLAGS = flags.FLAGS


def compare(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    return {"spearman": spearman(predicted, measured),
            "mape_percent": float(np.mean(np.abs(predicted - measured) / measured) * 100),
            "mean_ratio_predicted_over_measured": float(np.mean(predicted / measured))}


def main(argv: list[str]) -> None:
    args = FLAGS
    if not args.lut:
        raise OfaError("--lut is required: a latency table file")
    started = time.time()
    table = LatencyTable.load(args.lut)
    resolution = table.resolutions[0]
    space = table.space
    supernet = Supernet(space, table.num_classes)
    supernet.build()
    calibration = [Arch.from_dict(a) for a in table.tables[resolution].get("calibration", {}).get("archs", [])]
    archs = space.sample_distinct(args.num_archs, args.seed, resolution, exclude=calibration)
    print(f"converting {len(archs)} subnets", file=sys.stderr, flush=True)
    models = []
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
        bar = keras.utils.Progbar(len(archs), unit_name="subnet")
        for arch in archs:
            models.append(keras_to_tflite(supernet.get_subnet(arch)))
            bar.add(1)
    print("timing", file=sys.stderr, flush=True)
    threads = table.settings.get("threads", 1)
    resolver = table.settings.get("op_resolver") or "xnnpack"
    round_robin = time_interleaved(models, threads, resolver, args.round_robin_rounds, 1)
    back_to_back = time_interleaved(models, threads, resolver, args.rounds, args.runs_per_round)
    predicted_mean = np.array([table.predict_ms(a, statistic="mean") for a in archs])
    predicted_median = np.array([table.predict_ms(a, statistic="median") for a in archs])
    raw_median = np.array([table.predict_ms(a, statistic="median", calibrated=False) for a in archs])
    rr_mean = np.array([t.mean() for t in round_robin])
    rr_median = np.array([np.median(t) for t in round_robin])
    bb_median = np.array([np.median(t) for t in back_to_back])
    print(json.dumps({
        "lut": args.lut, "space": table.space_name, "resolution": resolution, "num_archs": len(archs),
        "threads": threads, "op_resolver": resolver, "table_settings": table.settings,
        "runs_per_arch": {"round_robin": args.round_robin_rounds, "back_to_back": args.rounds * args.runs_per_round},
        "round_robin": {"mean_vs_mean": compare(predicted_mean, rr_mean),
                        "median_vs_median": compare(predicted_median, rr_median)},
        "back_to_back": {"median_vs_median": compare(predicted_median, bb_median),
                         "mean_vs_median": compare(predicted_mean, bb_median)},
        "uncalibrated": {"calibration_scale_median": table.calibration_scale(resolution, "median"),
                         "back_to_back_median": compare(raw_median, bb_median),
                         "round_robin_median": compare(raw_median, rr_median)},
        "measured_ms": {"min": float(rr_median.min()), "max": float(rr_median.max())},
        "noise_cv_median": float(np.median([t.std() / t.mean() for t in round_robin + back_to_back])),
        "overhead_ms": table.tables[resolution].get("overhead_ms"),
        "ops_per_arch": {"min": min(len(table.breakdown(a)) for a in archs),
                         "max": max(len(table.breakdown(a)) for a in archs)},
        "predicted_median_vs_round_robin_vs_back_to_back_ms": [
            [round(float(p), 4), round(float(r), 4), round(float(b), 4)]
            for p, r, b in zip(predicted_median, rr_median, bb_median)],
        "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/lut_accuracy.py", doc=__doc__)
