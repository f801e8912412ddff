"""Graph rewrites that keep an exported subnet on XNNPACK's fast kernels (LiteRT's default CPU delegate).

Two things made the max subnet of `ofa_mbv3` slow under XNNPACK, and its full-int8 model
slower than its float32 one (docs/results.md § int8 latency):

1. **Depthwise kernels of more than 25 taps.** XNNPACK's depthwise microkernels hold at
   most 25 taps (5x5). A 7x7 depthwise convolution, OFA's largest kernel, falls off them
   onto a generic path that is tens of times slower than a 5x5 one, float32 and int8 alike
   (int8 worse). `split_wide_depthwise` computes each such convolution as the sum of
   column strips of at most 25 taps (7x7: 7x3 + 7x3 + 7x1, each a "valid" depthwise
   convolution of the padded input shifted by the strip's first column). The BN after it
   is folded into the strips' kernels and bias first, so the model runs no extra
   multiply-add for it. Same function: only the summation order changes.
2. **Int8 hard-swish.** XNNPACK has no int8 HARD_SWISH: each one leaves the delegate,
   runs TFLite's own int8 kernel (slow), and cuts the delegated graph in two.
   `decompose_hard_swish` writes `x * relu6(x + 3) / 6` as `(x * 1/6) * relu6(x + 3)`:
   an ADD with a fused ReLU6 and two MULs, which XNNPACK runs in int8. (Written the
   usual way, the converter recognises the pattern and fuses it back into HARD_SWISH.)
   Only full-int8 conversion uses it: in float32 XNNPACK runs HARD_SWISH itself, faster
   than three ops.

In int8 both round more than the original graph (each strip's partial sum is rounded before
the sum; the hard-swish's three ops round three times): a small cost in top-1 agreement with
fitted (`mse`) ranges, a larger one with the converter's min/max (docs/results.md). The
export's `rewrite_for_xnnpack=False` converts the original graph instead.

The functions take plain functional Keras models (the static subnets of
`Supernet.get_subnet`) and return new ones; the layers they add exist only for conversion
(the `.keras` and SavedModel exports keep the original graph).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.export.graph import batch_norm_producers, folded_batch_norm_weights
from ofa_tf.spaces.arch_plan import same_padding

MAX_DEPTHWISE_TAPS = 25  # the largest depthwise kernel (kh x kw) XNNPACK's microkernels hold


def strip_columns(kernel_height: int, kernel_width: int, max_taps: int = MAX_DEPTHWISE_TAPS) -> list[tuple[int, int]]:
    """[(first column, width)] of the strips a kernel is split into, each at most `max_taps`
    taps; one strip (the whole kernel) when it already fits."""
    width = max(1, max_taps // kernel_height)
    return [(start, min(width, kernel_width - start)) for start in range(0, kernel_width, width)]


@keras.saving.register_keras_serializable(package="ofa_tf")
class StripDepthwiseConv2D(keras.layers.Layer):
    """A depthwise convolution (with bias) computed as the sum of column strips of at most
    `max_taps` taps each (module docstring): the same output as one
    `DepthwiseConv2D(kernel, strides, padding)`, in convolutions XNNPACK runs fast."""

    def __init__(self, kernel_size: tuple[int, int], strides: int, padding: str, depth_multiplier: int = 1,
                 max_taps: int = MAX_DEPTHWISE_TAPS, **kwargs: Any):
        super().__init__(**kwargs)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = int(strides)
        self.padding = padding
        self.depth_multiplier = int(depth_multiplier)
        self.max_taps = int(max_taps)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(*self.kernel_size, channels, self.depth_multiplier), name="kernel",
                                      initializer="zeros")
        self.bias = self.add_weight(shape=(channels * self.depth_multiplier,), name="bias", initializer="zeros")

    def call(self, inputs):
        kh, kw = self.kernel_size
        s = self.strides
        height, width = int(inputs.shape[1]), int(inputs.shape[2])
        if self.padding == "same":
            (top, bottom), (left, right) = same_padding(height, kh, s), same_padding(width, kw, s)
            inputs = tf.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]])
            out_width = -(-width // s)
        else:
            out_width = (width - kw) // s + 1
        total = None
        for start, strip in strip_columns(kh, kw, self.max_taps):
            shifted = inputs[:, :, start: start + (out_width - 1) * s + strip]
            y = tf.nn.depthwise_conv2d(shifted, self.kernel[:, start: start + strip], strides=[1, s, s, 1],
                                       padding="VALID")
            total = tf.nn.bias_add(y, self.bias) if total is None else total + y
        return total

    def compute_output_shape(self, input_shape):
        kh, kw = self.kernel_size
        size = (lambda n, k: -(-n // self.strides)) if self.padding == "same" else (
            lambda n, k: (n - k) // self.strides + 1)
        return (input_shape[0], size(input_shape[1], kh), size(input_shape[2], kw),
                input_shape[3] * self.depth_multiplier)

    def get_config(self):
        return {**super().get_config(), "kernel_size": list(self.kernel_size), "strides": self.strides,
                "padding": self.padding, "depth_multiplier": self.depth_multiplier, "max_taps": self.max_taps}


@keras.saving.register_keras_serializable(package="ofa_tf")
class DecomposedHardSwish(keras.layers.Layer):
    """hard_swish(x) = x * relu6(x + 3) / 6, computed as `(x * 1/6) * relu6(x + 3)` so that
    the converter leaves three int8 ops XNNPACK runs (module docstring)."""

    def call(self, inputs):
        return (inputs * (1.0 / 6.0)) * tf.nn.relu6(inputs + 3.0)


@keras.saving.register_keras_serializable(package="ofa_tf")
class FoldedBatchNorm(keras.layers.Layer):
    """A BatchNormalization whose scale and shift were folded into the convolution before
    it: the identity, with BN's call signature (the cloned graph passes it `mask`)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _splittable(layer: keras.layers.Layer, max_taps: int) -> bool:
    if not isinstance(layer, keras.layers.DepthwiseConv2D):
        return False
    config = layer.get_config()
    kh, kw = config["kernel_size"]
    try:
        shape = layer.input.shape
    except (AttributeError, ValueError):  # a layer called more than once has no single input
        return False
    return (kh * kw > max_taps and tuple(config["dilation_rate"]) == (1, 1)
            and config["strides"][0] == config["strides"][1] and config["activation"] == "linear"
            and config["padding"] in ("same", "valid") and shape[1] is not None and shape[2] is not None)


def _is_functional(model: keras.Model) -> bool:
    return isinstance(model, keras.Model) and type(model).__name__ in ("Functional", "Sequential")


def split_wide_depthwise(model: keras.Model, max_taps: int = MAX_DEPTHWISE_TAPS) -> keras.Model:
    """`model` with every depthwise convolution of more than `max_taps` taps computed in
    strips (`StripDepthwiseConv2D`), the BN after it folded in and made an identity;
    `model` itself when it has none."""
    if not _is_functional(model):
        return model
    wide = {layer.name for layer in model.layers if _splittable(layer, max_taps)}
    if not wide:
        return model
    folded_bn = {bn: conv for conv, bn in batch_norm_producers(model).items() if conv in wide}

    def clone(layer):
        if layer.name in wide:
            config = layer.get_config()
            return StripDepthwiseConv2D(config["kernel_size"], config["strides"][0], config["padding"],
                                        config["depth_multiplier"], max_taps, name=layer.name)
        if layer.name in folded_bn:
            return FoldedBatchNorm(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    rewritten = keras.models.clone_model(model, clone_function=clone)
    bn_of = {conv: bn for bn, conv in folded_bn.items()}
    for layer in model.layers:
        if layer.name in folded_bn or not layer.weights:  # (an unnamed input layer is renamed by the clone)
            continue
        weights = layer.get_weights()
        if layer.name in wide:
            if layer.name in bn_of:
                weights = folded_batch_norm_weights(layer, model.get_layer(bn_of[layer.name]))
            elif len(weights) == 1:
                weights = [weights[0], np.zeros(weights[0].shape[2] * weights[0].shape[3], weights[0].dtype)]
        rewritten.get_layer(layer.name).set_weights(weights)
    return rewritten


def decompose_hard_swish(model: keras.Model) -> keras.Model:
    """`model` with every hard-swish activation layer a `DecomposedHardSwish`; `model`
    itself when it has none."""
    if not _is_functional(model):
        return model
    swishes = {layer.name for layer in model.layers if isinstance(layer, keras.layers.Activation)
               and layer.get_config()["activation"] in ("hard_silu", "hard_swish")}
    if not swishes:
        return model

    def clone(layer):
        if layer.name in swishes:
            return DecomposedHardSwish(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    rewritten = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            rewritten.get_layer(layer.name).set_weights(layer.get_weights())
    return rewritten


def for_xnnpack(model: keras.Model, mode: str) -> keras.Model:
    """The rewrites for a conversion in `mode` (none / float16 / dynamic / int8): wide
    depthwise kernels split in every mode, hard-swish decomposed for int8."""
    model = split_wide_depthwise(model)
    return decompose_hard_swish(model) if mode == "int8" else model


__all__ = ["DecomposedHardSwish", "FoldedBatchNorm", "MAX_DEPTHWISE_TAPS", "StripDepthwiseConv2D",
           "decompose_hard_swish", "for_xnnpack", "split_wide_depthwise", "strip_columns"]
