"""`ElasticInvertedResidual`: the MobileNetV2/V3 block with elastic kernel, expand and width."""

from __future__ import annotations

import zlib
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.layers.base import ElasticComposite, activation_fn, static_activation
from ofa_tf.layers.batch_norm import ElasticBatchNormalization
from ofa_tf.layers.conv import ElasticConv2D
from ofa_tf.layers.depthwise import ElasticDepthwiseConv2D
from ofa_tf.layers.squeeze_excite import ElasticSqueezeExcite
from ofa_tf.spaces.divisible import expanded_channels


@keras.saving.register_keras_serializable(package="ofa_tf")
class ElasticInvertedResidual(ElasticComposite):
    """1x1 expand -> kxk depthwise -> (SE) -> 1x1 project, with an optional identity skip.

    Weights are held at the largest in / mid / out channel counts and kernel size. Per
    call, the active choice is given as:
      kernel_size: depthwise kernel (int or scalar int32 tensor).
      mid_channels: expanded channels (int or tensor); or `expand_ratio` (Python float),
        from which mid channels are computed as OFA does.
      out_channels: output width (int or tensor), for spaces with elastic width.
      se_channels: squeeze-excite hidden channels (int or tensor; derived when static).

    Subclass hooks: `activation_function()` (the nonlinearity) and `build_sublayers()`
    let users change parts of the block without rewriting `call`/`apply_static`
    (docs/extending.md shows one).

    Two options of BigNAS's from-scratch training (AttentiveNAS `attentive_nas_dynamic_model.py`):
      zero_residual_gamma: a block with an identity skip starts with the last BN's gamma at 0
        (`zero_residual_block_bn_weights`), so it starts as the identity.
      drop_connect_rate: set by the supernet (`Supernet(drop_connect=...)`); in training, with
        `call(drop_connect=True)`, the residual branch of a block with an identity skip is
        dropped per image with this probability and the kept ones scaled by 1 / (1 - rate)
        (AttentiveNAS `nn_utils.drop_connect`). 0: never.
    """

    def __init__(self, out_channels: int, kernel_sizes: Sequence[int] = (3, 5, 7),
                 expand_ratios: Sequence[float] = (3.0, 4.0, 6.0), strides: int = 1,
                 activation: str = "relu", use_se: bool = False, residual: bool | None = None,
                 kernel_mode: str = "center_crop", bn_momentum: float = 0.9, bn_epsilon: float = 1e-5,
                 padding: str = "same", zero_residual_gamma: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = padding
        self.zero_residual_gamma = bool(zero_residual_gamma)
        self.drop_connect_rate = 0.0
        self.out_channels = int(out_channels)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.expand_ratios = tuple(float(e) for e in expand_ratios)
        if not self.expand_ratios or min(self.expand_ratios) <= 0:
            raise OfaError(f"expand_ratios={list(expand_ratios)}: expected positive ratios")
        self.strides = int(strides)
        self.activation = activation
        self.use_se = bool(use_se)
        self.residual = residual
        self.kernel_mode = kernel_mode
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)

    # ------------------------------------------------------------------ structure
    @property
    def has_expand_conv(self) -> bool:
        return max(self.expand_ratios) != 1

    def activation_function(self):
        """The block's nonlinearity (override to change it in a subclass)."""
        return activation_fn(self.activation)

    def _bn(self, part: str) -> ElasticBatchNormalization:
        return ElasticBatchNormalization(self.bn_momentum, self.bn_epsilon, name=f"{self.name}_{part}_bn")

    def build(self, input_shape):
        self.max_in_channels = int(input_shape[-1])
        self.max_mid_channels = (expanded_channels(self.max_in_channels, max(self.expand_ratios))
                                 if self.has_expand_conv else self.max_in_channels)
        if self.residual is None:
            self.residual = self.strides == 1 and self.max_in_channels == self.out_channels
        self.build_sublayers(input_shape)
        if self.zero_residual_gamma and self.residual:
            self.project_bn.gamma.assign(np.zeros(self.project_bn.gamma.shape, np.float32))
        if self.drop_connect_rate > 0:
            # a seed of its own per block (the same masks in every block would drop them together)
            self.drop_connect_seed = keras.random.SeedGenerator(zlib.crc32(self.name.encode()),
                                                                name=f"{self.name}_drop_connect_seed")

    def build_sublayers(self, input_shape) -> None:
        """Creates and builds the sub-layers at max size (override to add parts)."""
        mid, size = self.max_mid_channels, input_shape[1]
        if self.has_expand_conv:
            self.expand_conv = ElasticConv2D(mid, 1, name=f"{self.name}_expand_conv")
            self.expand_conv.build(input_shape)
            self.expand_bn = self._bn("expand")
            self.expand_bn.build((None, size, size, mid))
        self.depthwise = ElasticDepthwiseConv2D(self.kernel_sizes, self.strides, self.kernel_mode,
                                                padding=self.padding, name=f"{self.name}_depthwise")
        self.depthwise.build((None, size, size, mid))
        self.depthwise_bn = self._bn("depthwise")
        self.depthwise_bn.build((None, None, None, mid))
        if self.use_se:
            self.se = ElasticSqueezeExcite(name=f"{self.name}_se")
            self.se.build((None, None, None, mid))
        self.project_conv = ElasticConv2D(self.out_channels, 1, name=f"{self.name}_project_conv")
        self.project_conv.build((None, None, None, mid))
        self.project_bn = self._bn("project")
        self.project_bn.build((None, None, None, self.out_channels))

    # ------------------------------------------------------------------ elastic path
    def _mid(self, inputs, mid_channels, expand_ratio):
        if not self.has_expand_conv:
            return None
        if mid_channels is not None:
            return mid_channels
        if expand_ratio is not None:
            return expanded_channels(int(inputs.shape[-1]), expand_ratio)
        return self.max_mid_channels

    def _drop_connect(self, x, active):
        """The residual branch `x` dropped per image with `drop_connect_rate` (kept ones scaled
        up), when `active` (a Python bool or a scalar bool tensor) and training."""
        keep = 1.0 - self.drop_connect_rate
        mask = tf.floor(keep + keras.random.uniform((tf.shape(x)[0], 1, 1, 1), seed=self.drop_connect_seed))
        dropped = x / keep * tf.cast(mask, x.dtype)
        if isinstance(active, bool):
            return dropped if active else x
        return tf.cond(active, lambda: dropped, lambda: x)

    def call(self, inputs, kernel_size=None, mid_channels=None, out_channels=None, se_channels=None,
             expand_ratio=None, training=None, drop_connect=False):
        act = self.activation_function()
        x = inputs
        mid = self._mid(inputs, mid_channels, expand_ratio)
        if self.has_expand_conv:
            x = act(self.expand_bn(self.expand_conv(x, out_channels=mid), training=training))
        x = act(self.depthwise_bn(self.depthwise(x, kernel_size=kernel_size), training=training))
        if self.use_se:
            x = self.se(x, se_channels=se_channels)
        x = self.project_bn(self.project_conv(x, out_channels=out_channels), training=training)
        if self.residual:
            if training and self.drop_connect_rate > 0 and drop_connect is not False:
                x = self._drop_connect(x, drop_connect)
            x = x + inputs
        return x

    def output_channels(self, input_channels: int | None) -> int:
        return self.out_channels

    # ------------------------------------------------------------------ static path
    def static_activation(self, name: str) -> keras.layers.Layer:
        """Plain Keras layer for the nonlinearity in extracted subnets (override with
        `activation_function`)."""
        return static_activation(self.activation, name)

    def apply_static(self, x, kernel_size: int | None = None, mid_channels: int | None = None,
                     out_channels: int | None = None, se_channels: int | None = None,
                     expand_ratio: float | None = None):
        inputs = x
        mid = self._mid(x, mid_channels, expand_ratio)
        if self.has_expand_conv:
            x = self.expand_conv.to_static(x.shape, out_channels=mid)(x)
            x = self.expand_bn.to_static(x.shape)(x)
            x = self.static_activation(f"{self.name}_expand_act")(x)
        x = self.depthwise.to_static(x.shape, kernel_size=kernel_size)(x)
        x = self.depthwise_bn.to_static(x.shape)(x)
        x = self.static_activation(f"{self.name}_depthwise_act")(x)
        if self.use_se:
            x = self.se.apply_static(x, se_channels=se_channels)
        x = self.project_conv.to_static(x.shape, out_channels=out_channels)(x)
        x = self.project_bn.to_static(x.shape)(x)
        if self.residual:
            x = keras.layers.Add(name=f"{self.name}_add")([x, inputs])
        return x

    # ------------------------------------------------------------------ channel sorting
    def mid_channel_importance(self) -> np.ndarray:
        """L1 norm of the projection weights of each mid channel (OFA's importance)."""
        return np.abs(self.project_conv.kernel.numpy()).sum(axis=(0, 1, 3))

    def mid_channel_variables(self) -> list[tuple[keras.Variable, int]]:
        """Every (variable, axis) indexed by mid channel: what a re-sort must permute
        together so the block computes the same function afterwards."""
        if not self.has_expand_conv:
            return []  # mid channels are the block's input channels: not this block's to sort
        pairs = [(self.expand_conv.kernel, 3)]
        pairs += [(v, 0) for v in self.expand_bn.sliced_variables]
        pairs.append((self.depthwise.depthwise_kernel, 2))
        pairs += [(v, 0) for v in self.depthwise_bn.sliced_variables]
        if self.use_se:
            pairs += [(self.se.reduce_conv.kernel, 2), (self.se.expand_conv.kernel, 3), (self.se.expand_conv.bias, 0)]
        pairs.append((self.project_conv.kernel, 2))
        return pairs

    def shared_config(self) -> dict[str, Any]:
        """The constructor arguments an `ElasticStage` takes for all its blocks: every one
        but `residual` (and the stride, which the stage's first block has)."""
        return dict(out_channels=self.out_channels, kernel_sizes=list(self.kernel_sizes),
                    expand_ratios=list(self.expand_ratios), strides=self.strides, activation=self.activation,
                    use_se=self.use_se, kernel_mode=self.kernel_mode, bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon, padding=self.padding, zero_residual_gamma=self.zero_residual_gamma)

    def get_config(self):
        config = super().get_config()
        config.update(self.shared_config(), residual=self.residual)
        return config
