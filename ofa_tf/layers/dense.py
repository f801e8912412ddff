"""`ElasticDense`: a dense layer with elastic input (and optionally output) features."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.layers.base import ElasticKernelLayer


@keras.saving.register_keras_serializable(package="ofa_tf")
class ElasticDense(ElasticKernelLayer):
    """Dense holding a `(max_in, max_units)` kernel; uses the first in/out features."""

    def __init__(self, units: int, use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.max_in_features = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(self.max_in_features, self.units),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None

    def call(self, inputs, out_units=None):
        return self.apply_kernel(inputs, out_units, tf.matmul)

    def output_channels(self, input_channels: int | None) -> int:
        return self.units

    def static_layer(self, out_units: int | None = None, name: str | None = None) -> keras.layers.Layer:
        return keras.layers.Dense(out_units or self.units, use_bias=self.use_bias, kernel_initializer="zeros",
                                  name=name or self.name)

    def static_weights(self, in_channels: int, out_units: int | None = None, **_: Any) -> list[np.ndarray]:
        return self.kernel_weights(in_channels, out_units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, use_bias=self.use_bias,
                      kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
