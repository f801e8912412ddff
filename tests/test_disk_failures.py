"""Nothing lost, nothing silently wrong when the disk is: out of space (ENOSPC), over the
file-size limit (`ulimit -f`: EFBIG), paths longer than the filesystem allows, and files a
teammate must be able to read."""

import errno
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_one_line_error, run_tool, tiny_space

from ofa_tf import io
from ofa_tf.errors import OfaError
from ofa_tf.io import atomic_write, make_temp_dir, space_problem, unwritable_reason, write_json
from ofa_tf.runs.directory import RunDirectory, room_inside

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
# Above the tiny run's small files (config.json, metrics.csv, events), well below its weights file
# (which holds the weights only: the optimizer state is in the .optimizer.npz written after it)
FILE_LIMIT = 150_000


def _run_flags(tmp_path) -> list[str]:
    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    return ["--method=deps", f"--space={space}", f"--dataset=npz:{DEMO}", "--image_size=16", "--epochs=1",
            "--steps_per_epoch=2", "--checkpoint_every_steps=1", "--batch_size=16", "--bn_calibration_images=16",
            "--num_subnets=1", "--epsilon_ramp_epochs=0.5"]


def _train(args, file_limit: int | None = None):
    """`ofa-train ARGS` in a subprocess, under RLIMIT_FSIZE = `file_limit` bytes if given
    (Python ignores SIGXFSZ, so a write past it fails with EFBIG)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
    return subprocess.run([sys.executable, "-m", "ofa_tf.cli.train", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, preexec_fn=limit if file_limit else None)


def _summary(done) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _temp_files(root) -> list[str]:
    return [os.path.join(d, n) for d, dirs, names in os.walk(root) for n in dirs + names if n.startswith(".tmp")]


# ----------------------------------------------------------------------------- io helpers
@pytest.mark.unit
@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EFBIG])
def test_a_write_out_of_room_names_the_file_and_leaves_no_temp(tmp_path, number):
    path = str(tmp_path / "ckpt-00000001.weights.h5")

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError(number, os.strerror(number))  # what a write() past the space / limit raises

    with pytest.raises(OSError) as raised:
        atomic_write(path, write)
    assert raised.value.errno == number and raised.value.filename == path
    assert os.listdir(tmp_path) == []
    why, where = space_problem(raised.value)
    assert where == path and why == ("no space left on device" if number == errno.ENOSPC else
                                     "file too large (over the file-size limit, ulimit -f, or the filesystem's)")


@pytest.mark.unit
def test_tensorflow_writers_out_of_room_are_recognised_and_others_are_not():
    events = "/runs/a/logs/train/events.out.tfevents.1796569766.vm.6471.0.v2"
    error = tf.errors.OutOfRangeError(None, None, f"{{{{function_node WriteSummary}}}} {events}; File too large\n"
                                                  f"\tFailed to flush 11 events to {events}")
    assert space_problem(error) == (io._SPACE_REASONS[errno.EFBIG], events)
    assert space_problem(tf.errors.UnknownError(None, None, f"{events}; No space left on device")
                         ) == ("no space left on device", events)
    assert space_problem(tf.errors.NotFoundError(None, None, f"{events}; No such file")) is None
    assert space_problem(PermissionError(errno.EACCES, "Permission denied", events)) is None
    assert space_problem(ValueError("File too large")) is None


@pytest.mark.unit
def test_a_real_write_past_the_file_size_limit_is_an_oserror_naming_the_file(tmp_path):
    """Under RLIMIT_FSIZE a write past the limit is an OSError (EFBIG) naming the final file,
    for plain bytes (how checkpoint weights are written) and np.savez (zip); neither leaves
    its temporary file."""
    script = f"""
import errno, os, resource, numpy as np
from ofa_tf.io import atomic_write, write_bytes
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
for name, write in (("a.bin", lambda tmp: write_bytes(tmp, bytes(10000))),
                    ("b.npz", lambda tmp: np.savez(tmp, x=np.zeros(10000)))):
    path = os.path.join({str(tmp_path)!r}, name)
    try:
        atomic_write(path, write)
    except OSError as e:
        assert e.errno == errno.EFBIG and e.filename == path, (e.errno, e.filename)
    else:
        raise AssertionError(name + " was written")
print(sorted(os.listdir({str(tmp_path)!r})))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.unit
def test_the_weights_file_made_in_memory_loads_as_save_weights_writes_it(tmp_path):
    from ofa_tf.runs import RunConfig
    from ofa_tf.runs.plan import build_model
    from ofa_tf.runs.checkpoints import write_weights
    from ofa_tf.training import build_method
    from helpers import randomize_weights

    space = tiny_space(resolutions=(16,))
    method = build_method("deps", space, steps_per_epoch=1)
    config = RunConfig(method="deps", space="tiny", image_size=(16,))
    model, loaded = (build_model(config, space, 10, method) for _ in range(2))
    randomize_weights(model, seed=3)
    write_weights(str(tmp_path / "a.weights.h5"), model)
    loaded.load_weights(str(tmp_path / "a.weights.h5"))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(model.weights, loaded.weights))
    assert any(not np.array_equal(a.numpy(), b.numpy()) for a, b in zip(
        model.weights, build_model(config, space, 10, method).weights))  # the comparison can fail
    assert os.listdir(tmp_path) == ["a.weights.h5"]


@pytest.mark.unit
def test_a_failed_metrics_row_is_cut_back_not_left_half_written(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,loss\r\n1,0.5\r\n")
    script = f"""
import errno, resource
from ofa_tf.runs.report import _append
resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))
try:
    _append({str(path)!r}, ["epoch", "loss"], {{"epoch": 2, "loss": "0." + "4" * 60}}, header=False)
except OSError as e:
    assert e.errno == errno.EFBIG and e.filename == {str(path)!r}, e
else:
    raise AssertionError("written")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n"


# ------------------------------------------------- staged outputs: named by the file the user asked for
@pytest.mark.unit
def test_a_search_result_out_of_room_names_the_result_file_not_its_staged_copy(tmp_path):
    """A result file is written into a staging folder first; a write there that runs out of
    room (/dev/full: a real ENOSPC, raised by write() with no file name) names the result's
    final path."""
    from ofa_tf.cli import search

    final = str(tmp_path / "search" / "flops-1M.json")
    with pytest.raises(OSError) as raised:
        search._write_json("/dev/full", final, {"arch": "x" * 10_000})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == final
    assert space_problem(raised.value) == ("no space left on device", final)


@pytest.mark.unit
@pytest.mark.parametrize("key", ["tflite", "keras", "saved_model"])
def test_an_export_out_of_room_names_the_output_file_not_its_staged_copy(tmp_path, monkeypatch, key):
    """Each file of an export is written into `.tmp-export-*` first: running out of room
    there (the tflite bytes, Keras's zip writer, which names no file, TensorFlow's SavedModel
    writer, which says it in its message) names the file the user asked for, and the staging
    folder is gone."""
    import zipfile

    from ofa_tf.export import exporter

    class Subnet:
        def save(self, path):  # as Keras's `.keras` zip writer fails on a full disk
            with zipfile.ZipFile("/dev/full", "w") as archive:
                archive.writestr("model.weights.h5", bytes(100_000))

    def full_tflite(path, data):
        io.write_bytes("/dev/full" if path.endswith(".tflite") else path, data)

    def full_saved_model(model, directory):
        raise tf.errors.UnknownError(None, None, f"{directory}/variables/variables.data-00000-of-00001; "
                                                 "No space left on device")

    monkeypatch.setattr(exporter, "write_bytes", full_tflite if key == "tflite" else io.write_bytes)
    monkeypatch.setattr(exporter, "export_saved_model", full_saved_model)
    formats = {"tflite": ("tflite",), "keras": ("tflite", "keras"), "saved_model": ("tflite", "saved_model")}[key]
    paths = exporter.output_paths(str(tmp_path / "m.tflite"), formats)
    with pytest.raises(OSError) as raised:
        exporter._write_all(paths, b"TFL3", Subnet(), {}, 0.0)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == paths[key], raised.value
    assert os.listdir(tmp_path) == []  # no staging folder, nothing half-written


# ----------------------------------------------------------------------------- permissions
@pytest.mark.unit
def test_files_and_folders_get_the_usual_permissions(tmp_path):
    """0666 / 0777 less the umask, as any tool makes them (tempfile's are 0600 / 0700)."""
    old = os.umask(0o022)
    try:
        write_json(str(tmp_path / "config.json"), {"a": 1})
        atomic_write(str(tmp_path / "w.npz"), lambda tmp: np.savez(tmp, x=np.zeros(2)))
        folder = make_temp_dir(".tmp-import-", str(tmp_path))
        assert os.path.basename(folder).startswith(".tmp-import-")
        modes = {name: os.stat(tmp_path / name).st_mode & 0o777 for name in os.listdir(tmp_path)}
        assert modes == {"config.json": 0o644, "w.npz": 0o644, os.path.basename(folder): 0o755}, modes
        os.umask(0o027)
        write_json(str(tmp_path / "config.json"), {"a": 2})
        assert os.stat(tmp_path / "config.json").st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


@pytest.mark.integration
def test_a_run_is_readable_by_others(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "ofa_tf.cli.train", *_run_flags(tmp_path), "--epochs=1",
                           "--steps_per_epoch=1", f"--model_dir={run_dir}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, preexec_fn=lambda: os.umask(0o022))
    _summary(done)
    modes = {os.path.relpath(os.path.join(d, n), run_dir): os.stat(os.path.join(d, n)).st_mode & 0o777
             for d, dirs, names in os.walk(run_dir) for n in dirs + names}
    assert "checkpoints/ckpt-00000001.weights.h5" in modes and "config.json" in modes
    wrong = {p: oct(m) for p, m in modes.items() if m != (0o755 if os.path.isdir(run_dir / p) else 0o644)}
    assert not wrong


# ----------------------------------------------------------------------------- path length
@pytest.mark.unit
def test_paths_longer_than_the_filesystem_allows_are_found_before_anything_is_written(tmp_path):
    long_name = tmp_path / ("a" * 256) / "run"
    assert unwritable_reason(str(long_name), directory=True).startswith(
        "too long: the name 'aaaaaaaaaaaaaaaaaaaa...aaaaaaaaaaaa' is 256 bytes, the filesystem allows 255")
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    assert unwritable_reason(str(tmp_path / ("b" * name_max)), directory=True) is None  # the longest name fits
    # a file's temporary name (.tmp-XXXXXXXX + its suffix) must fit too
    assert "written as .tmp-XXXXXXXX.* first" in unwritable_reason(str(tmp_path / ("x." + "c" * 250)))
    path_max = os.pathconf(tmp_path, "PC_PATH_MAX") - 1
    inside = room_inside()
    longest = path_max - inside - 1  # a run directory's longest path: room for its files inside
    deep = str(tmp_path)
    while longest - len(deep) > 250:
        deep = os.path.join(deep, "d" * 200)
    deep = os.path.join(deep, "e" * (longest - len(deep) - 1))
    assert len(deep) == longest and unwritable_reason(deep, directory=True, room_inside=inside) is None
    deeper = deep + "e"
    reason = unwritable_reason(deeper, directory=True, room_inside=inside)
    assert reason.startswith(f"too long: the path is {len(deeper)} bytes and the files written inside it need "
                             f"{inside + 1} more, the filesystem allows {path_max}"), reason
    with pytest.raises(OfaError, match=r"^model_dir=.*: too long: the path is \d+ bytes and the files written inside"):
        RunDirectory(deeper).check_writable()  # a run's directory: room for a run's files
    assert unwritable_reason(deeper, directory=True) is None  # another tool's folder: none needed beyond its own
    assert os.listdir(tmp_path) == []


@pytest.mark.integration
def test_train_into_a_too_long_model_dir_is_one_line_and_creates_nothing(tmp_path):
    done = run_tool("train", *_run_flags(tmp_path), f"--model_dir={tmp_path / 'runs' / ('r' * 300) / 'x'}")
    assert_one_line_error(done, "is 300 bytes, the filesystem allows 255")
    assert sorted(os.listdir(tmp_path)) == ["tiny.json"]


# ----------------------------------------------------------------------------- full disks
@pytest.mark.integration
def test_over_the_file_size_limit_before_the_first_checkpoint_leaves_nothing(tmp_path):
    """The first checkpoint's weights pass `ulimit -f`: one line naming the file, no crash
    (HDF5 writing to disk segfaulted), and the folders the run created are gone."""
    run_dir = tmp_path / "runs" / "new" / "run"
    done = _train([*_run_flags(tmp_path), f"--model_dir={run_dir}"], file_limit=FILE_LIMIT)
    assert_one_line_error(done, f"--model_dir={run_dir}: file too large (over the file-size limit, ulimit -f, "
                                "or the filesystem's) while writing checkpoints/ckpt-00000001.weights.h5; nothing "
                                "was kept (no checkpoint yet)")
    assert sorted(os.listdir(tmp_path)) == ["tiny.json"]  # runs/new/run were made by the run: removed


@pytest.mark.integration
def test_over_the_file_size_limit_keeps_every_checkpoint_and_a_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*_run_flags(tmp_path), f"--model_dir={run_dir}"]
    _summary(_train(args))
    for path in (run_dir / "checkpoints").glob("ckpt-00000002.*"):  # as if killed after step 1's checkpoint
        path.unlink()
    before = _digests(run_dir / "checkpoints")
    done = _train(args, file_limit=FILE_LIMIT)
    assert_one_line_error(done, "while writing checkpoints/ckpt-00000002.weights.h5; the checkpoint at step 1 is "
                                "kept: re-run the same command to resume once there is room")
    assert _digests(run_dir / "checkpoints") == before and not _temp_files(run_dir)
    assert (run_dir / "config.json").exists()
    summary = _summary(_train(args))  # the limit lifted
    assert summary["resumed_from_step"] == 1 and (run_dir / "checkpoints" / "ckpt-00000002.json").exists()
    assert [line.split(",")[0] for line in (run_dir / "metrics.csv").read_text().splitlines()] == ["epoch", "1"]


@pytest.fixture
def small_filesystem(tmp_path):
    """A 640 KiB tmpfs (as root); skipped where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the real small filesystem cannot be made here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k", f"ofa-test-{uuid.uuid4().hex[:6]}", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()[:120]}); "
                    "the RLIMIT_FSIZE tests cover a write that fails")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.integration
def test_a_full_disk_during_a_checkpoint_is_one_line_and_a_resume_after_freeing_space_finishes(
        tmp_path, small_filesystem):
    """A 640 KiB filesystem holds the tiny run's first checkpoint but not a second beside it: ENOSPC."""
    run_dir = small_filesystem / "run"
    args = [*_run_flags(tmp_path), f"--model_dir={run_dir}"]
    done = _train(args)
    assert_one_line_error(done, f"--model_dir={run_dir}: no space left on device while writing checkpoints/"
                                "ckpt-00000002.")
    assert "the checkpoint at step 1 is kept" in done.stderr
    assert sorted(os.listdir(run_dir / "checkpoints")) == [f"ckpt-00000001{s}" for s in (
        ".json", ".optimizer.npz", ".weights.h5")] and not _temp_files(run_dir)
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_filesystem)], check=True)  # space freed
    summary = _summary(_train(args))
    assert summary["resumed_from_step"] == 1 and (run_dir / "checkpoints" / "ckpt-00000002.json").exists()
