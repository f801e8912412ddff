"""The tf.data pipeline: validation split, augmentation, normalisation, one resolution per batch.

The pipeline turns grayscale into RGB, applies training augmentation (random flip,
pad-and-crop), normalises with ImageNet statistics, and gives each *batch* one input
resolution drawn (seeded by the batch index) from the supernet's resolutions: elastic
resolution, one size per batch as OFA does. The validation split is a deterministic
function of each example's index and the seed. Everything is stateless-seeded, so batch
i is the same on every run, replica and resumed run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CALIBRATION_BATCH = 200


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
    stateless, so a given seed always gives the same pipeline)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    padded = tf.pad(image, [[4, 4], [4, 4], [0, 0]], mode="REFLECT")
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
                  start_batch: int = 0, drop_remainder: bool | None = None) -> tf.data.Dataset:
    """Batches of (normalised float images, int32 labels), one resolution per batch.

    Training: shuffled (seeded), augmented, each batch resized to a resolution drawn from
    `resolutions` by (seed, batch index). Evaluation: the largest resolution, in order.
    `start_batch` (training) starts the stream at that batch, identical to what an
    uninterrupted stream yields there (examples are skipped before augmentation, which is
    seeded by the example's index, so resuming costs no image work). A last partial batch
    is dropped in training (`drop_remainder`, default: `training`), kept otherwise.
    """
    if batch_size <= 0:
        raise OfaError(f"batch_size={batch_size}: expected a positive number")
    resolutions = tf.constant(sorted(int(r) for r in resolutions), tf.int32)
    ds = dataset
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.enumerate().skip(int(start_batch) * batch_size).map(
            lambda i, example: (augment(to_rgb_float(example[0]), tf.stack([tf.cast(seed, tf.int64), i])),
                                example[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (to_rgb_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)

    def resize(index, batch):
        images, labels = batch
        size = batch_resolution(index, resolutions, seed) if training else resolutions[-1]
        return normalize(tf.image.resize(images, tf.stack([size, size]))), tf.cast(labels, tf.int32)

    return ds.enumerate(start=int(start_batch) if training else 0).map(
        resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def calibration_images(train_split: tf.data.Dataset, resolution: int, num_images: int,
                       seed: int) -> list[np.ndarray]:
    """BN-calibration batches (training augmentation, batches of 200, one resolution), made
    once so every subnet is recalibrated on the same images. A split smaller than
    `num_images` gives all it has (its last batch partial)."""
    batches, seen = [], 0
    for images, _ in make_pipeline(train_split, CALIBRATION_BATCH, [resolution], training=True, seed=seed,
                                   drop_remainder=False):
        batches.append(images.numpy())
        seen += images.shape[0]
        if seen >= num_images:
            break
    return batches
