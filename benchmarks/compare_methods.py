"""Every training preset on the full Fashion-MNIST, compared as the papers do.

  python benchmarks/compare_methods.py [--data=tfds:fashion_mnist --download] \
      [--methods=deps,bignas,bignas_unclipped,ofa,compofa,fofa,full] [--seeds=0,1] \
      [--budget=steps|paper] [--epochs=3] [--steps_per_epoch=50] [--output_dir=runs/methods]

Budgets:
  steps  every method trains --epochs x --steps_per_epoch steps (the same number of steps).
  paper  every method trains for its paper's epochs scaled by one factor, as the DεpS paper
         compares them (arXiv:2407.06167, Table 2: DεpS 270, OFA 605, CompOFA 330, BigNAS 400
         epochs; fOFA 185, its paper's Table 1; the static `full` baseline OFA's 180-epoch
         teacher): --epochs epochs of --steps_per_epoch x PAPER_EPOCHS[method] / 270 steps each,
         so DεpS trains --epochs x --steps_per_epoch steps and the others in proportion. Cost is
         reported beside accuracy, as the paper's table does (its epochs, GPU minutes per epoch
         and total GPU hours): the steps, the subnet passes and the step time.

(or `python -m benchmarks.compare_methods ...`, from a checkout with ofa_tf installed.)
--data takes any ofa-train --dataset, e.g. idx:DIR for Fashion-MNIST's *-ubyte.gz files.

Each method trains once per seed with `ofa-train` (`python -m ofa_tf.cli.train`) into
OUTPUT_DIR/seedS/METHOD (same data, batch and number of steps, each preset's own optimizer
settings; `compofa` and `fofa` on CompOFA's coupled space, where their papers define them,
every other method on `ofa_mbv3`), one after another, seed by seed, so their wall times come
from the same machine in the same hours. `bignas_unclipped` is the bignas preset with
`--grad_clip_mode=none` (DεpS's own BigNAS baseline does not clip), so the effect of the clip
is measured rather than assumed. Then every run is measured the same way, whatever its training
seed: the max, the min and --num_random random subnets (the same random archs for every run of
a space), each BN-recalibrated on the same images, on the first --eval_images images of the test
split. Reported per method and seed, then as mean ± spread over the seeds (spread: half the
range, max - min over 2; as the DεpS paper, arXiv:2407.06167, does in §5.1):
  wall_s            wall time of the training command (tracing and per-epoch evaluation included);
  train_s           sum of the per-epoch times in metrics.csv;
  steps_s           the training steps alone: train_s less the per-epoch evaluation and the
                    first step (which traces the train step: minutes, paid once per process);
  steps             training steps (the budget);
  step_ms           steps_s per step (the first, traced, step left out): the cost of a step;
  subnet_passes     forward+backward passes the method's phases ask for (steps x subnets
                    trained per step): the machine-independent cost;
  max_acc / min_acc test accuracy of the max / min subnet;
  buckets           the most accurate measured subnet in each of 6 equal slices of the
                    ofa_mbv3 MACs range at this resolution;
  mean_pareto_acc   area under the accuracy vs normalised-MACs Pareto front.
Prints a Markdown table and one JSON object; OUTPUT_DIR/compare.json is rewritten after
each run, so a comparison cut short still holds the runs done so far.
A finished run is not retrained: its recorded wall time is reused (delete the run
directory to re-time it). Results already in OUTPUT_DIR/compare.json (same settings) are kept
and not measured again unless --remeasure, so methods can be added a few at a time.
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.data import calibration_images, load_dataset, make_pipeline, split_validation  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.evaluation import evaluate_archs  # noqa: E402
from ofa_tf.spaces import profile  # noqa: E402
from ofa_tf.search.pareto import cost_buckets, mean_pareto_accuracy  # noqa: E402
from ofa_tf.runs import RunDirectory  # noqa: E402
from ofa_tf.spaces import get_space  # noqa: E402
from ofa_tf.training.methods import Method  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name in the comparison -> (preset, extra ofa-train flags)
METHODS = {name: (name, ()) for name in ("deps", "bignas", "ofa", "full", "fofa", "compofa", "tofa")}
METHODS["bignas_unclipped"] = ("bignas", ("--grad_clip_mode=none",))
DEFAULT_METHODS = ("deps", "bignas", "bignas_unclipped", "ofa", "compofa", "fofa", "full")
MEASURE_SEED = 0  # validation split, calibration images and random archs: the same for every run
# each preset's training epochs in its paper (--budget=paper): the DεpS paper's Table 2 (DεpS, OFA,
# CompOFA, BigNAS on ImageNet-1k), fOFA's Table 1, and OFA's teacher for the static baseline
PAPER_EPOCHS = {"deps": 270, "ofa": 605, "compofa": 330, "bignas": 400, "fofa": 185, "full": 180}
PAPER_UNIT = PAPER_EPOCHS["deps"]  # --steps_per_epoch is DεpS's; the others scale from it
BUDGETS = ("steps", "paper")
TIMING_FILE = "benchmark_timing.json"
NOT_SETTINGS = ("download",)  # how the data is fetched, not what is compared

flags.DEFINE_string("data", "tfds:fashion_mnist", "Training and test data: any ofa-train --dataset (idx:DIR, "
                    "npz:FILE, tfds:NAME, folder:PATH).")
flags.DEFINE_bool("download", False, "Let TFDS download and prepare a missing tfds: dataset.")
flags.DEFINE_list("methods", list(DEFAULT_METHODS), f"Methods to compare: some of {sorted(METHODS)}.")
flags.DEFINE_string("space", "ofa_mbv3", "Space of every method but compofa and fofa (CompOFA's coupled space).")
flags.DEFINE_integer("image_size", 32, "Input resolution.")
flags.DEFINE_enum("budget", "steps", BUDGETS, "steps: every method trains --epochs x --steps_per_epoch steps; paper: "
                  "each its paper's epochs scaled by one factor (DεpS --steps_per_epoch, the others x their paper's "
                  "epochs / 270).")
flags.DEFINE_integer("epochs", 3, "Training epochs of every method.")
flags.DEFINE_integer("steps_per_epoch", 50, "Steps per epoch of every method (--budget=paper: of DεpS).")
flags.DEFINE_integer("batch_size", 64, "Training batch size.")
flags.DEFINE_float("learning_rate", None, "Peak learning rate of every method (default: each preset's, scaled "
                   "by the batch size as its reference code scales it).")
flags.DEFINE_list("seeds", ["0", "1"], "Training seeds: every method trains once per seed.")
flags.DEFINE_integer("num_random", 12, "Random subnets measured per run.")
flags.DEFINE_integer("eval_images", 2000, "Test images per subnet.")
flags.DEFINE_integer("calibration_images", 500, "BN-recalibration images per subnet.")
flags.DEFINE_string("output_dir", os.path.join(ROOT, "runs", "methods"), "Where the runs and compare.json go.")
flags.DEFINE_bool("remeasure", False, "Measure methods again even if OUTPUT_DIR/compare.json has their results.")
FLAGS = flags.FLAGS
SETTINGS = ("data", "methods", "space", "image_size", "budget", "epochs", "steps_per_epoch", "batch_size",
            "learning_rate", "seeds", "num_random", "eval_images", "calibration_images", "output_dir", "remeasure")


COUPLED_SPACE_METHODS = ("compofa", "fofa")  # defined on CompOFA's coupled space (their papers)


def settings() -> dict:
    """The flags that define a comparison (compare.json "settings")."""
    return {name: FLAGS[name].value for name in SETTINGS}


def steps_per_epoch(args, method: str) -> int:
    """`method`'s steps per epoch under the budget: --steps_per_epoch, or (paper) that scaled by
    its paper's epochs over DεpS's."""
    if args.budget == "steps":
        return args.steps_per_epoch
    return max(1, round(args.steps_per_epoch * PAPER_EPOCHS[METHODS[method][0]] / PAPER_UNIT))


def train_command(args, method: str, seed: int, model_dir: str) -> list[str]:
    preset, extra = METHODS[method]
    space = "compofa" if preset in COUPLED_SPACE_METHODS else args.space
    return [sys.executable, "-m", "ofa_tf.cli.train", f"--method={preset}", *extra, f"--space={space}",
            f"--dataset={args.data}", f"--image_size={args.image_size}", f"--epochs={args.epochs}",
            f"--steps_per_epoch={steps_per_epoch(args, method)}", f"--batch_size={args.batch_size}",
            *([f"--learning_rate={args.learning_rate}"] if args.learning_rate is not None else []),
            f"--seed={seed}",
            f"--bn_calibration_images={args.calibration_images}", f"--model_dir={model_dir}",
            *(["--download"] if args.download else [])]


def run_dir(args, method: str, seed: int) -> str:
    budget = "" if args.budget == "steps" else f"{args.budget}_"  # (a run of one budget is not another's)
    return os.path.join(args.output_dir, f"{budget}seed{seed}", method)


def train_one(args, method: str, seed: int) -> float:
    """Trains `method` with `seed` (unless already timed); returns its wall seconds."""
    model_dir = run_dir(args, method, seed)
    timing = os.path.join(model_dir, TIMING_FILE)
    if os.path.exists(timing):
        with open(timing) as f:
            return json.load(f)["wall_s"]
    print(f"[compare_methods] training {method} (seed {seed}) -> {model_dir}", file=sys.stderr, flush=True)
    started = time.time()
    done = subprocess.run(train_command(args, method, seed, model_dir))
    if done.returncode:
        raise OfaError(f"training {method} failed (exit {done.returncode})")
    wall = round(time.time() - started, 1)
    with open(timing, "w") as f:
        json.dump({"wall_s": wall}, f)
    return wall


def subnet_passes(method_config: dict, total_steps: int) -> int:
    method = Method.from_config(method_config)
    return sum((end - start) * (int(phase.train_full) + phase.sampler.num_subnets)
               for phase, (start, end) in zip(method.phases, method.phase_bounds(total_steps)))


class Measurer:
    """Measures trained runs the same way: same test images, calibration images and random archs."""

    def __init__(self, args):
        self.args = args
        reference = get_space(args.space, resolutions=(args.image_size,))
        self.low = profile(reference, reference.min_arch(), 10)["macs"]
        self.high = profile(reference, reference.max_arch(), 10)["macs"]
        data = load_dataset(args.data, None, args.download)
        train_split, _ = split_validation(data.train, 0.1, MEASURE_SEED)
        self.calibration = calibration_images(train_split, args.image_size, args.calibration_images, MEASURE_SEED + 1)
        self.evaluation = list(make_pipeline(data.test.take(args.eval_images), 250, [args.image_size],
                                             training=False))

    def __call__(self, method: str, seed: int, wall_s: float) -> dict:
        args = self.args
        model_dir = run_dir(args, method, seed)
        model, saved = RunDirectory(model_dir).load_supernet()
        space = model.space
        rng = random.Random(MEASURE_SEED)  # the same random archs for every run of a space
        archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(args.num_random)]
        print(f"[compare_methods] measuring {method} (seed {seed}): {len(archs)} subnets", file=sys.stderr,
              flush=True)
        points = evaluate_archs(model, archs, self.calibration, self.evaluation, args.calibration_images,
                                progress=True)
        with open(os.path.join(model_dir, "metrics.csv")) as f:
            rows = list(csv.DictReader(f))
        train_s = sum(float(row["seconds"]) for row in rows)
        steps_s = None  # training steps only: no tracing (first step), no per-epoch evaluation
        if rows and all(row.get("train_seconds") for row in rows):
            steps_s = sum(float(r["train_seconds"]) - float(r.get("first_step_seconds") or 0) for r in rows)
        traced = sum(1 for r in rows if r.get("first_step_seconds"))  # steps left out of steps_s
        steps = args.epochs * steps_per_epoch(args, method)
        buckets = cost_buckets(points, self.low, self.high, 6)
        return {
            "space": space.name, "wall_s": wall_s, "train_s": round(train_s, 1),
            "steps_s": None if steps_s is None else round(steps_s, 1), "steps": steps,
            "step_ms": None if steps_s is None or steps <= traced else round(1000 * steps_s / (steps - traced)),
            "subnet_passes": subnet_passes(saved.raw["method"], steps),
            "max_acc": points[0]["accuracy"], "min_acc": points[1]["accuracy"],
            "max_macs": points[0]["macs"], "min_macs": points[1]["macs"],
            "buckets": [None if b["best"] is None else round(b["best"]["accuracy"], 4) for b in buckets],
            "mean_pareto_acc": round(mean_pareto_accuracy(points, self.low, self.high), 4),
            "subnets": [{"macs": p["macs"], "accuracy": p["accuracy"]} for p in points],
        }


def previous_results(report_path: str, current: dict) -> dict:
    """`results` (and `macs_range`) already in OUTPUT_DIR/compare.json from a run with the same
    settings (the method and seed lists aside), so that adding methods or seeds keeps the others."""
    if not os.path.isfile(report_path):
        return {"results": {}}
    with open(report_path) as f:
        previous = json.load(f)
    ignored = ("methods", "seeds", "remeasure")
    same = {k: v for k, v in previous.get("settings", {}).items() if k not in ignored} == \
        {k: v for k, v in current.items() if k not in ignored}
    if not same:
        return {"results": {}}
    return {"results": previous.get("results", {}), "macs_range": previous.get("macs_range")}


SUMMARISED = ("wall_s", "steps_s", "steps", "step_ms", "subnet_passes", "max_acc", "min_acc", "mean_pareto_acc")


def mean_and_spread(values: list) -> dict | None:
    """Mean and spread (half the range) of the seeds' values; None if any seed has none."""
    if not values or any(v is None for v in values):
        return None
    return {"mean": sum(values) / len(values), "spread": (max(values) - min(values)) / 2, "n": len(values)}


def summarise(per_seed: dict) -> dict:
    """One method's results over its seeds: mean ± spread of every figure and of every bucket."""
    runs = list(per_seed.values())
    summary = {key: mean_and_spread([r.get(key) for r in runs]) for key in SUMMARISED}
    summary["buckets"] = [mean_and_spread([r["buckets"][b] for r in runs]) for b in range(len(runs[0]["buckets"]))]
    summary["seeds"] = sorted(per_seed, key=int)
    return summary


def cell(stat: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if stat is None:
        return "-"
    if stat["n"] == 1 or stat["spread"] == 0:
        return f"{scale * stat['mean']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['spread']:.{digits}f}"


def table(report: dict) -> str:
    low, high = report["macs_range"]
    width = (high - low) / 6
    heads = [f"{(low + b * width) / 1e6:.1f}-{(low + (b + 1) * width) / 1e6:.1f}M" for b in range(6)]
    lines = ["| method | seeds | steps | wall s | steps s | step ms | subnet passes | max acc | min acc | "
             + " | ".join(heads) + " | mean Pareto acc |", "|---" * (10 + len(heads)) + "|"]
    for method, s in report["summary"].items():
        buckets = [cell(b, 100) for b in s["buckets"]]
        lines.append(f"| {method} | {','.join(s['seeds'])} | {cell(s['steps'], digits=0)} | "
                     f"{cell(s['wall_s'], digits=0)} | {cell(s['steps_s'], digits=0)} | "
                     f"{cell(s['step_ms'], digits=0)} | {cell(s['subnet_passes'], digits=0)} | "
                     f"{cell(s['max_acc'], 100)} | {cell(s['min_acc'], 100)} | " + " | ".join(buckets)
                     + f" | {cell(s['mean_pareto_acc'], 100)} |")
    return "\n".join(lines)


def save(report: dict, report_path: str) -> None:
    """Summarises `report` over seeds and writes it: its settings list the methods and seeds it
    holds, whichever subset each invocation added."""
    report["summary"] = {m: summarise(r) for m, r in report["results"].items() if r}
    report["settings"].update(methods=list(report["summary"]),
                              seeds=sorted({s for r in report["results"].values() for s in r}, key=int))
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)


def main(argv: list[str]) -> None:
    args = FLAGS
    methods = list(dict.fromkeys(m for m in args.methods if m))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise OfaError(f"--methods={unknown[0]!r}: expected some of {sorted(METHODS)}")
    unbudgeted = [m for m in methods if args.budget == "paper" and METHODS[m][0] not in PAPER_EPOCHS]
    if unbudgeted:
        raise OfaError(f"--methods={unbudgeted[0]!r}: no paper epochs for --budget=paper (methods with one: "
                       f"{sorted(m for m in METHODS if METHODS[m][0] in PAPER_EPOCHS)})")
    try:
        seeds = list(dict.fromkeys(int(s) for s in args.seeds))
    except ValueError:
        raise OfaError(f"--seeds={','.join(args.seeds)!r}: expected whole numbers, e.g. 0,1") from None
    if not seeds:
        raise OfaError("--seeds is empty: give at least one seed, e.g. --seeds=0,1")
    os.makedirs(args.output_dir, exist_ok=True)
    measure = None
    report_path = os.path.join(args.output_dir, "compare.json")
    report = {"settings": settings(), **previous_results(report_path, settings())}
    for seed in seeds:  # seed by seed: after the first, every method has a result
        for method in methods:  # train, then measure at once: a partial comparison is already usable
            done = report["results"].setdefault(method, {})
            if str(seed) in done and not args.remeasure:
                continue
            wall = train_one(args, method, seed)
            measure = measure or Measurer(args)
            report["macs_range"] = [measure.low, measure.high]
            done[str(seed)] = measure(method, seed, wall)
            save(report, report_path)
    save(report, report_path)
    print(table(report))
    print(json.dumps(report))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/compare_methods.py", doc=__doc__)
