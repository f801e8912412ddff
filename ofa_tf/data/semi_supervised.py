"""TOFA's data (Transfer-Once-For-All, arXiv:2303.15485): few labels, unlabelled images.

- `labelled_subset`: keep N labelled images per class of the train split (seeded, the
  same on every run), the rest available as unlabelled data (`unlabelled_dataset="rest"`).
- `unlabelled_images`: the unlabelled source of a run, `rest` or any dataset spec (its
  labels, if any, are ignored).
- `semi_supervised_pipeline`: batches `({labelled, unlabelled_weak, unlabelled_strong},
  labels)` for `OnceForAllModel.train_step` (see `ofa_tf.training.semi_supervised`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ofa_tf.data.augment import strong_augment
from ofa_tf.data.pipeline import augment, batch_resolution, decoded_pixels, normalize, to_rgb_float
from ofa_tf.data.sources import load_dataset
from ofa_tf.errors import OfaError
from ofa_tf.training.semi_supervised import LABELLED, STRONG, WEAK

REST = "rest"


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
