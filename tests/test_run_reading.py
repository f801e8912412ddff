"""Reading user files strictly: config.json, the dataset's fingerprint, arch files, the accuracy
predictor, the run lock, PyTorch state dicts and an import racing another (issue 27).

Each reader either gives what the file says or one OfaError naming the file and the field;
never a default for a missing setting, never a traceback from deep inside.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib
import json
import os
import random
import re
import shutil
import socket
import time

import numpy as np
import pytest

from helpers import make_folder, make_run_dir, tiny_space

from ofa_tf.data import load_dataset
from ofa_tf.errors import OfaError
from ofa_tf.runs import RunConfig, RunDirectory
from ofa_tf.runs.config import LEGACY_VALUES, REQUIRED_SETTINGS
from ofa_tf.runs.fingerprint import FINGERPRINT_KEY, dataset_fingerprint, fingerprint_change
from ofa_tf.runs.lock import RunLock

pytestmark = pytest.mark.unit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")


@pytest.fixture(scope="module")
def saved_config(tmp_path_factory):
    """config.json of a trained-looking run (helpers.make_run_dir), as a dict."""
    run = make_run_dir(tmp_path_factory.mktemp("reading") / "run")
    with open(os.path.join(run, "config.json")) as f:
        return json.load(f)


def _run_with(tmp_path, config) -> RunDirectory:
    """A run directory holding `config` (a dict, or text) as its config.json, and no checkpoint."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return RunDirectory(str(run))


# ------------------------------------------------------------------------------- config.json
def test_every_setting_is_required_or_has_the_value_older_runs_computed():
    names = {f.name for f in dataclasses.fields(RunConfig)}
    assert REQUIRED_SETTINGS | set(LEGACY_VALUES) == names and not REQUIRED_SETTINGS & set(LEGACY_VALUES)
    full = RunConfig(image_size=(24, 32), num_subnets=2, learning_rate=0.1)
    assert RunConfig.from_saved(full.to_dict()) == full
    older = {k: v for k, v in full.to_dict().items() if k in REQUIRED_SETTINGS}  # written before the newer keys
    legacy = RunConfig.from_saved(older)
    assert {k: getattr(legacy, k) for k in LEGACY_VALUES} == LEGACY_VALUES
    assert legacy.augment == "cifar" != RunConfig().augment  # not today's default: what it computed


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(run=[]), "config.json: run=[]: expected an object holding the run's settings"),
    (lambda c: c.update(run={}), 'config.json: method is missing from "run", and 26 more settings'),
    (lambda c: c.update(run=None), "config.json: run=null: expected an object"),
    (lambda c: c.update(run="x"), 'config.json: run="x": expected an object'),
    (lambda c: c["run"].pop("dataset"), 'config.json: dataset is missing from "run" (every ofa_tf run records it'),
    (lambda c: c["run"].pop("image_size"), "config.json: image_size is missing"),
    (lambda c: c["run"].update(image_size=[]), "config.json: image_size=[]: expected a non-empty list of positive"),
    (lambda c: c["run"].update(image_size=[32, "40"]), 'config.json: image_size=[32, "40"]: expected a non-empty'),
    (lambda c: c["run"].update(dataset=None), "config.json: dataset=null: expected a string"),
    (lambda c: c["run"].update(seed=1.5), "config.json: seed=1.5: expected an integer"),
    (lambda c: c["run"].update(seed=10 ** 30), "config.json: seed=1000000000000000000000000000000: expected an"),
    (lambda c: c["run"].update(width_mult=float("inf")), "config.json: width_mult=Infinity: expected a finite number"),
    (lambda c: c["run"].update(steps_per_epoch="3"), 'steps_per_epoch="3": expected an integer (or null)'),
    (lambda c: c["run"].update(bn_calibration_images=0), "config.json: bn_calibration_images=0: expected a positive"),
    (lambda c: c["run"].update(colour="red"), 'config.json: "colour": not a setting of this version of ofa_tf'),
    (lambda c: c.pop("space"), "config.json: space is missing (every ofa_tf run records it)"),
    (lambda c: c.update(space=[1]), "config.json: space=[1]: expected an object (the run's space config)"),
    (lambda c: c["space"].pop("stages"), "config.json: space: does not fit this version of ofa_tf (KeyError"),
    (lambda c: c.update(method="deps"), 'config.json: method="deps": expected an object'),
    (lambda c: c.update(num_classes=True), "config.json: num_classes=true: expected a positive integer"),
    (lambda c: c.update(num_classes=2 ** 62), "config.json: num_classes=4611686018427387904: expected a positive"),
    (lambda c: c.update(normalization={"mean": [10 ** 400] * 3, "std": [1, 1, 1]}), "config.json: normalization="),
    (lambda c: c.update(class_names=["a", "b"]), 'class_names=["a", "b"]: expected a list of 10 strings'),
    (lambda c: c.update(normalization={"mean": [0.5], "std": [1, 1, 1]}), "config.json: normalization="),
    (lambda c: c.update(steps_per_epoch=0), "config.json: steps_per_epoch=0: expected a positive integer"),
    (lambda c: c.update(dataset_fingerprint={"num_train": 3}), "config.json: dataset_fingerprint: expected an object"),
    (lambda c: c.update(imported_from="ofa"), 'config.json: imported_from="ofa": expected an object'),
])
def test_a_damaged_config_is_one_error_naming_the_file_and_the_setting(saved_config, tmp_path, edit, message):
    config = json.loads(json.dumps(saved_config))
    edit(config)
    directory = _run_with(tmp_path, config)
    with pytest.raises(OfaError) as raised:
        directory.read()
    text = str(raised.value)
    assert text.startswith(f"model_dir={directory.path}: config.json: ") and message in text, text
    assert "\n" not in text and len(text) < 400


def test_resuming_reads_the_saved_settings_as_strictly(saved_config, tmp_path):
    """`read_settings` (what a resumed `ofa-train` compares its flags with) fails as `read` does."""
    directory = _run_with(tmp_path, saved_config)
    assert directory.read_settings() == directory.read().config.to_dict()
    for run, message in (([], "run=[]: expected an object"), ({}, 'method is missing from "run"'),
                         ({**saved_config["run"], "image_size": []}, "image_size=[]: expected")):
        directory = _run_with(tmp_path, {**saved_config, "run": run})
        with pytest.raises(OfaError, match=f"^model_dir={directory.path}: config.json: {re.escape(message)}"):
            directory.read_settings()
    directory = _run_with(tmp_path, {k: v for k, v in saved_config.items() if k != "run"})
    with pytest.raises(OfaError, match="config.json: run is missing"):
        directory.read_settings()


@pytest.mark.parametrize("text, message", [
    ("{not json", "unreadable config.json (Expecting property name"),
    ("[" * 100_000 + "]" * 100_000, "unreadable config.json (nested too deeply)"),
    ("[1, 2]", "unreadable config.json (expected a JSON object, got [1, 2])"),
    (b"\xff\xfe{}", "unreadable config.json"),
])
def test_an_unparseable_config_is_one_error(tmp_path, text, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(OfaError) as raised:
        RunDirectory(str(run)).read()
    assert message in str(raised.value)


def test_a_deleted_config_beside_checkpoints_is_reported_as_missing(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    directory = RunDirectory(str(tmp_path))
    for check in (directory.read, directory.check_config_present):
        with pytest.raises(OfaError, match=r"config.json is missing, but checkpoints/ is there"):
            check()
    empty = RunDirectory(str(tmp_path / "checkpoints"))  # an ordinary folder: not a run
    empty.check_config_present()
    with pytest.raises(OfaError, match=r"no config.json \(not a training run directory\)"):
        empty.read()


def test_odd_values_are_checked_and_shown_without_raising():
    """The one set of checks every reader of a user's file uses (`ofa_tf.values`), on values
    Python's own checks trip over, and the one way an error is quoted (`error_text`)."""
    from ofa_tf.errors import error_text
    from ofa_tf.values import is_count, is_finite_number, is_int, shown

    assert is_count(0) and not any(is_count(v) for v in (True, -1, 2 ** 63, 1.0, "1"))
    assert is_int(-5) and not is_int(-2 ** 63) and not is_int(False)
    assert is_finite_number(1e300) and is_finite_number(3)
    assert not any(is_finite_number(v) for v in (10 ** 400, float("nan"), float("inf"), True, None))
    assert (shown("a"), shown("a", as_json=True), shown(float("inf")), shown([]), shown(None, as_json=True)) == \
        ("'a'", '"a"', "inf", "[]", "null")
    assert shown(10 ** 400).startswith("1000") and len(shown(10 ** 400)) <= 60
    assert shown(10 ** 5000) == "<int>" and shown(10 ** 5000, as_json=True) == "<int>"
    assert shown(list(range(100)), 20, as_json=True) == "[0, 1, 2, 3, 4, 5..."
    assert error_text(ValueError("first   line\nsecond")) == "first line" and error_text(KeyError()) == "KeyError"
    assert error_text(OSError("x" * 500), 10) == "x" * 10


# --------------------------------------------------------------------------- the dataset's fingerprint
def _write_idx(folder, labels):
    os.makedirs(folder, exist_ok=True)
    images = np.zeros((len(labels), 4, 4), np.uint8)
    with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz"), "wb") as f:
        f.write(b"\x00\x00\x08\x03" + np.array(images.shape, ">u4").tobytes() + images.tobytes())
    with gzip.open(os.path.join(folder, "train-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(b"\x00\x00\x08\x01" + np.array([len(labels)], ">u4").tobytes() + np.asarray(labels, np.uint8).tobytes())


def _write_tfrecords(folder, sizes):
    import tensorflow as tf
    os.makedirs(folder, exist_ok=True)
    image = tf.io.encode_png(tf.zeros((4, 4, 3), tf.uint8)).numpy()
    for i, count in enumerate(sizes):
        with tf.io.TFRecordWriter(os.path.join(folder, f"train-{i}.tfrecord")) as writer:
            for j in range(count):
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[j % 2]))}))
                writer.write(example.SerializeToString())


def _fingerprint(spec):
    return dataset_fingerprint(spec, load_dataset(spec))


def test_the_fingerprint_changes_with_the_labels_or_the_files(tmp_path):
    npz = tmp_path / "data.npz"
    shutil.copy(DEMO, npz)
    spec = f"npz:{npz}"
    before = _fingerprint(spec)
    assert before["num_train"] == 3000 and before["num_classes"] == 10 and _fingerprint(spec) == before
    with np.load(DEMO) as demo:
        arrays = dict(demo)
    arrays["y_train"] = np.roll(arrays["y_train"], 1)  # same counts, other labels
    np.savez(npz, **arrays)
    change = fingerprint_change(before, _fingerprint(spec), spec)
    assert change.startswith("its labels differ: fingerprint ")

    idx_spec = f"idx:{tmp_path / 'idx'}"
    _write_idx(tmp_path / "idx", [0, 1, 2, 1])
    idx = _fingerprint(idx_spec)
    _write_idx(tmp_path / "idx", [0, 1, 2, 2])
    relabelled = _fingerprint(idx_spec)
    assert fingerprint_change(idx, relabelled, idx_spec) == \
        f"its labels differ: fingerprint {relabelled['sha256']} now, {idx['sha256']} then"

    folder = make_folder(str(tmp_path / "folder"), per_class=3)
    listed = _fingerprint(f"folder:{folder}")
    os.rename(os.path.join(folder, "cat", "0.jpg"), os.path.join(folder, "dog", "9.jpg"))  # relabelled
    moved = _fingerprint(f"folder:{folder}")
    assert (moved["num_train"], moved["num_classes"]) == (listed["num_train"], listed["num_classes"])
    assert "its image files differ" in fingerprint_change(listed, moved, f"folder:{folder}")

    _write_tfrecords(tmp_path / "records", [3, 2])
    records = _fingerprint(f"tfrecord:{tmp_path / 'records' / '*.tfrecord'}")
    assert records["num_train"] == 5
    _write_tfrecords(tmp_path / "records", [3, 3])
    assert "6 training examples now, 2 and 5 then" in fingerprint_change(
        records, _fingerprint(f"tfrecord:{tmp_path / 'records' / '*.tfrecord'}"), "tfrecord:x")


def _relabel_to_28_classes(npz):
    """Replaces the copy of the demo data `npz` by one whose 3000 training labels run to 27."""
    with np.load(DEMO) as demo:
        arrays = {k: demo[k] for k in ("x_train", "x_test", "y_test")}
    np.savez(npz, y_train=np.arange(3000) % 28, **arrays)


def test_evaluation_data_refuses_the_run_s_changed_dataset_unless_it_is_given(saved_config, tmp_path):
    npz = tmp_path / "data.npz"
    shutil.copy(DEMO, npz)
    spec = f"npz:{npz}"
    config = json.loads(json.dumps(saved_config))
    config["run"]["dataset"] = spec
    directory = _run_with(tmp_path, config)
    older = directory.read()  # no fingerprint recorded (an older run): accepted
    assert older.dataset_fingerprint is None
    directory.evaluation_data(older, 16, eval_images=10, bn_calibration_images=0)

    config[FINGERPRINT_KEY] = _fingerprint(spec)
    directory = _run_with(tmp_path, config)
    saved = directory.read()
    assert saved.dataset_fingerprint == config[FINGERPRINT_KEY]
    directory.evaluation_data(saved, 16, eval_images=10, bn_calibration_images=0)  # unchanged: fine

    _relabel_to_28_classes(npz)
    with pytest.raises(OfaError) as raised:
        RunDirectory(directory.path).evaluation_data(saved, 16, eval_images=10, bn_calibration_images=0)
    assert str(raised.value) == (
        f"model_dir={directory.path}: config.json: dataset={spec}: changed since the run was trained (28 classes "
        "and 3000 training examples now, 10 and 3000 then); pass --dataset explicitly to use it")
    with pytest.raises(OfaError, match=r"^dataset=npz:.*: 28 classes, but the supernet's classifier has 10$"):
        directory.evaluation_data(saved, 16, eval_images=10, bn_calibration_images=0, dataset=spec)
    data = directory.evaluation_data(saved, 16, eval_images=10, bn_calibration_images=0, dataset=f"npz:{DEMO}")
    assert data.source.num_classes == 10

    os.remove(npz)  # the run's dataset gone: an error about the saved setting, not about a flag
    with pytest.raises(OfaError, match=rf"^model_dir=.*: config.json: dataset={spec}: no such file$"):
        RunDirectory(directory.path).evaluation_data(saved, 16, eval_images=10, bn_calibration_images=0)


def test_an_older_run_s_replaced_dataset_is_refused_by_its_class_count(tmp_path):
    """A run with no fingerprint (older, or imported) still gets the class-count check on its
    own dataset: a 10-class supernet is never measured against labels up to 27."""
    npz = tmp_path / "data.npz"
    shutil.copy(DEMO, npz)
    spec = f"npz:{npz}"
    run = make_run_dir(tmp_path / "run", dataset=spec)
    directory = RunDirectory(run)
    saved = directory.read()
    assert saved.dataset_fingerprint is None and saved.num_classes == 10
    directory.evaluation_data(saved, 16, eval_images=10, bn_calibration_images=0)  # unchanged: fine
    _relabel_to_28_classes(npz)
    with pytest.raises(OfaError) as raised:
        RunDirectory(run).evaluation_data(saved, 16, eval_images=10, bn_calibration_images=0)
    assert str(raised.value) == (f"model_dir={run}: config.json: dataset={spec}: 28 classes, but the supernet's "
                                 "classifier has 10")


def test_the_fingerprint_of_arrays_is_taken_from_the_loaded_data(tmp_path):
    """npz: and idx: labels are hashed from the loaded dataset, not read from the file again
    (a second download for a URL, and a race with a file replaced meanwhile)."""
    npz = tmp_path / "data.npz"
    shutil.copy(DEMO, npz)
    data = load_dataset(f"npz:{npz}")
    before = dataset_fingerprint(f"npz:{npz}", data)
    os.remove(npz)
    assert dataset_fingerprint(f"npz:{npz}", data) == before
    assert before == dataset_fingerprint(f"npz:{DEMO}", load_dataset(f"npz:{DEMO}"))


def test_a_new_run_records_its_dataset_s_fingerprint(tmp_path):
    from ofa_tf.runs import PreparedRun

    config = RunConfig(space="ofa_mbv3", image_size=(32,), dataset=f"npz:{DEMO}", epochs=1, steps_per_epoch=1,
                       batch_size=16, bn_calibration_images=64)
    written = PreparedRun(config, str(tmp_path / "new")).run_config_json()
    assert written[FINGERPRINT_KEY] == _fingerprint(f"npz:{DEMO}")
    directory = _run_with(tmp_path, written)
    assert directory.read().dataset_fingerprint == written[FINGERPRINT_KEY]


# ------------------------------------------------------------------------------------ arch files
@pytest.mark.parametrize("fields, message", [
    ('"resolution": 1e400', "arch.resolution=inf: expected an integer"),
    ('"resolution": -Infinity', "arch.resolution=-inf: expected an integer"),
    ('"resolution": NaN', "arch.resolution=nan: expected an integer"),
    ('"resolution": 1' + "0" * 399, "arch.resolution=10000000000000000"),
    ('"resolution": 24.5', "arch.resolution=24.5: expected an integer"),
    ('"resolution": "24"', "arch.resolution='24': expected an integer"),
    ('"resolution": true', "arch.resolution=True: expected an integer"),
    ('"expands": [[1.0], [3.0, 1e400, 3.0], [3.0, 3.0]]', "arch.expands[1][1]=inf: expected a finite number"),
    ('"expands": [[1.0], [3.0, 3.0, 1' + "0" * 400 + '], [3.0, 3.0]]', "arch.expands[1][2]=1000"),
    ('"kernels": [[3], [7, 7, ' + "[" * 500 + "]" * 500 + '], [5, 5]]',
     "arch.kernels[1][2]=[[[[[[[...]]]]]]]: expected an integer"),
    ('"depths": {"a": 1}', "arch.depths={'a': 1}: expected a list"),
])
def test_an_odd_arch_file_is_one_error_naming_the_file_and_the_field(tmp_path, fields, message):
    space = tiny_space()
    arch = space.max_arch(24).to_dict()
    key = fields.split('"')[1]
    text = json.dumps({k: v for k, v in arch.items() if k != key})[:-1] + ", " + fields + "}"
    path = tmp_path / "arch.json"
    path.write_text(text)
    with pytest.raises(OfaError) as raised:
        space.parse_arch(str(path))
    assert str(raised.value).startswith(f"arch file {str(path)!r}: ") and message in str(raised.value)
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON for an arch (nested too deeply)"),
    ('{"resolution": ' + "9" * 5000 + "}", "not valid JSON for an arch (Exceeds the limit"),
    ("{", "not valid JSON (Expecting property name"),
    (b"\xff\xfe\x00", "not a text (UTF-8) file"),
])
def test_an_arch_file_that_does_not_parse_is_one_error(tmp_path, text, message):
    path = tmp_path / "arch.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(OfaError) as raised:
        tiny_space().parse_arch(str(path))
    assert str(raised.value).startswith(f"arch file {str(path)!r}: ") and message in str(raised.value)
    with pytest.raises(OfaError, match="^arch: not valid JSON for an arch"):  # the same text given inline
        tiny_space().parse_arch("[" * 100_000 + "]" * 100_000)


def test_an_ofa_format_arch_with_odd_values_names_the_field():
    space = tiny_space()
    for d, message in (([1e400, 2], "arch.d[0]=inf"), ([10 ** 400, 2], "arch.d[0]=1000"), ([2, 2], "arch.ks[0]")):
        data = {"ks": [3] * 5, "e": [3.0] * 5, "d": d, "r": [24]}
        if message.startswith("arch.ks"):
            data["ks"][0] = float("nan")
            message = "arch.kernels[1][0]=nan: expected an integer"
        with pytest.raises(OfaError) as raised:
            space.validate(data)
        assert message in str(raised.value) and len(str(raised.value)) < 200


# -------------------------------------------------------------------------------- predictor.npz
def _predictor(tmp_path):
    from ofa_tf.search import AccuracyPredictor

    space = tiny_space()
    archs = [space.sample(random.Random(i)) for i in range(6)]
    AccuracyPredictor.fit(space, archs, [0.1 * i for i in range(6)], epochs=1, hidden=(8,)).save(str(tmp_path))
    return space, tmp_path / "predictor.npz"


def test_a_torn_or_damaged_predictor_is_one_error_naming_the_file(tmp_path):
    from ofa_tf.search import AccuracyPredictor

    space, path = _predictor(tmp_path)
    AccuracyPredictor.load(str(tmp_path), space)
    whole = path.read_bytes()
    with np.load(path) as data:
        arrays = dict(data)

    def damaged(**changes):
        np.savez(path, **{**arrays, **changes})

    cases = [
        (lambda: path.write_bytes(whole[:len(whole) // 2]), "unreadable predictor (BadZipFile"),
        (lambda: path.write_bytes(b""), "unreadable predictor"),
        (lambda: np.save(str(path) + ".npy", np.zeros(3)) or os.replace(str(path) + ".npy", path),
         "a single .npy array, not a .npz archive"),
        (lambda: damaged(header=np.array("[1]")), "(header: expected a JSON object)"),
        (lambda: damaged(header=np.array("[" * 100_000)), "unreadable predictor (RecursionError"),
        (lambda: damaged(header=np.array(json.dumps({"base": float("nan"), "scale": 1}))),
         "(header.base: expected a finite number, got nan)"),
        (lambda: damaged(header=np.array(json.dumps({"base": 10 ** 400, "scale": 1}))),  # overflows a float
         "(header.base: expected a finite number, got 1000"),
        (lambda: damaged(w0=arrays["w0"][:-1]),  # the space's own fingerprint, another encoding width
         f"(w0: {len(arrays['w0']) - 1} inputs, but space 'tiny' encodes an arch as {len(arrays['w0'])} numbers)"),
        (lambda: damaged(w1=np.zeros((3, 1), np.float32)), "(w1: shape (3, 1) (bias (1,)) does not follow"),
        (lambda: damaged(w1=arrays["w1"] * np.inf), "(w1/b1: holds NaN or infinite weights)"),
        (lambda: damaged(b1=np.array(["x"])), "(w1/b1: expected float arrays"),
        (lambda: np.savez(path, **{k: v for k, v in arrays.items() if k != "b1"}), "(no 'b1' array)"),
    ]
    for damage, message in cases:
        damage()
        with pytest.raises(OfaError) as raised:
            AccuracyPredictor.load(str(tmp_path), space)
        text = str(raised.value)
        assert text.startswith(f"{path}: ") and message in text and "\n" not in text, (message, text)


# ------------------------------------------------------------------------------------- the lock
def test_a_lock_not_written_by_ofa_tf_is_refused_naming_the_file_and_the_field(tmp_path):
    lock_file = tmp_path / ".lock"
    for content, field in (({"pid": "abc", "host": socket.gethostname()}, "pid='abc'"),
                           ({"pid": 10 ** 30, "host": socket.gethostname()}, "pid=1000"),
                           ({"pid": 0, "host": socket.gethostname()}, "pid=0"),
                           ({"pid": 12, "host": 7}, "host=7"), ([1, 2], "content=[1, 2]")):
        lock_file.write_text(json.dumps(content))
        with pytest.raises(OfaError) as raised:
            RunLock(str(tmp_path)).acquire()
        assert f"{lock_file}: {field}" in str(raised.value) and "not a lock ofa_tf wrote" in str(raised.value)
        assert lock_file.read_text() == json.dumps(content)  # left for the user to remove
    lock_file.write_text('{"pid": 12')  # torn: its writer died between create and write
    old = time.time() - 60
    os.utime(lock_file, (old, old))
    with RunLock(str(tmp_path)) as lock:  # provably stale: taken over
        assert lock.holder()["pid"] == os.getpid()


def _no_data_loading(monkeypatch):
    """`PreparedRun` fails the test if it loads its dataset (checks that must come first)."""
    def load_dataset(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the run directory was checked")
    # (the module: `ofa_tf.runs.train` is also the name of its function `train`)
    monkeypatch.setattr(importlib.import_module("ofa_tf.runs.train"), "load_dataset", load_dataset)


def test_a_lock_that_stops_a_run_is_found_before_its_data_loads(tmp_path, monkeypatch):
    from ofa_tf.runs import PreparedRun

    _no_data_loading(monkeypatch)
    config = RunConfig(space="ofa_mbv3", image_size=(32,), dataset=f"npz:{DEMO}", epochs=1, steps_per_epoch=1)
    run = tmp_path / "new"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": "abc", "host": socket.gethostname()}))
    with pytest.raises(OfaError, match=r"\.lock: pid='abc': not a lock ofa_tf wrote"):
        PreparedRun(config, str(run))
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    with pytest.raises(OfaError, match=rf"^model_dir={run}: in use by pid {os.getpid()} on "):
        PreparedRun(config, str(run))
    assert sorted(os.listdir(run)) == [".lock"]


# ------------------------------------------------------------------------------- resuming
def test_a_resume_refused_on_a_legacy_value_names_the_flag_that_resumes_it(tmp_path, monkeypatch):
    """A run saved before `augment` existed trained with what it computed then (cifar); today's
    default (None: by image size) differs, so the resume is refused, naming the flag value
    that resumes it, before the data loads."""
    from ofa_tf.runs import PreparedRun

    _no_data_loading(monkeypatch)
    config = RunConfig(space="ofa_mbv3", image_size=(32,), dataset=f"npz:{DEMO}", epochs=1, steps_per_epoch=1)
    older = {k: v for k, v in config.to_dict().items() if k != "augment"}
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-00000001.json").write_text('{"epoch": 1, "step": 1}')
    (run / "config.json").write_text(json.dumps({"run": older}))
    with pytest.raises(OfaError) as raised:
        PreparedRun(config, str(run))
    assert str(raised.value) == (f"model_dir={run} holds a run with a different config: augment='cifar' there, None "
                                 "now; pass --augment=cifar to resume it (or use another model_dir)")
    with pytest.raises(OfaError, match=r"epochs=1 there, 2 now \(use another model_dir\)$"):  # a real change
        PreparedRun(dataclasses.replace(config, augment="cifar", epochs=2), str(run))


# ---------------------------------------------------------------------------------- PyTorch files
def test_a_state_dict_of_any_float_precision_reads_as_float32(tmp_path):
    torch = pytest.importorskip("torch")
    from ofa_tf.interop.torch_files import read_state_dict

    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 4  # exact in bfloat16 too
    state = {f"w_{dtype}": torch.from_numpy(values).to(getattr(torch, dtype))
             for dtype in ("bfloat16", "float16", "float64", "float32")}
    state["bn.num_batches_tracked"] = torch.tensor(7)
    torch.save(state, tmp_path / "mixed.pth")
    read = read_state_dict(str(tmp_path / "mixed.pth"))
    for dtype in ("bfloat16", "float16", "float64", "float32"):
        assert read[f"w_{dtype}"].dtype == np.float32
        np.testing.assert_array_equal(read[f"w_{dtype}"], values)
    assert read["bn.num_batches_tracked"].dtype == np.int64 and read["bn.num_batches_tracked"] == 7
    torch.save({"w": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "complex.pth")
    with pytest.raises(OfaError, match=r"^checkpoint=.*complex.pth: entry 'w': a torch.complex64 torch.strided tensor"):
        read_state_dict(str(tmp_path / "complex.pth"))


def test_an_import_that_finds_its_directory_taken_stops_with_one_line(tmp_path):
    from ofa_tf.interop.runs import publish_run

    def finished_run(name):
        folder = tmp_path / name
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        return str(folder)

    target = tmp_path / "imported"
    target.mkdir()  # an empty directory, as the user may pass
    publish_run(finished_run(".tmp-import-a"), str(target))  # the winner
    assert sorted(os.listdir(target)) == ["checkpoints", "config.json"]
    loser = finished_run(".tmp-import-b")
    with pytest.raises(OfaError, match=rf"^model_dir={target}: not empty now \(another process wrote it"):
        publish_run(loser, str(target))
    assert os.path.isdir(loser)  # import_run removes its own copy (its `except BaseException`)
