"""Calls of a Keras model that fit in memory at ImageNet sizes and trace once per shape.

Used by BN recalibration and by accuracy: small calls run eagerly (no trace, so measuring many
different subnets at small image sizes stays cheap), large ones as a kept tf.function.
"""

from __future__ import annotations

import keras
import tensorflow as tf


# Keras runs a functional model eagerly by keeping every intermediate tensor of a call until
# the call returns, so a large batch at ImageNet sizes holds tens of GB (docs/results.md). A
# tf.function frees each tensor after its last use. Calls on more pixels than this run as a
# tf.function (one trace per model and image size, seconds, paid once per subnet); smaller
# ones eagerly (no trace, so evaluating many subnets at small sizes stays cheap).
EAGER_PIXELS = 64 * 112 * 112


def large_batch(images: tf.Tensor) -> bool:
    """Whether a call on `images` (N, H, W, C) is too large to run eagerly (`EAGER_PIXELS`)."""
    n, h, w = images.shape[0], images.shape[1], images.shape[2]
    return n is not None and h is not None and w is not None and n * h * w > EAGER_PIXELS


def traced_call(traced_calls: dict, model: keras.Model, images: tf.Tensor, training: bool) -> tf.Tensor:
    """`model(images, training=training)` as a traced call kept in `traced_calls`, one per image
    shape and mode, whatever the batch size (a graph frees each tensor after its last use, so
    any batch fits in memory); the next call on the same model and shape traces nothing."""
    key = ("recalibration" if training else "inference", tuple(images.shape[1:]), images.dtype.name)
    if key not in traced_calls:
        traced_calls[key] = tf.function(lambda x: model(x, training=training), autograph=False,
                                        input_signature=[tf.TensorSpec((None, *images.shape[1:]), images.dtype)])
    return traced_calls[key](images)
