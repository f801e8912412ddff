"""Runs that survive their users: the run-directory lock, damaged checkpoints, leftovers of
killed processes, metrics rows written twice, and datasets smaller than a calibration batch."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from helpers import make_run_dir, run_tool, tiny_space

from ofa_tf.errors import OfaError
from ofa_tf.interrupts import Interrupted, interruptible, raise_if_interrupted, stop_on_signals
from ofa_tf.io import file_sha256, remove_stale_temp_files, write_json
from ofa_tf.runs import PreparedRun, RunConfig, RunDirectory
from ofa_tf.runs.checkpoints import remove_incomplete_checkpoints, verify_checkpoint
from ofa_tf.runs.lock import RunLock
from ofa_tf.runs.report import trim_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.unit
def test_a_run_directory_has_one_holder_and_a_dead_holder_is_taken_over(tmp_path):
    with RunLock(str(tmp_path)) as lock:
        assert lock.holder()["pid"] == os.getpid()
        with pytest.raises(OfaError) as raised:
            RunLock(str(tmp_path)).acquire()
        assert f"in use by pid {os.getpid()} on {socket.gethostname()}" in str(raised.value)
        assert str(tmp_path / ".lock") in str(raised.value)
    assert not (tmp_path / ".lock").exists()

    write_json(str(tmp_path / ".lock"), {"pid": _dead_pid(), "host": socket.gethostname(), "started": "then"})
    with RunLock(str(tmp_path)) as lock:  # the holder was killed: stale, taken over
        assert lock.holder()["pid"] == os.getpid()

    write_json(str(tmp_path / ".lock"), {"pid": 1, "host": "elsewhere", "started": "then"})
    with pytest.raises(OfaError, match="in use by pid 1 on elsewhere"):  # another host: cannot tell, refuse
        RunLock(str(tmp_path)).acquire()


def _second_checkpoint(run_dir: str) -> str:
    """Adds ckpt-00000002 (a copy of ckpt-00000001) with a checksummed manifest, as a run writes it."""
    folder = os.path.join(run_dir, "checkpoints")
    base = os.path.join(folder, "ckpt-00000002")
    for suffix in (".weights.h5", ".optimizer.npz"):
        shutil.copy(os.path.join(folder, "ckpt-00000001" + suffix), base + suffix)
    write_json(base + ".json", {"epoch": 2, "step": 2, "sha256": {
        s: file_sha256(base + s) for s in (".weights.h5", ".optimizer.npz")}})
    return base


@pytest.mark.unit
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    run_dir = make_run_dir(tmp_path / "run")
    newest = _second_checkpoint(run_dir)
    directory = RunDirectory(run_dir)
    assert directory.latest_checkpoint() == newest and verify_checkpoint(newest) is None

    with open(newest + ".weights.h5", "r+b") as f:  # a truncated copy
        f.truncate(os.path.getsize(newest + ".weights.h5") // 2)
    assert "does not match its checksum" in verify_checkpoint(newest)
    with caplog.at_level("WARNING"):
        assert directory.latest_checkpoint().endswith("ckpt-00000001")
        model, _ = directory.load_supernet()  # tools load the previous one
    assert "checkpoint ckpt-00000002 skipped: ckpt-00000002.weights.h5 does not match its checksum" in caplog.text
    assert "using ckpt-00000001" in caplog.text

    os.remove(os.path.join(run_dir, "checkpoints", "ckpt-00000001.optimizer.npz"))
    with pytest.raises(OfaError, match="no intact checkpoint"):  # never silently from scratch
        directory.latest_checkpoint()


@pytest.mark.unit
def test_leftovers_of_killed_processes_are_found(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in (".tmp-x.weights.h5", "ckpt-00000004.weights.h5", "ckpt-00000004.optimizer.npz",
                 "ckpt-00000002.weights.h5", "ckpt-00000002.json"):
        (folder / name).write_bytes(b"x")
    (folder / ".tmp-export-dir").mkdir()
    assert remove_stale_temp_files(str(folder)) == [".tmp-export-dir", ".tmp-x.weights.h5"]
    assert remove_incomplete_checkpoints(str(folder)) == ["ckpt-00000004.optimizer.npz",
                                                          "ckpt-00000004.weights.h5"]
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt-00000002.json", "ckpt-00000002.weights.h5"]


@pytest.mark.unit
def test_metrics_rows_past_the_resumed_epoch_are_dropped(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\r\n1,0.5\r\n2,0.4\r\n3,0.3\r\n")
    trim_metrics(str(path), 2)
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n2,0.4\r\n"
    trim_metrics(str(path), 2)
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n2,0.4\r\n"


@pytest.mark.unit
def test_model_dir_that_is_or_lies_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    config = RunConfig(space="ofa_mbv3", dataset=f"npz:{DEMO}")
    for path, message in ((tmp_path / "file", "is a file, not a directory"),
                          (tmp_path / "file" / "run", "lies under the file")):
        with pytest.raises(OfaError, match=message):
            PreparedRun(config, str(path))


@pytest.mark.integration
def test_a_folder_of_20_images_per_class_trains_checkpoints_and_evaluates(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "images"
    for c in range(10):
        (data / f"class_{c}").mkdir(parents=True)
        for i in range(20):
            image = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            tf.io.write_file(str(data / f"class_{c}" / f"{i}.png"), tf.io.encode_png(image))
    space = tmp_path / "tiny.json"
    write_json(str(space), tiny_space(resolutions=(16,)).to_config())
    run_dir = tmp_path / "run"
    done = run_tool("train", "--method=bignas", f"--space={space}", f"--dataset=folder:{data}", "--image_size=16",
                    "--epochs=1", "--batch_size=16", "--num_subnets=1", f"--model_dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert list((run_dir / "checkpoints").glob("ckpt-*.json"))  # ~180 training images: one epoch of 11 steps
    evaluated = run_tool("evaluate", f"--model_dir={run_dir}", "--archs=max,min")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads(evaluated.stdout.strip().splitlines()[-1])["results"]
    used = [r["bn_calibration_images"] for r in results]
    assert len(results) == 2 and all(0 < n < 200 for n in used), used  # every training image, < 2000 asked


@pytest.mark.unit
def test_sigint_and_sigterm_become_interrupted_with_their_exit_codes():
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        before = signal.getsignal(signum)
        with pytest.raises(Interrupted) as raised:
            with stop_on_signals():
                os.kill(os.getpid(), signum)
                for _ in range(1000):  # the handler runs at the next bytecode
                    pass
        assert raised.value.exit_code == code and raised.value.signum == signum
        assert signal.getsignal(signum) == before  # handlers restored


def _spin() -> None:
    for _ in range(1000):  # a Python signal handler runs at the next bytecode
        pass


@pytest.mark.unit
def test_a_signal_is_raised_where_stopping_is_safe():
    """Outside `interruptible()` a signal waits for `raise_if_interrupted()` (unwinding from
    the middle of Keras building a variable has crashed the process); inside it, and for a
    second signal, it raises at once."""
    reached = []
    with pytest.raises(Interrupted) as raised:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            _spin()
            reached.append("after the signal")  # recorded, not raised
            raise_if_interrupted()
            reached.append("after the check")
    assert reached == ["after the signal"] and raised.value.exit_code == 130
    with pytest.raises(Interrupted):
        with stop_on_signals():
            with interruptible():
                os.kill(os.getpid(), signal.SIGTERM)
                _spin()
                reached.append("inside interruptible")
    with pytest.raises(Interrupted) as raised:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGINT)
            _spin()
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal: the user insists
            _spin()
            reached.append("after the second signal")
    assert reached == ["after the signal"] and raised.value.exit_code == 143
    with stop_on_signals():
        raise_if_interrupted()  # nothing pending: a no-op
