"""ofa-plot-pareto: Pareto reports of one or several runs: PNG plot, 6-bucket table, mean Pareto accuracy.

  ofa-plot-pareto --runs=deps=runs/compare/deps,bignas=runs/compare/bignas \\
      --output_dir=reports/compare

Each --runs entry is NAME=PATH, PATH being a run directory (its measured subnets:
predictor/measurements.json, from ofa-train-predictor) or a JSON file of measured
subnets (that file, or ofa-evaluate's output). Writes OUTPUT_DIR/pareto.png (every
subnet and each run's front), pareto.json (front, buckets and mean Pareto accuracy per
run) and pareto.md (the bucket table, a column per run). The cost range defaults to the
first run's min .. max subnet (the papers' normalisation); --low / --high override it.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

import json  # noqa: E402
import os  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf import io  # noqa: E402
from ofa_tf.io import write_text  # noqa: E402
from ofa_tf.search import CostModels, parse_budget  # noqa: E402 (no TensorFlow: ofa_tf/search)

PROGRAM = "ofa-plot-pareto"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("list", "runs", [], "NAME=PATH entries: run directories or measured-subnet JSON files.", "run")
    add("string", "output_dir", None, "Where pareto.png / pareto.json / pareto.md go.", "run")
    add("string", "cost", "macs", "Cost axis: macs, params or latency_ms.", "report")
    add("integer", "buckets", 6, "Equal cost buckets of the table (the papers use 6).", "report")
    add("string", "low", None, "Low end of the cost range (default: the first run's min subnet).", "report")
    add("string", "high", None, "High end of the cost range (default: the first run's max subnet).", "report")
    add("string", "title", None, "Plot title.", "report")


COSTS = ("macs", "params", "latency_ms")


def load_points(path: str) -> tuple[list[dict], tuple[float, float] | None]:
    """Measured subnets at `path`, and the run's (min, max subnet) cost range when known."""
    from ofa_tf.runs import RunDirectory

    span = None
    if io.isdir(path):
        saved = RunDirectory(path).read_trained()
        space = saved.space
        costs = CostModels(space, saved.num_classes)
        if FLAGS.cost in ("macs", "params"):
            low = costs.costs(space.min_arch(min(space.resolutions)))[FLAGS.cost]
            span = (low, costs.costs(space.max_arch(max(space.resolutions)))[FLAGS.cost])
        path = os.path.join(path, "predictor", "measurements.json")
        if not io.isfile(path):
            raise OfaError(f"{path}: no measured subnets (run ofa-train-predictor on the run first)")
    try:
        data = io.read_json(path)
    except ValueError as e:
        raise OfaError(f"{path}: not valid JSON ({e})") from None
    points = data.get("results") if isinstance(data, dict) else data
    if not isinstance(points, list) or not all(isinstance(p, dict) and "accuracy" in p for p in points):
        raise OfaError(f"{path}: expected a list of measured subnets ({{'accuracy': ..., "
                       f"'{FLAGS.cost}': ...}}) or an object with such a 'results' list")
    missing = [p for p in points if p.get(FLAGS.cost) is None]
    if missing or not points:
        raise OfaError(f"{path}: {len(missing) if points else 'no'} measured subnets without a {FLAGS.cost!r} value")
    return points, span


def check_flags() -> tuple[dict[str, list[dict]], float, float]:
    """Every flag checked before any work (nothing is plotted or written before): the cost
    axis, the counts, the output directory, the cost range, each --runs entry (its measured
    subnets read and checked). Returns (points per run name, low, high)."""
    flag_checks.choice("cost", FLAGS.cost, COSTS)
    flag_checks.required("runs", FLAGS.runs, "NAME=PATH entries (run directories or JSON files)")
    flag_checks.required("output_dir", FLAGS.output_dir, "where pareto.png / .json / .md go")
    flag_checks.output_dir("output_dir", FLAGS.output_dir)
    flag_checks.positive("buckets", FLAGS.buckets)
    low = parse_budget("low", FLAGS.low) if FLAGS.low is not None else None
    high = parse_budget("high", FLAGS.high) if FLAGS.high is not None else None
    entries = {}
    for entry in FLAGS.runs:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise OfaError(f"--runs={entry}: expected NAME=PATH")
        if name in entries:
            raise OfaError(f"--runs={','.join(FLAGS.runs)}: name {name!r} given twice")
        entries[name] = path
    runs, spans = {}, []
    for name, path in entries.items():
        if not io.exists(path):
            raise OfaError(f"--runs={name}={path}: no such file or directory")
        runs[name], span = load_points(path)
        if span:
            spans.append(span)
    every = [p[FLAGS.cost] for points in runs.values() for p in points]
    default_low, default_high = spans[0] if spans else (min(every), max(every))
    low = default_low if low is None else low
    high = default_high if high is None else high
    if high <= low:
        raise OfaError(f"--low={low:g} --high={high:g}: expected low < high")
    return runs, low, high


def _main(argv: list[str]) -> None:
    from ofa_tf import reports

    runs, low, high = check_flags()
    summaries = {name: reports.summarize(points, low, high, FLAGS.cost, FLAGS.buckets)
                 for name, points in runs.items()}
    io.makedirs(FLAGS.output_dir)
    reports.plot(runs, os.path.join(FLAGS.output_dir, "pareto.png"), FLAGS.cost, FLAGS.title)
    table = reports.markdown(summaries)
    write_text(os.path.join(FLAGS.output_dir, "pareto.md"), table)
    write_text(os.path.join(FLAGS.output_dir, "pareto.json"), json.dumps(summaries, indent=1))
    print(table)


def main() -> None:
    """The `ofa-plot-pareto` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
