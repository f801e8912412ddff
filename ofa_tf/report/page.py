"""A run's report as one self-contained HTML page (`ofa-report`).

Everything a run directory holds, read by `run_files`, drawn by `plots`, on one page that
opens anywhere: images are embedded as base64 PNG (`data:` URLs), styles are inline, and
nothing is fetched from a network (no script, font or stylesheet links). Sections, each an
`<section id=...>` present whether or not its files are (then it says which program
writes them):

  run         the settings: method, space, data, schedule
  training    loss and accuracy per epoch (metrics.csv), plot and table
  evaluation  ofa-evaluate's measured subnets (evaluation.json)
  search      each ofa-search result set: the subnet per target against the min subnet on
              the same images, and the Pareto front of what the run measured with the
              searched subnets over it (on the latency axis too, given a latency table)
  predictor   ofa-train-predictor's report: cross-validated and held-out rank
              correlation, its warnings, the predicted-vs-measured plot
  latency     a latency table's predictions against measured latency
              (benchmarks/lut_accuracy.py's output)
  exports     ofa-export's files: size, accuracy before / after conversion, latency from
              ofa-benchmark-latency where it was timed

`build_report` reads and checks every file first (an unreadable one is one OfaError naming
it), so the page is written only once all of it could be made.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import os
from typing import Any, Sequence

from ofa_tf import io
from ofa_tf.errors import OfaError
from ofa_tf.report import plots, run_files
from ofa_tf.search.costs import CostModels, format_cost
from ofa_tf.spaces import SearchSpace

Point = dict[str, Any]
SECTIONS = ("run", "training", "evaluation", "search", "predictor", "latency", "exports")


@dataclasses.dataclass
class RunInfo:
    """What the page needs of a run's config.json (`ofa_tf.runs.SavedRun` has it all): the
    caller reads it, so this module needs no TensorFlow."""

    model_dir: str
    space: SearchSpace
    num_classes: int
    settings: dict[str, Any]  # RunConfig.to_dict()
    method: str


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
.absent { color: #777; font-style: italic; }
.warning { background: #fff4e0; border-left: 4px solid #e69500; padding: .4em .8em; margin: .5em 0; }
.good { color: #1a7f37; } .bad { color: #c62828; }
code { background: #f5f5f5; padding: 0 .2em; }
"""


# --------------------------------------------------------------------------- html pieces
def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: Sequence[int] = (0,)) -> str:
    def cell(tag: str, i: int, value: Any) -> str:
        cls = ' class="text"' if i in text_columns else ""
        return f"<{tag}{cls}>{value}</{tag}>"
    head = "".join(cell("th", i, _e(h)) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _absent(text: str) -> str:
    return f'<p class="absent">{_e(text)}</p>'


def _percent(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{100 * value:.2f}%"


def _number(value: Any, digits: int = 3) -> str:
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else f"{value:.{digits}f}"


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def describe_arch(space: SearchSpace, arch: Any) -> str:
    """`max`, `min` (at its input size) or the depths / input size of another subnet."""
    try:
        value = space.validate(arch)
    except OfaError:  # an arch of another space: shown, not judged
        return "?"
    if value == space.max_arch(value.resolution):
        return f"max @{value.resolution}"
    if value == space.min_arch(value.resolution):
        return f"min @{value.resolution}"
    return f"depths {','.join(map(str, value.depths))} @{value.resolution}"


def _arch_key(space: SearchSpace, arch: Any) -> str | None:
    try:
        return space.validate(arch).to_json()
    except OfaError:
        return None


# --------------------------------------------------------------------------- sections
def _run_section(run: RunInfo) -> str:
    s = run.settings
    rows = [("model_dir", _e(os.path.abspath(run.model_dir))), ("method", _e(run.method)),
            ("space", _e(run.space.name)), ("classes", _e(run.num_classes)), ("dataset", _e(s.get("dataset"))),
            ("image size", _e(s.get("image_size"))),
            ("schedule", _e(f"{s.get('epochs')} epochs x {s.get('steps_per_epoch')} steps, batch "
                            f"{s.get('batch_size')}, learning rate {s.get('learning_rate')}")),
            ("seed", _e(s.get("seed")))]
    costs = CostModels(run.space, run.num_classes)
    for name, arch in (("max subnet", run.space.max_arch(max(run.space.resolutions))),
                       ("min subnet", run.space.min_arch(min(run.space.resolutions)))):
        values = costs.costs(arch)
        rows.append((name, _e(f"{format_cost('macs', values['macs'])}, {format_cost('params', values['params'])}")))
    return _table(("setting", "value"), rows, text_columns=(0, 1))


def _training_section(rows: list[dict[str, str]]) -> str:
    if not rows:
        return _absent("No metrics.csv: the run has not finished an epoch (ofa-train writes one row per epoch).")
    columns = [c for c in ("epoch", "phase", "loss", "loss_full", "loss_min", "loss_random", "accuracy",
                           "val_accuracy_max", "val_accuracy_min", "learning_rate", "seconds") if c in rows[0]]

    def show(column: str, value: str) -> str:
        if value in ("", None) or column in ("epoch", "phase"):
            return _e(value or "-")
        try:
            number = float(value)
        except ValueError:
            return _e(value)
        return _percent(number) if "accuracy" in column else _number(number, 4 if column != "seconds" else 1)
    table = _table(columns, [[show(c, r.get(c, "")) for c in columns] for r in rows], text_columns=(1,))
    png = plots.training_curves_png(rows, "training: loss and accuracy per epoch (validation: BN-recalibrated "
                                          "max and min subnets)")
    return _img(png, "training curves") + table


def _evaluation_section(run: RunInfo, data: dict[str, Any] | None, searches: list[run_files.SearchResults]) -> str:
    if data is None:
        return _absent("No evaluation.json (ofa-evaluate --model_dir=RUN --output=RUN/evaluation.json writes it).")
    points = data["points"]
    raw = data["raw"] if isinstance(data["raw"], dict) else {}
    searched = {}  # the searches' results by arch, so the table names them
    for search in searches:
        for r in search.results:
            key = _arch_key(run.space, r.get("arch"))
            if key is not None:
                searched.setdefault(key, f"searched: {os.path.basename(search.path)}/{os.path.basename(r['file'])}")

    def name(arch: Any) -> str:
        found = searched.get(_arch_key(run.space, arch))
        return describe_arch(run.space, arch) + (f" ({found})" if found else "")
    rows = [(_e(name(p.get("arch"))), _e(format_cost("macs", p.get("macs"))),
             _e(format_cost("params", p.get("params"))), _percent(p.get("accuracy")),
             _e(p.get("bn_calibration_images", "-"))) for p in points]
    where = f"split: {raw.get('split', '?')}, dataset: {raw.get('dataset', '?')}"
    return f"<p>{_e(where)}; each subnet BN-recalibrated first.</p>" + _table(
        ("subnet", "MACs", "params", "top-1 accuracy", "BN calibration images"), rows)


def _search_section(run: RunInfo, searches: list[run_files.SearchResults], predictor: dict[str, Any] | None,
                    latency_costs: CostModels | None) -> str:
    if not searches:
        return _absent("No ofa-search result folder (ofa-search --model_dir=RUN --output_dir=RUN/search writes one).")
    parts = []
    costs = CostModels(run.space, run.num_classes)
    for search in searches:
        name = os.path.basename(search.path)
        rows = []
        for r in search.results:
            baseline = r.get("min_subnet_accuracy")
            measured = r.get("accuracy")
            if isinstance(baseline, (int, float)) and isinstance(measured, (int, float)):
                points = 100 * (measured - baseline)
                against = f'<span class="{"good" if points > 0 else "bad"}">{points:+.2f} points</span>'
            else:
                against = "-"
            rows.append((_e(r["label"]), _e(os.path.basename(r["file"])), _e(r.get("searcher")),
                         _e(r.get("fitness") or "-"), _e(r.get("evaluations")), _e(format_cost("macs", r.get("macs"))),
                         _e(format_cost("params", r.get("params"))),
                         _e(format_cost("latency_ms", r.get("latency_ms"))), _percent(r.get("predicted_accuracy")),
                         _percent(measured), _percent(baseline), against))
        measured_on = run_files.measuring_text(search.settings)
        parts.append(f"<h3>{_e(name)}/ ({_e(search.searcher)}; measured on {_e(measured_on)})</h3>")
        parts.append(_table(("target", "file", "searcher", "fitness", "evaluations", "MACs", "params", "latency",
                             "predicted", "measured", "min subnet, same images", "vs min subnet"), rows,
                            text_columns=(0, 1, 2, 3)))
        if search.min_subnet:
            parts.append(f"<p>The min subnet ({_e(format_cost('macs', search.min_subnet.get('macs')))}) measures "
                         f"{_percent(search.min_subnet['accuracy'])} on the same images: the baseline a searched "
                         "subnet should beat.</p>")
    for cost, models in (("macs", costs), ("latency_ms", latency_costs)):
        if models is None:
            continue
        png = _pareto(run, searches, predictor, models, cost)
        if png:
            parts.append(_img(png, f"Pareto front ({cost})"))
    return "\n".join(parts)


def _pareto(run: RunInfo, searches: list[run_files.SearchResults], predictor: dict[str, Any] | None,
            costs: CostModels, cost: str) -> bytes | None:
    """The run's measured subnets (the predictor's, and each search's candidates) with their
    fronts, the searched subnets and the min subnet, on the `cost` axis."""
    runs, searched, baselines = {}, {}, {}
    if predictor and predictor["measurements"]:
        settings = (predictor["report"].get("info") or {}).get("measured")
        label = f"random subnets ({run_files.measuring_text(settings)})"
        runs[label] = run_files.with_costs(predictor["measurements"], run.space, costs, cost, "predictor")
    for search in searches:
        name = f"{os.path.basename(search.path)} ({run_files.measuring_text(search.settings)})"
        runs[name] = run_files.with_costs(search.candidates, run.space, costs, cost, search.path)
        searched[name] = run_files.with_costs(search.results, run.space, costs, cost, search.path)
        if search.min_subnet and not baselines:
            baselines[f"min subnet ({run_files.measuring_text(search.settings)})"] = run_files.with_costs(
                [search.min_subnet], run.space, costs, cost, search.path)[0]
    if not any(runs.values()) and not any(p.get("accuracy") is not None for s in searched.values() for p in s):
        return None
    title = f"measured and searched subnets: top-1 accuracy vs {plots.cost_axis_label(cost)}"
    return plots.pareto_png(runs, cost, title, searched=searched, baselines=baselines)


def _predictor_section(predictor: dict[str, Any] | None) -> str:
    if predictor is None:
        return _absent("No accuracy predictor (ofa-train-predictor --model_dir=RUN trains one on measured subnets).")
    info = predictor["report"].get("info") or {}
    cv = info.get("cross_validation") or {}
    rows = [("kind", _e(info.get("kind", "?"))),
            (f"Spearman ({info.get('spearman_source', 'held-out')}), the headline", _number(info.get("spearman"))),
            ("Kendall tau (same)", _number(info.get("kendall_tau"))),
            ("cross-validation folds", _e(cv.get("folds", "-"))),
            ("held-out Spearman", _number(info.get("heldout_spearman", info.get("spearman")))),
            ("held-out subnets", _e(info.get("num_heldout", "-"))),
            ("training subnets", _e(info.get("num_train", "-"))),
            ("measured on", _e(run_files.measuring_text(info.get("measured"))))]
    body = _table(("", "value"), rows, text_columns=(0,))
    for warning in info.get("warnings") or []:
        body += f'<p class="warning">warning: {_e(warning)}</p>'
    if predictor["plot"]:
        body += _img(io.read_bytes(predictor["plot"]), "predicted vs measured accuracy")
    else:
        body += _absent("No predicted_vs_measured.png beside the predictor (a predictor trained before the plot "
                        "existed; train it again to get one).")
    return body


def _latency_section(lut: dict[str, Any] | None) -> str:
    if lut is None:
        return _absent("No latency-table check (python benchmarks/lut_accuracy.py --lut=TABLE > "
                       "RUN/lut_accuracy.json, or ofa-report --lut_accuracy=FILE).")
    title = (f"latency table {os.path.basename(str(lut['lut']))}: Spearman {_number(lut['spearman'])}, "
             f"MAPE {_number(lut['mape_percent'], 1)}% ({lut['num_archs']} subnets, back-to-back medians)")
    png = plots.predicted_vs_measured_png({"back-to-back median": (lut["back_to_back"], lut["predicted"]),
                                           "round-robin median": (lut["round_robin"], lut["predicted"])},
                                          title, unit="ms", scale=1.0)
    return _img(png, "latency table: predicted vs measured")


def _exports_section(run: RunInfo, found: list[Point]) -> str:
    if not found:
        return _absent("No exported model (ofa-export --model_dir=RUN --arch=... --output=RUN/export/NAME.tflite "
                       "writes NAME.tflite and NAME.json).")
    rows = []
    for e in found:
        accuracy = e.get("accuracy") if isinstance(e.get("accuracy"), dict) else {}
        latency = e.get("benchmark") or (e.get("latency") if isinstance(e.get("latency"), dict) else {})
        timed = (f"{_number(latency.get('median_ms'))} ms ({latency.get('threads', '?')} thread(s), "
                 f"{latency.get('backend', '?')})" if isinstance(latency.get("median_ms"), (int, float)) else "-")
        rows.append((_e(os.path.relpath(e["path"], run.model_dir)), _e(e.get("quantize")),
                     _e(describe_arch(run.space, e.get("arch"))), _e(format_cost("macs", e.get("macs"))),
                     _e(format_cost("params", e.get("params"))), _e(f"{e.get('tflite_bytes', 0) / 1e6:.2f} MB"),
                     _percent(accuracy.get("keras_accuracy")), _percent(accuracy.get("tflite_accuracy")),
                     _e(f"{accuracy.get('split', '-')}, {accuracy.get('num_images', '-')}" if accuracy else "-"),
                     _e(timed)))
    return _table(("file", "quantize", "subnet", "MACs", "params", "size", "accuracy (Keras)", "accuracy (TFLite)",
                   "measured on (images)", "latency (median)"), rows, text_columns=(0, 1, 2, 8, 9))


# ------------------------------------------------------------------------------- page
def build_report(run: RunInfo, latency_costs: CostModels | None = None, lut_accuracy: str | None = None,
                 title: str | None = None) -> str:
    """The report page of the run (HTML text). `latency_costs`: cost models holding a latency
    table (a second Pareto plot on latency); `lut_accuracy`: benchmarks/lut_accuracy.py's output
    (default: RUN/lut_accuracy.json when there). Every file is read before any plot is drawn."""
    model_dir = run.model_dir
    metrics = run_files.read_metrics(model_dir)
    evaluation_path = os.path.join(model_dir, run_files.EVALUATION_FILE)
    evaluation = None
    if io.isfile(evaluation_path):
        raw = run_files.read_json_file(evaluation_path)
        evaluation = {"raw": raw, "points": run_files.measured_points(evaluation_path, raw)}
    searches = [run_files.read_search_folder(f) for f in run_files.search_folders(model_dir)]
    predictor = run_files.predictor_files(model_dir)
    lut_path = lut_accuracy or os.path.join(model_dir, run_files.LUT_ACCURACY_FILE)
    lut = run_files.lut_accuracy_pairs(lut_path) if lut_accuracy or io.isfile(lut_path) else None
    found = run_files.exports(model_dir)

    bodies = {
        "run": ("Run", _run_section(run)),
        "training": ("Training", _training_section(metrics)),
        "evaluation": ("Measured subnets (ofa-evaluate)", _evaluation_section(run, evaluation, searches)),
        "search": ("Search", _search_section(run, searches, predictor, latency_costs)),
        "predictor": ("Accuracy predictor", _predictor_section(predictor)),
        "latency": ("Latency look-up table", _latency_section(lut)),
        "exports": ("Exports", _exports_section(run, found)),
    }
    heading = title or f"ofa_tf run report: {os.path.basename(os.path.abspath(model_dir))}"
    generated = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    contents = " · ".join(f'<a href="#{k}">{_e(bodies[k][0])}</a>' for k in SECTIONS)
    sections = "\n".join(_section(k, *bodies[k]) for k in SECTIONS)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{_e(heading)}</title>\n'
            f"<style>{_STYLE}</style></head>\n<body>\n<h1>{_e(heading)}</h1>\n"
            f"<p>Generated {_e(generated)} by ofa-report. {contents}</p>\n{sections}\n</body></html>\n")
