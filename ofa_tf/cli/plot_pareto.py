"""ofa-plot-pareto: Pareto reports of one or several runs: PNG plot, 6-bucket table, mean Pareto accuracy.

  ofa-plot-pareto --runs=deps=runs/compare/deps,bignas=runs/compare/bignas \\
      --output_dir=reports/compare
  ofa-plot-pareto --runs=mine=runs/mine/search --output_dir=reports/mine
  ofa-plot-pareto --runs=mine=runs/mine --latency_lut=luts/mine_host.json --output_dir=reports/mine_ms

Each --runs entry is NAME=PATH, PATH being
- a run directory: its measured subnets (predictor/measurements.json, from
  ofa-train-predictor; without it, the subnets its searches measured) and, drawn over them,
  the subnets each of its ofa-search folders found (RUN/search/ and any other folder with
  an ofa-search summary.json), with the run's min subnet measured on the same images;
- an ofa-search output folder: the subnets that search measured (its measurements.json) and
  the ones it found;
- a JSON file of measured subnets (ofa-evaluate's output, or such a list).
Writes OUTPUT_DIR/pareto.png (every measured subnet as a dot, each run's Pareto front as a
staircase, searched subnets as labelled stars, the min subnet as a diamond), pareto.json
(front, buckets, mean Pareto accuracy and the searched subnets per run) and pareto.md (the
bucket table, a column per run). The table and the mean Pareto accuracy are over the
measured subnets (a run with none: over its searched ones). The cost range defaults to
the first run's min .. max subnet (the papers' normalisation); --low / --high override it.

--latency_lut=FILE puts latency on the cost axis: each subnet's latency from that look-up
table (ofa-build-lut), so subnets measured for accuracy alone get one (--cost=latency_ms
without a table needs latencies in the files).
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf import io  # noqa: E402
from ofa_tf.io import write_text  # noqa: E402
from ofa_tf.search import CostModels
from ofa_tf.search.costs import parse_budget
from ofa_tf.search.encoding import space_fingerprint  # noqa: E402 (no TensorFlow: ofa_tf/search)

PROGRAM = "ofa-plot-pareto"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("list", "runs", [], "NAME=PATH entries: run directories, ofa-search output folders or measured-subnet "
        "JSON files.", "run")
    add("string", "output_dir", None, "Where pareto.png / pareto.json / pareto.md go.", "run")
    add("string", "cost", "macs", "Cost axis: macs, params or latency_ms (latency_ms: from --latency_lut, or the "
        "files' own latency_ms values).", "report")
    add("string", "latency_lut", None, "Latency look-up table (ofa-build-lut): latency on the cost axis, each "
        "subnet's from the table (implies --cost=latency_ms).", "report", path="input")
    add("integer", "buckets", 6, "Equal cost buckets of the table (the papers use 6).", "report")
    add("string", "low", None, "Low end of the cost range (default: the first run's min subnet).", "report")
    add("string", "high", None, "High end of the cost range (default: the first run's max subnet).", "report")
    add("string", "title", None, "Plot title (default: the runs' names and the cost axis).", "report")


COSTS = ("macs", "params", "latency_ms")


def _latency_table():
    """The --latency_lut table, or None."""
    from ofa_tf.latency.lut import LatencyTable

    return LatencyTable.load(FLAGS.latency_lut) if FLAGS.latency_lut else None


def _run_costs(model_dir: str, table) -> tuple[Any, CostModels]:
    """The run's space and cost models (with the latency table, checked to be the run's space's)."""
    from ofa_tf.runs import RunDirectory

    saved = RunDirectory(model_dir).read()
    space = saved.space
    if table is not None and (space_fingerprint(table.space.with_resolutions(space.resolutions))
                              != space_fingerprint(space)):
        raise OfaError(f"--latency_lut={FLAGS.latency_lut}: table is for another space ({table.space_name!r}) "
                       f"than run {model_dir}'s {space.name!r}")
    return space, CostModels(space, saved.num_classes, table)


def load_entry(name: str, path: str, table) -> dict[str, Any]:
    """The subnets of one --runs entry: {"points" (measured), "searched" (search results, each
    with a "label"), "baselines" ({label: the min subnet}), "span" ((min, max subnet) cost, or
    None)}, each with a value for the cost axis."""
    from ofa_tf.report import run_files
    from ofa_tf.runs import RunDirectory

    cost = FLAGS.cost
    space = costs = span = None
    searched, baselines = [], {}
    if io.isdir(path):
        run_dir = path
        if run_files.is_search_folder(path):
            folders = [path]
            parent = os.path.dirname(os.path.abspath(path))
            run_dir = parent if RunDirectory(parent).has_config() else None  # (a search of that run)
        else:
            folders = run_files.search_folders(path)
        if run_dir is not None:
            space, costs = _run_costs(run_dir, table)
            if cost in costs.models:
                span = run_files.cost_span(space, costs, cost)
        results = [run_files.read_search_folder(f) for f in folders]
        measured = os.path.join(path, run_files.PREDICTOR_DIR, run_files.MEASUREMENTS_FILE)
        if io.isfile(measured):
            points, source = run_files.measured_points(measured), measured
        else:
            unique = {json.dumps(c.get("arch"), sort_keys=True): c for r in results for c in r.candidates}
            points, source = list(unique.values()), path
        for result in results:
            prefix = "" if result.path == path else os.path.basename(result.path) + ": "
            searched += [{**r, "label": prefix + r["label"]} for r in result.results]
            if result.min_subnet and not baselines:
                baselines[f"{name}: min subnet (searched on {run_files.measuring_text(result.settings)})"] = \
                    result.min_subnet
        if not points and not any(r["accuracy"] is not None for r in searched):
            raise OfaError(f"--runs={name}={path}: no measured subnets (run ofa-train-predictor, or ofa-search "
                           "with measured accuracy, on the run first)")
    else:
        points, source = run_files.measured_points(path), path
    if table is not None and costs is None:
        costs = CostModels(table.space, table.num_classes, table)
        space = table.space
    points = run_files.with_costs(points, space, costs, cost, source)
    searched = run_files.with_costs(searched, space, costs, cost, path)
    baselines = {k: run_files.with_costs([v], space, costs, cost, path)[0] for k, v in baselines.items()}
    missing = [p for p in points if p.get(cost) is None]
    if missing:
        raise OfaError(f"{source}: {len(missing)} measured subnets without a {cost!r} value"
                       + (" (pass --latency_lut to compute latencies)" if cost == "latency_ms" else ""))
    return {"points": points, "searched": searched, "baselines": baselines, "span": span}


def check_flags() -> tuple[dict[str, dict[str, Any]], float, float]:
    """Every flag checked before any work (nothing is plotted or written before): the cost
    axis, the counts, the output directory, the cost range, the latency table, each --runs
    entry (its subnets read and checked). Returns (entry per run name, low, high)."""
    flag_checks.choice("cost", FLAGS.cost, COSTS)
    flag_checks.required("runs", FLAGS.runs, "NAME=PATH entries (run directories, search folders or JSON files)")
    flag_checks.required("output_dir", FLAGS.output_dir, "where pareto.png / .json / .md go")
    flag_checks.output_dir("output_dir", FLAGS.output_dir)
    flag_checks.positive("buckets", FLAGS.buckets)
    flag_checks.input_path("latency_lut", FLAGS.latency_lut)
    if FLAGS.latency_lut:
        if FLAGS["cost"].present and FLAGS.cost != "latency_ms":
            raise OfaError(f"--latency_lut={FLAGS.latency_lut}: puts latency on the cost axis; it cannot go with "
                           f"--cost={FLAGS.cost}")
        FLAGS.cost = "latency_ms"
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
    table = _latency_table()
    runs, spans = {}, []
    for name, path in entries.items():
        if not io.exists(path):
            raise OfaError(f"--runs={name}={path}: no such file or directory")
        runs[name] = load_entry(name, path, table)
        if runs[name]["span"]:
            spans.append(runs[name]["span"])
    every = [p[FLAGS.cost] for entry in runs.values() for p in _summarized(entry)]
    default_low, default_high = spans[0] if spans else (min(every), max(every))
    low = default_low if low is None else low
    high = default_high if high is None else high
    if high <= low:
        raise OfaError(f"--low={low:g} --high={high:g}: expected low < high")
    return runs, low, high


def _summarized(entry: dict[str, Any]) -> list[dict]:
    """The subnets a run's table and mean Pareto accuracy are over: its measured ones, or
    (none measured) its searched ones that were measured."""
    return entry["points"] or [p for p in entry["searched"] if p["accuracy"] is not None]


def _main(argv: list[str]) -> None:
    from ofa_tf.report.plots import cost_axis_label, pareto_png, save_png
    from ofa_tf.search import pareto

    runs, low, high = check_flags()
    cost = FLAGS.cost
    summaries = {name: pareto.summarize(_summarized(entry), low, high, cost, FLAGS.buckets)
                 for name, entry in runs.items()}
    for name, entry in runs.items():
        summaries[name]["searched"] = [{"label": p["label"], "file": p["file"], cost: p[cost],
                                        "measured_accuracy": p["accuracy"],
                                        "predicted_accuracy": p.get("predicted_accuracy")}
                                       for p in entry["searched"]]
    title = FLAGS.title or (f"Pareto front{'s' if len(runs) > 1 else ''} of {', '.join(runs)}: top-1 accuracy vs "
                            f"{cost_axis_label(cost)}")
    png = pareto_png({n: e["points"] for n, e in runs.items()}, cost, title,
                     searched={n: e["searched"] for n, e in runs.items()},
                     baselines={k: v for e in runs.values() for k, v in e["baselines"].items()})
    io.makedirs(FLAGS.output_dir)
    save_png(png, os.path.join(FLAGS.output_dir, "pareto.png"))
    table = pareto.markdown(summaries)
    write_text(os.path.join(FLAGS.output_dir, "pareto.md"), table)
    write_text(os.path.join(FLAGS.output_dir, "pareto.json"), json.dumps(summaries, indent=1))
    print(table)


def main() -> None:
    """The `ofa-plot-pareto` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
