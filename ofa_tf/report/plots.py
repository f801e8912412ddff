"""The figures of a run, as PNG bytes: Pareto fronts, predicted vs measured, training curves.

Each function takes plain data (measured-subnet dicts, number lists, metrics.csv rows) and
returns the PNG's bytes, so `ofa-plot-pareto` and `ofa-train-predictor` write them as files
(`save_png`, atomically) and `ofa-report` embeds them in its page; none reads a run itself.

Conventions:
- A Pareto front is drawn as a staircase (`drawstyle="steps-post"`): the best accuracy
  reachable at a cost is that of the front point at or below it, so the line holds level
  until the next front point and then steps up; it runs on to the run's costliest subnet.
- Searched subnets (ofa-search's results) are stars over the measured ones, each labelled
  with its target; the min subnet measured with them is a black diamond, the baseline a
  search should beat.
- A predicted-vs-measured plot has the y = x line and the rank correlation in its title;
  the accuracy predictor is judged by ranking, so a cloud off the line but monotone is fine.

matplotlib is imported when the first figure is made (Agg: files only, no display): it
takes a second or two, which the programs' `--help` and the light modules must not pay.
"""

from __future__ import annotations

import io as _bytes_io
import math
import textwrap
from typing import Any, Mapping, Sequence

from ofa_tf.io import atomic_write, write_bytes
from ofa_tf.search.pareto import pareto_front

Point = dict[str, Any]
COST_LABELS = {"macs": ("MACs", 1e6, "M"), "params": ("parameters", 1e6, "M"), "latency_ms": ("latency", 1.0, "ms")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (pyplot keeps every open figure)."""
    plt = _pyplot()
    buffer = _bytes_io.BytesIO()
    try:
        figure.tight_layout()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def save_png(png: bytes, path: str) -> None:
    """Writes PNG bytes to `path` atomically (never half a file)."""
    atomic_write(path, lambda tmp: write_bytes(tmp, png))


def cost_axis_label(cost: str) -> str:
    name, _, unit = COST_LABELS.get(cost, (cost, 1.0, ""))
    return f"{name} ({unit})" if unit else name


def staircase(front: Sequence[Point], cost: str, right: float | None = None) -> tuple[list[float], list[float]]:
    """(costs, accuracies) of a front's staircase for `drawstyle="steps-post"`, continued
    level to `right` (the costliest subnet) when that lies beyond the last front point."""
    xs = [float(p[cost]) for p in front]
    ys = [float(p["accuracy"]) for p in front]
    if front and right is not None and right > xs[-1]:
        xs.append(float(right))
        ys.append(ys[-1])
    return xs, ys


def pareto_png(runs: Mapping[str, Sequence[Point]], cost: str = "macs", title: str | None = None,
               searched: Mapping[str, Sequence[Point]] | None = None,
               baselines: Mapping[str, Point] | None = None) -> bytes:
    """Every measured subnet of each run (dots) and its Pareto front (a staircase), one colour
    per run; `searched[name]`: searched subnets (stars, labelled by their "label" key) drawn in
    the colour of run `name` (or a colour of their own when no run has that name);
    `baselines[label]`: single reference subnets (the min subnet), black diamonds.
    Accuracies are drawn in %, costs in M (MACs, params) or ms."""
    plt = _pyplot()
    _, scale, _ = COST_LABELS.get(cost, (cost, 1.0, ""))
    searched = searched or {}
    baselines = baselines or {}
    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    colours: dict[str, str] = {}
    for i, (name, points) in enumerate(runs.items()):
        colour = colours[name] = f"C{i}"
        points = [p for p in points if p.get(cost) is not None]
        if not points:
            continue
        axes.scatter([p[cost] / scale for p in points], [100 * p["accuracy"] for p in points], s=12, alpha=0.35,
                     color=colour, label=f"{name}: {len(points)} measured subnets")
        front = pareto_front(points, cost)
        xs, ys = staircase(front, cost, max(p[cost] for p in points))
        axes.plot([x / scale for x in xs], [100 * y for y in ys], drawstyle="steps-post", color=colour,
                  linewidth=1.6, label=f"{name}: Pareto front ({len(front)} subnets)")
        axes.scatter([p[cost] / scale for p in front], [100 * p["accuracy"] for p in front], s=22, color=colour)
    for j, (name, points) in enumerate(searched.items()):
        colour = colours.get(name, f"C{len(runs) + j}")
        points = [p for p in points if p.get(cost) is not None and p.get("accuracy") is not None]
        if not points:
            continue
        axes.scatter([p[cost] / scale for p in points], [100 * p["accuracy"] for p in points], marker="*", s=180,
                     color=colour, edgecolors="black", linewidths=0.7, zorder=5, label=f"{name}: searched")
        for p in points:
            if p.get("label"):
                axes.annotate(str(p["label"]), (p[cost] / scale, 100 * p["accuracy"]), textcoords="offset points",
                              xytext=(6, 6), fontsize=8)
    for label, point in baselines.items():
        if point.get(cost) is None or point.get("accuracy") is None:
            continue
        axes.scatter([point[cost] / scale], [100 * point["accuracy"]], marker="D", s=50, color="black", zorder=6,
                     label=label)
    axes.margins(0.08)  # room for the stars' labels at the edges
    axes.set_xlabel(cost_axis_label(cost))
    axes.set_ylabel("top-1 accuracy (%)")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="best")
    axes.set_title(title or f"Pareto front: top-1 accuracy vs {cost_axis_label(cost)}")
    return _png(figure)


def predicted_vs_measured_png(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str,
                              unit: str = "%", scale: float = 100.0) -> bytes:
    """A scatter of measured (x) against predicted (y) values, one colour per series
    ({label: (measured, predicted)}), with the y = x line. Values are multiplied by `scale`
    (100: accuracies drawn in %) and labelled in `unit`."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.6, 5.0), dpi=110)
    every: list[float] = []
    for i, (label, (measured, predicted)) in enumerate(series.items()):
        xs = [scale * float(v) for v in measured]
        ys = [scale * float(v) for v in predicted]
        every += xs + ys
        axes.scatter(xs, ys, s=16, alpha=0.7, color=f"C{i}", label=f"{label} ({len(xs)})")
    finite = [v for v in every if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = 0.05 * (high - low or 1.0)
        axes.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", linewidth=1, linestyle="--",
                  label="predicted = measured")
    axes.set_xlabel(f"measured ({unit})")
    axes.set_ylabel(f"predicted ({unit})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(textwrap.fill(title, 64), fontsize=10)
    return _png(figure)


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


TRAINING_LOSSES = ("loss", "loss_full", "loss_min", "loss_random")
TRAINING_ACCURACIES = ("accuracy", "val_accuracy_max", "val_accuracy_min")


def training_curves_png(rows: Sequence[Mapping[str, Any]], title: str = "training") -> bytes:
    """Losses (left) and accuracies (right: the training batches', and the max and min
    subnets' on the validation split) per epoch, from metrics.csv rows (`EpochReport`);
    a dotted line where the phase changes. Empty cells (a subnet loss before the shrinking
    phase) leave gaps."""
    plt = _pyplot()
    figure, (losses, accuracies) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    epochs = [_number(r.get("epoch")) for r in rows]
    for axes, columns, scale in ((losses, TRAINING_LOSSES, 1.0), (accuracies, TRAINING_ACCURACIES, 100.0)):
        for column in columns:
            points = [(e, _number(r.get(column))) for e, r in zip(epochs, rows)]
            points = [(e, scale * v) for e, v in points if e is not None and v is not None]
            if points:
                axes.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, label=column)
        for before, after, row in zip(rows, rows[1:], rows[1:]):
            if before.get("phase") != after.get("phase") and _number(row.get("epoch")) is not None:
                axes.axvline(_number(row.get("epoch")) - 0.5, color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    losses.set_ylabel("loss")
    accuracies.set_ylabel("accuracy (%)")
    figure.suptitle(title, fontsize=11)
    return _png(figure)
