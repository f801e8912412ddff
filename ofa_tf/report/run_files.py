"""Reading what a run directory holds for plots and the report page, each file checked.

The tools leave their results in the run directory (or where the user pointed them); this
module finds and reads them, so `ofa-plot-pareto` and `ofa-report` read each kind of file one way:

  metrics.csv                     one row per epoch (ofa-train)
  evaluation.json                 measured subnets (ofa-evaluate --output)
  predictor/measurements.json     measured random subnets (ofa-train-predictor)
  predictor/predictor.json        the predictor's report; predicted_vs_measured.png beside it
  <folder>/summary.json           an ofa-search result set: one JSON per target, the min subnet
                                  measured on the same images, measurements.json (every
                                  subnet the search measured: a measured search's candidates)
  **/NAME.json beside NAME.tflite ofa-export's metadata
  **/*.json with {"device", "results": [{"model", "median_ms", ...}]}
                                  ofa-benchmark-latency --output (matched to exports by file name)
  lut_accuracy.json               benchmarks/lut_accuracy.py's output (its stdout, saved)

A file that is there but unreadable or of the wrong shape is an OfaError naming it (one
line); a file that is not there is simply absent from the result.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _text_io
import os
from typing import Any, Callable, Iterator

from ofa_tf import io
from ofa_tf.errors import OfaError
from ofa_tf.search.costs import CostModels
from ofa_tf.search.predictor import PREDICTOR_DIR, REPORT_FILE
from ofa_tf.spaces import SearchSpace

Point = dict[str, Any]
# The names of the files above (the programs that write them import them from here).
MEASUREMENTS_FILE = "measurements.json"  # in PREDICTOR_DIR and in an ofa-search folder
SUMMARY_FILE = "summary.json"  # an ofa-search folder's index
EVALUATION_FILE = "evaluation.json"
METRICS_FILE = "metrics.csv"  # = ofa_tf.runs.directory.METRICS_FILE (that module loads TensorFlow)
LUT_ACCURACY_FILE = "lut_accuracy.json"
PREDICTOR_PLOT = "predicted_vs_measured.png"  # in PREDICTOR_DIR, beside REPORT_FILE
MAX_DEPTH = 3  # how deep below the run directory exports and latency files are looked for


def read_json_file(path: str) -> Any:
    """The JSON in `path`; an unreadable or malformed file is one OfaError naming it."""
    try:
        return io.read_json(path)
    except (OSError, UnicodeDecodeError) as e:
        raise OfaError(f"{path}: unreadable ({e.strerror if isinstance(e, OSError) else e})") from None
    except (ValueError, RecursionError) as e:
        raise OfaError(f"{path}: not valid JSON ({' '.join(str(e).split())[:100]})") from None


def measured_points(path: str, data: Any = None) -> list[Point]:
    """The measured subnets in the JSON file `path` (a list of {"accuracy", ...}, or an object
    with such a "results" list, as ofa-evaluate and ofa-train-predictor write them)."""
    data = read_json_file(path) if data is None else data
    points = data.get("results") if isinstance(data, dict) else data
    if not isinstance(points, list) or not all(isinstance(p, dict) and _is_accuracy(p.get("accuracy"))
                                               for p in points):
        raise OfaError(f"{path}: expected a list of measured subnets ({{'accuracy': ..., 'macs': ...}}) or an "
                       "object with such a 'results' list")
    return points


def _is_accuracy(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1


# ------------------------------------------------------------------------ ofa-search folders
@dataclasses.dataclass
class SearchResults:
    """One ofa-search result set: its results (each a result file's content, plus "label":
    the target as text, and "accuracy": the measured one, None when not measured), the
    subnets it measured (`candidates`), and the run's min subnet measured on the same images."""

    path: str
    searcher: str
    results: list[Point]
    candidates: list[Point]
    min_subnet: Point | None
    settings: dict[str, Any]


def is_search_folder(path: str) -> bool:
    """Whether `path` is an ofa-search output folder (its summary.json is there)."""
    return io.isdir(path) and io.isfile(os.path.join(path, SUMMARY_FILE))


def read_search_folder(path: str) -> SearchResults:
    """The result set in the ofa-search output folder `path`. Result files are looked up by
    name in `path` (the summary's paths are where the search wrote them; the folder may
    have moved since)."""
    summary_path = os.path.join(path, SUMMARY_FILE)
    summary = read_json_file(summary_path)
    if not (isinstance(summary, dict) and isinstance(summary.get("results"), list)
            and all(isinstance(r, dict) and isinstance(r.get("file"), str) for r in summary["results"])):
        raise OfaError(f"{summary_path}: not an ofa-search summary (expected a 'results' list of {{'file': ...}})")
    results = []
    for entry in summary["results"]:
        file = os.path.join(path, os.path.basename(entry["file"]))
        if not io.isfile(file):
            raise OfaError(f"{summary_path}: lists {os.path.basename(entry['file'])}, which is not in {path}")
        result = read_json_file(file)
        if not isinstance(result, dict) or not isinstance(result.get("arch"), dict):
            raise OfaError(f"{file}: not an ofa-search result (no 'arch' object)")
        target = result.get("target") if isinstance(result.get("target"), dict) else {}
        accuracy = result.get("measured_accuracy")
        results.append({**result, "file": file, "label": ",".join(f"{k}={v}" for k, v in target.items()),
                        "accuracy": accuracy if _is_accuracy(accuracy) else None})
    measurements = os.path.join(path, MEASUREMENTS_FILE)
    candidates = measured_points(measurements) if io.isfile(measurements) else []
    baseline = summary.get("min_subnet")
    if isinstance(baseline, dict) and _is_accuracy(baseline.get("measured_accuracy")):
        baseline = {**baseline, "accuracy": baseline["measured_accuracy"]}
    else:
        baseline = None
    settings = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}
    return SearchResults(path, str(summary.get("searcher", "?")), results, candidates, baseline, settings)


def search_folders(model_dir: str) -> list[str]:
    """The ofa-search output folders directly inside the run directory, by name."""
    return [os.path.join(model_dir, name) for name in sorted(io.listdir(model_dir))
            if is_search_folder(os.path.join(model_dir, name))]


def measuring_text(settings: dict[str, Any] | None) -> str:
    """How subnets were measured, in a few words: `validation, at most 500 images` (a split
    smaller than the number asked for is measured whole)."""
    if not isinstance(settings, dict):
        return "?"
    split = settings.get("split", "?")
    images = settings.get("eval_images")
    return f"{split}, at most {images} images" if images else str(split)


# ------------------------------------------------------------------------------ costs
def with_costs(points: list[Point], space: SearchSpace | None, costs: CostModels | None, cost: str,
               source: str) -> list[Point]:
    """`points` with the `cost` value each needs: kept when present, else computed from the
    point's arch (`costs`, which holds the latency table for latency_ms). A point with no
    value and no arch to compute it from is an OfaError naming `source`."""
    if costs is None or cost not in costs.models:
        return points
    model = costs.models[cost]
    out = []
    for point in points:
        if cost == "latency_ms" or point.get(cost) is None:
            arch = point.get("arch")
            if not isinstance(arch, dict):
                raise OfaError(f"{source}: a measured subnet without an 'arch' to compute its {cost} from")
            try:
                point = {**point, cost: float(model(space.validate(arch)))}
            except OfaError as e:
                raise OfaError(f"{source}: {e}") from None
        out.append(point)
    return out


def cost_span(space: SearchSpace, costs: CostModels, cost: str) -> tuple[float, float]:
    """The (min subnet, max subnet) cost of a space: the papers' normalisation range."""
    model = costs.models[cost]
    resolutions = sorted(space.resolutions)
    table = getattr(model, "table", None)  # a latency table may cover only some sizes
    covered = [r for r in resolutions if r in getattr(table, "resolutions", resolutions)]
    resolutions = covered or resolutions
    return float(model(space.min_arch(resolutions[0]))), float(model(space.max_arch(resolutions[-1])))


# ------------------------------------------------------------------------ predictor
def predictor_files(model_dir: str) -> dict[str, Any] | None:
    """The run's accuracy predictor as ofa-train-predictor left it: {"report" (predictor.json),
    "plot" (path of its predicted-vs-measured PNG, or None), "measurements" (its measured
    subnets, or None)}; None when the run has no predictor."""
    folder = os.path.join(model_dir, PREDICTOR_DIR)
    report = os.path.join(folder, REPORT_FILE)
    if not io.isfile(report):
        return None
    data = read_json_file(report)
    if not isinstance(data, dict) or not isinstance(data.get("info"), dict):
        raise OfaError(f"{report}: not an ofa-train-predictor report (no 'info' object)")
    plot = os.path.join(folder, PREDICTOR_PLOT)
    measurements = os.path.join(folder, MEASUREMENTS_FILE)
    return {"report": data, "plot": plot if io.isfile(plot) else None,
            "measurements": measured_points(measurements) if io.isfile(measurements) else None}


# ------------------------------------------------------------------------- training
def read_metrics(model_dir: str) -> list[dict[str, str]]:
    """metrics.csv's rows (none when the run has not finished an epoch)."""
    path = os.path.join(model_dir, METRICS_FILE)
    if not io.isfile(path):
        return []
    try:
        return list(csv.DictReader(_text_io.StringIO(io.read_text(path), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise OfaError(f"{path}: unreadable metrics ({e})") from None


# --------------------------------------------------------------------------- exports
def _walk(top: str, depth: int = MAX_DEPTH) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) under `top`, `depth` levels down at most, skipping checkpoints
    and TensorBoard logs (large, and never exports)."""
    names = sorted(io.listdir(top))
    yield top, [n for n in names if io.isfile(os.path.join(top, n))]
    if depth:
        for name in names:
            sub = os.path.join(top, name)
            if name not in ("checkpoints", "logs") and not name.startswith(".") and io.isdir(sub):
                yield from _walk(sub, depth - 1)


def exports(model_dir: str) -> list[Point]:
    """ofa-export's metadata of every `.tflite` under the run directory that has its NAME.json
    beside it, with "path" (the .tflite) and "benchmark" (an ofa-benchmark-latency result found
    for that file name, or None)."""
    found, latency = [], {}
    for folder, files in _walk(model_dir):
        for name in files:
            if not name.endswith(".json"):
                continue
            path = os.path.join(folder, name)
            if name[:-len(".json")] + ".tflite" in files:
                metadata = read_json_file(path)
                if isinstance(metadata, dict) and "tflite_bytes" in metadata and "arch" in metadata:
                    found.append({**metadata, "path": os.path.join(folder, name[:-len(".json")] + ".tflite")})
                continue
            for result in _benchmark_results(path):
                latency[os.path.basename(result["model"])] = result
    for entry in found:
        entry["benchmark"] = latency.get(os.path.basename(entry["path"]))
    return found


def _benchmark_results(path: str) -> list[Point]:
    """The per-model results of an ofa-benchmark-latency JSON file; none for any other JSON
    (a run directory holds many; only this shape is read as latency)."""
    try:
        data = io.read_json(path)
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return []
    if not (isinstance(data, dict) and "device" in data and isinstance(data.get("results"), list)):
        return []
    return [r for r in data["results"] if isinstance(r, dict) and isinstance(r.get("model"), str)]


# ---------------------------------------------------------------------- latency table
def lut_accuracy_pairs(path: str) -> dict[str, Any]:
    """benchmarks/lut_accuracy.py's output read for a plot: {"predicted", "back_to_back",
    "round_robin" (ms lists, one per subnet), "spearman" (predicted vs back-to-back median),
    "mape_percent", "num_archs", "lut"}."""
    data = read_json_file(path)
    rows = data.get("predicted_median_vs_round_robin_vs_back_to_back_ms") if isinstance(data, dict) else None
    if not (isinstance(rows, list) and rows and all(isinstance(r, list) and len(r) == 3 for r in rows)):
        raise OfaError(f"{path}: not benchmarks/lut_accuracy.py output (no "
                       "'predicted_median_vs_round_robin_vs_back_to_back_ms' rows)")
    try:
        predicted, round_robin, back_to_back = ([float(r[i]) for r in rows] for i in range(3))
    except (TypeError, ValueError):
        raise OfaError(f"{path}: latency rows hold a value that is not a number") from None
    headline = (data.get("back_to_back") or {}).get("median_vs_median") or {}
    return {"predicted": predicted, "round_robin": round_robin, "back_to_back": back_to_back,
            "spearman": headline.get("spearman"), "mape_percent": headline.get("mape_percent"),
            "num_archs": len(rows), "lut": data.get("lut")}


def optional(path: str, reader: Callable[[str], Any]) -> Any:
    """`reader(path)` when the file is there, else None."""
    return reader(path) if io.isfile(path) else None
