"""The papers' ways of summarising a supernet's subnets (DεpS, arXiv:2407.06167, §5.1; OFA).

A supernet is judged by its measured subnets as a whole, not by one of them:
- the Pareto front: subnets no other subnet beats on both cost (lower) and accuracy (higher);
- the 6-bucket table: the supernet's cost range (min subnet .. max subnet) cut into 6 equal
  buckets, and the most accurate measured subnet in each;
- mean Pareto accuracy: the area under the front's accuracy vs normalised cost curve
  (cost mapped to [0, 1] over min .. max subnet), divided by the width the front spans,
  so it reads as an accuracy (trapezoid rule between front points).

Points are dicts with at least "accuracy" and a cost key ("macs" by default), as
`ofa_tf.evaluation.evaluate_archs` returns them. `summarize` bundles the three as one JSON
report and `markdown` renders bucket tables of one or several runs side by side
(`ofa-plot-pareto` writes both, and the plot: `ofa_tf.report.plots.pareto_png`, the front
as a staircase). No plotting here: search stays free of matplotlib.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

Point = dict[str, Any]


def pareto_front(points: Sequence[Point], cost: str = "macs") -> list[Point]:
    """The non-dominated points, by increasing cost (and so increasing accuracy)."""
    front: list[Point] = []
    for point in sorted(points, key=lambda p: (p[cost], -p["accuracy"])):
        if not front or point["accuracy"] > front[-1]["accuracy"]:
            front.append(point)
    return front


def cost_buckets(points: Sequence[Point], low: float, high: float, num_buckets: int = 6,
                 cost: str = "macs") -> list[dict[str, Any]]:
    """For each of `num_buckets` equal slices of [low, high]: its bounds and the most accurate
    point inside (None when no measured subnet falls in it). The last bucket includes `high`."""
    if high <= low:
        raise ValueError(f"cost range [{low}, {high}] is empty")
    width = (high - low) / num_buckets
    rows = []
    for b in range(num_buckets):
        lo, hi = low + b * width, low + (b + 1) * width
        inside = [p for p in points
                  if lo <= p[cost] < hi or (b == num_buckets - 1 and p[cost] == high)]
        best = max(inside, key=lambda p: p["accuracy"]) if inside else None
        rows.append({"low": lo, "high": hi, "count": len(inside), "best": best})
    return rows


def mean_pareto_accuracy(points: Sequence[Point], low: float, high: float, cost: str = "macs") -> float:
    """Area under the Pareto front's accuracy vs normalised cost, per unit of normalised cost
    spanned (a single point gives its own accuracy)."""
    if high <= low:
        raise ValueError(f"cost range [{low}, {high}] is empty")
    front = pareto_front(points, cost)
    if not front:
        raise ValueError("no points")
    xs = [(p[cost] - low) / (high - low) for p in front]
    ys = [p["accuracy"] for p in front]
    if len(front) == 1 or xs[-1] == xs[0]:
        return float(ys[-1])
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    return float(area / (xs[-1] - xs[0]))


# --------------------------------------------------------------------------- report files
def summarize(points: Sequence[Point], low: float, high: float, cost: str = "macs",
              num_buckets: int = 6) -> dict[str, Any]:
    """Everything the papers report for one run's measured subnets, as one JSON-able dict:
    the front, the `num_buckets` table and the mean Pareto accuracy over [low, high]."""
    points = [p for p in points if p.get(cost) is not None]
    if not points:
        raise ValueError(f"no measured points with a {cost!r} value")
    return {"cost": cost, "low": low, "high": high, "num_points": len(points),
            "mean_pareto_accuracy": mean_pareto_accuracy(points, low, high, cost),
            "buckets": cost_buckets(points, low, high, num_buckets, cost),
            "front": pareto_front(points, cost)}


def _cost_text(value: float, cost: str) -> str:
    if cost == "latency_ms":
        return f"{value:.3g} ms"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def markdown(summaries: Mapping[str, dict[str, Any]]) -> str:
    """The bucket table of one or several runs (a column per run) and their mean Pareto
    accuracy, as Markdown: each cell is the best accuracy in the bucket (and its cost)."""
    names = list(summaries)
    first = summaries[names[0]]
    cost = first["cost"]
    lines = [f"| {cost} bucket | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for b, bucket in enumerate(first["buckets"]):
        cells = []
        for name in names:
            best = summaries[name]["buckets"][b]["best"]
            cells.append("-" if best is None else f"{100 * best['accuracy']:.2f}% ({_cost_text(best[cost], cost)})")
        bounds = f"{_cost_text(bucket['low'], cost)}-{_cost_text(bucket['high'], cost)}"
        lines.append(f"| {bounds} | " + " | ".join(cells) + " |")
    lines.append("| mean Pareto accuracy | " + " | ".join(
        f"{100 * summaries[n]['mean_pareto_accuracy']:.2f}%" for n in names) + " |")
    lines.append("| measured subnets | " + " | ".join(str(summaries[n]["num_points"]) for n in names) + " |")
    return "\n".join(lines) + "\n"
