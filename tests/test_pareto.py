"""Pareto front, bucket table, mean Pareto accuracy, and the report files."""

import json

import pytest

from ofa_tf.report import plots
from ofa_tf.search import pareto as reports

pytestmark = pytest.mark.unit


def _points():
    #       macs  accuracy
    data = [(10, 0.50), (20, 0.60), (20, 0.55), (30, 0.58), (40, 0.70), (50, 0.69), (60, 0.75)]
    return [{"macs": m, "accuracy": a, "latency_ms": m / 10} for m, a in data]


def test_pareto_front_buckets_and_mean_accuracy():
    points = _points()
    front = reports.pareto_front(points)
    assert [(p["macs"], p["accuracy"]) for p in front] == [(10, 0.5), (20, 0.6), (40, 0.7), (60, 0.75)]
    buckets = reports.cost_buckets(points, 10, 70, 6)
    assert [b["count"] for b in buckets] == [1, 2, 1, 1, 1, 1]
    assert buckets[1]["best"]["accuracy"] == 0.6 and buckets[-1]["best"]["macs"] == 60
    # trapezoids over x = (macs - 10) / 60: [0, 1/6, 1/2, 5/6]
    area = (1 / 6) * 0.55 + (1 / 3) * 0.65 + (1 / 3) * 0.725
    assert reports.mean_pareto_accuracy(points, 10, 70) == pytest.approx(area / (5 / 6))
    assert reports.mean_pareto_accuracy(points[:1], 10, 70) == 0.5


def test_report_files(tmp_path):
    runs = {"deps": _points(), "bignas": [{**p, "accuracy": p["accuracy"] - 0.02} for p in _points()]}
    summaries = {name: reports.summarize(points, 10, 70) for name, points in runs.items()}
    assert summaries["deps"]["mean_pareto_accuracy"] > summaries["bignas"]["mean_pareto_accuracy"]
    json.dumps(summaries)  # JSON-able as it is
    table = reports.markdown(summaries).splitlines()
    assert table[0] == "| macs bucket | deps | bignas |"
    assert len(table) == 2 + 6 + 2 and table[-2].startswith("| mean Pareto accuracy | ")
    assert "60.00% (20)" in table[3]
    path = tmp_path / "pareto.png"
    searched = {"deps": [{"latency_ms": 3.5, "accuracy": 0.72, "label": "flops=40"}]}
    plots.save_png(plots.pareto_png(runs, cost="latency_ms", title="two runs", searched=searched,
                                    baselines={"min subnet": {"latency_ms": 1.0, "accuracy": 0.5}}), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["pareto.png"]  # no temporary file left
    with pytest.raises(ValueError, match="no measured points"):
        reports.summarize([{"accuracy": 0.5}], 0, 1, cost="latency_ms")


def test_front_staircase():
    """The front is drawn level from each point to the next one's cost, then up (steps-post),
    and on to the costliest subnet."""
    front = reports.pareto_front(_points())
    xs, ys = plots.staircase(front, "macs", right=70)
    assert xs == [10, 20, 40, 60, 70] and ys == [0.5, 0.6, 0.7, 0.75, 0.75]
    assert plots.staircase(front, "macs", right=60) == ([10, 20, 40, 60], [0.5, 0.6, 0.7, 0.75])
    assert plots.staircase([], "macs", right=5) == ([], [])
