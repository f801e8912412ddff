"""`ElasticSqueezeExcite`: MobileNetV3 squeeze-excite over an elastic channel count."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from ofa_tf.layers.base import ElasticComposite, channels_of, static_activation
from ofa_tf.layers.conv import ElasticConv2D
from ofa_tf.spaces.divisible import squeeze_channels


@keras.saving.register_keras_serializable(package="ofa_tf")
class ElasticSqueezeExcite(ElasticComposite):
    """Pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> hard-sigmoid -> rescale.

    Hidden channels are `make_divisible(C // reduction, 8)` of the *active* channel
    count C, as OFA's dynamic SE computes them; pass `se_channels` (int or tensor) to
    give them directly, which is what the supernet does (computed once per arch).
    """

    def __init__(self, reduction: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        self.reduction = int(reduction)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = squeeze_channels(channels, self.reduction)
        self.reduce_conv = ElasticConv2D(hidden, 1, use_bias=True, name=f"{self.name}_reduce")
        self.expand_conv = ElasticConv2D(channels, 1, use_bias=True, name=f"{self.name}_expand")
        self.reduce_conv.build((None, 1, 1, channels))
        self.expand_conv.build((None, 1, 1, hidden))

    def hidden_channels(self, channels):
        """`make_divisible(channels // reduction, 8)`, for an int or a scalar int32 tensor."""
        if isinstance(channels, int):
            return squeeze_channels(channels, self.reduction)
        value = channels // self.reduction
        rounded = tf.maximum(8, (value + 4) // 8 * 8)
        return tf.where(tf.cast(rounded, tf.float32) < 0.9 * tf.cast(value, tf.float32), rounded + 8, rounded)

    def call(self, inputs, se_channels=None):
        channels = channels_of(inputs)
        if se_channels is None:
            se_channels = self.hidden_channels(channels)
        scale = tf.reduce_mean(inputs, axis=(1, 2), keepdims=True)
        scale = tf.nn.relu(self.reduce_conv(scale, out_channels=se_channels))
        scale = keras.activations.hard_sigmoid(self.expand_conv(scale, out_channels=channels))
        return inputs * scale

    def apply_static(self, x, se_channels: int | None = None):
        channels = int(x.shape[-1])
        hidden = se_channels or self.hidden_channels(channels)
        s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{self.name}_pool")(x)
        s = self.reduce_conv.to_static(s.shape, out_channels=hidden)(s)
        s = static_activation("relu", f"{self.name}_relu")(s)
        s = self.expand_conv.to_static(s.shape, out_channels=channels)(s)
        s = static_activation("hard_sigmoid", f"{self.name}_gate")(s)
        return keras.layers.Multiply(name=f"{self.name}_scale")([x, s])

    def get_config(self):
        config = super().get_config()
        config.update(reduction=self.reduction)
        return config
