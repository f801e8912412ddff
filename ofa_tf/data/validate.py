"""Checks of what a dataset holds, made when it is loaded (`ofa_tf.data.sources`), before a
model is built, so a run never trains on something silently wrong:

- array images whose values are not pixels (`image_pixels`: uint16, signed, out of range,
  complex images are refused rather than clipped);
- a class count the training labels do not support (`check_class_labels`: one class, an
  absurd count from a stray label; empty classes are a warning);
- a TFRecord file that is damaged or holds a record whose label is missing or not one
  integer (`record_problem`, named by file and record).
"""

from __future__ import annotations

from absl import logging
import numpy as np
import tensorflow as tf

from ofa_tf.data.decode import tf_error_text
from ofa_tf.errors import OfaError


PIXEL_VALUES = "expected uint8 pixels, or floats in [0, 1] (scaled to [0, 255]) or in [0, 255]"


def image_pixels(name: str, key: str, x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(uint8 pixels, the float range they were read as) of the image array `x`: uint8 as it
    is (range None); floats in [0, 1] scaled to [0, 255]; floats in [0, 255] rounded. Any
    other array is refused rather than clipped (clipping turns uint16 images mostly white and
    drops every negative value of signed ones), naming its dtype and the values found:
    other integer types (also when their values would fit uint8: a dtype says how the
    values were meant), floats outside [0, 255], complex numbers, booleans."""
    if x.dtype == np.uint8:
        return x, None
    if np.issubdtype(x.dtype, np.complexfloating) or x.dtype == bool:
        kind = "complex numbers" if x.dtype != bool else "booleans"
        raise OfaError(f"{name}: {key} has dtype {x.dtype} ({kind}); {PIXEL_VALUES}")
    floats = np.issubdtype(x.dtype, np.floating)
    if floats and not np.all(np.isfinite(x)):
        image = int(np.argwhere(~np.isfinite(x))[0][0])
        bad = x[image][~np.isfinite(x[image])][0]
        raise OfaError(f"{name}: {key} holds {bad} pixels (image {image}); expected finite values")
    if not x.size:
        return x.astype(np.uint8), None
    low, high = x.min(), x.max()
    if floats and low >= 0 and high <= 255:
        scale = 255.0 if high <= 1 else 1.0
        return np.round(x.astype(np.float32) * scale).astype(np.uint8), "[0, 1]" if scale > 1 else "[0, 255]"
    shown = (f"{float(low):g}, {float(high):g}") if floats else f"{int(low)}, {int(high)}"
    fits = "; its values fit uint8: convert with .astype(np.uint8)" if not floats and low >= 0 and high <= 255 else ""
    raise OfaError(f"{name}: {key} has dtype {x.dtype} with values in [{shown}]; {PIXEL_VALUES}{fits}")


ABSURD_CLASSES = 10_000  # an inferred class count above this...
ABSURD_RATIO = 1_000  # ...and above this many times the number of distinct labels is a stray label's


def check_class_labels(name: str, present: np.ndarray, num_classes: int, inferred: bool = True,
                       hint: str = "") -> None:
    """The classifier a training set's labels give, checked before a model is built from it.
    `present`: the distinct training labels (sorted); `num_classes`: the classifier's size,
    the largest label + 1 (`inferred`) or declared (class names, folders).

    - Fewer than 2 distinct labels: an error (one class trains to loss 0 and learns nothing).
    - An inferred class count above `ABSURD_CLASSES` and above `ABSURD_RATIO` times the
      number of distinct labels: an error naming the largest label (a stray label of
      5,000,000 among 10 classes would build a 5,000,001-way classifier). Real label sets
      fill most of their range, so are far below the ratio (ImageNet's 1000 classes, or 1001
      when labels start at 1), and so is a small sample of a large label space (40 images
      labelled from ImageNet's 1000 classes: about 25 classes per distinct label).
    - Classes with no training example: a warning saying how many, naming the first (the
      classifier keeps them; `hint` is appended, e.g. how to shift labels that start at 1).
    """
    present = np.asarray(present)
    if len(present) < 2:
        only = f" (label {int(present[0])})" if len(present) else ""
        raise OfaError(f"{name}: the training labels hold one class only{only}; expected at least 2 classes "
                       "(one class trains to loss 0 and learns nothing)")
    if inferred and num_classes > ABSURD_CLASSES and num_classes > ABSURD_RATIO * len(present):
        raise OfaError(f"{name}: label {int(present[-1])} would make a {num_classes}-class classifier, but only "
                       f"{len(present)} distinct labels occur (the next largest is {int(present[-2])}); "
                       "expected labels numbered from 0 (a stray label?)")
    empty = num_classes - len(present)
    if empty:
        missing = _first_missing(present, num_classes)
        shown = ", ".join(str(m) for m in missing) + (", ..." if empty > len(missing) else "")
        logging.warning("%s: %d of %d classes have no training example (label%s %s); the classifier keeps all %d%s",
                        name, empty, num_classes, "s" if empty > 1 else "", shown, num_classes, hint)


def _first_missing(present: np.ndarray, num_classes: int, count: int = 5) -> list[int]:
    """The first `count` labels below `num_classes` that the sorted distinct `present` lacks."""
    missing, expected = [], 0
    for label in present.tolist():
        missing += range(expected, min(label, expected + count - len(missing)))
        if len(missing) >= count:
            return missing
        expected = label + 1
    return missing + list(range(expected, min(num_classes, expected + count - len(missing))))


def record_problem(files: list[str], name: str, error: Exception, label_batches, label_key: str) -> str:
    """The message for the first bad place in `files`, found after reading their labels
    failed with `error`: the file is found by reading each one's labels (`label_batches`),
    then its records are read one by one (a damaged file: where it breaks; a record: what is
    wrong with its label, the feature `label_key`)."""
    for path in files:
        try:
            for _ in label_batches([path]):
                pass
            continue
        except tf.errors.OpError:
            pass
        index = 0
        try:
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
                problem = _label_problem(record, label_key)
                if problem:
                    return f"{name}: record {index} of {path} {problem}"
                index += 1
        except tf.errors.OpError as e:
            return f"{name}: {path} is damaged after {index} good records ({tf_error_text(e)})"
        return f"{name}: {path} cannot be read ({tf_error_text(error)})"
    return f"{name}: the records cannot be read ({tf_error_text(error)})"


def _label_problem(record: bytes, label_key: str) -> str | None:
    """What is wrong with a serialized record's label (its feature `label_key`), if anything."""
    try:
        features = tf.train.Example.FromString(record).features.feature
    except Exception:  # protobuf's DecodeError
        return "is not a tf.train.Example"
    if label_key not in features:
        return f"lacks {label_key} (expected in every record)"
    kind = features[label_key].WhichOneof("kind")
    if kind != "int64_list":
        return (f"holds {label_key} as a {kind}; expected an integer (an int64_list)" if kind else
                f"holds an empty {label_key}; expected an integer")
    values = len(features[label_key].int64_list.value)
    return None if values == 1 else f"holds {values} values in {label_key}; expected one integer"


__all__ = ["ABSURD_CLASSES", "ABSURD_RATIO", "PIXEL_VALUES", "check_class_labels", "image_pixels", "record_problem"]
