"""TOFA's data (Transfer-Once-For-All, arXiv:2303.15485): few labels, unlabelled images.

- `labelled_subset`: keep N labelled images per class of the train split (seeded, the
  same on every run), the rest available as unlabelled data (`unlabelled_dataset="rest"`).
- `unlabelled_images`: the unlabelled source of a run, `rest` or any dataset spec (its
  labels, if any, are ignored).
- `semi_supervised_pipeline`: batches `({labelled, unlabelled_weak, unlabelled_strong},
  labels)` for `OnceForAllModel.train_step` (see `ofa_tf.training.semi_supervised`).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from ofa_tf.data.augment import strong_augment
from ofa_tf.data.decode import PIXELS, DecodeFailures
from ofa_tf.data.pipeline import augment, batch_resolution, decoded_pixels, normalize, split_validation, to_rgb_float
from ofa_tf.data.sources import DataSource, load_dataset
from ofa_tf.errors import OfaError

REST = "rest"
# the keys of a semi-supervised batch's images (`semi_supervised_pipeline`), which the train
# step reads (`ofa_tf.training.semi_supervised`)
LABELLED = "labelled"
WEAK = "unlabelled_weak"
STRONG = "unlabelled_strong"
BATCH_KEYS = (LABELLED, WEAK, STRONG)


def labelled_subset(dataset: tf.data.Dataset, per_class: int, class_names: Sequence[str],
                    seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(labelled, rest): `per_class` examples of every class, drawn with `seed` from the
    examples in `dataset` order, and everything else (in order).

    Raises OfaError when a class has fewer than `per_class` examples.
    """
    if per_class <= 0:
        raise OfaError(f"labelled_per_class={per_class}: expected a positive number (0 keeps every label)")
    labels = np.concatenate([y for _, y in dataset.batch(4096).as_numpy_iterator()] or [np.zeros(0, np.int64)])
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), bool)
    for c, name in enumerate(class_names):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise OfaError(f"labelled_per_class={per_class}: class {name!r} has only {len(members)} "
                           "training images")
        keep[rng.choice(members, per_class, replace=False)] = True
    keep = tf.constant(keep)
    indexed = dataset.enumerate()
    drop_index = lambda i, example: example  # noqa: E731
    labelled = indexed.filter(lambda i, e: keep[i]).map(drop_index)
    rest = indexed.filter(lambda i, e: tf.logical_not(keep[i])).map(drop_index)
    return labelled, rest


def unlabelled_images(spec: str, rest: tf.data.Dataset | None, data_dir: str | None = None,
                      image_size: int | None = None, download: bool = False) -> tf.data.Dataset:
    """The unlabelled images (uint8 HxWxC) of `--unlabelled_dataset=spec`.

    `rest` is the train split minus the labelled subset. Any other spec is loaded like
    `--dataset`; its train split's labels are dropped, but a malformed source (e.g. labels
    of another shape than its images' count) is still an error, named with the flag. A
    streaming source's images are decoded at `image_size` (default 224) square, lazily.
    """
    if spec == REST:
        if rest is None:
            raise OfaError(f"unlabelled_dataset={REST}: needs labelled_per_class > 0 "
                           "(with every label kept there is no rest)")
        images = rest
    else:
        try:
            source = load_dataset(spec, data_dir, download, labelled=False)
            images = decoded_pixels(source.train, source.encoding, image_size or 224)
        except OfaError as e:
            message = str(e)
            for prefix in (spec + ": ", f"dataset={spec}: "):
                message = message[len(prefix):] if message.startswith(prefix) else message
            raise OfaError(f"unlabelled_dataset={spec}: {message}") from None
    return images.map(lambda x, *_: x)


def semi_supervised_pipeline(labelled: tf.data.Dataset, unlabelled: tf.data.Dataset, batch_size: int,
                             unlabelled_ratio: int, resolutions: Sequence[int], *, seed: int = 0,
                             shuffle_buffer: int = 10_000, start_batch: int = 0) -> tf.data.Dataset:
    """Endless batches of ({LABELLED, WEAK, STRONG} images, labels): `batch_size` labelled
    (weakly augmented) and `unlabelled_ratio * batch_size` unlabelled images in a weak and a
    strong view, all of one resolution drawn per batch as `make_pipeline` does.

    Both streams are shuffled and augmented with seeds derived from `seed` and each image's
    position in its stream, so batch t is the same on every run; `start_batch` starts at
    batch t (exact resume) without doing the image work of the skipped batches.
    """
    unlabelled_batch = unlabelled_ratio * batch_size
    seed64 = tf.cast(seed, tf.int64)

    def weak(index, example):
        return augment(to_rgb_float(example[0]), tf.stack([seed64, index])), example[1]

    def weak_and_strong(index, image):
        image = to_rgb_float(image)
        weak_view = augment(image, tf.stack([seed64 + 2, index]))
        return weak_view, strong_augment(weak_view, tf.stack([seed64 + 3, index]))

    labelled = (labelled.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
                .enumerate().skip(start_batch * batch_size)
                .map(weak, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size, drop_remainder=True))
    unlabelled = (unlabelled.shuffle(shuffle_buffer, seed=seed + 2, reshuffle_each_iteration=True).repeat()
                  .enumerate().skip(start_batch * unlabelled_batch)
                  .map(weak_and_strong, num_parallel_calls=tf.data.AUTOTUNE)
                  .batch(unlabelled_batch, drop_remainder=True))
    sizes = tf.constant(sorted(int(r) for r in resolutions), tf.int32)

    def resize(index, batch):
        (images, labels), (weak_views, strong_views) = batch
        size = batch_resolution(index, sizes, seed)
        scale = lambda x: normalize(tf.image.resize(x, tf.stack([size, size])))  # noqa: E731
        views = {LABELLED: scale(images), WEAK: scale(weak_views), STRONG: scale(strong_views)}
        return views, tf.cast(labels, tf.int32)

    return (tf.data.Dataset.zip(labelled, unlabelled).enumerate(start=start_batch)
            .map(resize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


@dataclasses.dataclass
class TrainingSplits:
    """The splits a run trains, validates and recalibrates BN on.

    Attributes:
      train: the labelled training images (a `labelled_per_class` subset with TOFA settings).
      validation: the held-out share of the train split.
      calibration: BN recalibration images: the whole training split; with TOFA settings the
        labelled images and, with `rest`, the unlabelled ones (recalibration needs no labels),
        repeated so that a few labelled images per class still fill its batches.
      unlabelled: TOFA's unlabelled image stream, or None (supervised).
      encoding: how `train` holds its images (TOFA's streams need pixels: decoded as read).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    calibration: tf.data.Dataset
    unlabelled: tf.data.Dataset | None
    encoding: str


def training_splits(data: DataSource, *, validation_fraction: float, seed: int, labelled_per_class: int = 0,
                    unlabelled_dataset: str | None = None, data_dir: str | None = None, image_size: int = 32,
                    download: bool = False, failures: DecodeFailures | None = None) -> TrainingSplits:
    """A run's `TrainingSplits` of `data`: validation held out (deterministically, by `seed`),
    then, with TOFA's settings, `labelled_per_class` labelled images per class and the
    unlabelled stream (`unlabelled_dataset`: `rest` or a dataset spec), decoded to pixels of at
    most `image_size` when the source streams encoded files."""
    encoding = data.encoding
    full_train, validation = split_validation(data.train, validation_fraction, seed)
    train, rest = full_train, None
    if labelled_per_class:
        train, rest = labelled_subset(full_train, labelled_per_class, data.class_names, seed)
    if (labelled_per_class or unlabelled_dataset) and encoding != PIXELS:
        def decode(split):
            return decoded_pixels(split, encoding, image_size, failures) if split is not None else None
        full_train, train, rest = decode(full_train), decode(train), decode(rest)
        encoding = PIXELS
    unlabelled = (unlabelled_images(unlabelled_dataset, rest, data_dir, image_size, download)
                  if unlabelled_dataset else None)
    calibration = full_train
    if labelled_per_class or unlabelled is not None:
        calibration = (train if unlabelled_dataset != REST else train.concatenate(
            unlabelled.map(lambda x: (x, tf.constant(-1, train.element_spec[1].dtype))))).repeat()
    return TrainingSplits(train, validation, calibration, unlabelled, encoding)
