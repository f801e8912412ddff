"""BN recalibration: re-estimate a subnet's batch-norm statistics before using it.

Subnets share the supernet's max-size BN statistics, which fit no single subnet, so a
subnet evaluated with them scores near chance. Recalibration runs ~2000
training images (training augmentation) through the subnet in training mode and sets
each BN's moving mean / variance to the *cumulative* average of the batch statistics.
It works on any Keras model (an extracted subnet, or your own).
"""

from __future__ import annotations

from typing import Iterable

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.evaluation.traced_calls import large_batch, traced_call
from ofa_tf.interrupts import raise_if_interrupted


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


# A recalibration over this many images or more runs as a tf.function whatever the image size:
# its one trace (a single forward pass) costs less than running that many images eagerly
# (docs/results.md times both ways), while at half as many the two came out even.
GRAPH_MIN_IMAGES = 1000


def recalibrate_bn(model: keras.Model, images: Iterable, num_images: int = 2000,
                   traced_calls: dict | None = None) -> int:
    """Sets every BN of `model` to cumulative batch statistics over `num_images` images.

    Each batch runs in training mode with BN momentum 0, so after it a BN's moving
    statistics are that batch's; their running average over batches (each batch weighs
    the same, as OFA's cumulative average does) is set at the end.

    Args:
      model: a Keras model with `BatchNormalization` layers (e.g. `Supernet.get_subnet`).
      images: batches of images (arrays / tensors, or `(images, labels, ...)` tuples).
      num_images: how many images to use (the last batch is cut to fit).
      traced_calls: where to keep the traced training-mode call of `model` (per image shape)
        for the next recalibration of the same model, which then traces nothing.
    Returns:
      the number of images used.
    Raises:
      OfaError: when `images` yields no images.
    """
    layers = batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape, np.float64), np.zeros(layer.moving_variance.shape, np.float64)]
            for layer in layers]
    traced_calls = {} if traced_calls is None else traced_calls
    seen = batches = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # moving statistics := the batch's
        for batch in images:
            raise_if_interrupted()
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = tf.convert_to_tensor(batch)[: num_images - seen]
            if batch.shape[0] == 0:
                break
            if num_images >= GRAPH_MIN_IMAGES or large_batch(batch):
                traced_call(traced_calls, model, batch, training=True)  # (the last batch may be partial)
            else:
                model(batch, training=True)
            batches += 1
            for (mean_sum, variance_sum), layer in zip(sums, layers):
                mean_sum += layer.moving_mean.numpy()
                variance_sum += layer.moving_variance.numpy()
            seen += int(batch.shape[0])
            if seen >= num_images:
                break
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if seen == 0:
        raise OfaError("BN recalibration: the calibration data yielded no images")
    for (mean_sum, variance_sum), layer in zip(sums, layers):
        layer.moving_mean.assign((mean_sum / batches).astype(np.float32))
        layer.moving_variance.assign((variance_sum / batches).astype(np.float32))
    return seen
