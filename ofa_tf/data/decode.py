"""Encoded images inside the tf.data pipeline: decoding, ImageNet crops, skipping bad files.

Streaming sources (`folder:`, `tfrecord:`, mixed-size `tfds:`) yield encoded images, not
pixels; an element's first component is, by the source's `encoding`:

  pixels   a uint8 HxWxC image (`npz:`, `idx:`, fixed-size `tfds:`)
  file     the path of an image file (`folder:`), read when the pipeline needs it
  bytes    the encoded image itself (`tfrecord:`, mixed-size `tfds:`)

The ImageNet crops follow the Inception / OFA recipe:
- training: a random crop of 8-100% of the image's area with aspect ratio 3/4-4/3
  (`tf.image.stateless_sample_distorted_bounding_box`), then resized to the batch's size;
  a JPEG decodes only the crop window (`tf.image.decode_and_crop_jpeg`).
- evaluation: the image's shorter side resized to size/0.875 and the centre size x size
  kept, computed as one centre crop of the source followed by one resize.

`skip_undecodable` runs a loading function per element and turns a decode error into a
flagged placeholder instead of a failed run; `DecodeFailures` counts and logs the files
that failed (each once). Skipping is for the odd bad file: a source none of whose images
decode would train on placeholders only, so `check_some_decode` refuses it when it is
loaded, after trying a sample of its images.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Callable, Iterable

from absl import logging
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.native_logs import quiet_native_logs

PIXELS, FILE, BYTES = "pixels", "file", "bytes"
ENCODINGS = (PIXELS, FILE, BYTES)
CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
EVAL_CROP = 0.875  # evaluation: resize to size / 0.875, keep the centre size x size
PROBE_IMAGES = 32  # how many images `check_some_decode` tries before calling a source undecodable
_TF_NOISE = re.compile(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\s*\[Op:[^\]]*\]( name: ?\S*)?")


def tf_error_text(error: Exception, limit: int = 160) -> str:
    """A TensorFlow error as one short line, without the `{{function_node ...}}` and
    `[Op:...]` parts that name TF's internals rather than the problem."""
    text = getattr(error, "message", None) or str(error)
    text = " ".join(_TF_NOISE.sub(" ", text).replace("' failed with ", ": ").split())
    return text[:limit] or type(error).__name__


class DecodeFailures:
    """The images a pipeline skipped because they did not decode: counted once each (a file
    met again in the next epoch is not counted twice) and logged the first time."""

    def __init__(self):
        self._names: set[str] = set()
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return len(self._names)

    @property
    def names(self) -> list[str]:
        return sorted(self._names)

    def record(self, name: str) -> None:
        with self._lock:
            new = name not in self._names
            self._names.add(name)
            count = len(self._names)
        if new:
            logging.warning("skipped %s: not a decodable image (%d skipped so far)", name, count)


class ImageCount:
    """How many images a training pipeline read (and decoded, if encoded), read-ahead
    included: one worker's input work, which a multi-worker run splits between the workers."""

    def __init__(self):
        self._value = 0
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._value

    def add(self, count) -> bool:
        with self._lock:
            self._value += int(count)
        return True


def failure_name(data: bytes, encoding: str) -> str:
    """How a log names a bad element: its path, or a digest of its bytes."""
    if encoding == FILE:
        return data.decode("utf-8", "replace")
    return f"an encoded image of {len(data)} bytes (sha1 {hashlib.sha1(data).hexdigest()[:12]})"


def check_some_decode(elements: Iterable, encoding: str, name: str, total: int) -> None:
    """Decodes the images of `elements` ((data, label) pairs of a `file` or `bytes` source,
    at most `PROBE_IMAGES`) until one decodes; none decoding is an `OfaError` saying how many
    were tried (of `total`) and why the first failed. One good image ends the check, so a
    healthy source costs one decode; a source with a few bad files passes (training skips
    them, `ofa-check-data` lists them). libjpeg's own complaints about a broken JPEG, written
    straight to stderr, are silenced here: the error says what failed."""
    tried, first = 0, None
    for data, _ in elements:
        if tried == PROBE_IMAGES:
            break
        tried += 1
        try:
            with quiet_native_logs():
                decode_rgb(read(data, encoding))
            return
        except tf.errors.OpError as e:
            if first is None:
                first = f"{failure_name(data.numpy(), encoding)}: {tf_error_text(e, 100)}"
    if not tried:
        return
    which = (f"its {tried} images decodes (all tried; " if tried >= total
             else f"{tried} images tried (of {total}) decodes (")
    raise OfaError(f"{name}: none of {which}the first, {first}); ofa-check-data lists the bad files")


def read(data: tf.Tensor, encoding: str) -> tf.Tensor:
    """The encoded bytes of an element (`file`: reads the file)."""
    return tf.io.read_file(data) if encoding == FILE else data


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """Encoded bytes (JPEG, PNG, BMP, GIF's first frame) -> uint8 HxWx3."""
    return tf.io.decode_image(data, channels=3, expand_animations=False)


def _random_window(shape: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(offset, extent) of an Inception-style random crop of an image of `shape` (H, W, C)."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.cast(shape, tf.int32), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.0, aspect_ratio_range=CROP_ASPECT, area_range=CROP_AREA, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return begin[:2], extent[:2]


def _centre_window(shape: tf.Tensor, size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(offset, extent) of the square that resize-shorter-side-to-size/0.875-then-centre-crop
    keeps, in the source image's pixels."""
    shape = tf.cast(shape[:2], tf.int32)
    size = tf.cast(size, tf.float32)
    shorter = tf.cast(tf.reduce_min(shape), tf.float32)
    side = tf.cast(tf.maximum(tf.round(shorter * size / tf.math.ceil(size / EVAL_CROP)), 1.0), tf.int32)
    return (shape - side) // 2, tf.stack([side, side])


def _crop(image: tf.Tensor, offset: tf.Tensor, extent: tf.Tensor) -> tf.Tensor:
    crop = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([extent, [-1]], 0))
    crop.set_shape([None, None, image.shape[-1]])
    return crop


def _window_of(data_or_image: tf.Tensor, encoded: bool, window: Callable) -> tf.Tensor:
    """The uint8 crop `window(shape)` of an encoded image (a JPEG decodes only that window)
    or of a pixel image."""
    if not encoded:
        return _crop(data_or_image, *window(tf.shape(data_or_image)))

    def jpeg():
        offset, extent = window(tf.image.extract_jpeg_shape(data_or_image))
        return tf.image.decode_and_crop_jpeg(data_or_image, tf.concat([offset, extent], 0), channels=3)

    def other():
        image = decode_rgb(data_or_image)
        return _crop(image, *window(tf.shape(image)))

    return tf.cond(tf.io.is_jpeg(data_or_image), jpeg, other)


def random_resized_crop(data_or_image: tf.Tensor, encoded: bool, seed: tf.Tensor) -> tf.Tensor:
    """Inception-style random crop (area 8-100%, aspect 3/4-4/3) as uint8, not yet resized."""
    return _window_of(data_or_image, encoded, lambda shape: _random_window(shape, seed))


def centre_crop(data_or_image: tf.Tensor, encoded: bool, size: tf.Tensor) -> tf.Tensor:
    """The evaluation crop of `size` (before the final resize to size x size), as uint8."""
    return _window_of(data_or_image, encoded, lambda shape: _centre_window(shape, size))


def skip_undecodable(dataset: tf.data.Dataset, load: Callable, placeholder: Callable, name: Callable,
                     encoding: str, failures: DecodeFailures | None, named: bool = False) -> tf.data.Dataset:
    """`dataset.map(load)` with each output extended by an `ok` flag, where an element whose
    `load` raises (a file that does not decode) becomes `placeholder(*element) + (False,)`
    and is recorded in `failures` (by its path or digest: `name(*element)` gives the path
    or bytes; with `named`, a text that names the element).

    Order is kept (a deterministic parallel interleave of one-element datasets), so batch i
    is the same with or without bad files upstream, and resuming stays exact."""
    def record(data):
        if failures is not None:
            failures.record(failure_name(data.numpy(), FILE if named else encoding))
        return False

    def loaded(*element):
        return (*load(*element), tf.constant(True))

    def skipped(*element):
        return (*placeholder(*element), tf.ensure_shape(tf.py_function(record, [name(*element)], tf.bool), []))

    def one(*element):
        single = tf.data.Dataset.from_tensors(element)
        return single.map(loaded).ignore_errors().concatenate(single.map(skipped)).take(1)

    return dataset.interleave(one, cycle_length=tf.data.AUTOTUNE, block_length=1,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
