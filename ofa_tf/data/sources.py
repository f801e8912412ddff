"""Dataset sources: every `--dataset=KIND:WHERE` becomes images and int labels.

Sources (`--dataset=KIND:WHERE`):
  tfds:NAME       a TensorFlow Datasets dataset, prepared under `--data_dir` (downloads are
                  off unless asked for, so an offline machine gets a clear error, never a hang).
                  Datasets whose images differ in size (imagenet2012, tf_flowers) stream
                  their encoded images, decoded in the pipeline.
  folder:PATH     one sub-folder per class, any image format TF decodes. Only the file names
                  are listed at start (`tf.io.gfile`); each image is read and decoded inside the
                  tf.data pipeline, so memory does not grow with the number of images.
  tfrecord:GLOB   TFRecord files of `tf.train.Example`s with `image/encoded` (the encoded image)
                  and `image/class/label` (an integer; `label_offset` is subtracted, 1 for
                  the standard ImageNet conversion whose labels start at 1), the layout the
                  standard ImageNet conversion writes. Their labels are read once at start
                  (class count); the images stream.
  idx:DIR         MNIST-family `*-ubyte.gz` files (train-/t10k- images and labels).
  npz:FILE        a NumPy archive with x_train, y_train, x_test, y_test (Keras datasets' keys).

A `DataSource` yields (image, label): uint8 HxWxC pixels for `npz:`, `idx:` and fixed-size
`tfds:` datasets, a file path or encoded bytes for the streaming ones (its `encoding`, see
`ofa_tf.data.decode`). The tf.data pipeline that turns either into training batches is
`ofa_tf.data.pipeline`; a file that does not decode is skipped there, not at start.

What can be wrong with the data is found when it is loaded, before a model is built, so a
run never trains on something silently wrong (`ofa_tf.data.validate`): array images whose
values are not pixels, a class count the labels do not support, a damaged TFRecord file or
a record whose label is missing or not an integer (named by file and record), and a
streaming source none of whose sampled images decodes (`check_some_decode`).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zipfile
import zlib
from typing import Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from ofa_tf import io as files
from ofa_tf.data.decode import BYTES, FILE, PIXELS, PROBE_IMAGES, check_some_decode
from ofa_tf.data.validate import check_class_labels, image_pixels, record_problem
from ofa_tf.errors import OfaError, error_text

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
DATASET_KINDS = ("tfds", "folder", "tfrecord", "idx", "npz")
TFRECORD_IMAGE, TFRECORD_LABEL = "image/encoded", "image/class/label"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (an empty one starts with the second)
_NPY_MAGIC = b"\x93NUMPY"
_MAX_RECORD_BYTES = 1 << 31


@dataclasses.dataclass
class DataSource:
    """A dataset as images and int labels; `train` / `test` yield (image, label), the image
    as `encoding` says (`pixels`: uint8 HxWxC; `file`: a path; `bytes`: an encoded image)."""

    name: str
    class_names: list[str]
    train: tf.data.Dataset
    test: tf.data.Dataset | None
    num_train: int | None = None
    encoding: str = PIXELS

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------------------- loading
def load_dataset(spec: str, data_dir: str | None = None, download: bool = False,
                 label_offset: int = 0, labelled: bool = True, check_decoding: bool = True) -> DataSource:
    """Loads `spec` (`tfds:NAME`, `folder:PATH`, `tfrecord:GLOB`, `idx:DIR`, `npz:FILE`), with
    everything checked that can be before training: array images' values (`image_pixels`),
    every `tfrecord:` record's label, the classes the labels give (`check_class_labels`).

    Args:
      label_offset: subtracted from `tfrecord:` labels (1 for labels that start at 1).
      labelled: False for an unlabelled set (its labels are dropped): no class checks.
      check_decoding: a `folder:` / `tfrecord:` / mixed-size `tfds:` source must have an
        image that decodes among a sample of its first (`check_some_decode`); off for
        `ofa-check-data`, which decodes them all to list the bad ones.
    Raises:
      OfaError: unknown kind, missing / empty / unreadable / damaged data, labels out of
        range or of the wrong type, pixel values that are not images, one class or an
        absurd class count, no image that decodes; always naming the bad value. (One
        corrupt image file is not an error here: the pipeline skips it.)
    """
    kind, where = check_dataset_spec(spec)
    check_label_offset(label_offset, spec)
    if kind == "tfds":
        return _load_tfds(where, data_dir, download, check_decoding)
    if kind == "folder":
        return _load_folder(where, labelled, check_decoding)
    if kind == "tfrecord":
        return _load_tfrecord(where, label_offset, labelled, check_decoding)
    arrays = _read_idx(where) if kind == "idx" else _read_npz(where)
    return from_arrays(spec, *arrays, labelled=labelled)


def check_dataset_spec(spec: str, setting: str = "dataset") -> tuple[str, str]:
    """(kind, where) of `spec`, checked without loading it: a known kind, for `npz:` / `idx:` /
    `folder:` a file / directory that exists, for `tfrecord:` a glob that matches files whose
    first record has the expected features (`RunConfig.validate` runs this before any data
    is loaded; it reads one record, in Python, so TensorFlow's runtime does not start).
    `setting` names the spec in messages."""
    kind, _, where = spec.partition(":")
    if kind not in DATASET_KINDS or not where:
        raise OfaError(f"{setting}={spec!r}: expected KIND:WHERE with KIND one of {list(DATASET_KINDS)}")
    if kind == "folder":
        if not tf.io.gfile.isdir(where):
            raise OfaError(f"{setting}={spec}: no such directory" if not tf.io.gfile.exists(where) else
                           f"{setting}={spec}: not a directory")
        return kind, where
    if kind == "tfrecord":
        _check_tfrecords(where, f"{setting}={spec}")
        return kind, where
    if kind == "npz" and not files.isfile(where):
        raise OfaError(f"{setting}={spec}: no such file" if not files.exists(where) else
                       f"{setting}={spec}: not a file")
    if kind == "idx" and not files.isdir(where):
        raise OfaError(f"{setting}={spec}: no such directory" if not files.exists(where) else
                       f"{setting}={spec}: not a directory")
    return kind, where


def from_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None = None,
                y_test: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                labelled: bool = True) -> DataSource:
    """A `DataSource` from in-memory arrays: shapes, pixel values (`image_pixels`) and label
    ranges checked, and with `labelled` the classes the training labels give a classifier
    (`check_class_labels`; off for an unlabelled set, whose labels are dropped)."""
    x_train, y_train = _check_pair(name, "train", x_train, y_train)
    if not len(x_train):
        raise OfaError(f"{name}: x_train holds no images")
    if x_test is not None:
        x_test, y_test = _check_pair(name, "test", x_test, y_test)
    x_train, train_range = image_pixels(name, "x_train", x_train)
    if x_test is not None:
        x_test, test_range = image_pixels(name, "x_test", x_test)
        if len(x_test) and {train_range, test_range} == {"[0, 1]", "[0, 255]"}:
            logging.warning("%s: x_train holds floats in %s, x_test in %s; each was scaled by its own range",
                            name, train_range, test_range)
    num_classes = len(class_names) if class_names else int(y_train.max()) + 1
    for split, y in (("y_train", y_train), ("y_test", y_test)):
        if y is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise OfaError(f"{name}: label {bad} in {split} is out of range; expected 0..{num_classes - 1}")
    if labelled:
        check_class_labels(name, np.unique(y_train), num_classes, inferred=not class_names)
    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)) if x_test is not None else None
    return DataSource(name, names, tf.data.Dataset.from_tensor_slices((x_train, y_train)), test, len(x_train))


def _check_pair(name: str, split: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    for key, array in ((f"x_{split}", x), (f"y_{split}", y)):
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise OfaError(f"{name}: {key} has dtype {array.dtype}; expected numbers")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise OfaError(f"{name}: x_{split} has shape {x.shape}; expected (N, H, W) or (N, H, W, 1|3)")
    if not (x.shape[1] and x.shape[2]):
        raise OfaError(f"{name}: x_{split} holds images of {x.shape[1]}x{x.shape[2]} pixels; expected at least 1x1")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise OfaError(f"{name}: y_{split} has shape {y.shape}; expected ({len(x)},) integer labels")
    if np.issubdtype(y.dtype, np.complexfloating):
        raise OfaError(f"{name}: y_{split} has dtype {y.dtype}; expected integer labels")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise OfaError(f"{name}: y_{split} holds non-integer labels")
        if len(y) and np.abs(y).max() >= 2 ** 53:
            raise OfaError(f"{name}: y_{split} holds label {np.abs(y).max():g}; expected integer labels below 2**53")
    return x, y.astype(np.int64)


def _read_npz(path: str):
    if not files.isfile(path):
        raise OfaError(f"npz:{path}: no such file")
    try:
        with files.local_copy(path) as local:  # (a URL: copied to a local file first)
            return _read_local_npz(path, local)
    except OSError as e:
        raise OfaError(f"npz:{path}: cannot read ({e.strerror})") from None


def _read_local_npz(path: str, local: str):
    """The arrays of the .npz file `local` (`path`, the user's name for it, in messages); an
    OSError while reading its head is `_read_npz`'s "cannot read"."""
    with open(local, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
    if not head.startswith(_ZIP_MAGIC):
        what = "a single-array .npy file" if head == _NPY_MAGIC else f"it starts with {head[:4]!r}"
        raise OfaError(f"npz:{path}: not a NumPy .npz archive ({what})")
    try:
        with np.load(local, allow_pickle=False) as data:
            missing = [k for k in ("x_train", "y_train") if k not in data]
            if missing:
                raise OfaError(f"npz:{path}: missing array {missing[0]!r}; expected x_train, y_train, x_test, y_test")
            arrays = [data[k] if k in data else None for k in ("x_train", "y_train", "x_test", "y_test")]
            names = [str(n) for n in data["class_names"]] if "class_names" in data else None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise OfaError(f"npz:{path}: not a readable .npz file ({type(e).__name__}: {error_text(e)})") from None
    return (*arrays, names)


_IDX_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
              "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}


def _read_idx(directory: str):
    if not files.isdir(directory):
        raise OfaError(f"idx:{directory}: no such directory")
    arrays = {}
    for key, filename in _IDX_FILES.items():
        path = os.path.join(directory, filename)
        if not files.isfile(path):
            if key.endswith("test"):
                arrays[key] = None
                continue
            raise OfaError(f"idx:{directory}: missing {filename}")
        arrays[key] = read_idx_file(path)
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], None


def read_idx_file(path: str) -> np.ndarray:
    """One IDX file (gzip or plain): big-endian magic 0x0000080N, N dimension sizes, uint8 data."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with files.local_copy(path) as local, opener(local, "rb") as f:
            header = f.read(4)
            if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] != 0x08 or not 1 <= header[3] <= 4:
                raise OfaError(f"{path}: not an IDX file of unsigned bytes (header {header.hex() or 'empty'}; "
                               "expected 0000080N with N = 1..4 dimensions)")
            dims = struct.unpack(">" + "I" * header[3], f.read(4 * header[3]))
            data = np.frombuffer(f.read(), np.uint8)
    except (OSError, EOFError, struct.error, zlib.error) as e:
        raise OfaError(f"{path}: unreadable IDX file ({error_text(e)})") from None
    if data.size != int(np.prod(dims)):
        raise OfaError(f"{path}: holds {data.size} bytes; its header says {int(np.prod(dims))}")
    return data.reshape(dims)


def check_label_offset(label_offset: int, dataset: str, setting: str = "label_offset") -> None:
    """`label_offset` is >= 0, and only set for a `tfrecord:` dataset (where it applies)."""
    if not label_offset >= 0:
        raise OfaError(f"{setting}={label_offset}: expected an integer >= 0 (1 for labels that start at 1)")
    if label_offset and not dataset.startswith("tfrecord:"):
        raise OfaError(f"{setting}={label_offset}: only used with a tfrecord: dataset (dataset={dataset})")


def tfrecord_files(pattern: str) -> list[str]:
    """The files `pattern` matches (`tf.io.gfile.glob`), sorted."""
    try:
        return sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as e:
        raise OfaError(f"tfrecord:{pattern}: cannot list ({error_text(e.message)})") from None


def _check_tfrecords(pattern: str, named: str) -> None:
    """The glob matches files, and the first record of the first is a `tf.train.Example`
    holding `image/encoded` bytes and an `image/class/label` integer."""
    files = tfrecord_files(pattern)
    if not files:
        raise OfaError(f"{named}: no files match {pattern}")
    first = files[0]
    try:
        with tf.io.gfile.GFile(first, "rb") as f:
            header = f.read(12)
            length = struct.unpack("<Q", header[:8])[0] if len(header) == 12 else None
            data = f.read(length) if length is not None and length < _MAX_RECORD_BYTES else b""
    except (OSError, tf.errors.OpError) as e:
        raise OfaError(f"{named}: cannot read {first} ({error_text(e)})") from None
    if length is None or len(data) != length:
        raise OfaError(f"{named}: {first} is not a TFRecord file (or is empty)")
    try:
        features = tf.train.Example.FromString(data).features.feature
    except Exception:  # protobuf's DecodeError
        raise OfaError(f"{named}: {first} does not hold tf.train.Example records") from None
    label = features[TFRECORD_LABEL].WhichOneof("kind") if TFRECORD_LABEL in features else None
    if label in ("float_list", "bytes_list"):
        raise OfaError(f"{named}: the records of {first} hold {TFRECORD_LABEL} as a {label}; expected an integer "
                       f"(an int64_list, the standard ImageNet conversion's layout)")
    missing = [key for key, kind in ((TFRECORD_IMAGE, "bytes_list"), (TFRECORD_LABEL, "int64_list"))
               if key not in features or not getattr(features[key], kind).value]
    if missing:
        raise OfaError(f"{named}: the records of {first} lack {' and '.join(missing)} (expected {TFRECORD_IMAGE} "
                       f"bytes and an integer {TFRECORD_LABEL}, the standard ImageNet conversion's layout)")


def _load_tfrecord(pattern: str, label_offset: int, labelled: bool = True,
                   check_decoding: bool = True) -> DataSource:
    """Encoded images and labels (minus `label_offset`) of the files `pattern` matches, in
    file order; every label is read once here for the class count and the image count, so a
    damaged file or a record with a bad label is found now, and named (`record_problem`)."""
    files = tfrecord_files(pattern)
    name = f"tfrecord:{pattern}"
    offset = tf.constant(label_offset, tf.int64)
    spec = {TFRECORD_IMAGE: tf.io.FixedLenFeature([], tf.string), TFRECORD_LABEL: tf.io.FixedLenFeature([], tf.int64)}

    def records(paths=files):
        return tf.data.Dataset.from_tensor_slices(paths).interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(paths), 16), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def parse(record):
        example = tf.io.parse_single_example(record, spec)
        return example[TFRECORD_IMAGE], example[TFRECORD_LABEL] - offset

    label_spec = {TFRECORD_LABEL: spec[TFRECORD_LABEL]}

    def label_batches(paths):
        return records(paths).map(lambda r: tf.io.parse_single_example(r, label_spec)[TFRECORD_LABEL] - offset,
                                  num_parallel_calls=tf.data.AUTOTUNE).batch(65536).as_numpy_iterator()

    present, count = set(), 0
    try:
        for chunk in label_batches(files):
            present.update(np.unique(chunk).tolist())
            count += len(chunk)
    except tf.errors.OpError as e:  # DataLossError: a damaged file; InvalidArgumentError: a bad record
        raise OfaError(record_problem(files, name, e, label_batches, TFRECORD_LABEL)) from None
    if not count:
        raise OfaError(f"{name}: the files hold no records")
    labels = np.array(sorted(present))
    if labels[0] < 0:
        raise OfaError(f"{name}: label {labels[0] + label_offset} minus label_offset={label_offset} is negative; "
                       "expected labels >= label_offset")
    num_classes = int(labels[-1]) + 1
    if labelled:
        hint = "; labels that start at 1 need label_offset=1" if not label_offset and labels[0] == 1 else ""
        check_class_labels(name, labels, num_classes, hint=hint)
    images = records().map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if check_decoding:
        image_spec = {TFRECORD_IMAGE: tf.io.FixedLenFeature([], tf.string, default_value="")}
        first = records().take(PROBE_IMAGES).map(lambda r: (tf.io.parse_single_example(r, image_spec)[TFRECORD_IMAGE],
                                                             tf.constant(0)))
        check_some_decode(first, BYTES, name, count)
    return DataSource(name, [str(i) for i in range(num_classes)], images, None, count, BYTES)


def _load_folder(path: str, labelled: bool = True, check_decoding: bool = True) -> DataSource:
    """The image files of one sub-folder per class, listed; with `check_decoding`, a sample
    spread over them is decoded until one does (`check_some_decode`)."""
    try:
        classes = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(path) if tf.io.gfile.isdir(os.path.join(path, d)))
        files = [(os.path.join(path, c, f), i) for i, c in enumerate(classes)
                 for f in sorted(tf.io.gfile.listdir(os.path.join(path, c))) if f.lower().endswith(IMAGE_EXTENSIONS)]
    except tf.errors.PermissionDeniedError as e:
        raise OfaError(f"folder:{path}: cannot read ({error_text(e.message)}; permission denied)") from None
    except tf.errors.NotFoundError:
        raise OfaError(f"folder:{path}: no such directory") from None
    if not files:
        raise OfaError(f"folder:{path}: no images found (expected one sub-folder per class holding "
                       f"{'/'.join(IMAGE_EXTENSIONS)} files)")
    found = {label for _, label in files}
    empty = [c for i, c in enumerate(classes) if i not in found]
    if empty:
        raise OfaError(f"folder:{path}: class folder {empty[0]!r} holds no images ({'/'.join(IMAGE_EXTENSIONS)} "
                       f"files){f' (nor {len(empty) - 1} more)' if len(empty) > 1 else ''}")
    name = f"folder:{path}"
    if labelled and len(classes) < 2:
        raise OfaError(f"{name}: one class folder only ({classes[0]!r}); expected at least 2 classes "
                       "(one class trains to loss 0 and learns nothing)")
    if check_decoding:
        spread = np.unique(np.linspace(0, len(files) - 1, min(len(files), PROBE_IMAGES)).round().astype(int))
        check_some_decode([(tf.constant(files[i][0]), files[i][1]) for i in spread], FILE, name, len(files))
    paths = tf.constant([file for file, _ in files])
    labels = tf.constant([label for _, label in files], tf.int64)
    return DataSource(name, classes, tf.data.Dataset.from_tensor_slices((paths, labels)), None, len(files), FILE)


def _load_tfds(name: str, data_dir: str | None, download: bool, check_decoding: bool = True) -> DataSource:
    import tensorflow_datasets as tfds  # imported lazily: slow, and only this source needs it

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if download:
            builder.download_and_prepare()
        elif not builder.is_prepared():
            where = data_dir or "the default TFDS directory"
            raise OfaError(f"tfds:{name}: not prepared in {where} and downloads are off "
                           f"(prepare it there, or pass --download)")
        splits = builder.info.splits
        image = builder.info.features["image"]
        mixed = None in tuple(image.shape)[:2]  # images of different sizes: stream them encoded
        decoders = {"image": tfds.decode.SkipDecoding()} if mixed else None
        train = builder.as_dataset(split="train", as_supervised=True, shuffle_files=False, decoders=decoders)
        test_split = "test" if "test" in splits else ("validation" if "validation" in splits else None)
        test = builder.as_dataset(split=test_split, as_supervised=True, decoders=decoders) if test_split else None
        label = builder.info.features["label"]
        names = list(label.names) if getattr(label, "names", None) else [str(i) for i in range(label.num_classes)]
        num_train = splits["train"].num_examples
    except OfaError:
        raise
    except Exception as e:  # tfds raises many kinds (DatasetNotFoundError, AssertionError, ...)
        raise OfaError(f"tfds:{name}: cannot load ({error_text(e)})") from None
    if mixed and check_decoding:
        check_some_decode(train.take(PROBE_IMAGES), BYTES, f"tfds:{name}", num_train)
    return DataSource(f"tfds:{name}", names, train, test, num_train, BYTES if mixed else PIXELS)
