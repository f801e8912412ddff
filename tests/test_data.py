"""Data sources (npz, idx, folder, tfds offline) and the training pipeline."""

import gzip
import os
import struct
import time

import numpy as np
import pytest
import tensorflow as tf

from ofa_tf import OfaError
from ofa_tf.data import check_dataset_spec, from_arrays, load_dataset, make_pipeline, read_idx_file, split_validation

pytestmark = pytest.mark.unit

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                      "fashion-mnist")
DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "fashion_mnist_small.npz")


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_demo_npz_is_a_balanced_fashion_mnist_subset():
    data = load_dataset(f"npz:{DEMO}")
    assert data.num_classes == 10 and data.class_names[9] == "Ankle boot"
    labels = np.array([int(y) for _, y in data.train])
    assert np.bincount(labels).tolist() == [300] * 10
    image, _ = next(iter(data.train))
    assert image.shape == (28, 28, 1) and image.dtype == tf.uint8


def test_idx_directory(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (20, 6, 6)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(20) % 4)
    data = load_dataset(f"idx:{tmp_path}")
    assert data.num_classes == 4 and data.test is None and data.num_train == 20


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data/fashion-mnist not beside the checkout")
def test_real_fashion_mnist_idx_files():
    labels = read_idx_file(os.path.join(SHARED, "t10k-labels-idx1-ubyte.gz"))
    images = read_idx_file(os.path.join(SHARED, "t10k-images-idx3-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10


def test_folder_of_images(tmp_path):
    rng = np.random.default_rng(1)
    for c, name in enumerate(["cat", "dog"]):
        os.makedirs(tmp_path / name)
        for i in range(3):
            pixels = rng.integers(0, 255, (10 + i, 12, 3)).astype(np.uint8)
            encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
            tf.io.write_file(str(tmp_path / name / f"{i}.{'png' if i % 2 else 'jpg'}"), encode(pixels))
    data = load_dataset(f"folder:{tmp_path}")
    assert data.class_names == ["cat", "dog"] and data.encoding == "file"
    images, _ = next(iter(make_pipeline(data.train, 6, [16], training=False, encoding=data.encoding)))
    assert images.shape == (6, 16, 16, 3)
    assert sorted(int(y) for _, y in data.train) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("setup,match", [
    (lambda p: None, r"no images found"),
    (lambda p: (os.makedirs(p / "a"), open(p / "a" / "x.txt", "w").write("not an image")), r"no images found"),
])
def test_bad_folders(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(OfaError, match=match):
        load_dataset(f"folder:{tmp_path}")


def test_labels_out_of_range_and_bad_arrays(tmp_path):
    x = np.zeros((4, 8, 8), np.uint8)
    with pytest.raises(OfaError, match=r"label 12 in y_test is out of range; expected 0..2"):
        from_arrays("npz:t", x, np.array([0, 1, 2, 1]), x, np.array([0, 12, 1, 1]))
    with pytest.raises(OfaError, match=r"label -1 in y_train"):
        from_arrays("npz:t", x, np.array([0, -1, 2, 1]))
    with pytest.raises(OfaError, match=r"y_train has shape \(3,\)"):
        from_arrays("npz:t", x, np.array([0, 1, 2]))
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(OfaError, match=r"missing array 'x_train'"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


@pytest.mark.parametrize("spec,match", [
    ("imagenet", r"dataset='imagenet': expected KIND:WHERE"),
    ("csv:foo", r"dataset='csv:foo'"),
    ("npz:/no/such.npz", r"npz:/no/such.npz: no such file"),
    ("idx:/no/such", r"idx:/no/such: no such directory"),
    ("folder:/no/such", r"folder:/no/such: no such directory"),
])
def test_bad_dataset_specs(spec, match):
    with pytest.raises(OfaError, match=match):
        load_dataset(spec)


def test_tfds_offline_fails_fast_and_clearly(tmp_path):
    start = time.time()
    with pytest.raises(OfaError, match=r"tfds:mnist: not prepared in .* and downloads are off"):
        load_dataset("tfds:mnist", data_dir=str(tmp_path))
    with pytest.raises(OfaError, match=r"tfds:no_such_dataset_xyz: cannot load"):
        load_dataset("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))
    assert time.time() - start < 60


def test_validation_split_is_deterministic_and_disjoint():
    data = from_arrays("t", np.arange(200 * 4, dtype=np.uint8).reshape(200, 2, 2, 1) % 255, np.arange(200) % 5)
    train, val = split_validation(data.train, 0.2, seed=3)
    key = lambda ds: sorted(int(y) * 1000 + int(x.numpy().sum()) for x, y in ds)  # noqa: E731
    train_again, val_again = split_validation(data.train, 0.2, seed=3)
    assert key(val) == key(val_again) and key(train) == key(train_again)
    assert len(key(val)) + len(key(train)) == 200 and 20 <= len(key(val)) <= 60
    with pytest.raises(OfaError, match=r"validation_fraction=1.0"):
        split_validation(data.train, 1.0, 0)


def test_pipeline_gray_to_rgb_and_one_resolution_per_batch():
    data = from_arrays("t", np.random.default_rng(0).integers(0, 255, (64, 28, 28)).astype(np.uint8),
                       np.arange(64) % 10)
    batches = list(make_pipeline(data.train, 8, [16, 24, 32], training=True, seed=5))
    sizes = [b[0].shape[1] for b in batches]
    assert all(b[0].shape[1] == b[0].shape[2] and b[0].shape[3] == 3 for b in batches)
    assert set(sizes) <= {16, 24, 32} and len(set(sizes)) > 1
    again = [b[0].shape[1] for b in make_pipeline(data.train, 8, [16, 24, 32], training=True, seed=5)]
    assert sizes == again  # seeded
    evaluation = list(make_pipeline(data.train, 8, [16, 24, 32], training=False))
    assert {b[0].shape[1] for b in evaluation} == {32} and len(evaluation) == 8
    assert abs(float(tf.reduce_mean(evaluation[0][0]))) < 3.0


# ------------------------------------------------------------------ malformed data values
@pytest.mark.unit
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_named(tmp_path, bad):
    x = np.random.default_rng(0).uniform(0, 1, (6, 8, 8)).astype(np.float32)
    x[4, 2, 3] = bad
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(6) % 2)
    with pytest.raises(OfaError, match=rf"d.npz: x_train holds {bad} pixels \(image 4\); expected finite values"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


@pytest.mark.unit
def test_an_empty_class_folder_is_named(tmp_path):
    for name in ("cat", "dog", "emu"):
        os.makedirs(tmp_path / name)
    for name in ("cat", "emu"):
        tf.io.write_file(str(tmp_path / name / "0.png"), tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(OfaError, match=r"class folder 'dog' holds no images") as raised:
        load_dataset(f"folder:{tmp_path}")
    assert "\n" not in str(raised.value)


@pytest.mark.unit
@pytest.mark.parametrize("content,match", [
    (np.random.default_rng(0).bytes(256), r"not a NumPy .npz archive \(it starts with"),
    (b"", r"not a NumPy .npz archive"),
    (b"\x93NUMPY" + bytes(64), r"not a NumPy .npz archive \(a single-array .npy file\)"),
    (b"PK\x03\x04" + np.random.default_rng(1).bytes(64), r"not a readable .npz file"),
], ids=["random_bytes", "empty", "npy_file", "broken_zip"])  # fixed bytes: xdist workers collect the same ids
def test_a_file_that_is_not_an_npz_archive_is_called_so(tmp_path, content, match):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(OfaError, match=match) as raised:
        load_dataset(f"npz:{path}")
    assert "pickled" not in str(raised.value) and "\n" not in str(raised.value)
    assert str(path) in str(raised.value)


@pytest.mark.unit
def test_a_truncated_npz_and_string_arrays_are_one_line(tmp_path):
    np.savez(tmp_path / "good.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4))
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(OfaError, match=r"cut.npz: not a readable .npz file"):
        load_dataset(f"npz:{tmp_path / 'cut.npz'}")
    np.savez(tmp_path / "text.npz", x_train=np.array([["a"] * 8] * 8 * 4).reshape(4, 8, 8), y_train=np.arange(4))
    with pytest.raises(OfaError, match=r"text.npz: x_train has dtype <U1; expected numbers"):
        load_dataset(f"npz:{tmp_path / 'text.npz'}")
    np.savez(tmp_path / "empty.npz", x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros((0,), np.int64))
    with pytest.raises(OfaError, match=r"empty.npz: x_train holds no images"):
        load_dataset(f"npz:{tmp_path / 'empty.npz'}")


@pytest.mark.unit
@pytest.mark.parametrize("header,match", [
    (struct.pack(">BBBB", 0, 0, 0x0D, 3), r"not an IDX file of unsigned bytes \(header 00000d03"),  # float data
    (struct.pack(">BBBB", 0, 0, 8, 0), r"not an IDX file of unsigned bytes \(header 00000800"),  # no dimensions
    (b"GIF8", r"not an IDX file of unsigned bytes \(header 47494638"),
    (b"\x00\x00", r"not an IDX file of unsigned bytes \(header 00000000"),
])
def test_idx_files_with_a_bad_header_are_named(tmp_path, header, match):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + bytes(16))
    with pytest.raises(OfaError, match=match) as raised:
        read_idx_file(str(path))
    assert str(path) in str(raised.value)


@pytest.mark.unit
def test_idx_files_that_are_not_gzip_or_are_cut_short(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(OfaError, match=r"train-images-idx3-ubyte.gz: unreadable IDX file"):
        load_dataset(f"idx:{tmp_path}")
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 6, 6)))
    data = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(data[:-12])  # truncated stream
    with pytest.raises(OfaError, match=r"train-images-idx3-ubyte.gz: (unreadable IDX file|holds \d+ bytes)"):
        read_idx_file(str(tmp_path / "train-images-idx3-ubyte.gz"))


@pytest.mark.unit
@pytest.mark.parametrize("spec,match", [
    ("bogus", r"unlabelled_dataset='bogus': expected KIND:WHERE"),
    ("npz:{tmp}/adir", r"unlabelled_dataset=npz:.*/adir: not a file"),
    ("npz:{tmp}/none.npz", r"unlabelled_dataset=npz:.*/none.npz: no such file"),
    ("folder:{tmp}/afile", r"unlabelled_dataset=folder:.*/afile: not a directory"),
    ("idx:{tmp}/none", r"unlabelled_dataset=idx:.*/none: no such directory"),
])
def test_dataset_specs_are_checked_without_reading_them(tmp_path, spec, match):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(OfaError, match=match):
        check_dataset_spec(spec.format(tmp=tmp_path), "unlabelled_dataset")
    assert check_dataset_spec(f"npz:{DEMO}") == ("npz", DEMO)
    assert check_dataset_spec("tfds:mnist") == ("tfds", "mnist")  # TFDS looks it up when it loads
