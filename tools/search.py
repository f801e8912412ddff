"""Searches a trained run for the best subnet under each of several budgets, one JSON per target.

  python -m tools.search --model_dir=runs/demo --flops=5M,8M,12M --output_dir=runs/demo/search
  python -m tools.search --model_dir=runs/demo --targets=flops=8M,params=3M --searcher=zero_cost ...
  python -m tools.search --model_dir=RUN --latency_ms=5,10 --latency_lut=luts/pixel7.json ...

Budgets: --flops (MACs), --params, --latency_ms (needs --latency_lut) take comma-separated
lists; list i of each forms target i (a single value applies to all). --targets adds one
target per use, as NAME=BUDGET pairs. Numbers accept k/M/G suffixes.

Searchers: evolution (OFA's defaults), random, exhaustive (finite spaces such as compofa),
zero_cost (TOFA: the most recently trained subnet within budget, from the run's record).
Fitness: the run's accuracy predictor (tools.train_predictor) or measured accuracy.
Each result is measured after BN recalibration (--measure) and written to
--output_dir/<target>.json; `tools.export_tflite --arch=FILE` accepts it as it is.
"""

from __future__ import annotations

import os

# The predictor's matrices are small: a second BLAS thread only waits for a busy core
# (100x400 @ 400x400 took 32 ms with two threads vs 1.2 ms with one on a loaded 2-core box).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import tools._quiet_tf  # noqa: E402,F401  (silences TensorFlow start-up logs)
import dataclasses  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402

from flags.search_flags import define_search_flags, searcher_from_flags  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.io import atomic_write  # noqa: E402
from ofa_tf.search import (PREDICTOR_DIR, AccuracyPredictor, CostModels, format_cost, parse_target,  # noqa: E402
                           space_fingerprint, zero_cost_select, zip_targets)
from ofa_tf.runs import RunDirectory
from ofa_tf.search.measure import SubnetMeter  # noqa: E402
from tools._runner import run  # noqa: E402

flags.DEFINE_string("model_dir", None, "Run directory written by tools.train.")
flags.DEFINE_list("flops", [], "MACs budgets, e.g. 50M,100M,150M (one target each).")
flags.DEFINE_list("params", [], "Parameter budgets, e.g. 2.5M,3M.")
flags.DEFINE_list("latency_ms", [], "Latency budgets in ms (needs --latency_lut).")
flags.DEFINE_multi_string("targets", [], "A target as NAME=BUDGET pairs, e.g. flops=150M,latency_ms=20 "
                          "(repeat for more targets).")
flags.DEFINE_string("latency_lut", None, "Latency look-up table (tools for building one: see the deployment docs).")
flags.DEFINE_string("output_dir", None, "Directory for the per-target JSON files and summary.json.")
flags.DEFINE_string("fitness", "predictor", "predictor (the run's accuracy predictor) or measured.")
flags.DEFINE_string("predictor_dir", None, f"Accuracy predictor directory (default: MODEL_DIR/{PREDICTOR_DIR}).")
flags.DEFINE_bool("measure", True, "Measure each result's accuracy (BN-recalibrated) on held-out data.")
flags.DEFINE_integer("eval_images", 1000, "Held-out images for measured accuracy.")
flags.DEFINE_integer("bn_calibration_images", 2000, "Training images for each subnet's BN recalibration.")
flags.DEFINE_string("split", "validation", "validation (the run's held-out training data) or test.")
define_search_flags()
FLAGS = flags.FLAGS
FITNESS = ("predictor", "measured")


def _targets() -> list[dict[str, str]]:
    targets = zip_targets({"flops": FLAGS.flops, "params": FLAGS.params, "latency_ms": FLAGS.latency_ms})
    targets += [parse_target(t) for t in FLAGS.targets]
    if not targets:
        raise OfaError("no budget given: pass --flops, --params, --latency_ms or --targets")
    return targets


def _file_name(target: dict[str, str]) -> str:
    text = "_".join(f"{k}-{v}" for k, v in target.items())
    return re.sub(r"[^A-Za-z0-9._-]", "", text) + ".json"


def _latency_table(space):
    if not FLAGS.latency_lut:
        return None
    try:
        from ofa_tf.latency.lut import LatencyTable  # the deployment work's module; loaded only when asked for
    except ImportError:
        raise OfaError("--latency_lut: this installation has no latency tables (ofa_tf.latency.lut)") from None
    table = LatencyTable.load(FLAGS.latency_lut)
    theirs = getattr(table, "space", None)
    if theirs is not None and (space_fingerprint(theirs.with_resolutions(space.resolutions))
                               != space_fingerprint(space)):
        raise OfaError(f"--latency_lut={FLAGS.latency_lut}: table is for another space ({table.space_name!r}) "
                       f"than the run's {space.name!r}")
    return table


def main(argv: list[str]) -> None:
    if FLAGS.fitness not in FITNESS:
        raise OfaError(f"--fitness={FLAGS.fitness!r}: expected one of {list(FITNESS)}")
    if not FLAGS.output_dir:
        raise OfaError("--output_dir is required: where the per-target JSON files go")
    targets = _targets()
    saved = RunDirectory(FLAGS.model_dir).read_trained()
    space = saved.space
    searcher = searcher_from_flags(space)
    costs = CostModels(space, saved.num_classes, _latency_table(space))
    constraints = [costs.constraints(t) for t in targets]  # every budget checked before any work

    predictor_dir = FLAGS.predictor_dir or os.path.join(FLAGS.model_dir, PREDICTOR_DIR)
    needs_predictor = FLAGS.fitness == "predictor" and searcher is not None
    predictor = None
    if needs_predictor or os.path.isfile(os.path.join(predictor_dir, "predictor.npz")):
        predictor = AccuracyPredictor.load(predictor_dir, space)
    meter = None
    if FLAGS.measure or FLAGS.fitness == "measured":
        meter = SubnetMeter(FLAGS.model_dir, FLAGS.eval_images, FLAGS.bn_calibration_images, FLAGS.split)
    record = None
    if searcher is None:
        from ofa_tf.training.record import load_sampled_record
        record = load_sampled_record(FLAGS.model_dir)
    fitness = None
    if searcher is not None:
        fitness = predictor.predict if FLAGS.fitness == "predictor" else meter.accuracy

    os.makedirs(FLAGS.output_dir, exist_ok=True)
    summary = []
    for target, target_constraints in zip(targets, constraints):
        started = time.time()
        if searcher is None:
            result = zero_cost_select(record, target_constraints, space)
        else:
            result = searcher.search(fitness, target_constraints)
        seconds = time.time() - started
        arch = result.arch
        out = {"target": target, "budgets": {c.name: c.budget for c in target_constraints},
               "arch": arch.to_dict(), "space": space.name, "model_dir": FLAGS.model_dir,
               "searcher": result.searcher, "fitness": None if searcher is None else FLAGS.fitness,
               "seed": FLAGS.seed, "evaluations": result.evaluations, "search_seconds": round(seconds, 3),
               "predicted_accuracy": float(predictor.predict([arch])[0]) if predictor else None,
               "measured_accuracy": meter.measure([arch])[0]["accuracy"] if meter else None,
               "measured_on": meter.settings if meter else None, **costs.costs(arch), **result.extra}
        path = os.path.join(FLAGS.output_dir, _file_name(target))
        _write_json(path, out)
        summary.append({"file": path, **{k: out[k] for k in ("target", "predicted_accuracy", "measured_accuracy",
                                                              "macs", "params", "latency_ms", "evaluations")}})
        print(f"{_file_name(target)}: macs {format_cost('macs', out['macs'])}, params "
              f"{format_cost('params', out['params'])}, predicted {out['predicted_accuracy']}, measured "
              f"{out['measured_accuracy']} ({seconds:.1f} s)", flush=True)
    _write_json(os.path.join(FLAGS.output_dir, "summary.json"),
                {"model_dir": FLAGS.model_dir, "searcher": FLAGS.searcher, "settings": _settings(), "results": summary})
    print(json.dumps(summary))


def _settings() -> dict:
    names = ["fitness", "seed", "population", "generations", "parent_ratio", "mutation_ratio", "mutation_prob",
             "num_samples", "resolution", "eval_images", "bn_calibration_images", "split"]
    return {n: getattr(FLAGS, n) for n in names}


def _write_json(path: str, data) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, default=lambda o: dataclasses.asdict(o))
    atomic_write(path, write)


if __name__ == "__main__":
    run(main)
