"""The tf.data pipeline: validation split, augmentation, normalisation, one resolution per batch.

The pipeline turns grayscale into RGB, applies training augmentation, normalises with
ImageNet statistics, and gives each *batch* one input resolution drawn (seeded by the
batch index) from the supernet's resolutions: elastic resolution, one size per batch as
OFA does. The validation split is a deterministic function of each example's index and the
seed. Everything is stateless-seeded, so batch i is the same on every run, replica and
resumed run.

Augmentation (`augmentation`, the run's `augment` setting):
  imagenet  Inception-style random-resized crop (area 8-100%, aspect 3/4-4/3) and flip;
            evaluation resizes to size/0.875 and keeps the centre (`ofa_tf.data.decode`).
  imagenet_autoaugment
            DεpS's ImageNet recipe: imagenet's crop and flip, then AutoAugment (ImageNet policy),
            ColorJitter(0.4, 0.4, 0.4, 0.1) and RandomErasing(0.2) (`ofa_tf.data.autoaugment`);
            evaluation as imagenet.
  cifar     random flip and pad-4-then-crop, the padding reflected: DεpS's CIFAR recipe
            (`RandomHorizontalFlip`, `RandomCrop(32, padding=4, padding_mode="reflect")`);
            evaluation resizes.
  none      resize only.
The default (`default_augment`) is imagenet from `IMAGENET_MIN_SIZE` px up, else cifar.

Pixel images of one size (`npz:`, `idx:`) with cifar / none augmentation are augmented at
their own size, batched, and each batch resized; encoded images (`folder:`, `tfrecord:`,
mixed-size `tfds:`) and imagenet augmentation crop or resize each image to its batch's
size first, so images of different sizes batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ofa_tf.data.decode import (ENCODINGS, PIXELS, DecodeFailures, ImageCount, centre_crop, decode_rgb,
                                random_resized_crop, read, skip_undecodable)
from ofa_tf.choices import (AUGMENTATIONS, CIFAR, IMAGENET, IMAGENET_AUTOAUGMENT,  # noqa: F401 (re-exported)
                            IMAGENET_CROPS, IMAGENET_MIN_SIZE, NONE, check_augment, default_augment,
                            parse_image_sizes)
from ofa_tf.data.autoaugment import deps_imagenet_augment
from ofa_tf.errors import OfaError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CALIBRATION_BATCH = 200
PAD = 4  # cifar augmentation: pixels of (reflect) padding before the random crop back to size


def check_validation_fraction(fraction: float) -> None:
    """The share of a training split held out for validation must be in [0, 1)."""
    if not 0 <= fraction < 1:
        raise OfaError(f"validation_fraction={fraction!r}: expected a fraction in [0, 1)")


def split_validation(dataset: tf.data.Dataset, fraction: float, seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(train, validation): example i goes to validation when a stateless random number
    drawn from (seed, i) is below `fraction`, the same on every run and machine."""
    check_validation_fraction(fraction)

    def in_validation(index, _):
        draw = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64), index]))
        return draw < fraction

    indexed = dataset.enumerate()
    drop_index = lambda i, example: example  # noqa: E731
    train = indexed.filter(lambda i, e: tf.logical_not(in_validation(i, e))).map(drop_index)
    validation = indexed.filter(in_validation).map(drop_index)
    return train, validation


def to_rgb_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 HxWx(1|3) -> float32 RGB in [0, 1]."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


def normalize(images: tf.Tensor) -> tf.Tensor:
    return (images - tf.constant(MEAN)) / tf.constant(STD)


def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Standard light augmentation: random horizontal flip and pad-4-then-crop (per image,
    stateless, so a given seed always gives the same pipeline). The padding reflects the
    image, which needs more rows and columns than it pads: an image of 4 px or fewer is
    padded by one less than its side (a 1 px image not at all), so tiny images augment too."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pad_h, pad_w = tf.minimum(PAD, height - 1), tf.minimum(PAD, width - 1)
    padded = tf.pad(image, tf.stack([[pad_h, pad_h], [pad_w, pad_w], [0, 0]]), mode="REFLECT")
    return tf.image.stateless_random_crop(padded, tf.stack([height, width, 3]), seeds[1])


def batch_resolution(index: tf.Tensor, resolutions: tf.Tensor, seed: int) -> tf.Tensor:
    """The input size of training batch `index`: drawn from the sorted `resolutions` by
    (seed, index), so every run, replica and resumed run gives batch i the same size."""
    if resolutions.shape[0] == 1:
        return resolutions[0]
    pick = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64) + 1, index]),
                                       maxval=resolutions.shape[0], dtype=tf.int32)
    return resolutions[pick]


def make_pipeline(dataset: tf.data.Dataset, batch_size: int, resolutions: Sequence[int], *, training: bool,
                  seed: int = 0, shuffle_buffer: int = 10_000, repeat: bool = False,
                  start_batch: int = 0, drop_remainder: bool | None = None, augmentation: str = CIFAR,
                  encoding: str = PIXELS, failures: DecodeFailures | None = None,
                  rows: tuple[int, int] | None = None, images_read: ImageCount | None = None) -> tf.data.Dataset:
    """Batches of (normalised float images, int32 labels), one resolution per batch.

    Training: shuffled (seeded), augmented (`augmentation`: imagenet, cifar or none), each
    batch at a resolution drawn from `resolutions` by (seed, batch index). Evaluation: the
    largest resolution, in order (`imagenet`: resize to size/0.875 and centre crop).
    `start_batch` (training) starts the stream at that batch, identical to what an
    uninterrupted stream yields there (examples are skipped before augmentation, which is
    seeded by the example's index, so resuming costs no image work). A last partial batch
    is dropped in training (`drop_remainder`, default: `training`), kept otherwise.

    `encoding` says what the dataset's images are (`ofa_tf.data.decode`): pixel arrays, or
    files / bytes decoded here, in parallel, each cropped or resized to its batch's size
    before batching (so images of different sizes batch). An image that does not decode is
    skipped and recorded in `failures`: in training its row of the batch repeats another
    image of the same batch (batch i stays batch i, so resume stays exact); in evaluation
    it is left out.

    `rows=(start, stop)` (training): only rows [start, stop) of every batch, the share of one
    worker of a multi-worker run; the other examples are dropped before they are read,
    decoded or augmented, and the rows kept are exactly those of the whole batch.
    """
    if batch_size <= 0:
        raise OfaError(f"batch_size={batch_size}: expected a positive number")
    if rows is not None and not (training and 0 <= rows[0] < rows[1] <= batch_size):
        raise OfaError(f"rows={rows}: expected 0 <= start < stop <= batch_size={batch_size}, in training")
    if rows is not None and not repeat and int(dataset.cardinality()) < 0:
        raise OfaError(f"rows={rows}: a stream of unknown length must repeat (its last partial batch would "
                       "split unevenly over the workers)")
    check_augment(augmentation)
    if encoding not in ENCODINGS:
        raise OfaError(f"encoding={encoding!r}: expected one of {list(ENCODINGS)}")
    sizes = tf.constant(sorted(int(r) for r in resolutions), tf.int32)
    drop = training if drop_remainder is None else drop_remainder
    ds = dataset
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.enumerate().skip(int(start_batch) * batch_size)
    kept = batch_size
    if rows is not None:
        if not repeat:  # whole batches only, as drop_remainder keeps them
            remaining = max(int(dataset.cardinality()) - int(start_batch) * batch_size, 0)
            ds = ds.take(remaining // batch_size * batch_size)
        ds = ds.filter(lambda i, example: _in_rows(i % batch_size, rows))
        kept = rows[1] - rows[0]
    if encoding == PIXELS and augmentation not in IMAGENET_CROPS:
        return _batch_then_resize(ds, kept, sizes, training, seed, start_batch, drop, augmentation, images_read)
    if not training:
        ds = ds.enumerate()
    return _resize_then_batch(ds, kept, sizes, training, seed, drop, augmentation, encoding, failures,
                              global_batch=batch_size, images_read=images_read)


def _in_rows(row: tf.Tensor, rows: tuple[int, int]) -> tf.Tensor:
    return tf.logical_and(row >= rows[0], row < rows[1])


def _counted(images_read: ImageCount):
    """A batch map that adds the batch's rows to `images_read` (the batch is passed through)."""
    def count(images, labels, *rest):
        added = tf.py_function(images_read.add, [tf.shape(labels)[0]], tf.bool)
        with tf.control_dependencies([added]):
            return (tf.identity(images), labels, *rest)
    return count


def _batch_then_resize(ds: tf.data.Dataset, batch_size: int, sizes: tf.Tensor, training: bool, seed: int,
                       start_batch: int, drop: bool, augmentation: str,
                       images_read: ImageCount | None = None) -> tf.data.Dataset:
    """Pixel images of one size: augmented at their own size, batched, each batch resized."""
    if training:
        if augmentation == CIFAR:
            ds = ds.map(lambda i, example: (augment(to_rgb_float(example[0]), tf.stack([tf.cast(seed, tf.int64), i])),
                                            example[1]), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda i, example: (to_rgb_float(example[0]), example[1]),
                        num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (to_rgb_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop)
    if training and images_read is not None:
        ds = ds.map(_counted(images_read))

    def resize(index, batch):
        images, labels = batch
        size = batch_resolution(index, sizes, seed) if training else sizes[-1]
        return normalize(tf.image.resize(images, tf.stack([size, size]))), tf.cast(labels, tf.int32)

    return ds.enumerate(start=int(start_batch) if training else 0).map(
        resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _resize_then_batch(ds: tf.data.Dataset, batch_size: int, sizes: tf.Tensor, training: bool, seed: int,
                       drop: bool, augmentation: str, encoding: str,
                       failures: DecodeFailures | None, global_batch: int,
                       images_read: ImageCount | None = None) -> tf.data.Dataset:
    """Images of any size (or ImageNet crops): each decoded and cropped / resized to its
    batch's size, then batched. Elements are (global index, (image, label)); `batch_size`
    rows of each batch of `global_batch` are here (fewer for a worker's share)."""
    encoded = encoding != PIXELS
    seed64 = tf.cast(seed, tf.int64)

    def size_of(index):
        return batch_resolution(index // global_batch, sizes, seed) if training else sizes[-1]

    def load(index, example):
        data, label = example
        data = read(data, encoding)
        size = size_of(index)
        seeds = tf.random.experimental.stateless_split(tf.stack([seed64, index]), 2)
        if augmentation in IMAGENET_CROPS:
            crop = random_resized_crop(data, encoded, seeds[0]) if training else centre_crop(data, encoded, size)
            image = tf.image.resize(to_rgb_float(crop), tf.stack([size, size]))
            if training:
                image = tf.image.stateless_random_flip_left_right(image, seeds[1])
            if training and augmentation == IMAGENET_AUTOAUGMENT:
                image = deps_imagenet_augment(image, tf.stack([seed64 + 2, index]), MEAN)
        else:
            image = tf.image.resize(to_rgb_float(decode_rgb(data) if encoded else data), tf.stack([size, size]))
            if training and augmentation == CIFAR:
                image = augment(image, tf.stack([seed64, index]))
        image = tf.ensure_shape(image, [None, None, 3])
        return image, label

    def placeholder(index, example):
        size = size_of(index)
        return tf.zeros(tf.stack([size, size, 3])), example[1]

    def name(index, example):
        return example[0]

    def decoded(index, example):
        return (*load(index, example), tf.constant(True))

    if encoded:
        ds = skip_undecodable(ds, load, placeholder, name, encoding, failures)
    else:
        ds = ds.map(decoded, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.batch(batch_size, drop_remainder=drop)
        if images_read is not None:
            ds = ds.map(_counted(images_read))
        ds = ds.map(_fill_skipped, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = _decoded_only(ds).batch(batch_size, drop_remainder=drop)

    def normalized(images, labels):
        return normalize(images), tf.cast(labels, tf.int32)

    return ds.map(normalized, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _decoded_only(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """(image, label) of the (image, label, ok) elements that decoded."""
    def decoded(image, label, ok):
        return ok

    def without_flag(image, label, ok):
        return image, label

    return dataset.filter(decoded).map(without_flag)


def _fill_skipped(images: tf.Tensor, labels: tf.Tensor, ok: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch whose skipped rows (`ok` False) take the image and label of decoded rows of
    the same batch (a batch with none decoded stays as it is)."""
    rows = tf.range(tf.shape(ok)[0])
    good = tf.boolean_mask(rows, ok)
    count = tf.size(good)
    source = tf.cond(count > 0, lambda: tf.where(ok, rows, tf.gather(good, rows % tf.maximum(count, 1))),
                     lambda: rows)
    return tf.gather(images, source), tf.gather(labels, source)


def decoded_pixels(dataset: tf.data.Dataset, encoding: str, size: int,
                   failures: DecodeFailures | None = None) -> tf.data.Dataset:
    """(uint8 size x size x 3 image, label) of an encoded dataset, for the code that works on
    pixel images of one size (TOFA's labelled / unlabelled streams); images that do not
    decode are left out (and recorded)."""
    if encoding == PIXELS:
        return dataset

    def load(data, label):
        image = tf.image.resize(decode_rgb(read(data, encoding)), [size, size])
        return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), [size, size, 3]), label

    def placeholder(data, label):
        return tf.zeros([size, size, 3], tf.uint8), label

    def name(data, label):
        return data

    return _decoded_only(skip_undecodable(dataset, load, placeholder, name, encoding, failures))


def evaluation_batches(split: tf.data.Dataset, batch_size: int, resolution: int, *, augmentation: str = CIFAR,
                       encoding: str = PIXELS, failures: DecodeFailures | None = None):
    """Evaluation batches of `split` at `resolution`, to be iterated once per evaluated subnet:
    for pixel sources a list of (images, labels) arrays, decoded once; for files the streaming
    pipeline, decoded at each pass, so memory does not grow with the split (ImageNet's 50,000
    validation images at 224 px would be 30 GB)."""
    batches = make_pipeline(split, batch_size, [resolution], training=False, augmentation=augmentation,
                            encoding=encoding, failures=failures)
    if encoding != PIXELS:
        return batches
    return [(x.numpy(), y.numpy()) for x, y in batches]


def calibration_images(train_split: tf.data.Dataset, resolution: int, num_images: int,
                       seed: int, augmentation: str = CIFAR, encoding: str = PIXELS,
                       failures: DecodeFailures | None = None) -> list[np.ndarray]:
    """BN-calibration batches (training augmentation, batches of 200, one resolution), made
    once so every subnet is recalibrated on the same images. A split smaller than
    `num_images` gives all it has (its last batch partial)."""
    batches, seen = [], 0
    for images, _ in make_pipeline(train_split, CALIBRATION_BATCH, [resolution], training=True, seed=seed,
                                   drop_remainder=False, augmentation=augmentation, encoding=encoding,
                                   failures=failures):
        batches.append(images.numpy())
        seen += images.shape[0]
        if seen >= num_images:
            break
    return batches
