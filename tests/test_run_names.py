"""A run directory's name is taken literally: `[`, `]`, `*` and `?` in it are not wildcards.

Listing a run's checkpoints by globbing `<model_dir>/checkpoints/ckpt-*.json` read the
directory's own name as a pattern: `runs/lr[0.1]` matched nothing (a trained run looked
empty, so a re-run trained over it and deleted its files) and `runs/q?` matched the
neighbour `runs/q1` (whose files were then removed as leftovers, or exported as its own).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from helpers import assert_one_line_error, make_run_dir, run_tool, tiny_space

from ofa_tf import io
from ofa_tf.runs import RunDirectory
from ofa_tf.runs.checkpoints import remove_incomplete_checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
ODD_NAME = "lr[0.1]*?"


def _files(path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `path` (the lock and temporaries aside)."""
    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            if name == ".lock" or name.startswith(io.TEMP_PREFIX):
                continue
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                found[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return found


@pytest.mark.unit
@pytest.mark.parametrize("where", ["local", "ram"])
def test_checkpoints_are_listed_in_the_named_directory_only(tmp_path, where):
    """`runs/q?` has no checkpoint of its own and must not see `runs/q1`'s; `runs/lr[0.1]`
    sees its own. Locally and at a URL (`ram://` stands in for a bucket)."""
    base = str(tmp_path) if where == "local" else f"ram://ofa-tf-names-{uuid.uuid4().hex[:8]}"
    for name in ("q1", ODD_NAME):
        folder = os.path.join(base, name, "checkpoints")
        io.makedirs(folder)
        for suffix in (".weights.h5", ".optimizer.npz"):
            io.write_bytes(os.path.join(folder, "ckpt-00000003" + suffix), b"weights")
        io.write_json(os.path.join(folder, "ckpt-00000003.json"), {"epoch": 1, "step": 3})
    io.write_bytes(os.path.join(base, ODD_NAME, "checkpoints", "ckpt-00000004.weights.h5"), b"torn")

    own = RunDirectory(os.path.join(base, ODD_NAME))
    assert own.checkpoints() == [os.path.join(own.checkpoint_dir, "ckpt-00000003")]
    assert own.latest_checkpoint() == os.path.join(own.checkpoint_dir, "ckpt-00000003")
    neighbour_pattern = RunDirectory(os.path.join(base, "q?"))
    assert neighbour_pattern.checkpoints() == [] and neighbour_pattern.latest_checkpoint() is None

    q1 = os.path.join(base, "q1", "checkpoints")
    before = sorted(io.listdir(q1))
    assert remove_incomplete_checkpoints(os.path.join(base, "q?", "checkpoints")) == []
    assert sorted(io.listdir(q1)) == before  # the neighbour's files are not "leftovers"
    assert remove_incomplete_checkpoints(own.checkpoint_dir) == ["ckpt-00000004.weights.h5"]
    assert sorted(io.listdir(own.checkpoint_dir)) == before


@pytest.mark.unit
def test_a_pattern_like_name_never_reads_its_neighbours_run(tmp_path):
    make_run_dir(tmp_path / "vB")
    with pytest.raises(Exception, match="no such directory"):
        RunDirectory(str(tmp_path / "v?")).read_trained()
    os.makedirs(tmp_path / "v?" / "checkpoints")
    (tmp_path / "v?" / "config.json").write_text((tmp_path / "vB" / "config.json").read_text())
    with pytest.raises(Exception, match="no trained supernet"):
        RunDirectory(str(tmp_path / "v?")).read_trained()


def _lock_holder(run_dir) -> int | None:
    """The pid in the run's lock file (the killed run's stays until the next run takes it over)."""
    try:
        return json.loads((run_dir / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _wait_for(condition, process, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.02)


@pytest.mark.integration
def test_a_run_named_with_wildcards_resumes_refuses_evaluates_and_survives_ctrl_c(tmp_path):
    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    run_dir = tmp_path / ODD_NAME
    (tmp_path / "lr0").mkdir()  # a neighbour the pattern would match: it must stay empty
    run = [sys.executable, "-m", "ofa_tf.cli.train", "--method=deps", f"--space={space}", f"--dataset=npz:{DEMO}",
           "--image_size=16", "--epochs=2", "--steps_per_epoch=60", "--batch_size=16", "--num_subnets=1",
           "--bn_calibration_images=32", "--checkpoint_every_steps=5", f"--model_dir={run_dir}"]
    checkpoints = run_dir / "checkpoints"

    # 1. killed (-9) mid-epoch, once its first checkpoint is complete
    first = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (checkpoints / "ckpt-00000005.json").exists(), first, "first checkpoint")
    first.kill()
    first.wait()
    trained = _files(run_dir)
    assert "config.json" in trained and "checkpoints/ckpt-00000005.weights.h5" in trained

    # 2. resumed, and stopped with Ctrl-C before its first new checkpoint: every file intact
    second = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _lock_holder(run_dir) == second.pid, second, "the run's lock")  # past the checks: training
    second.send_signal(signal.SIGINT)
    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 130, stderr[-2000:]
    assert "resume from step 5" in stderr.strip().splitlines()[-1], stderr[-2000:]
    after = _files(run_dir)
    assert {k: v for k, v in after.items() if k in trained} == trained, "a file of the trained run changed"

    # 3. a changed config is refused, nothing touched
    other = run_tool("train", *run[3:-2], "--checkpoint_every_steps=5", "--seed=7", f"--model_dir={run_dir}")
    assert_one_line_error(other, "holds a run with a different config: seed=0 there, 7 now")
    assert {k: v for k, v in _files(run_dir).items() if k in trained} == trained

    # 4. the same command resumes at step 5 and finishes; the tools read the run
    done = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed_from_step"] == 5 and summary["epochs"] == 2
    assert sorted(p.name for p in checkpoints.glob("*.json"))[-1] == "ckpt-00000120.json"
    evaluated = run_tool("evaluate", f"--model_dir={run_dir}", "--archs=max,min", "--bn_calibration_images=32")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert len(json.loads(evaluated.stdout.strip().splitlines()[-1])["results"]) == 2
    assert os.listdir(tmp_path / "lr0") == []
