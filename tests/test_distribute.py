"""tf.distribute, exact resume and fault tolerance, run for real: logical CPU devices, local
worker processes on 127.0.0.1, kill -9."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from helpers import assert_one_line_error, make_folder, run_tool, tiny_space

from ofa_tf.distribute import parse_tf_config
from ofa_tf.errors import OfaError
from ofa_tf.io import file_sha256
from ofa_tf.runs import RunDirectory
from ofa_tf.runs.plan import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")


def _space_file(tmp_path) -> str:
    path = tmp_path / "tiny_space.json"
    path.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    return str(path)


def _run_flags(tmp_path, epochs=2, steps=4, **extra) -> list[str]:
    flags = {"method": "bignas", "space": _space_file(tmp_path), "dataset": f"npz:{DEMO}", "image_size": 16,
             "epochs": epochs, "steps_per_epoch": steps, "batch_size": 8, "num_subnets": 1,
             "bn_calibration_images": 32, "dropout": 0.1, **extra}
    return [f"--{k}={v}" for k, v in flags.items()]


def _train_process(args, env=None, log=None):
    return subprocess.Popen([sys.executable, "-m", "tools.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=log or subprocess.PIPE, text=True)


def _summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _h5_arrays(path) -> dict[str, np.ndarray]:
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                     else None)
    return arrays


def _last_weights(run_dir) -> dict[str, np.ndarray]:
    """The newest checkpoint's weights and its optimizer and random-generator state (kept in
    the `.optimizer.npz` only)."""
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*.weights.h5"))
    arrays = _h5_arrays(checkpoints[-1])
    with np.load(str(checkpoints[-1]).replace(".weights.h5", ".optimizer.npz")) as state:
        arrays.update({f"optimizer.npz/{k}": state[k] for k in state.files if k.startswith(("v", "rng"))})
    return arrays


def _wait_for(path_glob, directory, process, timeout=600):
    started = time.time()
    while time.time() - started < timeout:
        if list(directory.glob(path_glob)) if directory.exists() else []:
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended before {path_glob} appeared: {process.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {path_glob}")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports, index) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


@pytest.mark.unit
@pytest.mark.parametrize("text,message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{cluster:", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}',
     "127.0.0.1:1 names two tasks (worker[0] and worker[1])"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "task index 3 out of range for 1 worker task(s)"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "is not host:port"),
])
def test_bad_tf_config_is_named(text, message):
    with pytest.raises(OfaError, match=None) as raised:
        parse_tf_config(text)
    assert message in str(raised.value)


@pytest.mark.integration
def test_bad_tf_config_through_the_tool_writes_nothing(tmp_path):
    env = {**os.environ, "TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:5", "127.0.0.1:5"]}, '
                                      '"task": {"type": "worker", "index": 0}}'}
    done = subprocess.run([sys.executable, "-m", "tools.train", *_run_flags(tmp_path), "--strategy=multi_worker",
                           f"--model_dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert_one_line_error(done, "TF_CONFIG: 127.0.0.1:5 names two tasks")
    assert not (tmp_path / "run").exists()


@pytest.mark.integration
def test_mirrored_over_two_cpu_devices_equals_one_device():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "mirrored_check.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["max_update"] > 1e-3  # training moved the weights ...
    assert result["max_abs_diff"] < 1e-5, result  # ... and both strategies moved them identically
    assert result["traces"] == 2  # traced once per replica, not once per step or subnet


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """(flags, run directory) of a run of 3 x 4 steps that nothing stopped: what resumed runs must equal."""
    root = tmp_path_factory.mktemp("uninterrupted")
    flags = _run_flags(root, epochs=3, steps=4, checkpoint_every_steps=2)
    done = run_tool("train", *flags, f"--model_dir={root / 'whole'}")
    assert done.returncode == 0, done.stderr[-3000:]
    return flags, root


def _assert_same_weights_as(uninterrupted, run_dir) -> None:
    expected, actual = _last_weights(uninterrupted[1] / "whole"), _last_weights(run_dir)
    assert expected.keys() == actual.keys() and len(expected) > 20
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], atol=1e-5, err_msg=name)
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]  # no row twice


@pytest.mark.integration
def test_kill_minus_9_then_rerun_matches_an_uninterrupted_run(uninterrupted):
    flags, root = uninterrupted
    killed_dir = root / "killed"
    process = _train_process([*flags, f"--model_dir={killed_dir}"])
    _wait_for("ckpt-00000006.json", killed_dir / "checkpoints", process)  # mid-epoch 2 (steps 4..7)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed_dir / ".lock").exists()  # the killed holder's lock stays behind...
    manifests = sorted((killed_dir / "checkpoints").glob("ckpt-*.json"))
    newest = manifests[-1].with_suffix(".weights.h5")
    with open(newest, "r+b") as f:  # ...and its newest checkpoint is damaged
        f.truncate(newest.stat().st_size // 2)
    resumed = run_tool("train", *flags, f"--model_dir={killed_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]  # the next run takes the lock over
    assert f"checkpoint {manifests[-1].stem} skipped: {newest.name} does not match its checksum" in resumed.stderr
    summary = _summary(resumed.stdout)
    assert summary["resumed_from_step"] == int(manifests[-2].stem[5:]) >= 4 and summary["epochs"] == 3
    _assert_same_weights_as(uninterrupted, killed_dir)
    assert not (killed_dir / ".lock").exists()


@pytest.mark.integration
def test_a_checkpoint_holding_the_optimizer_state_twice_still_resumes_exactly(uninterrupted):
    """Checkpoints now keep the optimizer state once, in `.optimizer.npz`; those written before
    also had it in the weights file (Keras's `optimizer/vars` group). Such a checkpoint, made
    here from a new one, is read by the tools and resumes mid-epoch to the state of an
    uninterrupted run."""
    flags, root = uninterrupted
    whole = root / "whole" / "checkpoints"
    newest = sorted(whole.glob("ckpt-*.weights.h5"))[-1]
    with h5py.File(newest, "r") as f:
        assert "optimizer" not in f and "classifier" in f  # stored once: weights only
    with np.load(str(newest).replace(".weights.h5", ".optimizer.npz")) as state:
        assert len([k for k in state.files if k.startswith("v")]) > 20

    run_dir = root / "old_format"
    shutil.copytree(root / "whole", run_dir)
    folder = run_dir / "checkpoints"
    base = str(folder / "ckpt-00000010")  # mid-epoch 3 (steps 8..11)
    for path in folder.glob("ckpt-00000012.*"):
        path.unlink()
    with np.load(base + ".optimizer.npz") as state:
        optimizer_values = [state[k] for k in sorted(state.files) if k.startswith("v")]
    with h5py.File(base + ".weights.h5", "a") as f:  # the old layout: the optimizer's variables again
        group = f.create_group("optimizer").create_group("vars")
        group.attrs["name"] = "reference_sgd"
        for i, value in enumerate(optimizer_values):
            group[str(i)] = value
    manifest_path = folder / "ckpt-00000010.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = {s: file_sha256(base + s) for s in (".weights.h5", ".optimizer.npz")}
    manifest_path.write_text(json.dumps(manifest))
    old_weights = _h5_arrays(base + ".weights.h5")
    assert len([k for k in old_weights if k.startswith("optimizer/vars/")]) == len(optimizer_values)

    model, saved = RunDirectory(str(run_dir)).load_supernet()  # what evaluate, search, export read
    same = build_model(saved.config, saved.space, saved.num_classes, saved.method)
    same.load_weights(str(whole / "ckpt-00000010.weights.h5"))  # the same state, written once
    assert len(model.weights) == len(same.weights) > 20
    for a, b in zip(model.weights, same.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(model.classifier.weights[0].numpy(), old_weights["classifier/vars/0"])

    resumed = run_tool("train", *flags, f"--model_dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _summary(resumed.stdout)["resumed_from_step"] == 10
    _assert_same_weights_as(uninterrupted, run_dir)  # weights, optimizer and random-generator state


@pytest.mark.integration
def test_ctrl_c_and_a_second_run_into_a_busy_directory(uninterrupted):
    """Ctrl-C mid-run: one line naming the steps, exit 130, and the re-run equals an
    uninterrupted run. While the first run holds the directory a second one stops with
    one line naming the holder. Ctrl-C before the first checkpoint keeps nothing."""
    flags, root = uninterrupted
    run_dir = root / "ctrl_c"
    first = _train_process([*flags, f"--model_dir={run_dir}"])
    try:
        _wait_for(".lock", run_dir, first)
        second = run_tool("train", *flags, f"--model_dir={run_dir}")
        assert_one_line_error(second, f"in use by pid {first.pid} on {socket.gethostname()}")
        _wait_for("ckpt-00000002.json", run_dir / "checkpoints", first)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        r"interrupted at step \d+; re-run the same command to resume from step \d+", lines[0]), err[-3000:]
    resume_step = int(lines[0].rsplit(" ", 1)[1])
    assert resume_step >= 2 and not (run_dir / ".lock").exists()
    (run_dir / "checkpoints" / ".tmp-abc.weights.h5").write_bytes(b"torn")  # as a kill -9 mid-write leaves
    resumed = run_tool("train", *flags, f"--model_dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _summary(resumed.stdout)["resumed_from_step"] == resume_step
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
    _assert_same_weights_as(uninterrupted, run_dir)

    early_dir = root / "ctrl_c_early"
    early_dir.mkdir()
    early = _train_process([*flags, f"--model_dir={early_dir}"])
    _wait_for(".lock", early_dir, early)  # the model is built; the first step is about to trace
    early.send_signal(signal.SIGINT)
    _, err = early.communicate(timeout=300)
    assert early.returncode == 130, err[-3000:]
    assert err.strip().splitlines() == [err.strip()] and "before the first checkpoint; nothing was kept" in err
    assert not early_dir.exists() or not list(early_dir.iterdir())  # free for any run


@pytest.mark.integration
def test_non_finite_loss_stops_with_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    done = run_tool("train", *_run_flags(tmp_path, epochs=3, steps=1), "--learning_rate=1e30",
                    f"--model_dir={run_dir}")  # step 0 is finite; its update makes every later loss NaN
    assert_one_line_error(done, "training stopped, the last checkpoint is the last good state")
    bad_step = int(re.search(r"loss became (?:nan|inf|-inf) at step (\d+) ", done.stderr).group(1))
    steps = [int(p.name[5:13]) for p in (run_dir / "checkpoints").glob("ckpt-*.json")]
    assert bad_step >= 1 and steps and max(steps) <= bad_step, (bad_step, steps)
    assert all(np.isfinite(a).all() for a in _last_weights(run_dir).values())
    assert not list((run_dir / "checkpoints").glob(".tmp*"))


@pytest.mark.integration
def test_two_workers_each_read_only_their_rows_of_a_folder(tmp_path):
    """A multi-worker run over a folder of images: each worker reads and decodes only its half
    of every batch (the run's own count, `training_images_read`, read-ahead included), and both
    workers end with the same weights."""
    steps, batch = 40, 8
    images = make_folder(tmp_path / "images", per_class=40)  # 72 training images: 9 batches a pass
    flags = [*_run_flags(tmp_path, epochs=1, steps=steps, dataset=f"folder:{images}", augment="imagenet",
                         batch_size=batch), "--strategy=multi_worker", f"--model_dir={tmp_path / 'run'}"]
    ports = _free_ports(2)
    processes = [_train_process(flags, {**os.environ, "TF_CONFIG": _tf_config(ports, i)}) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=900) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    summaries = [_summary(out) for out, _ in outputs]
    assert [s["replicas"] for s in summaries] == [2, 2]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    for summary in summaries:
        read = summary["training_images_read"]
        # its 4 rows of the 40 steps' batches and of the batches read ahead (about 10 here);
        # a worker that read whole batches would have read at least steps * batch
        assert read % (batch // 2) == 0 and steps * batch // 2 <= read < steps * batch, summary


@pytest.mark.integration
def test_multi_worker_survives_a_killed_worker(tmp_path):
    ports = _free_ports(2)
    run_dir = tmp_path / "run"
    flags = [*_run_flags(tmp_path, epochs=2, steps=4, checkpoint_every_steps=2), "--strategy=multi_worker",
             f"--model_dir={run_dir}"]
    env = [{**os.environ, "TF_CONFIG": _tf_config(ports, i)} for i in range(2)]
    chief, worker = _train_process(flags, env[0]), _train_process(flags, env[1])
    try:
        _wait_for("ckpt-00000002.json", run_dir / "checkpoints", chief)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = _train_process(flags, env[1])  # the scheduler brings it back
        outputs = [p.communicate(timeout=900) for p in (chief, worker)]
    finally:
        for p in (chief, worker):
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip((chief, worker), outputs):
        assert p.returncode == 0, err[-3000:]
    summaries = [_summary(out) for out, _ in outputs]
    assert [s["worker"] for s in summaries] == ["worker-0", "worker-1"]
    assert summaries[0]["replicas"] == 2
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]
    assert "restarting from the last checkpoint" in outputs[0][1]  # the chief lost its peer and came back
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.json"))[-1] == "ckpt-00000008.json"
