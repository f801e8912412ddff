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


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_bn(model: keras.Model, images: Iterable, num_images: int = 2000) -> int:
    """Sets every BN of `model` to cumulative batch statistics over `num_images` images.

    Args:
      model: a Keras model with `BatchNormalization` layers (e.g. `Supernet.get_subnet`).
      images: batches of images (arrays / tensors, or `(images, labels, ...)` tuples).
      num_images: how many images to use (the last batch is cut to fit).
    Returns:
      the number of images used.
    Raises:
      OfaError: when `images` yields no images.
    """
    layers = batch_norm_layers(model)
    momenta = [layer.momentum for layer in layers]
    seen = batches = 0
    try:
        for batch in images:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = tf.convert_to_tensor(batch)[: num_images - seen]
            if batch.shape[0] == 0:
                break
            batches += 1
            for layer in layers:  # cumulative average: m_i = (i - 1) / i
                layer.momentum = (batches - 1) / batches
            model(batch, training=True)
            seen += int(batch.shape[0])
            if seen >= num_images:
                break
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if seen == 0:
        raise OfaError("BN recalibration: the calibration data yielded no images")
    return seen


def cumulative_statistics(batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Reference: mean of the per-batch means and of the per-batch (biased) variances."""
    means = [b.reshape(-1, b.shape[-1]).mean(0) for b in batches]
    variances = [b.reshape(-1, b.shape[-1]).var(0) for b in batches]
    return np.mean(means, 0), np.mean(variances, 0)
