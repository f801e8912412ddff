"""What every elastic layer shares: max-size weights, tensor choices, static twins.

An elastic layer owns its weights at the largest size and, at call time, slices the
active part with bounds that may be tensors. Because the bounds are tensors, one traced
graph serves every subnet, and the sliced convolutions really are smaller, so a small
subnet costs less compute (docs/design.md has the measurements).

Each layer also hands back its *static twin*: a plain Keras layer (`Conv2D`,
`DepthwiseConv2D`, `BatchNormalization`, `Dense`) holding copies of the active weights,
which is how `Supernet.get_subnet` builds an ordinary Keras model without custom objects.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.spaces.arch_plan import conv_out_size

if keras.backend.backend() != "tensorflow":  # pragma: no cover - environment guard
    raise ImportError(f"ofa_tf needs the TensorFlow Keras backend; KERAS_BACKEND is {keras.backend.backend()!r}")


def channels_of(x: tf.Tensor) -> tf.Tensor | int:
    """Active channel count of `x`: a Python int when static, else a scalar tensor."""
    static = x.shape[-1]
    return int(static) if static is not None else tf.shape(x)[-1]


def leading(value: tf.Tensor, counts: Sequence[int | tf.Tensor | None]) -> tf.Tensor:
    """`value[..., :counts[0], :counts[1], ...]` over its last `len(counts)` axes (None: the
    whole axis); counts are Python ints or scalar int32 tensors.

    One `StridedSlice` op built directly, not through `tensor[...]` (whose generic indexing
    is most of an elastic layer's tracing time), and no op at all when every count is the
    whole axis: the max net's layers run on their variables as they are, like static
    layers."""
    shape = value.shape
    lead = len(shape) - len(counts)
    if all(c is None or (isinstance(c, int) and c == shape[lead + i]) for i, c in enumerate(counts)):
        return value
    end_mask = sum(1 << a for a in range(lead)) + sum(1 << (lead + i) for i, c in enumerate(counts) if c is None)
    ends = [0] * lead + [0 if c is None else c for c in counts]
    sliced = tf.strided_slice(value, [0] * len(shape), ends, [1] * len(shape), end_mask=end_mask)
    sliced.set_shape(list(shape[:lead]) + [shape[lead + i] if c is None else c if isinstance(c, int) else None
                                           for i, c in enumerate(counts)])  # what a tensor `end` hides
    return sliced


def activation_fn(name: str):
    """The Keras activation function `name` (relu, relu6, hard_swish, ...)."""
    return keras.activations.get(name)


def static_activation(name: str, layer_name: str) -> keras.layers.Layer:
    """A plain Keras layer for the activation `name` (serialisable without custom objects)."""
    return keras.layers.Activation(name, name=layer_name)


def prefix_slice(static_shape: tuple[int, ...], max_shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Where a static weight sits inside its max-size elastic weight.

    Channel dims are prefixes (the active channels are the first N); spatial kernel dims of
    a 4-D kernel are centred (a 3x3 kernel is the centre of the 7x7 one).
    """
    index = []
    for axis, (small, big) in enumerate(zip(static_shape, max_shape)):
        start = (big - small) // 2 if len(max_shape) == 4 and axis < 2 else 0
        index.append(slice(start, start + small))
    return tuple(index)


def padded_conv(op: Callable[[tf.Tensor, str], tf.Tensor], inputs: tf.Tensor, strides: int, padding: str,
                kernel_size: int | tf.Tensor) -> tf.Tensor:
    """`op(x, mode)`, a convolution of odd `kernel_size` (an int or a scalar int32 tensor) and
    stride `strides` in `mode` "SAME" or "VALID", with `padding`.

    `same` runs it "SAME"; `symmetric` gives PyTorch's k//2 zeros on every side (what OFA's
    published supernets were trained with). The two differ only where "SAME" pads unevenly,
    at a stride > 1 on a size that is not 1 modulo the stride: there the input gets its k//2
    zeros on every side and the convolution runs "VALID" (as the static twin's
    `ZeroPadding2D` and "valid" convolution do). Output sizes are the same either way
    (`conv_out_size`), also for a tensor kernel size, so the output keeps its static shape.
    """
    if padding == "same" or strides == 1:
        return op(inputs, "SAME")
    h, w = inputs.shape[1], inputs.shape[2]
    if h is not None and w is not None and not (1 - h) % strides and not (1 - w) % strides:
        return op(inputs, "SAME")
    pad = kernel_size // 2
    outputs = op(tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]]), "VALID")
    outputs.set_shape([inputs.shape[0], None if h is None else conv_out_size(h, strides),
                       None if w is None else conv_out_size(w, strides), outputs.shape[3]])
    return outputs


class ElasticBase(keras.layers.Layer):
    """What every elastic layer's output shape follows: each spatial axis shrinks by
    `strides` under "same" padding (`conv_out_size`), the last axis becomes
    `output_channels` (the max: an elastic call may produce fewer)."""

    strides = 1

    def output_channels(self, input_channels: int | None) -> int | None:
        """Channels of the output at max size (default: those of the input)."""
        return input_channels

    def compute_output_shape(self, input_shape):
        batch, *spatial, channels = input_shape
        return (batch, *(None if s is None else conv_out_size(s, self.strides) for s in spatial),
                self.output_channels(channels))


class ElasticLayer(ElasticBase):
    """Base of the elastic primitives: knows how to emit its static twin.

    Subclasses implement `static_layer(**choice)` (an unbuilt plain Keras layer with the
    right hyper-parameters, named like this layer) and `static_weights(in_channels,
    **choice)` (numpy arrays in that layer's weight order).
    """

    def static_layer(self, **choice: Any) -> keras.layers.Layer:
        raise NotImplementedError

    @property
    def sliced_variables(self) -> list[keras.Variable]:
        """The max-size variables the static twin's weights come from, in its weight order
        (each static weight is `prefix_slice` of one, unless a kernel transform applies)."""
        raise NotImplementedError

    def static_weights(self, in_channels: int, **choice: Any) -> list[np.ndarray]:
        raise NotImplementedError

    def weights_for(self, static: keras.layers.Layer) -> list[np.ndarray]:
        """This layer's current weights for `static`, a built static twin of it (the sizes are
        read from the twin's own weights): how `Supernet.refresh_subnet` brings an extracted
        subnet up to date without building it again."""
        raise NotImplementedError(f"{type(self).__name__} does not refresh a static twin in place")

    def to_static(self, input_shape: tuple[int | None, ...], **choice: Any) -> Callable:
        """The static twin, built for `input_shape` and holding the active weights.

        A convolution with `symmetric` padding and a stride (`symmetric_pad`) becomes two
        plain layers, `ZeroPadding2D(k//2)` then a "valid" convolution: what is returned
        then applies both."""
        layer = self.static_layer(**choice)
        pad = self.symmetric_pad(**choice)
        shape = tuple(input_shape)
        pad_layer = None
        if pad:
            pad_layer = keras.layers.ZeroPadding2D(pad, name=f"{self.name}_pad")
            shape = pad_layer.compute_output_shape(shape)
        layer.build(shape)
        layer.set_weights(self.static_weights(int(input_shape[-1]), **choice))
        return layer if pad_layer is None else (lambda x, **kwargs: layer(pad_layer(x), **kwargs))

    def symmetric_pad(self, **choice: Any) -> int:
        """Zeros on each side that the static twin's own `ZeroPadding2D` adds (0: none, the
        twin pads "same" itself); see `padded_conv`."""
        return 0


class ElasticKernelLayer(ElasticLayer):
    """Base of the primitives holding a `kernel` whose last two axes are (inputs, outputs)
    and, with `use_bias`, a `bias` over the outputs (`ElasticConv2D`, `ElasticDense`): both
    run on, and hand their static twins, the first in / out channels of the two."""

    kernel: keras.Variable
    bias: keras.Variable | None
    use_bias: bool

    @property
    def sliced_variables(self):
        return [self.kernel] + ([self.bias] if self.use_bias else [])

    def _active_weights(self, in_channels, out_channels) -> list[tf.Tensor]:
        weights = [leading(self.kernel.value, [in_channels, out_channels])]
        if self.use_bias:
            weights.append(leading(self.bias.value, [out_channels]))
        return weights

    def apply_kernel(self, inputs, out_channels, op: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> tf.Tensor:
        """`op(inputs, kernel)` plus the bias, on the input's channels and the first
        `out_channels` outputs (int or scalar int32 tensor; None: all)."""
        out = self.output_channels(None) if out_channels is None else out_channels
        kernel, *bias = self._active_weights(channels_of(inputs), out)
        y = op(inputs, kernel)
        return tf.nn.bias_add(y, bias[0]) if bias else y

    def weights_for(self, static: keras.layers.Layer) -> list[np.ndarray]:
        kernel = static.weights[0]  # (..., in, out)
        return self.kernel_weights(int(kernel.shape[-2]), int(kernel.shape[-1]))

    def kernel_weights(self, in_channels: int, out_channels: int | None) -> list[np.ndarray]:
        """The static twin's weights: the first `in_channels` x `out_channels` (None: all)."""
        return [w.numpy() for w in self._active_weights(in_channels, out_channels or self.output_channels(None))]


class ElasticComposite(ElasticBase):
    """Base of elastic layers made of other layers (squeeze-excite, block, stage).

    Their static form is a piece of functional graph: `apply_static(x, **choice)` adds
    plain Keras layers to a functional model under construction; `to_static` wraps that
    in a stand-alone `keras.Model`.
    """

    def apply_static(self, x, **choice: Any):
        raise NotImplementedError

    def to_static(self, input_shape: tuple[int | None, ...], **choice: Any) -> keras.Model:
        inputs = keras.Input(tuple(input_shape[1:]))
        return keras.Model(inputs, self.apply_static(inputs, **choice), name=f"{self.name}_static")
