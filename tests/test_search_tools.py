"""tools.train_predictor -> tools.search -> tools.plot_pareto on a tiny run, and their one-line errors."""

import json
import os
import random

import pytest

from helpers import assert_one_line_error, make_run_dir, run_tool, synthetic_latency_table, tiny_space
from ofa_tf.search import AccuracyPredictor, CostModels
from ofa_tf.training.record import SampledRecord

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = make_run_dir(tmp_path_factory.mktemp("search_run"))
    space = tiny_space()
    record = SampledRecord()
    for step in range(1, 40):
        record.update(step, [space.sample(random.Random(step))])
    record.update(0, [space.min_arch(16)])
    record.save(path)
    return path


def test_predictor_search_and_pareto_report(run_dir, tmp_path):
    space = tiny_space()
    zero = tmp_path / "zero"
    done = run_tool("search", f"--model_dir={run_dir}", "--flops=200k", "--searcher=zero_cost",
                    "--measure=false", f"--output_dir={zero}")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(zero / "flops-200k.json") as f:
        chosen = json.load(f)
    assert chosen["evaluations"] == 0 and chosen["macs"] <= 200e3 and chosen["last_trained_step"] >= 0
    assert chosen["predicted_accuracy"] is None  # no predictor trained yet: zero-cost needs none

    done = run_tool("train_predictor", f"--model_dir={run_dir}", "--num_archs=12", "--eval_images=100",
                    "--bn_calibration_images=32", "--epochs=20")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["num_train"] + report["num_heldout"] == 12 and -1 <= report["spearman"] <= 1
    assert report["cross_validation"]["folds"] == 5 and len(report["cross_validation"]["fold_spearman"]) == 5
    # the headline is the cross-validated figure; 2 held-out subnets and a poor ranking are warned about
    assert report["spearman_source"] == "cross-validated"
    assert report["spearman"] == report["cross_validation"]["spearman"]
    assert "warning: only 2 held-out subnets" in done.stderr
    assert ("warning: the predictor ranks subnets poorly" in done.stderr) == (report["spearman"] <= 0.3)
    assert len(report["warnings"]) == done.stderr.count("warning: ")
    with open(os.path.join(run_dir, "predictor", "predicted_vs_measured.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert report["kind"] == report["selection"]["chosen"] in ("mlp", "linear")  # --predictor=auto, the default
    with open(os.path.join(run_dir, "predictor", "measurements.json")) as f:
        measured = json.load(f)["results"]
    assert len(measured) == 12 and all(0 <= m["accuracy"] <= 1 for m in measured)

    costs = CostModels(space, 10)
    low = costs.costs(space.min_arch(16))["macs"]
    flops = [int(low * 1.5), int(low * 3)]
    lut = synthetic_latency_table(space, str(tmp_path / "lut.json"))
    latency_budget = round(lut.predict_ms(space.sample(random.Random(3), 24)), 3)
    out = tmp_path / "search"
    done = run_tool("search", f"--model_dir={run_dir}", f"--flops={flops[0]},{flops[1]}", "--params=40k",
                    f"--latency_ms={latency_budget}", f"--latency_lut={tmp_path / 'lut.json'}",
                    f"--output_dir={out}", "--population=16", "--generations=5", "--eval_images=100",
                    "--bn_calibration_images=32")
    assert done.returncode == 0, done.stderr[-3000:]
    files = [f"flops-{flops[i]}_params-40k_latency_ms-{latency_budget}.json" for i in range(2)]
    assert sorted(os.listdir(out)) == sorted(files + ["measurements.json", "summary.json"])
    with open(out / "summary.json") as f:
        baseline = json.load(f)["min_subnet"]  # the min subnet, measured on the same images
    assert baseline["arch"] == space.min_arch(16).to_dict() and 0 <= baseline["measured_accuracy"] <= 1
    with open(out / "measurements.json") as f:
        measured_archs = [m["arch"] for m in json.load(f)["results"]]
    assert baseline["arch"] in measured_archs
    for name, budget in zip(files, flops):
        with open(out / name) as f:
            result = json.load(f)
        arch = space.parse_arch(str(out / name))  # what tools.export_tflite --arch=FILE does
        assert result["arch"] == arch.to_dict()
        assert result["macs"] == costs.costs(arch)["macs"] <= budget and result["params"] <= 40e3
        assert result["latency_ms"] == pytest.approx(lut.predict_ms(arch)) and result["latency_ms"] <= latency_budget
        assert 0 <= result["measured_accuracy"] <= 1 and isinstance(result["predicted_accuracy"], float)
        assert result["evaluations"] == 16 * 6
        assert result["min_subnet_accuracy"] == baseline["measured_accuracy"] and result["arch"] in measured_archs
        below = f"warning: {name}: measures" in done.stderr
        assert below == (result["measured_accuracy"] < baseline["measured_accuracy"])

    plots = tmp_path / "plots"
    done = run_tool("plot_pareto", f"--runs=run={run_dir},copy={run_dir}/predictor/measurements.json",
                    f"--output_dir={plots}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(plots)) == ["pareto.json", "pareto.md", "pareto.png"]
    with open(plots / "pareto.json") as f:
        summary = json.load(f)
    assert summary["run"]["num_points"] == 12 and len(summary["run"]["buckets"]) == 6
    assert summary["run"]["low"] == low  # the run's min subnet .. max subnet range
    assert "| mean Pareto accuracy |" in done.stdout

    # a search folder: the subnets it measured and found, on the latency axis of a look-up table
    done = run_tool("plot_pareto", f"--runs=searched={out}", f"--latency_lut={tmp_path / 'lut.json'}",
                    f"--output_dir={tmp_path / 'plots_ms'}", "--title=searched subnets")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(tmp_path / "plots_ms" / "pareto.json") as f:
        summary = json.load(f)["searched"]
    assert summary["cost"] == "latency_ms" and summary["num_points"] == len(measured_archs)
    assert summary["low"] == pytest.approx(lut.predict_ms(space.min_arch(16)))  # the min subnet: the fastest measured
    assert sorted(p["label"] for p in summary["searched"]) == sorted(["flops=%d,params=40k,latency_ms=%s"
                                                                      % (b, latency_budget) for b in flops])
    for point in summary["searched"]:
        with open(point["file"]) as f:
            result = json.load(f)
        assert point["latency_ms"] == pytest.approx(lut.predict_ms(space.parse_arch(result["arch"])))
    assert (tmp_path / "plots_ms" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(run_tool("plot_pareto", f"--runs=searched={out}", f"--latency_lut={tmp_path / 'lut.json'}",
                                   "--cost=macs", f"--output_dir={tmp_path / 'never'}"),
                          "--latency_lut=")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("args, message", [
    (["--flops=abc"], "flops=abc: expected a number like 150M"),
    (["--targets=energy=5"], "unknown constraint 'energy'"),
    (["--flops=1k"], "flops=1k: impossible budget; the smallest subnet needs 52.67k MACs (52672)"),
])
def test_search_bad_budgets(run_dir, tmp_path, args, message):
    assert_one_line_error(run_tool("search", f"--model_dir={run_dir}", f"--output_dir={tmp_path}", *args), message)


def test_search_rejects_untrained_run_and_foreign_predictor(run_dir, tmp_path):
    empty = tmp_path / "untrained"
    make_run_dir(empty)
    for checkpoint in os.listdir(empty / "checkpoints"):
        os.remove(empty / "checkpoints" / checkpoint)
    assert_one_line_error(run_tool("search", f"--model_dir={empty}", "--flops=1M", f"--output_dir={tmp_path}"),
                          "no trained supernet")
    other = tiny_space(resolutions=(16, 32))
    archs = [other.sample(random.Random(i)) for i in range(8)]
    AccuracyPredictor.fit(other, archs, [0.1 * i for i in range(8)], epochs=1, hidden=(8,)).save(
        str(tmp_path / "foreign"))
    assert_one_line_error(run_tool("search", f"--model_dir={run_dir}", "--flops=1M", f"--output_dir={tmp_path}",
                                   f"--predictor_dir={tmp_path / 'foreign'}", "--measure=false"),
                          "predictor was trained for another space")
