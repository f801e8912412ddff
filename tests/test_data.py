"""Data sources (npz, idx, folder, tfds offline) and the training pipeline."""

import gzip
import os
import struct
import time

import numpy as np
import pytest
import tensorflow as tf

from ofa_tf import OfaError
from ofa_tf.data import from_arrays, load_dataset, make_pipeline, split_validation
from ofa_tf.data.sources import check_dataset_spec, read_idx_file

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


# ------------------------------------------- issue 27: data checked as images, classes, tiny images, damage
def _npz(tmp_path, x, y=None, name="d.npz"):
    path = tmp_path / name
    np.savez(path, x_train=x, y_train=np.arange(len(x)) % 4 if y is None else y)
    return f"npz:{path}"


@pytest.mark.unit
@pytest.mark.parametrize("make,match", [
    (lambda r: r.integers(0, 65536, (8, 6, 6)).astype(np.uint16),
     r"x_train has dtype uint16 with values in \[\d+, \d+\]"),
    (lambda r: r.integers(-128, 128, (8, 6, 6)).astype(np.int8),
     r"x_train has dtype int8 with values in \[-\d+, \d+\]"),
    (lambda r: r.uniform(-1, 1, (8, 6, 6)).astype(np.float32),
     r"x_train has dtype float32 with values in \[-0\.\d+, 0"),
    (lambda r: r.uniform(0, 300, (8, 6, 6)), r"x_train has dtype float64 with values in \[\S+, 29\d\.\d+\]"),
    (lambda r: r.uniform(0, 1, (8, 6, 6)) + 1j, r"x_train has dtype complex128 \(complex numbers\)"),
    (lambda r: r.uniform(0, 1, (8, 6, 6)) > 0.5, r"x_train has dtype bool \(booleans\)"),
    (lambda r: r.integers(0, 256, (8, 6, 6)), r"x_train has dtype int64 with values in \[0, 255\]; .*convert with "
                                              r"\.astype\(np\.uint8\)"),
], ids=["uint16", "int8", "float_signed", "float_over_255", "complex", "bool", "int64_pixels"])
def test_array_images_that_are_not_pixels_are_refused_naming_file_dtype_and_range(tmp_path, make, match):
    """Clipping turned uint16 images mostly white and dropped negative values, silently;
    now such an array is one error naming the file, its dtype and the values found."""
    spec = _npz(tmp_path, make(np.random.default_rng(0)))
    with pytest.raises(OfaError, match=match) as raised:
        load_dataset(spec)
    message = str(raised.value)
    assert message.startswith(f"{spec}: ") and "\n" not in message
    assert "expected uint8 pixels, or floats in [0, 1] (scaled to [0, 255]) or in [0, 255]" in message


@pytest.mark.unit
def test_complex_pixels_give_no_numpy_warning(tmp_path):
    import warnings
    spec = _npz(tmp_path, np.ones((8, 6, 6), np.complex64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's ComplexWarning would fail here
        with pytest.raises(OfaError, match=r"dtype complex64"):
            load_dataset(spec)


@pytest.mark.unit
def test_float_images_in_0_1_are_scaled_and_in_0_255_kept(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (12, 5, 7, 3), dtype=np.uint8)
    pixels[0, 0, 0] = [0, 255, 128]  # both ends of the range
    expected = [x.numpy() for x, _ in load_dataset(_npz(tmp_path, pixels, name="u8.npz")).train]
    for dtype in (np.float16, np.float32, np.float64):
        for name, x in (("unit", pixels.astype(dtype) / dtype(255)), ("bytes", pixels.astype(dtype))):
            data = load_dataset(_npz(tmp_path, x, name=f"{name}.npz"))
            images = [x.numpy() for x, _ in data.train]
            assert all(a.dtype == np.uint8 and np.array_equal(a, b) for a, b in zip(images, expected)), (dtype, name)


@pytest.mark.unit
def test_one_class_is_refused(tmp_path):
    """One class trains to loss 0 and learns nothing: an error for arrays, declared class
    names and folders; an unlabelled set (labels dropped) may have one."""
    x = np.zeros((6, 4, 4), np.uint8)
    with pytest.raises(OfaError, match=r"d.npz: the training labels hold one class only \(label 3\); "
                                       r"expected at least 2 classes"):
        load_dataset(_npz(tmp_path, x, np.full(6, 3)))
    with pytest.raises(OfaError, match=r"npz:t: the training labels hold one class only \(label 0\)"):
        from_arrays("npz:t", x, np.zeros(6, int), class_names=["a", "b", "c"])
    assert load_dataset(_npz(tmp_path, x, np.zeros(6, int), name="u.npz"), labelled=False).num_train == 6
    os.makedirs(tmp_path / "folder" / "cat")
    tf.io.write_file(str(tmp_path / "folder" / "cat" / "0.png"), tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(OfaError, match=r"folder:.*/folder: one class folder only \('cat'\); expected at least 2"):
        load_dataset(f"folder:{tmp_path / 'folder'}")


@pytest.mark.unit
def test_label_gaps_warn_with_the_empty_class_count(tmp_path, caplog):
    x = np.zeros((20, 4, 4), np.uint8)
    with caplog.at_level("WARNING"):
        data = load_dataset(_npz(tmp_path, x, np.arange(20) % 10 * 3))  # labels 0, 3, ..., 27: 28 classes
    assert data.num_classes == 28
    assert "d.npz: 18 of 28 classes have no training example (labels 1, 2, 4, 5, 7, ...); the classifier keeps " \
           "all 28" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_dataset(_npz(tmp_path, x, np.arange(20) % 10, name="full.npz"))
        from_arrays("npz:t", x, np.arange(20) % 4, class_names=list("abcdef"))  # declared names: 2 empty
    assert "full.npz" not in caplog.text
    assert "npz:t: 2 of 6 classes have no training example (labels 4, 5)" in caplog.text


@pytest.mark.unit
def test_a_stray_huge_label_is_refused_but_real_label_sets_load(caplog):
    x = np.zeros((3000, 1, 1), np.uint8)
    labels = np.arange(3000) % 10
    labels[1234] = 5_000_000
    with pytest.raises(OfaError, match=r"npz:t: label 5000000 would make a 5000001-class classifier, but only 11 "
                                       r"distinct labels occur \(the next largest is 9\)"):
        from_arrays("npz:t", x, labels)
    # ImageNet's 1000 classes numbered from 1 (1001 classes, label 0 empty): a warning only
    imagenet = from_arrays("npz:t", np.zeros((2000, 1, 1), np.uint8), np.arange(2000) % 1000 + 1)
    assert imagenet.num_classes == 1001
    # a few images labelled from a large label space (an evaluation set for a 1000-class model)
    sample = np.random.default_rng(0).integers(0, 1000, 40)
    sample[0] = 999
    assert from_arrays("npz:t", np.zeros((40, 1, 1), np.uint8), sample).num_classes == 1000
    # a label set of 20,000 classes, each present
    assert from_arrays("npz:t", np.zeros((20_000, 1, 1), np.uint8), np.arange(20_000)).num_classes == 20_000


@pytest.mark.unit
@pytest.mark.parametrize("augmentation", ["cifar", "imagenet", "none"])
def test_tiny_images_train_and_evaluate_and_0x0_is_refused(tmp_path, augmentation):
    """Reflect padding needs more pixels than it pads: images of 1, 3 and 4 px used to fail
    in TensorFlow mid-pipeline; now they augment (pad limited to the side - 1)."""
    rng = np.random.default_rng(2)
    for side in (1, 3, 4):
        data = from_arrays("t", rng.integers(0, 256, (8, side, side, 3), dtype=np.uint8), np.arange(8) % 2)
        train, _ = next(iter(make_pipeline(data.train, 4, [16], training=True, augmentation=augmentation)))
        test, _ = next(iter(make_pipeline(data.train, 4, [16], training=False, augmentation=augmentation)))
        assert train.shape == test.shape == (4, 16, 16, 3) and np.isfinite(train).all(), side
    with pytest.raises(OfaError, match=r"d.npz: x_train holds images of 0x0 pixels; expected at least 1x1"):
        load_dataset(_npz(tmp_path, np.zeros((4, 0, 0), np.uint8)))
    with pytest.raises(OfaError, match=r"x_test holds images of 5x0 pixels"):
        from_arrays("t", np.zeros((4, 2, 2), np.uint8), np.arange(4) % 2, np.zeros((2, 5, 0)), np.zeros(2))


@pytest.mark.unit
def test_the_cifar_pad_is_unchanged_for_images_over_4_px():
    from ofa_tf.data import augment
    image = tf.reshape(tf.range(6 * 7 * 3, dtype=tf.float32), [6, 7, 3])
    seed = tf.constant([3, 4], tf.int64)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    flipped = tf.image.stateless_random_flip_left_right(image, seeds[0])
    padded = tf.pad(flipped, [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
    np.testing.assert_array_equal(augment(image, seed), tf.image.stateless_random_crop(padded, [6, 7, 3], seeds[1]))


@pytest.mark.unit
def test_a_folder_none_of_whose_images_decode_is_refused(tmp_path):
    for c in ("a", "b"):
        os.makedirs(tmp_path / "bad" / c)
        for i in range(8):
            (tmp_path / "bad" / c / f"{i}.jpg").write_bytes(b"not an image")
    with pytest.raises(OfaError, match=r"folder:.*/bad: none of its 16 images decodes \(all tried; the first, "
                                       r".*/bad/a/0.jpg: Unknown image file format") as raised:
        load_dataset(f"folder:{tmp_path / 'bad'}")
    assert "\n" not in str(raised.value) and "ofa-check-data lists the bad files" in str(raised.value)
    assert load_dataset(f"folder:{tmp_path / 'bad'}", check_decoding=False).num_train == 16  # ofa-check-data's way
    for i in range(40):  # a larger folder: a sample spread over it is tried
        (tmp_path / "bad" / "b" / f"x{i:02d}.jpg").write_bytes(b"not an image")
    with pytest.raises(OfaError, match=r"none of 32 images tried \(of 56\) decodes"):
        load_dataset(f"folder:{tmp_path / 'bad'}")
    tf.io.write_file(str(tmp_path / "bad" / "b" / "x39.jpg"), tf.io.encode_jpeg(np.zeros((4, 4, 3), np.uint8)))
    assert load_dataset(f"folder:{tmp_path / 'bad'}").num_train == 56  # the last file decodes: training skips the rest


def _tfrecord(path, count=6, label=lambda i: tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3]))):
    image = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                       "image/class/label": label(i)}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


@pytest.mark.unit
@pytest.mark.parametrize("damage,match", [
    (lambda b: b[:-30], r"t-1 is damaged after 5 good records \(truncated record at \d+: Read less bytes"),
    (lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:],
     r"t-1 is damaged after \d good records \(corrupted record at \d+\)"),
], ids=["truncated", "flipped_byte"])
def test_a_damaged_tfrecord_file_is_named(tmp_path, damage, match):
    _tfrecord(tmp_path / "t-0")
    data = _tfrecord(tmp_path / "t-1").read_bytes()
    (tmp_path / "t-1").write_bytes(damage(data))
    with pytest.raises(OfaError, match=rf"tfrecord:{tmp_path}/t-\*: {tmp_path}/{match}") as raised:
        load_dataset(f"tfrecord:{tmp_path}/t-*")
    assert "function_node" not in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.unit
def test_a_float_tfrecord_label_is_called_the_wrong_type(tmp_path, caplog):
    def floats_from(first_bad):
        return lambda i: (tf.train.Feature(float_list=tf.train.FloatList(value=[1.0])) if i >= first_bad else
                          tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3])))
    _tfrecord(tmp_path / "first", label=floats_from(0))
    with pytest.raises(OfaError, match=r"first hold image/class/label as a float_list; expected an integer"):
        load_dataset(f"tfrecord:{tmp_path}/first")
    _tfrecord(tmp_path / "later", label=floats_from(4))
    with pytest.raises(OfaError, match=rf"record 4 of {tmp_path}/later holds image/class/label as a float_list; "
                                       r"expected an integer \(an int64_list\)"):
        load_dataset(f"tfrecord:{tmp_path}/later")
    _tfrecord(tmp_path / "pairs", label=lambda i: tf.train.Feature(int64_list=tf.train.Int64List(value=[1, i])))
    with pytest.raises(OfaError, match=r"record 0 of .*/pairs holds 2 values in image/class/label; expected one"):
        load_dataset(f"tfrecord:{tmp_path}/pairs")
    _tfrecord(tmp_path / "from1", label=lambda i: tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3 + 1])))
    with caplog.at_level("WARNING"):
        assert load_dataset(f"tfrecord:{tmp_path}/from1").num_classes == 4
    assert "1 of 4 classes have no training example (label 0)" in caplog.text
    assert "labels that start at 1 need label_offset=1" in caplog.text
