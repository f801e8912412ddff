"""tools.train and tools.evaluate end to end on the demo data, plus their bad-input errors."""

import csv
import json
import os

import numpy as np
import pytest

from helpers import assert_one_line_error, run_tool, tiny_space

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
SMALL_RUN = ["--method=deps", "--space=ofa_mbv3", f"--dataset=npz:{DEMO}", "--image_size=32", "--epochs=2",
             "--steps_per_epoch=3", "--batch_size=16", "--bn_calibration_images=64", "--num_subnets=2",
             "--epsilon_ramp_epochs=0.5"]


def test_train_resume_and_evaluate(tmp_path):
    """End to end on a tiny space (ofa_mbv3's once-for-all step traces for minutes on 2 cores; the
    real spaces' layers are checked against their extracted subnets in test_supernet.py)."""
    space = tmp_path / "tiny_space.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    run = [f"--space={space}" if a.startswith("--space=") else "--image_size=16" if a.startswith("--image_size=")
           else a for a in SMALL_RUN]
    run_dir = tmp_path / "run"
    done = run_tool("train", *run, f"--model_dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["resumed_from"] == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert [p["name"] for p in config["method"]["phases"]] == ["fm_warmup", "shrink"]
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [r["phase"] for r in rows] == ["fm_warmup", "shrink"]
    assert rows[0]["loss_min"] == "" and float(rows[1]["loss_min"]) > 0  # no subnet before the switch
    assert float(rows[1]["epsilon"]) == 1.0 and 0 <= float(rows[1]["val_accuracy_min"]) <= 1
    # the first step (tracing) is timed once; the steps alone take less than the whole epoch
    assert 0 < float(rows[0]["first_step_seconds"]) <= float(rows[0]["train_seconds"])
    assert rows[1]["first_step_seconds"] == ""
    assert all(0 < float(r["train_seconds"]) < float(r["seconds"]) for r in rows)
    assert sorted(os.listdir(run_dir / "checkpoints"))[-1].startswith("ckpt-00000006")
    assert os.listdir(run_dir / "logs")
    assert not [f for f in os.listdir(run_dir / "checkpoints") if f.startswith(".tmp")]

    again = run_tool("train", *run, f"--model_dir={run_dir}")  # same command: already complete
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["resumed_from"] == 2

    other = run_tool("train", *run[:-1], "--epsilon_ramp_epochs=1", f"--model_dir={run_dir}")
    assert_one_line_error(other, "holds a run with a different config: epsilon_ramp_epochs=0.5 there, 1.0 now")

    evaluated = run_tool("evaluate", f"--model_dir={run_dir}", "--archs=max,min", "--num_random=1",
                      "--bn_calibration_images=64")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads(evaluated.stdout.strip().splitlines()[-1])["results"]
    assert len(results) == 3 and results[0]["macs"] > results[1]["macs"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in results)

    for checkpoint in (run_dir / "checkpoints").glob("*.weights.h5"):
        checkpoint.write_bytes(b"garbage")
    broken = run_tool("evaluate", f"--model_dir={run_dir}")
    assert_one_line_error(broken, "no intact checkpoint")


@pytest.mark.parametrize("args,message", [
    (["--warmup_fraction=1.5"], "warmup_fraction=1.5: expected a fraction in [0, 1)"),
    (["--warmup_fraction=-0.2"], "warmup_fraction=-0.2"),
    (["--epsilon_start=0"], "epsilon_start=0.0: expected a value in (0, 1]"),
    (["--epsilon_start=2"], "epsilon_start=2.0"),
    (["--method=alphanet"], "method='alphanet': expected one of"),
    (["--dataset=mnist"], "--dataset='mnist': expected KIND:WHERE"),
    (["--strategy=tpu_pod"], "--strategy='tpu_pod': expected one of"),
    (["--kernel_mode=warp"], "--kernel_mode='warp'"),
    (["--lr_schedule=cyclic"], "--lr_schedule='cyclic': expected one of ['run', 'phase', 'exponential']"),
    (["--space=resnet"], "space='resnet'"),
    (["--dataset=npz:/does/not/exist.npz"], "npz:/does/not/exist.npz: no such file"),
])
def test_bad_training_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    run_dir = tmp_path / "run"
    done = run_tool("train", *SMALL_RUN, f"--model_dir={run_dir}", *args)
    assert_one_line_error(done, message)
    assert not run_dir.exists()


@pytest.mark.parametrize("kind", ["empty", "labels"])  # a corrupt image is skipped, not an error: test_data_streaming
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, kind):
    if kind == "empty":
        os.makedirs(tmp_path / "empty")
        dataset, message = f"folder:{tmp_path / 'empty'}", "no images found"
    else:
        x = np.zeros((20, 8, 8), np.uint8)
        np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.arange(20), class_names=np.array(["a", "b"]))
        dataset, message = f"npz:{tmp_path / 'bad.npz'}", "label 19 in y_train is out of range; expected 0..1"
    run_dir = tmp_path / "run"
    done = run_tool("train", *SMALL_RUN, f"--model_dir={run_dir}", f"--dataset={dataset}")
    assert_one_line_error(done, message)
    assert not run_dir.exists()


def test_evaluate_needs_a_trained_run(tmp_path):
    assert_one_line_error(run_tool("evaluate", f"--model_dir={tmp_path}"), "no config.json (not a training run directory)")
    assert_one_line_error(run_tool("evaluate"), "--model_dir is required")
