"""How well a host latency look-up table predicts measured end-to-end latency, as JSON.

  python benchmarks/lut_accuracy.py --lut=runs/export/lut_ofa_mbv3_32_host.json [--num_archs=30]

Samples --num_archs random subnets of the table's space at its first resolution,
converts each to float32 TFLite, times all of them in interleaved rounds (LiteRT, the
table's thread count and op resolver) and compares with `LatencyTable.predict_ms`:
Spearman rank correlation, mean absolute percentage error, and the mean ratio
predicted / measured, for the op-mean sums (the agreed estimator) and op-median sums.
Also reports how noisy the machine was (per-arch coefficient of variation of the runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ofa_tf.export.tflite import keras_to_tflite  # noqa: E402
from ofa_tf.latency import LatencyTable, time_interleaved  # noqa: E402
from ofa_tf.models import Supernet  # noqa: E402
from ofa_tf.search import spearman  # noqa: E402


def compare(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    return {"spearman": spearman(predicted, measured),
            "mape_percent": float(np.mean(np.abs(predicted - measured) / measured) * 100),
            "mean_ratio_predicted_over_measured": float(np.mean(predicted / measured))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lut", required=True)
    parser.add_argument("--num_archs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs_per_round", type=int, default=10)
    args = parser.parse_args()
    started = time.time()
    table = LatencyTable.load(args.lut)
    resolution = table.resolutions[0]
    space = table.space
    supernet = Supernet(space, table.num_classes)
    supernet.build()
    rng = random.Random(args.seed)
    archs = [space.sample(rng, resolution) for _ in range(args.num_archs)]
    models = [keras_to_tflite(supernet.get_subnet(a)) for a in archs]
    threads = table.settings.get("threads", 1)
    resolver = table.settings.get("op_resolver") or "xnnpack"
    times = time_interleaved(models, threads, resolver, args.rounds, args.runs_per_round)
    measured_mean = np.array([t.mean() for t in times])
    measured_median = np.array([np.median(t) for t in times])
    predicted_mean = np.array([table.predict_ms(a) for a in archs])
    predicted_median = np.array([table.predict_ms(a, statistic="median") for a in archs])
    print(json.dumps({
        "lut": args.lut, "space": table.space_name, "resolution": resolution, "num_archs": len(archs),
        "threads": threads, "op_resolver": resolver, "runs_per_arch": args.rounds * args.runs_per_round,
        "mean_vs_mean": compare(predicted_mean, measured_mean),
        "median_vs_median": compare(predicted_median, measured_median),
        "measured_ms": {"min": float(measured_median.min()), "max": float(measured_median.max())},
        "noise_cv_median": float(np.median([t.std() / t.mean() for t in times])),
        "overhead_ms": table.tables[resolution].get("overhead_ms"),
        "ops_per_arch": {"min": min(len(table.breakdown(a)) for a in archs),
                         "max": max(len(table.breakdown(a)) for a in archs)},
        "pairs": [[round(float(p), 4), round(float(m), 4)] for p, m in zip(predicted_median, measured_median)],
        "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
