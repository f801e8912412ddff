"""ofa-report on a small finished run: one self-contained HTML page, section by section.

The run is real and small: a tiny space trained for 2 x 2 steps, searched by measured
accuracy, a predictor fitted, the searched subnet exported and timed, and a latency table
checked by benchmarks/lut_accuracy.py. The predictor is fitted on accuracies unrelated to
the archs (written as its measurements file, which ofa-train-predictor reuses instead of
measuring): a near-chance predictor, whose warning the report must carry.
"""

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import assert_one_line_error, run_tool, synthetic_latency_table, tiny_space
from ofa_tf.errors import OfaError
from ofa_tf.report import run_files
from ofa_tf.report.page import SECTIONS
from ofa_tf.search import CostModels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
PNG = b"\x89PNG\r\n\x1a\n"


def _ok(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.unit
def test_run_files_are_read_as_the_programs_write_them(tmp_path):
    """Exports get the latency of the benchmark file that timed them (by file name); a search
    folder whose summary lists a missing file, and a JSON of another kind given as the latency
    check, are one-line errors naming the file."""
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "a.tflite").write_bytes(b"")
    (tmp_path / "export" / "a.json").write_text(json.dumps({"arch": {}, "tflite_bytes": 10, "quantize": "none"}))
    (tmp_path / "export" / "b.json").write_text(json.dumps({"arch": {}, "tflite_bytes": 20}))  # no b.tflite
    (tmp_path / "timing.json").write_text(json.dumps({"device": "host", "results": [
        {"model": "/elsewhere/a.tflite", "median_ms": 1.5}, {"model": "/elsewhere/c.tflite", "median_ms": 9.0}]}))
    (tmp_path / "checkpoints").mkdir()  # never searched
    (tmp_path / "checkpoints" / "x.json").write_text(json.dumps({"device": "host", "results": [
        {"model": "a.tflite", "median_ms": 99.0}]}))
    [found] = run_files.exports(str(tmp_path))
    assert found["path"].endswith("a.tflite") and found["benchmark"]["median_ms"] == 1.5

    search = tmp_path / "search"
    search.mkdir()
    (search / "summary.json").write_text(json.dumps({"searcher": "random", "results": [{"file": "/x/flops-8M.json"}]}))
    assert run_files.search_folders(str(tmp_path)) == [str(search)]
    with pytest.raises(OfaError, match=r"summary.json: lists flops-8M.json, which is not in") as error:
        run_files.read_search_folder(str(search))
    assert "\n" not in str(error.value)
    (search / "flops-8M.json").write_text(json.dumps({"arch": {"resolution": 16}, "target": {"flops": "8M"},
                                                       "measured_accuracy": 0.4, "min_subnet_accuracy": 0.3}))
    result = run_files.read_search_folder(str(search))
    assert result.results[0]["label"] == "flops=8M" and result.results[0]["accuracy"] == 0.4
    assert result.candidates == [] and result.min_subnet is None
    with pytest.raises(OfaError, match="not benchmarks/lut_accuracy.py output"):
        run_files.lut_accuracy_pairs(str(search / "summary.json"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A trained tiny run with every kind of file ofa-report reads (evaluation.json excepted:
    that section must say it is missing), and its latency table."""
    root = tmp_path_factory.mktemp("report_run")
    space = tiny_space(resolutions=(16,))
    (root / "tiny_space.json").write_text(json.dumps(space.to_config()))
    run = root / "run"
    _ok(run_tool("train", "--method=deps", f"--space={root / 'tiny_space.json'}", f"--dataset=npz:{DEMO}",
                 "--image_size=16", "--epochs=2", "--steps_per_epoch=2", "--batch_size=16",
                 "--bn_calibration_images=64", "--num_subnets=2", "--epsilon_ramp_epochs=0.5", f"--model_dir={run}"))
    costs = CostModels(space, 10)
    budget = int(2 * costs.costs(space.min_arch(16))["macs"])
    _ok(run_tool("search", f"--model_dir={run}", "--searcher=random", "--fitness=measured", "--num_samples=4",
                 f"--flops={budget}", "--eval_images=64", "--bn_calibration_images=32",
                 f"--output_dir={run / 'search'}"))

    # a near-chance predictor: accuracies drawn at random around chance, as its measurements file
    settings = {"split": "validation", "eval_images": 64, "bn_calibration_images": 32, "space": space.name}
    archs = space.sample_distinct(40, 0)
    noise = np.random.default_rng(0).uniform(0.08, 0.12, len(archs))
    (run / "predictor").mkdir()
    results = [{"accuracy": float(a), **{k: costs.costs(arch)[k] for k in ("macs", "params")}, "arch": arch.to_dict()}
               for arch, a in zip(archs, noise)]
    (run / "predictor" / "measurements.json").write_text(json.dumps({"model_dir": str(run), "settings": settings,
                                                                     "results": results}))
    predictor = _ok(run_tool("train_predictor", f"--model_dir={run}", "--num_archs=40", "--eval_images=64",
                             "--bn_calibration_images=32", "--predictor=linear"))

    (run / "export").mkdir()
    tflite = run / "export" / "searched.tflite"
    _ok(run_tool("export", f"--model_dir={run}", f"--arch={run / 'search' / f'flops-{budget}.json'}",
                 "--quantize=none", "--bn_calibration_images=32", "--eval_images=64", f"--output={tflite}"))
    _ok(run_tool("benchmark_latency", f"--models={tflite}", "--threads=1", "--warmup=1", "--runs=5",
                 f"--output={run / 'export' / 'latency.json'}"))

    lut = root / "lut.json"
    synthetic_latency_table(space, str(lut))
    checked = subprocess.run([sys.executable, "-m", "benchmarks.lut_accuracy", f"--lut={lut}", "--num_archs=2",
                              "--rounds=2", "--runs_per_round=2", "--round_robin_rounds=3"], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    _ok(checked)
    (run / "lut_accuracy.json").write_text(checked.stdout.strip().splitlines()[-1])
    return {"run": run, "lut": lut, "budget": budget, "predictor": predictor}


@pytest.mark.integration
def test_near_chance_predictor_prints_its_warning(finished_run):
    done = finished_run["predictor"]
    assert "measuring 0 subnets (40 measured before)" in done.stdout  # fitted on the written accuracies
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["spearman_source"] == "cross-validated" and report["spearman"] <= 0.3
    warning = [line for line in done.stderr.splitlines() if line.startswith("warning: the predictor ranks")]
    assert len(warning) == 1 and f"cross-validated Spearman {report['spearman']:.3f} <= 0.3" in warning[0]
    assert "only 8 held-out subnets" in done.stderr  # 20% of 40
    assert (finished_run["run"] / "predictor" / "predicted_vs_measured.png").read_bytes()[:8] == PNG


@pytest.mark.integration
def test_report_is_one_self_contained_page_with_every_section(finished_run, tmp_path):
    run = finished_run["run"]
    done = _ok(run_tool("report", f"--model_dir={run}", f"--latency_lut={finished_run['lut']}"))
    assert f"wrote {run / 'report.html'}" in done.stdout
    page = (run / "report.html").read_text()
    assert not [p for p in os.listdir(run) if p.startswith(".tmp")]  # written atomically

    # opens with no network: nothing is fetched (no script, stylesheet, font or remote image), images inline
    assert not re.search(r"<script|<link|<iframe|@import|url\(", page, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", page, re.I)
    images = re.findall(r'<img alt="([^"]*)" src="([^"]*)"', page)
    assert all(src.startswith("data:image/png;base64,") for _, src in images)
    assert all(base64.b64decode(src.split(",", 1)[1])[:8] == PNG for _, src in images)
    assert sorted(alt for alt, _ in images) == sorted([
        "training curves", "Pareto front (macs)", "Pareto front (latency_ms)", "predicted vs measured accuracy",
        "latency table: predicted vs measured"])

    sections = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', page, re.S))
    assert list(sections) == list(SECTIONS)
    absent = [name for name, body in sections.items() if 'class="absent"' in body]
    assert absent == ["evaluation"] and "ofa-evaluate" in sections["evaluation"]
    assert "shrink" in sections["training"] and "fm_warmup" in sections["training"]  # the metrics.csv table
    with open(run / "search" / "summary.json") as f:
        summary = json.load(f)
    result = summary["results"][0]
    assert f"flops={finished_run['budget']}" in sections["search"]
    assert f"{100 * result['measured_accuracy']:.2f}%" in sections["search"]
    assert f"{100 * summary['min_subnet']['measured_accuracy']:.2f}%" in sections["search"]
    assert 'class="warning">warning: the predictor ranks subnets poorly' in sections["predictor"]
    with open(run / "export" / "searched.json") as f:
        metadata = json.load(f)
    assert "export/searched.tflite" in sections["exports"] and f"{metadata['tflite_bytes'] / 1e6:.2f} MB" in \
        sections["exports"]
    with open(run / "export" / "latency.json") as f:
        median = json.load(f)["results"][0]["median_ms"]
    assert f"{median:.3f} ms" in sections["exports"]

    # bad input: one line, nothing written (a file of the wrong kind: test_run_files_are_read_as_...)
    other = tmp_path / "elsewhere.html"
    assert_one_line_error(run_tool("report", f"--model_dir={tmp_path}", f"--output={other}"), "no config.json")
    assert not other.exists()
