"""A dataset's fingerprint: what config.json records of the data a run trained on.

Tools measure a run on its own dataset, named in config.json by a spec (`npz:FILE`,
`folder:DIR`, ...). The spec is a path, and what lies there can change: a file replaced by
one with other labels would be measured against the supernet's classes with no error, and
every accuracy would be wrong. So training records a fingerprint of the dataset, and
`RunDirectory.evaluation_data` recomputes it before measuring on the run's own dataset
(not on one given explicitly with `--dataset`: that one gets the class-count check).

The fingerprint is cheap to compute at every tool start, so it never reads images:
  npz:, idx:    the training labels (of the loaded arrays: the file is not read again)
  folder:       the sorted list of image files, relative to the folder (their class folders included)
  tfrecord:     the matching file names and sizes
  tfds:         the dataset's name and version and its splits' sizes
plus the training example count and class count, which the message reports. It notices a
changed label or a file added, removed or renamed; it does not notice an image whose pixels
changed in place (that would mean reading every image).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ofa_tf import io
from ofa_tf.data import DataSource
from ofa_tf.data.sources import tfrecord_files
from ofa_tf.errors import OfaError
from ofa_tf.values import is_count, shown

FINGERPRINT_KEY = "dataset_fingerprint"  # config.json's key
_BATCH = 1 << 16  # labels or file names hashed per batch read from the dataset
_HASHED = {"npz": "labels", "idx": "labels", "folder": "image files", "tfrecord": "files or their sizes",
           "tfds": "version or split sizes"}


def dataset_fingerprint(spec: str, data: DataSource, data_dir: str | None = None) -> dict[str, Any]:
    """{"num_train", "num_classes", "sha256"} of `data`, the loaded dataset of `spec` (its
    training split before any validation split; "sha256": the first 16 hex digits of the
    hash the module docstring describes)."""
    kind, _, where = spec.partition(":")
    digest = hashlib.sha256(kind.encode())
    if kind in ("npz", "idx"):  # the arrays `data` holds: hashing them reads no file again
        for labels in data.train.map(lambda image, label: label).batch(_BATCH).as_numpy_iterator():
            digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
    elif kind == "folder":
        root = os.path.join(where, "")
        for paths in data.train.map(lambda path, label: path).batch(_BATCH).as_numpy_iterator():
            for path in paths:
                name = path.decode("utf-8", "surrogateescape")
                digest.update(name[len(root):].encode("utf-8", "surrogateescape") + b"\n")
    elif kind == "tfrecord":
        try:
            for path in tfrecord_files(where):
                digest.update(f"{os.path.basename(path)}\t{io.getsize(path)}\n".encode())
        except OSError as e:  # a file removed since the dataset was loaded
            raise OfaError(f"dataset={spec}: cannot read {e.filename} ({e.strerror})") from None
    elif kind == "tfds":
        digest.update(_tfds_description(where, data_dir).encode())
    else:
        raise OfaError(f"dataset={spec}: no fingerprint for a {kind!r} dataset")
    return {"num_train": data.num_train, "num_classes": data.num_classes, "sha256": digest.hexdigest()[:16]}


def check_fingerprint_record(value: Any) -> dict[str, Any]:
    """A fingerprint as config.json holds it, checked (a damaged one is an error naming its field)."""
    if not isinstance(value, dict) or set(value) != {"num_train", "num_classes", "sha256"}:
        raise OfaError(f"{FINGERPRINT_KEY}: expected an object with num_train, num_classes and sha256")
    for key in ("num_train", "num_classes"):
        number = value[key]
        if not (number is None and key == "num_train") and not is_count(number):
            raise OfaError(f"{FINGERPRINT_KEY}.{key}: expected a count, got {shown(number, 40)}")
    if not isinstance(value["sha256"], str):
        raise OfaError(f"{FINGERPRINT_KEY}.sha256: expected a string, got {shown(value['sha256'], 40)}")
    return value


def fingerprint_change(recorded: dict[str, Any], current: dict[str, Any], spec: str) -> str | None:
    """How the dataset of `spec` differs from the one the run recorded (None: it does not)."""
    counts = ("num_classes", "num_train")
    if any(recorded[k] != current[k] for k in counts):
        return (f"{current['num_classes']} classes and {current['num_train']} training examples now, "
                f"{recorded['num_classes']} and {recorded['num_train']} then")
    if recorded["sha256"] != current["sha256"]:
        what = _HASHED.get(spec.partition(":")[0], "contents")
        return f"its {what} differ: fingerprint {current['sha256']} now, {recorded['sha256']} then"
    return None


def _tfds_description(name: str, data_dir: str | None) -> str:
    import tensorflow_datasets as tfds  # lazily, as `ofa_tf.data.sources` does

    try:
        info = tfds.builder(name, data_dir=data_dir).info
        splits = sorted((split, info.splits[split].num_examples) for split in info.splits.keys())
    except Exception as e:  # tfds raises many kinds (it loaded a moment ago)
        raise OfaError(f"tfds:{name}: cannot read its metadata ({type(e).__name__})") from None
    return f"{info.full_name}\t{splits}"


__all__ = ["FINGERPRINT_KEY", "check_fingerprint_record", "dataset_fingerprint", "fingerprint_change"]
