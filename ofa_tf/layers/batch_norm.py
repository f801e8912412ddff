"""`ElasticBatchNormalization`: batch norm over the first C channels of max-size statistics."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.layers.base import ElasticLayer, channels_of, leading


@keras.saving.register_keras_serializable(package="ofa_tf")
class ElasticBatchNormalization(ElasticLayer):
    """Batch norm whose gamma / beta / moving statistics are sliced to the active channels.

    Subnets share the max-size statistics, so after training each subnet's
    statistics are re-estimated by BN recalibration before evaluation or export. In
    training mode only the active part of the moving statistics is updated.

    Defaults follow OFA: momentum 0.9 (PyTorch's 0.1) and epsilon 1e-5. Under a
    mixed-precision policy it normalises in float32 and returns the layer's compute dtype.

    `virtual_batch` (images; None: the whole batch): in training, an image batch whose size is a
    multiple of it is normalised in groups of that many consecutive images, each over its own
    statistics, as each GPU of a reference run normalises its own share (OFA 64 images, DεpS
    128, CompOFA and fOFA 256, AttentiveNAS 32); the moving statistics take the mean of the
    groups'. A batch that is not a multiple is normalised whole. `set_virtual_batch` sets it on
    every elastic BN of a model.
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, virtual_batch: int | None = None,
                 **kwargs: Any):
        # No autocast (of the inputs here, of the variables in `build`): under a mixed-precision
        # policy the statistics, gamma and beta are read as the float32 they are stored in, and
        # `call` normalises in float32.
        kwargs["autocast"] = False
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.virtual_batch = check_virtual_batch(virtual_batch)

    def build(self, input_shape):
        self.max_channels = int(input_shape[-1])
        shape = (self.max_channels,)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones", autocast=False)
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros", autocast=False)
        # ON_READ / MEAN so that updates made inside tf.cond under tf.distribute are legal
        # (per-replica values, averaged when read); otherwise an update inside `tf.cond` under a
        # strategy is a merge_call error.
        self.moving_mean = self._statistic("moving_mean", "zeros", shape)
        self.moving_variance = self._statistic("moving_variance", "ones", shape)

    def _statistic(self, name: str, initializer: str, shape: tuple[int]) -> keras.Variable:
        variable = keras.Variable(initializer, shape=shape, dtype=self.variable_dtype, trainable=False,
                                  aggregation="mean", synchronization="on_read", name=name, autocast=False)
        self._track_variable(variable)
        return variable

    def call(self, inputs, training=None):
        compute_dtype = inputs.dtype
        inputs = tf.cast(inputs, tf.float32)  # a no-op in float32; 16-bit moments overflow or lose digits
        return tf.cast(self._normalize(inputs, training), compute_dtype)

    def _normalize(self, inputs, training):
        channels = channels_of(inputs)
        gamma, beta = leading(self.gamma.value, [channels]), leading(self.beta.value, [channels])
        if training and inputs.shape.rank == 4:  # (N, H, W, C): TensorFlow's fused kernel
            return self._fused_training(inputs, gamma, beta, channels)
        if training:
            axes = list(range(len(inputs.shape) - 1))
            mean, variance = tf.nn.moments(inputs, axes)
            self._update(self.moving_mean, mean, channels)
            self._update(self.moving_variance, variance, channels)
        else:  # Keras's own formula: an extracted subnet's `BatchNormalization` gives the same bits
            mean = leading(self.moving_mean.value, [channels])
            variance = leading(self.moving_variance.value, [channels])
        return tf.nn.batch_normalization(inputs, mean, variance, beta, gamma, self.epsilon)

    def _fused_training(self, inputs, gamma, beta, channels):
        """Training-mode batch norm of an image tensor as one `FusedBatchNormV3` op (and one
        gradient op), where `tf.nn.moments` + `tf.nn.batch_normalization` make a dozen of
        each: a fraction of the tracing work and of the per-step cost, the same numbers to
        float rounding. (The raw op: `tf.compat.v1.nn.fused_batch_norm` raises epsilon to
        1.001e-5.) With `virtual_batch`, the groups of images become channel groups of one
        op: (G * n, H, W, C) -> (n, H, W, G * C), gamma and beta tiled G times."""
        if self.virtual_batch:
            return self._grouped_training(inputs, gamma, beta, channels)
        empty = tf.constant([], tf.float32)
        y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        # The op reports the variance with Bessel's correction; the statistics keep the
        # batch's own (biased) variance, as `tf.nn.moments` gives it.
        shape = inputs.shape
        count = (shape[0] * shape[1] * shape[2] if shape[:3].is_fully_defined()
                 else tf.cast(tf.reduce_prod(tf.shape(inputs)[:3]), tf.float32))
        self._update(self.moving_mean, mean, channels)
        self._update(self.moving_variance, unbiased * ((count - 1) / count), channels)
        return y

    def _grouped_training(self, inputs, gamma, beta, channels):
        """`_fused_training` over groups of `virtual_batch` images (one group when the batch is
        not a multiple of it); the moving statistics take the groups' mean statistics."""
        shape = tf.shape(inputs)
        batch, height, width, depth = shape[0], shape[1], shape[2], shape[3]
        groups = tf.where(tf.equal(batch % self.virtual_batch, 0), batch // self.virtual_batch, 1)
        per_group = batch // groups
        grouped = tf.reshape(inputs, [groups, per_group, height, width, depth])
        grouped = tf.reshape(tf.transpose(grouped, [1, 2, 3, 0, 4]), [per_group, height, width, groups * depth])
        empty = tf.constant([], tf.float32)
        y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
            x=grouped, scale=tf.tile(gamma, [groups]), offset=tf.tile(beta, [groups]), mean=empty, variance=empty,
            epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        y = tf.reshape(y, [per_group, height, width, groups, depth])
        y = tf.reshape(tf.transpose(y, [3, 0, 1, 2, 4]), shape)
        count = tf.cast(per_group * height * width, tf.float32)
        mean = tf.reduce_mean(tf.reshape(mean, [groups, depth]), axis=0)
        variance = tf.reduce_mean(tf.reshape(unbiased, [groups, depth]), axis=0) * ((count - 1) / count)
        self._update(self.moving_mean, mean, channels)
        self._update(self.moving_variance, variance, channels)
        y.set_shape(inputs.shape)
        return y

    def _update(self, variable: keras.Variable, batch_value: tf.Tensor, channels) -> None:
        current = variable.value
        updated = leading(current, [channels]) * self.momentum + batch_value * (1.0 - self.momentum)
        if isinstance(channels, int) and channels == self.max_channels:  # the max net: the whole vector
            variable.assign(updated)
        else:  # the first `channels` change, the rest keep their values
            variable.assign(tf.concat([updated, tf.slice(current, [channels], [-1])], axis=0))

    def static_layer(self, name: str | None = None, **_: Any) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon, name=name or self.name)

    @property
    def sliced_variables(self):
        return [self.gamma, self.beta, self.moving_mean, self.moving_variance]

    def weights_for(self, static: keras.layers.Layer) -> list[np.ndarray]:
        return self.static_weights(int(static.weights[0].shape[0]))  # gamma: (channels,)

    def static_weights(self, in_channels: int, **_: Any) -> list[np.ndarray]:
        return [v.numpy()[:in_channels] for v in self.sliced_variables]

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, epsilon=self.epsilon, virtual_batch=self.virtual_batch)
        return config


def check_virtual_batch(images: int | None) -> int | None:
    """`images` (the BN's virtual batch) is None or a positive integer; returns it (None for 0)."""
    if images is None or images == 0:
        return None
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 0:
        raise OfaError(f"bn_virtual_batch={images!r}: expected a positive number of images")
    return int(images)


def set_virtual_batch(model: keras.Layer, images: int | None) -> int:
    """Sets `virtual_batch` on every `ElasticBatchNormalization` of `model` (a frozen teacher's
    too); returns how many. Read when a training step is traced: set it before the first."""
    images = check_virtual_batch(images)
    layers = [layer for layer in model._flatten_layers(include_self=True)
              if isinstance(layer, ElasticBatchNormalization)]
    for layer in layers:
        layer.virtual_batch = images
    return len(layers)
