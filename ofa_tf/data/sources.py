"""Dataset sources: every `--dataset=KIND:WHERE` becomes uint8 images and int labels.

Sources (`--dataset=KIND:WHERE`):
  tfds:NAME     a TensorFlow Datasets dataset, prepared under `--data_dir` (downloads are
                off unless asked for, so an offline machine gets a clear error, never a hang).
  folder:PATH   one sub-folder per class, any image format TF decodes (checked up front:
                a corrupt file is named before training starts).
  idx:DIR       MNIST-family `*-ubyte.gz` files (train-/t10k- images and labels).
  npz:FILE      a NumPy archive with x_train, y_train, x_test, y_test (Keras datasets' keys).

Every source becomes uint8 HxWxC images with int labels (`DataSource`); the tf.data
pipeline that turns them into training batches is `ofa_tf.data.pipeline`.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zipfile
import zlib
from typing import Sequence

import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
DATASET_KINDS = ("tfds", "folder", "idx", "npz")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (an empty one starts with the second)
_NPY_MAGIC = b"\x93NUMPY"


@dataclasses.dataclass
class DataSource:
    """A dataset as uint8 images and int labels; `train` / `test` yield (image, label)."""

    name: str
    class_names: list[str]
    train: tf.data.Dataset
    test: tf.data.Dataset | None
    num_train: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ---------------------------------------------------------------------------- loading
def load_dataset(spec: str, data_dir: str | None = None, image_size: int | None = None,
                 download: bool = False) -> DataSource:
    """Loads `spec` (`tfds:NAME`, `folder:PATH`, `idx:DIR`, `npz:FILE`).

    Args:
      image_size: folder images are resized to this square size when loaded (they differ
        in size); other sources keep their own size.
    Raises:
      OfaError: unknown kind, missing / empty / unreadable data, corrupt images, labels out
        of range; always naming the bad value.
    """
    kind, where = check_dataset_spec(spec)
    if kind == "tfds":
        return _load_tfds(where, data_dir, download)
    if kind == "folder":
        return _load_folder(where, image_size)
    arrays = _read_idx(where) if kind == "idx" else _read_npz(where)
    return from_arrays(spec, *arrays)


def check_dataset_spec(spec: str, setting: str = "dataset") -> tuple[str, str]:
    """(kind, where) of `spec`, checked without reading it: a known kind, and for `npz:` /
    `idx:` / `folder:` a file / directory that exists (`RunConfig.validate` runs this before
    any data is loaded). `setting` names the spec in messages."""
    kind, _, where = spec.partition(":")
    if kind not in DATASET_KINDS or not where:
        raise OfaError(f"{setting}={spec!r}: expected KIND:WHERE with KIND one of {list(DATASET_KINDS)}")
    if kind == "npz" and not os.path.isfile(where):
        raise OfaError(f"{setting}={spec}: no such file" if not os.path.exists(where) else
                       f"{setting}={spec}: not a file")
    if kind in ("idx", "folder") and not os.path.isdir(where):
        raise OfaError(f"{setting}={spec}: no such directory" if not os.path.exists(where) else
                       f"{setting}={spec}: not a directory")
    return kind, where


def from_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None = None,
                y_test: np.ndarray | None = None, class_names: Sequence[str] | None = None) -> DataSource:
    """A `DataSource` from in-memory arrays (checks shapes and label ranges)."""
    x_train, y_train = _check_pair(name, "train", x_train, y_train)
    if not len(x_train):
        raise OfaError(f"{name}: x_train holds no images")
    if x_test is not None:
        x_test, y_test = _check_pair(name, "test", x_test, y_test)
    num_classes = len(class_names) if class_names else int(y_train.max()) + 1
    for split, y in (("y_train", y_train), ("y_test", y_test)):
        if y is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise OfaError(f"{name}: label {bad} in {split} is out of range; expected 0..{num_classes - 1}")
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
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise OfaError(f"{name}: y_{split} has shape {y.shape}; expected ({len(x)},) integer labels")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise OfaError(f"{name}: y_{split} holds non-integer labels")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        image = int(np.argwhere(~np.isfinite(x))[0][0])
        bad = x[image][~np.isfinite(x[image])][0]
        raise OfaError(f"{name}: x_{split} holds {bad} pixels (image {image}); expected finite values")
    if x.dtype != np.uint8:
        x = np.clip(x * (255.0 if x.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return x, y.astype(np.int64)


def _read_npz(path: str):
    if not os.path.isfile(path):
        raise OfaError(f"npz:{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise OfaError(f"npz:{path}: cannot read ({e.strerror})") from None
    if not head.startswith(_ZIP_MAGIC):
        what = "a single-array .npy file" if head == _NPY_MAGIC else f"it starts with {head[:4]!r}"
        raise OfaError(f"npz:{path}: not a NumPy .npz archive ({what})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x_train", "y_train") if k not in data]
            if missing:
                raise OfaError(f"npz:{path}: missing array {missing[0]!r}; expected x_train, y_train, x_test, y_test")
            arrays = [data[k] if k in data else None for k in ("x_train", "y_train", "x_test", "y_test")]
            names = [str(n) for n in data["class_names"]] if "class_names" in data else None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        message = " ".join(str(e).split())[:160]
        raise OfaError(f"npz:{path}: not a readable .npz file ({type(e).__name__}: {message})") from None
    return (*arrays, names)


_IDX_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
              "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}


def _read_idx(directory: str):
    if not os.path.isdir(directory):
        raise OfaError(f"idx:{directory}: no such directory")
    arrays = {}
    for key, filename in _IDX_FILES.items():
        path = os.path.join(directory, filename)
        if not os.path.isfile(path):
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
        with opener(path, "rb") as f:
            header = f.read(4)
            if len(header) != 4 or header[:2] != b"\x00\x00" or header[2] != 0x08 or not 1 <= header[3] <= 4:
                raise OfaError(f"{path}: not an IDX file of unsigned bytes (header {header.hex() or 'empty'}; "
                               "expected 0000080N with N = 1..4 dimensions)")
            dims = struct.unpack(">" + "I" * header[3], f.read(4 * header[3]))
            data = np.frombuffer(f.read(), np.uint8)
    except (OSError, EOFError, struct.error, zlib.error) as e:
        message = " ".join(str(e).split())[:160]
        raise OfaError(f"{path}: unreadable IDX file ({message})") from None
    if data.size != int(np.prod(dims)):
        raise OfaError(f"{path}: holds {data.size} bytes; its header says {int(np.prod(dims))}")
    return data.reshape(dims)


def _load_folder(path: str, image_size: int | None) -> DataSource:
    if not os.path.isdir(path):
        raise OfaError(f"folder:{path}: no such directory")
    try:
        classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
        files = [(os.path.join(path, c, f), i) for i, c in enumerate(classes)
                 for f in sorted(os.listdir(os.path.join(path, c))) if f.lower().endswith(IMAGE_EXTENSIONS)]
    except PermissionError as e:
        raise OfaError(f"folder:{path}: cannot read {e.filename} (permission denied)") from None
    if not files:
        raise OfaError(f"folder:{path}: no images found (expected one sub-folder per class holding "
                       f"{'/'.join(IMAGE_EXTENSIONS)} files)")
    found = {label for _, label in files}
    empty = [c for i, c in enumerate(classes) if i not in found]
    if empty:
        raise OfaError(f"folder:{path}: class folder {empty[0]!r} holds no images ({'/'.join(IMAGE_EXTENSIONS)} "
                       f"files){f' (nor {len(empty) - 1} more)' if len(empty) > 1 else ''}")
    size = image_size or 224
    images = np.zeros((len(files), size, size, 3), np.uint8)
    for n, (file, _) in enumerate(files):
        try:
            raw = tf.io.read_file(file)
            image = tf.io.decode_image(raw, channels=3, expand_animations=False)
        except tf.errors.PermissionDeniedError:
            raise OfaError(f"{file}: cannot read (permission denied)") from None
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            raise OfaError(f"{file}: not a decodable image (corrupt or unsupported format)") from None
        images[n] = tf.cast(tf.image.resize(image, (size, size)), tf.uint8).numpy()
    labels = np.array([label for _, label in files], np.int64)
    return from_arrays(f"folder:{path}", images, labels, None, None, classes)


def _load_tfds(name: str, data_dir: str | None, download: bool) -> DataSource:
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
        train = builder.as_dataset(split="train", as_supervised=True, shuffle_files=False)
        test_split = "test" if "test" in splits else ("validation" if "validation" in splits else None)
        test = builder.as_dataset(split=test_split, as_supervised=True) if test_split else None
        label = builder.info.features["label"]
        names = list(label.names) if getattr(label, "names", None) else [str(i) for i in range(label.num_classes)]
        num_train = splits["train"].num_examples
    except OfaError:
        raise
    except Exception as e:  # tfds raises many kinds (DatasetNotFoundError, AssertionError, ...)
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OfaError(f"tfds:{name}: cannot load ({message})") from None
    return DataSource(f"tfds:{name}", names, train, test, num_train)
