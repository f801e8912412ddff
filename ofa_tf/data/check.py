"""Finding the images of a dataset that do not decode, before a long run meets them.

Training skips an undecodable file and counts it (`DecodeFailures`, metrics.csv's
`skipped_images`); `find_undecodable` decodes every image of a source up front instead, in
parallel, so the bad ones can be listed (`ofa-check-data`): files by path, TFRecord records
as FILE#N (the N-th record of the file, from 0; a record without an `image/encoded` is bad
too), other encoded images by size and digest.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import tensorflow as tf

from ofa_tf.data.decode import BYTES, PIXELS, DecodeFailures, decode_rgb, read, skip_undecodable
from ofa_tf.data.sources import TFRECORD_IMAGE, DataSource, tfrecord_files

CHECK_BATCH = 256


def _height(image, label, encoding):  # decoding is the check; the height is what is kept of it
    return (tf.shape(decode_rgb(read(image, encoding)))[0],)


def _no_height(image, label):
    return (tf.constant(0),)


def _name(image, label):
    return image


def _count(count, element):
    return count + 1


def _named_records(pattern: str) -> tf.data.Dataset:
    """(FILE#N, serialized record) of every record the glob's files hold."""
    def named(path):
        def with_name(index, record):
            return tf.strings.join([path, tf.strings.as_string(index)], "#"), record
        return tf.data.TFRecordDataset(path).enumerate().map(with_name)

    files = tfrecord_files(pattern)
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        named, cycle_length=min(len(files), 16), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _record_height(name, record):
    spec = {TFRECORD_IMAGE: tf.io.FixedLenFeature([], tf.string)}
    return (tf.shape(decode_rgb(tf.io.parse_single_example(record, spec)[TFRECORD_IMAGE]))[0],)


def find_undecodable(source: DataSource, progress: bool = False) -> dict[str, Any]:
    """{"dataset", "images", "undecodable", "bad"} of every split of `source`: how many images
    were decoded and the ones that failed (their paths, or a digest for encoded bytes). Pixel
    sources have nothing to decode: every image counts as good."""
    failures = DecodeFailures()
    splits = [("train", source.train, source.num_train)]
    if source.test is not None:
        splits.append(("test", source.test, None))
    total = 0
    for split, dataset, known in splits:
        count = known if known is not None else int(dataset.cardinality().numpy())
        bar = keras.utils.Progbar(count if count >= 0 else None, unit_name=f"{split} image") if progress else None
        if source.encoding == PIXELS:
            total += count if count >= 0 else int(dataset.reduce(0, _count).numpy())
            if bar is not None:
                bar.update(max(count, 0))
            continue
        if source.name.startswith("tfrecord:"):
            checked = skip_undecodable(_named_records(source.name.partition(":")[2]), _record_height, _no_height,
                                       _name, BYTES, failures, named=True)
        else:
            checked = skip_undecodable(dataset, functools.partial(_height, encoding=source.encoding), _no_height,
                                       _name, source.encoding, failures)
        seen = 0
        for heights, _ in checked.batch(CHECK_BATCH).prefetch(2):
            seen += int(heights.shape[0])
            if bar is not None:
                bar.update(seen)
        if bar is not None and seen != count:  # the bar ends itself on reaching a known count
            bar.update(seen, finalize=True)
        total += seen
    return {"dataset": source.name, "images": total, "undecodable": failures.count, "bad": failures.names}
