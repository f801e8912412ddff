"""Run directories, checkpoints, metrics, exports and tool outputs at URLs (`tf.io.gfile`).

TensorFlow's in-process `ram://` filesystem stands in for a bucket: it lives only within one
process, so training, resuming, evaluating, searching and exporting all run here, in-process (the tools'
own `_main` with their flags parsed into a fresh `FlagValues`). A `gs://` path that cannot be
reached is an error, never a local `./gs:/...` folder.
"""

import csv
import inspect
import io as stdio
import json
import os
import subprocess
import sys
import uuid

import pytest
import tensorflow as tf
from absl import flags

from helpers import tiny_space

from ofa_tf import io
from ofa_tf.errors import OfaError
from ofa_tf.runs import RunConfig, RunDirectory, train
from ofa_tf.runs.lock import RunLock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
gfile = tf.io.gfile


def _ram(name: str) -> str:
    return f"ram://ofa-tf-test-{uuid.uuid4().hex[:8]}/{name}"


@pytest.mark.unit
def test_io_helpers_on_ram_and_local_paths(tmp_path):
    root = _ram("files")
    for base in (root, str(tmp_path / "local")):
        io.makedirs(os.path.join(base, "sub"))
        path = os.path.join(base, "sub", "a.weights.h5")
        io.atomic_write(path, lambda tmp: io.write_bytes(tmp, b"abc"))  # a writer that needs a local file
        io.write_json(os.path.join(base, "b.json"), {"x": 1})
        assert io.read_bytes(path) == b"abc" and io.read_json(os.path.join(base, "b.json")) == {"x": 1}
        assert io.isfile(path) and io.isdir(os.path.join(base, "sub")) and not io.isfile(os.path.join(base, "sub"))
        assert io.matching_files(os.path.join(base, "sub"), "*.h5") == [path]
        assert io.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        with io.local_copy(path) as local:
            assert os.path.isfile(local) and local.endswith(".weights.h5") and open(local, "rb").read() == b"abc"
        assert not [n for n in io.listdir(os.path.join(base, "sub")) if n.startswith(io.TEMP_PREFIX)]
        io.write_bytes(os.path.join(base, io.TEMP_PREFIX + "left"), b"")  # what a killed writer leaves
        assert io.remove_stale_temp_files(base) == [io.TEMP_PREFIX + "left"]
        with pytest.raises(FileNotFoundError):
            io.read_json(os.path.join(base, "missing.json"))
        io.rmtree(base)
        assert not io.exists(base)
    assert io.unwritable_reason(_ram("new/run"), directory=True) is None
    assert "cannot be reached" in io.unwritable_reason("nosuchfs://bucket/run", directory=True)


@pytest.mark.unit
def test_datasets_are_read_from_urls(tmp_path):
    """npz: and idx: files and folder: trees in a bucket (here `ram://`) load as local ones do."""
    import gzip

    import numpy as np

    from ofa_tf.data import load_dataset
    from ofa_tf.data.sources import check_dataset_spec

    root = f"ram://datasets-{uuid.uuid4().hex}"
    shipped = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                           "fashion_mnist_small.npz")
    tf.io.gfile.makedirs(root)
    tf.io.gfile.copy(shipped, f"{root}/f.npz", overwrite=True)
    local, remote = load_dataset(f"npz:{shipped}"), load_dataset(f"npz:{root}/f.npz")
    assert remote.num_train == local.num_train and remote.class_names == local.class_names
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    header = lambda *dims: bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)  # noqa: E731
    tf.io.gfile.makedirs(f"{root}/idx")
    for name, data in (("train-images-idx3-ubyte.gz", header(2, 3, 3) + images.tobytes()),
                       ("train-labels-idx1-ubyte.gz", header(2) + bytes([0, 1]))):
        with tf.io.gfile.GFile(f"{root}/idx/{name}", "wb") as f:
            f.write(gzip.compress(data))
    assert load_dataset(f"idx:{root}/idx").num_train == 2
    for c in ("a", "b"):
        tf.io.gfile.makedirs(f"{root}/folder/{c}")
        tf.io.write_file(f"{root}/folder/{c}/0.png", tf.io.encode_png(tf.zeros((4, 5, 3), tf.uint8)))
    folder = load_dataset(f"folder:{root}/folder")
    assert folder.class_names == ["a", "b"] and folder.num_train == 2
    with pytest.raises(OfaError, match="no such file"):
        check_dataset_spec(f"npz:{root}/missing.npz")
    assert not os.path.exists("ram:")


@pytest.mark.unit
def test_the_lock_on_a_url_is_advisory_but_still_names_its_holder():
    run_dir = _ram("locked")
    io.makedirs(run_dir)
    with RunLock(run_dir) as lock:
        assert lock.holder()["pid"] == os.getpid()
        with pytest.raises(OfaError, match=f"in use by pid {os.getpid()}"):
            RunLock(run_dir).acquire()
    assert not io.exists(os.path.join(run_dir, ".lock"))
    io.write_json(os.path.join(run_dir, ".lock"), {"pid": 1, "host": "elsewhere", "started": "then"})
    with pytest.raises(OfaError, match="in use by pid 1 on elsewhere"):
        RunLock(run_dir).acquire()


def _metrics(path: str) -> list[dict]:
    return list(csv.DictReader(stdio.StringIO(io.read_text(path))))


def _run_tool_main(module, argv: list[str], monkeypatch) -> None:
    """Runs a tool's `_main` in this process, its flags parsed into a fresh FlagValues."""
    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    flag_values([module.PROGRAM, *argv])
    monkeypatch.setattr(module, "FLAGS", flag_values)
    check_flags = module.check_flags
    if "flag_values" in inspect.signature(check_flags).parameters:  # its default is bound to absl's FLAGS
        monkeypatch.setattr(module, "check_flags", lambda: check_flags(flag_values))
    module._main([module.PROGRAM])


@pytest.mark.integration
def test_train_resume_evaluate_search_and_export_on_a_ram_model_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a URL must never become a folder here
    space = tmp_path / "tiny_space.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    config = RunConfig(method="deps", space=str(space), dataset=f"npz:{DEMO}", image_size=(16,), epochs=2,
                       steps_per_epoch=2, batch_size=16, bn_calibration_images=32, num_subnets=1,
                       epsilon_ramp_epochs=0.5)
    run_dir = _ram("run")
    summary = train(config, run_dir, verbose=0)
    assert summary["resumed_from"] == 0 and summary["model_dir"] == run_dir
    directory = RunDirectory(run_dir)
    assert directory.read().config == config
    assert [os.path.basename(p) for p in directory.checkpoints()] == ["ckpt-00000002", "ckpt-00000004"]
    assert [r["epoch"] for r in _metrics(directory.metrics_path)] == ["1", "2"]
    assert io.listdir(directory.logs_dir)  # TensorBoard writes there too
    assert io.exists(os.path.join(run_dir, "sampled_subnets.json"))
    assert not io.exists(os.path.join(run_dir, ".lock"))  # released
    assert not [n for n in io.listdir(directory.checkpoint_dir) if n.startswith(io.TEMP_PREFIX)]

    for path in io.matching_files(directory.checkpoint_dir, "ckpt-00000004.*"):  # as if killed in epoch 2
        io.remove(path)
    resumed = train(config, run_dir, verbose=0)
    assert resumed["resumed_from"] == 1 and resumed["resumed_from_step"] == 2
    assert [r["epoch"] for r in _metrics(directory.metrics_path)] == ["1", "2"]  # the row is written once

    from ofa_tf.cli import evaluate, export, search
    capsys.readouterr()
    _run_tool_main(evaluate, [f"--model_dir={run_dir}", "--archs=max,min", "--bn_calibration_images=32",
                              f"--output={run_dir}/evaluation.json"], monkeypatch)
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"]
    assert len(results) == 2 and all(0.0 <= r["accuracy"] <= 1.0 for r in results)
    assert io.read_json(os.path.join(run_dir, "evaluation.json"))["results"] == results

    search_dir = os.path.join(run_dir, "search")  # zero-cost: reads the run's sampled_subnets.json
    _run_tool_main(search, [f"--model_dir={run_dir}", "--flops=10M", "--searcher=zero_cost", "--measure=false",
                            f"--output_dir={search_dir}"], monkeypatch)
    chosen = os.path.join(search_dir, "flops-10M.json")
    assert io.read_json(chosen)["last_trained_step"] >= 0 and io.exists(os.path.join(search_dir, "summary.json"))

    output = os.path.join(run_dir, "exports", "m.tflite")
    io.makedirs(os.path.dirname(output))
    _run_tool_main(export, [f"--model_dir={run_dir}", f"--arch={chosen}", f"--output={output}",
                            "--bn_calibration_images=32", "--eval_images=64"], monkeypatch)
    metadata = io.read_json(os.path.join(run_dir, "exports", "m.json"))
    assert metadata["source"]["model_dir"] == run_dir and metadata["tflite_bytes"] == io.getsize(output)
    assert io.read_bytes(output)[4:8] == b"TFL3"
    assert sorted(io.listdir(os.path.dirname(output))) == ["m.json", "m.tflite"]
    assert os.listdir(tmp_path) == ["tiny_space.json"]  # no ./ram: folder


@pytest.mark.integration
def test_an_unreachable_gs_model_dir_is_an_error_not_a_local_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ofa_tf.cli.train", "--model_dir=gs://ofa-tf-no-such-bucket/run",
                           "--space=ofa_mbv3", f"--dataset=npz:{DEMO}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode != 0
    assert "--model_dir=gs://ofa-tf-no-such-bucket/run: cannot be reached" in done.stderr.strip().splitlines()[-1]
    assert os.listdir(tmp_path) == []
