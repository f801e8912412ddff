"""`ElasticConv2D`: a convolution whose input and output channel counts are elastic."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.layers.base import ElasticKernelLayer, padded_conv


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
        return self.apply_kernel(inputs, out_channels, lambda x, kernel: padded_conv(
            lambda y: tf.nn.conv2d(y, kernel, strides=self.strides, padding="SAME"), x, self.strides, self.padding))

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
