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

from helpers import assert_one_line_error, make_run_dir, run_tool, tiny_space

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


def _tiny_run_flags(tmp_path, **extra) -> list[str]:
    space = tmp_path / "tiny.json"
    write_json(str(space), tiny_space(resolutions=(16,)).to_config())
    flags = {"method": "deps", "space": space, "dataset": f"npz:{DEMO}", "image_size": 16, "epochs": 1,
             "steps_per_epoch": 3, "batch_size": 16, "bn_calibration_images": 16, "num_subnets": 1,
             "epsilon_ramp_epochs": 0.5, **extra}
    return [f"--{k}={v}" for k, v in flags.items()]


@pytest.mark.integration
def test_an_epoch_resumed_in_its_middle_reports_the_metrics_of_all_its_steps(tmp_path):
    """metrics.csv's loss and accuracy of an epoch resumed after its step 2 average its 3
    steps, as the uninterrupted run's do (the metrics' running sums are saved with each
    checkpoint), not only the one step after the resume."""
    import csv

    run_dir = tmp_path / "run"
    args = [*_tiny_run_flags(tmp_path, checkpoint_every_steps=2), f"--model_dir={run_dir}"]
    done = run_tool("train", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    whole = list(csv.DictReader(open(run_dir / "metrics.csv")))
    for path in (run_dir / "checkpoints").glob("ckpt-00000003.*"):  # as if killed after step 2's checkpoint
        path.unlink()
    resumed = run_tool("train", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["resumed_from_step"] == 2
    again = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(whole) == len(again) == 1
    for key in ("loss", "loss_full", "accuracy"):
        assert float(again[0][key]) == pytest.approx(float(whole[0][key]), rel=1e-5, abs=1e-6), key


METRIC_STATES_SCRIPT = """
import json, types
import tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
from ofa_tf.runs.checkpoints import metric_states, restore_metric_states

def mean_metric(replicas):
    strategy = (tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)]) if replicas > 1
                else tf.distribute.get_strategy())
    with strategy.scope():
        metric = keras.metrics.Mean()
    update = tf.function(lambda x: strategy.run(lambda: metric.update_state(
        x + tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.float32))))
    return metric, update, types.SimpleNamespace(metrics=[metric])

saved_metric, update, model = mean_metric(2)
update(tf.constant(1.0))  # replica 0 adds 1, replica 1 adds 2: mean 1.5 over 2 values
states = [value for _, value in sorted(metric_states(model).items())]
results = {}
for replicas in (1, 2, 3):
    metric, update, model = mean_metric(replicas)
    restore_metric_states(model, states)
    results[replicas] = [float(metric.result())]
    update(tf.constant(4.0))  # one more value per replica: 4, 5, 6
    results[replicas].append(float(metric.result()))
metric, update, model = mean_metric(3)
restore_metric_states(model, states, first_worker=False)  # another worker: adds nothing to the totals
results["other_worker"] = float(metric.total.numpy()), float(metric.count.numpy())
print(json.dumps(results))
"""


@pytest.mark.integration
def test_metric_sums_resume_right_with_another_replica_count():
    """A checkpoint saves each metric's total over the replicas; restored under 1, 2 or 3
    replicas (strategy is a resumable change) the metric reads the same, and goes on adding."""
    done = subprocess.run([sys.executable, "-c", METRIC_STATES_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {"1": [1.5, (3 + 4) / 3], "2": [1.5, (3 + 4 + 5) / 4], "3": [1.5, (3 + 4 + 5 + 6) / 5],
                "other_worker": [0.0, 0.0]}
    assert sorted(results) == sorted(expected)
    for key, values in expected.items():
        assert results[key] == pytest.approx(values), key


@pytest.mark.integration
def test_a_run_failing_before_its_first_checkpoint_leaves_nothing(tmp_path):
    """Any failure, not only Ctrl-C: here the loss turns non-finite after step 0's huge update,
    before the first checkpoint (step 3); the run's config.json, logs and the folders it
    created go."""
    run_dir = tmp_path / "new" / "run"
    done = run_tool("train", *_tiny_run_flags(tmp_path, learning_rate=1e30), f"--model_dir={run_dir}")
    assert done.returncode == 2 and "; training stopped, nothing was kept (no checkpoint yet)" in done.stderr
    assert "last checkpoint" not in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["tiny.json"]


@pytest.mark.integration
def test_int8_export_with_degenerate_bn_statistics_is_one_clear_line(tmp_path):
    """One BN-calibration image at 8 px leaves 1x1 feature maps with zero variance, so BN
    divides by sqrt(epsilon) and the activations grow past what int8 kernels can rescale;
    XNNPACK then failed to load the model with a traceback. Now: one line, nothing written."""
    run_dir = make_run_dir(tmp_path / "run", space=tiny_space(resolutions=(8,)), image_size=(8,))
    out = tmp_path / "out"
    out.mkdir()
    done = run_tool("export", f"--model_dir={run_dir}", "--arch=max", "--quantize=int8", "--bn_calibration_images=1",
                    "--representative_images=50", "--eval_images=50", f"--output={out / 'max.tflite'}")
    assert_one_line_error(done, "--quantize=int8: activations reach")
    assert "int8 kernels need < 256): the subnet's BN statistics are degenerate" in done.stderr
    assert os.listdir(out) == []
