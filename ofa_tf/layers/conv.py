"""`ElasticConv2D`: a convolution whose input and output channel counts are elastic."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.layers.base import ElasticKernelLayer, padded_conv


def pointwise_conv(inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """A 1x1, stride-1 convolution as the matrix product it is: `(N*H*W, C) @ (C, O)`.

    The same sums as `tf.nn.conv2d`; on CPU oneDNN's convolution kernels (forward and both
    gradients) are slower than its matrix product on these shapes, by most on the small
    spatial sizes of a network's last layers (docs/results.md, "Kernel choices")."""
    weights = tf.squeeze(kernel, [0, 1])
    flat = tf.reshape(inputs, [-1, tf.shape(inputs)[3]])
    shape = tf.concat([tf.shape(inputs)[:3], tf.shape(weights)[1:]], axis=0)
    outputs = tf.reshape(tf.matmul(flat, weights), shape)
    outputs.set_shape(inputs.shape[:3].concatenate(kernel.shape[3:]))
    return outputs


@keras.saving.register_keras_serializable(package="ofa_tf")
class ElasticConv2D(ElasticKernelLayer):
    """Conv2D holding a `(k, k, max_in, max_out)` kernel; runs on the first in/out channels.

    The input channel count follows the input tensor; the output count is the
    `out_channels` call argument (int or scalar int32 tensor, default all). `padding`:
    `same` or `symmetric` (PyTorch's, see `padded_conv`).
    """

    def __init__(self, filters: int, kernel_size: int = 1, strides: int = 1, use_bias: bool = False,
                 kernel_initializer: Any = "he_normal", padding: str = "same", **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = padding
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.max_in_channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.kernel_size, self.max_in_channels, self.filters),
            initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") if self.use_bias else None

    def call(self, inputs, out_channels=None):
        if self.kernel_size == 1 and self.strides == 1:
            return self.apply_kernel(inputs, out_channels, pointwise_conv)
        return self.apply_kernel(inputs, out_channels, lambda x, kernel: padded_conv(
            lambda y, mode: tf.nn.conv2d(y, kernel, strides=self.strides, padding=mode), x, self.strides,
            self.padding, self.kernel_size))

    def output_channels(self, input_channels: int | None) -> int:
        return self.filters

    def static_layer(self, out_channels: int | None = None, name: str | None = None) -> keras.layers.Layer:
        return keras.layers.Conv2D(out_channels or self.filters, self.kernel_size, strides=self.strides,
                                   padding="valid" if self.symmetric_pad() else "same", use_bias=self.use_bias,
                                   kernel_initializer="zeros", name=name or self.name)

    def symmetric_pad(self, **_: Any) -> int:
        return self.kernel_size // 2 if self.padding == "symmetric" and self.strides > 1 else 0

    def static_weights(self, in_channels: int, out_channels: int | None = None, **_: Any) -> list[np.ndarray]:
        return self.kernel_weights(in_channels, out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      use_bias=self.use_bias, padding=self.padding,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
