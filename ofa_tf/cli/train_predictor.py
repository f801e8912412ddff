"""ofa-train-predictor: trains the run's accuracy predictor on measured subnets; reports held-out rank correlation.

  ofa-train-predictor --model_dir=runs/demo --num_archs=300 --eval_images=1000

Samples --num_archs distinct random subnets (seeded), measures each (BN recalibration on
training images, then accuracy on the first --eval_images of the run's held-out
validation split), trains a predictor on 1 - --holdout_fraction of them and reports
Spearman and Kendall tau between predicted and measured accuracy. The headline is the
K-fold cross-validated Spearman over all measured subnets (--cv_folds; the predictor kind
chosen afresh in each fold), a steadier figure than one held-out split of a few dozen
subnets, which is reported beside it (heldout_spearman). A warning (stderr, and the
report's "warnings") says when the headline is at most 0.3, a predictor that would steer a
search little better than chance, and when the held-out set is under 30 subnets.

--predictor: mlp (OFA's), linear (ridge on the same encoding) or auto (default): whichever
ranks the training subnets better by 5-fold CV, chosen without looking at the held-out
ones (ofa_tf/search/predictor.py says why the linear one often wins on a few hundred).

Writes MODEL_DIR/predictor/: predictor.npz (what ofa-search loads), predictor.json (the
report), predicted_vs_measured.png (each subnet's out-of-fold prediction, and the held-out
ones', against its measured accuracy) and measurements.json (every measured subnet: reused
by a re-run with the same measuring settings, so an interrupted run continues, and by
ofa-plot-pareto and ofa-report). Ctrl-C or SIGTERM while measuring keeps every subnet
measured up to the last save (measurements.json is saved every few subnets) and says how
many; while fitting, nothing is written.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: see ofa_tf/cli/search.py

from ofa_tf.cli import startup  # noqa: E402 (first: takes the signals from the program's start)

import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.interrupts import Interrupted, interruptible  # noqa: E402
from ofa_tf import io  # noqa: E402
from ofa_tf.io import atomic_write  # noqa: E402
from ofa_tf.report.run_files import MEASUREMENTS_FILE, PREDICTOR_PLOT  # noqa: E402 (file names only)
from ofa_tf.search import fit_predictor
from ofa_tf.search.predictor import PREDICTOR_DIR, PREDICTOR_KINDS, cross_validated_spearman, kendall_tau, spearman  # (no TensorFlow: ofa_tf/search)
from ofa_tf.search.predictor import quality_warnings  # noqa: E402
from ofa_tf.spaces import Arch, SearchSpace  # noqa: E402

PROGRAM = "ofa-train-predictor"
# Subnets measured between saves of measurements.json: measuring one takes seconds, so a
# stopped run loses at most this many, and saving stays a small share of the time.
SAVE_EVERY = 10
RUN, MEASURING, PREDICTOR = "run", "measuring", "predictor"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "model_dir", None, "Run directory written by ofa-train.", RUN)
    add("string", "output_dir", None, f"Where the predictor goes (default: MODEL_DIR/{PREDICTOR_DIR}).", RUN)
    add("integer", "num_archs", 300, "Random subnets to measure (train + held out).", MEASURING)
    add("float", "holdout_fraction", 0.2, "Share of the measured subnets held out to report rank correlation.",
        MEASURING)
    add("integer", "eval_images", 1000, "Held-out images each subnet's accuracy is measured on.", MEASURING)
    add("integer", "bn_calibration_images", 2000, "Training images for each subnet's BN recalibration; 0 keeps the "
        "checkpoint's BN statistics.", MEASURING)
    add("string", "dataset", None, "Data to measure on instead of the run's own, with the supernet's classes: "
        "npz:FILE, folder:DIR, tfrecord:GLOB, idx:DIR or tfds:NAME, as ofa-train's --dataset (needed for a run "
        "imported from OFA, which has no training data here).", MEASURING)
    add("string", "split", "validation", "validation (the run's held-out training data) or test.", MEASURING)
    add("enum", "predictor", "auto", "mlp: OFA's MLP; linear: ridge regression on the same encoding; auto: "
        "whichever has the higher 5-fold CV Spearman on the training subnets.", PREDICTOR,
        enum_values=list(PREDICTOR_KINDS))
    add("integer", "epochs", 300, "MLP training epochs.", PREDICTOR)
    add("list", "hidden", ["400", "400", "400"], "Hidden layer widths of the MLP (OFA: 3 x 400).", PREDICTOR,
        item_type=int)
    add("float", "weight_decay", 1e-4, "L2 weight decay of Adam (OFA: 1e-4, for ~16k measured subnets; a few "
        "hundred subnets may want more).", PREDICTOR)
    add("integer", "cv_folds", 5, "K-fold cross-validated Spearman over all measured subnets, the headline "
        "figure (0: skip; the held-out figure is then the headline).", PREDICTOR)
    add("integer", "seed", 0, "Seed of the subnet sample, the hold-out split and the MLP initialisation.",
        PREDICTOR)


def load_measurements(path: str, settings: dict) -> dict[str, dict]:
    """Earlier measurements of this directory taken with the same settings, by arch JSON."""
    if not io.isfile(path):
        return {}
    try:
        data = io.read_json(path)
    except (OSError, ValueError):
        raise OfaError(f"{path}: unreadable measurements file (delete it to measure again)") from None
    if data.get("settings") != settings:
        return {}
    return {Arch.from_dict(r["arch"]).to_json(): r for r in data.get("results", [])}


def check_flags() -> tuple[SearchSpace, str]:
    """Every flag checked before any work (the supernet and its data load only after): counts
    and ranges, the measuring settings (`SubnetMeter.check_settings`), the run (trained), the
    output directory. Returns the run's space and the output directory."""
    from ofa_tf.data.sources import check_dataset_spec
    from ofa_tf.runs import RunDirectory
    from ofa_tf.runs.tool_dataset import check_dataset, require_dataset
    from ofa_tf.search.measure import SubnetMeter

    f = FLAGS
    if not f.num_archs >= 5:
        raise OfaError(f"--num_archs={f.num_archs}: expected at least 5")
    if f.cv_folds < 0 or f.cv_folds == 1 or f.cv_folds * 2 > f.num_archs:
        raise OfaError(f"--cv_folds={f.cv_folds}: expected 0 (off) or 2..{f.num_archs // 2} "
                       f"for --num_archs={f.num_archs}")
    flag_checks.fraction("holdout_fraction", f.holdout_fraction, low_open=True, high_open=True)
    SubnetMeter.check_settings(f.eval_images, f.bn_calibration_images, f.split)
    flag_checks.positive("epochs", f.epochs)
    if not f.hidden or min(f.hidden) <= 0:
        raise OfaError(f"--hidden={','.join(map(str, f.hidden))}: expected positive widths")
    flag_checks.at_least("weight_decay", f.weight_decay, 0)
    flag_checks.only_with(f, ["epochs", "hidden", "weight_decay"], f.predictor != "linear",
                          "--predictor=mlp or auto (the MLP's settings)")
    flag_checks.seed("seed", f.seed)
    if f.dataset is not None:
        check_dataset_spec(f.dataset, "dataset")
    saved = RunDirectory(f.model_dir).read_trained()
    output_dir = f.output_dir or os.path.join(f.model_dir, PREDICTOR_DIR)
    flag_checks.output_dir("output_dir", output_dir)
    require_dataset(saved, f.dataset, f.model_dir, "measuring accuracy")
    check_dataset(f.dataset, saved)  # loads it: its class count, before the model
    return saved.space, output_dir


def _main(argv: list[str]) -> None:
    import keras

    from ofa_tf.report.plots import save_png
    from ofa_tf.search.measure import SubnetMeter

    space, output_dir = check_flags()
    hidden = tuple(FLAGS.hidden)
    settings = {"split": FLAGS.split, "eval_images": FLAGS.eval_images,
                "bn_calibration_images": FLAGS.bn_calibration_images, "space": space.name}
    if FLAGS.dataset is not None:  # measurements on other data are not reused for the run's own
        settings["dataset"] = FLAGS.dataset
    io.makedirs(output_dir)
    path = os.path.join(output_dir, MEASUREMENTS_FILE)
    done = load_measurements(path, settings)
    archs = space.sample_distinct(FLAGS.num_archs, FLAGS.seed)
    todo = [a for a in archs if a.to_json() not in done]
    print(f"measuring {len(todo)} subnets ({len(archs) - len(todo)} measured before)", flush=True)

    def save():
        results = list(done.values())
        atomic_write(path, lambda tmp: _dump(tmp, {"model_dir": FLAGS.model_dir, "settings": settings,
                                                    "results": results}))

    meter = None
    if todo:  # loading the supernet and data takes a while: only when there is something to measure
        meter = SubnetMeter(FLAGS.model_dir, FLAGS.eval_images, FLAGS.bn_calibration_images, FLAGS.split,
                            dataset=FLAGS.dataset)
    bar = keras.utils.Progbar(len(todo), unit_name="subnet")
    try:
        for start in range(0, len(todo), SAVE_EVERY):  # save as we go
            chunk = todo[start:start + SAVE_EVERY]
            results = meter.measure(chunk)
            done.update((arch.to_json(), result) for arch, result in zip(chunk, results))
            save()
            bar.add(len(chunk), values=[("accuracy", sum(r["accuracy"] for r in results) / len(results))])
    except Interrupted as stop:
        kept = sum(a.to_json() in done for a in archs)
        where = f" (kept in {path})" if kept else ""
        raise Interrupted(stop.signum, f"interrupted with {kept} of {len(archs)} subnets measured{where}; re-run the "
                                       "same command to measure the rest") from None

    measured = [done[a.to_json()] for a in archs]
    order = list(range(len(archs)))
    random.Random(FLAGS.seed + 1).shuffle(order)
    held = max(2, int(round(FLAGS.holdout_fraction * len(archs))))
    test, train = order[:held], order[held:]
    mlp_options = {"epochs": FLAGS.epochs, "hidden": hidden, "weight_decay": FLAGS.weight_decay}
    with interruptible():  # NumPy only, and nothing is written until `save`: safe to stop at any point
        predictor = fit_predictor(space, [archs[i] for i in train], [measured[i]["accuracy"] for i in train],
                                  FLAGS.predictor, seed=FLAGS.seed, **mlp_options)
        predicted = predictor.predict([archs[i] for i in test])
        truth = [measured[i]["accuracy"] for i in test]
        accuracies = [r["accuracy"] for r in measured]
        info = predictor.info
        info.update({
            "num_heldout": len(test), "heldout_spearman": spearman(predicted, truth),
            "heldout_kendall_tau": kendall_tau(predicted, truth), "measured": settings,
            "accuracy_range": [min(accuracies), max(accuracies)],
            "heldout_mae": float(sum(abs(p - t) for p, t in zip(predicted, truth)) / len(test))})
        series = {}
        if FLAGS.cv_folds:
            cv = cross_validated_spearman(  # for auto: the choice is redone per fold
                space, archs, accuracies, FLAGS.cv_folds, seed=FLAGS.seed, kind=FLAGS.predictor, **mlp_options)
            series["out-of-fold (cross-validation)"] = (accuracies, cv.pop("predicted"))
            info["cross_validation"] = cv
            info.update(spearman=cv["spearman"], kendall_tau=cv["kendall_tau"], spearman_source="cross-validated")
        else:
            info.update(spearman=info["heldout_spearman"], kendall_tau=info["heldout_kendall_tau"],
                        spearman_source="held-out")
        series["held-out"] = (truth, list(predicted))
        info["warnings"] = quality_warnings(info)
        plot = _scatter(series, info)
    predictor.save(output_dir)
    save_png(plot, os.path.join(output_dir, PREDICTOR_PLOT))
    for warning in info["warnings"]:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    print(f"predictor ({info['kind']}): {info['spearman_source']} Spearman {info['spearman']:.3f}"
          + (f" over {len(archs)} subnets ({FLAGS.cv_folds} folds)" if FLAGS.cv_folds else "")
          + f"; held-out Spearman {info['heldout_spearman']:.3f} on {len(test)} subnets", flush=True)
    print(json.dumps({"output_dir": output_dir, **info}))


def _scatter(series: dict, info: dict) -> bytes:
    """The predicted-vs-measured plot (PNG bytes) of the fitted predictor."""
    from ofa_tf.report.plots import predicted_vs_measured_png

    title = (f"{info['kind']} predictor: {info['spearman_source']} Spearman {info['spearman']:.3f}, "
             f"held-out {info['heldout_spearman']:.3f} ({info['num_heldout']} subnets)")
    return predicted_vs_measured_png(series, title)


def _dump(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


def main() -> None:
    """The `ofa-train-predictor` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
