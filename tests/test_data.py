"""Data sources (npz, idx, folder, tfds offline) and the training pipeline."""

import gzip
import os
import struct
import time

import numpy as np
import pytest
import tensorflow as tf

from ofa_tf import OfaError
from ofa_tf.data import from_arrays, load_dataset, make_pipeline, read_idx_file, split_validation

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
    data = load_dataset(f"folder:{tmp_path}", image_size=16)
    assert data.class_names == ["cat", "dog"]
    images = np.stack([x.numpy() for x, _ in data.train])
    assert images.shape == (6, 16, 16, 3)
    assert sorted(int(y) for _, y in data.train) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("setup,match", [
    (lambda p: None, r"no images found"),
    (lambda p: (os.makedirs(p / "a"), open(p / "a" / "x.png", "wb").write(b"not an image")),
     r"a/x.png: not a decodable image"),
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
