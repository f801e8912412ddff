"""`ElasticDepthwiseConv2D`: a depthwise convolution with elastic kernel size and channels."""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.choices import KERNEL_MODES, check_kernel_mode  # noqa: F401 (re-exported)
from ofa_tf.errors import OfaError
from ofa_tf.layers.base import ElasticLayer, channels_of, leading, padded_conv
from ofa_tf.spaces.arch_plan import same_padding

# Kernel sizes whose filter gradient runs TensorFlow's own depthwise kernel rather than
# oneDNN's: oneDNN's backward-weights pass is fast for 3x3 only (docs/results.md, "Kernel
# choices").
OWN_FILTER_GRADIENT_FROM = 5


def depthwise_filter_gradient(inputs: tf.Tensor, out_backprop: tf.Tensor, kernel_size: int, strides: int,
                              mode: str = "SAME") -> tf.Tensor:
    """The gradient of a depthwise convolution's `(k, k, C, 1)` kernel (`mode` "SAME" or "VALID").

    TensorFlow builds with oneDNN rewrite `DepthwiseConv2dNativeBackpropFilter` to oneDNN's
    kernel, which for 5x5 and 7x7 kernels is several times slower than TensorFlow's own;
    the rewrite leaves an op with explicit paddings alone, so from `OWN_FILTER_GRADIENT_FROM`
    on the padding is written out (the same sums, in another order)."""
    sizes = tf.stack([kernel_size, kernel_size, tf.shape(inputs)[3], 1])
    height, width = inputs.shape[1], inputs.shape[2]
    if mode == "VALID":
        paddings = [0] * 8
    elif height is not None and width is not None:
        paddings = [0, 0, *same_padding(int(height), kernel_size, strides),
                    *same_padding(int(width), kernel_size, strides), 0, 0]
    else:
        paddings = None
    explicit = kernel_size >= OWN_FILTER_GRADIENT_FROM and paddings is not None
    return tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
        input=inputs, filter_sizes=sizes, out_backprop=out_backprop, strides=[1, strides, strides, 1],
        padding="EXPLICIT" if explicit else mode, explicit_paddings=paddings if explicit else [])


def size_position(kernel_sizes: Sequence[int], kernel_size) -> tf.Tensor:
    """The position of `kernel_size` (a Python int or a scalar int32 tensor) among the
    ascending `kernel_sizes`, as an int32 tensor: the count of sizes below it."""
    return tf.reduce_sum(tf.cast(tf.constant(list(kernel_sizes)) < kernel_size, tf.int32))


def depthwise_conv(inputs: tf.Tensor, kernel: tf.Tensor, kernel_size, kernel_sizes: Sequence[int],
                   strides: int, mode: str = "SAME") -> tf.Tensor:
    """`tf.nn.depthwise_conv2d(inputs, kernel, mode)` whose kernel gradient comes from
    `depthwise_filter_gradient`. `kernel_size` (a Python int, or a scalar int32 tensor, one of
    `kernel_sizes`) is the kernel's; a tensor picks the gradient with one `tf.switch_case`,
    in the backward pass only. Other dtypes than float32 take TensorFlow's gradient."""
    stride_list = [1, strides, strides, 1]
    if inputs.dtype != tf.float32:
        return tf.nn.depthwise_conv2d(inputs, kernel, stride_list, mode)

    @tf.custom_gradient
    def conv(x, weights):
        def gradient(dy):
            dx = tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.shape(x), filter=weights, out_backprop=dy, strides=stride_list, padding=mode)
            if isinstance(kernel_size, int):
                return dx, depthwise_filter_gradient(x, dy, kernel_size, strides, mode)
            dw = tf.switch_case(size_position(kernel_sizes, kernel_size),
                                [lambda k=k: depthwise_filter_gradient(x, dy, k, strides, mode) for k in kernel_sizes])
            return dx, dw
        return tf.nn.depthwise_conv2d(x, weights, stride_list, mode), gradient

    return conv(inputs, kernel)


@keras.saving.register_keras_serializable(package="ofa_tf")
class ElasticDepthwiseConv2D(ElasticLayer):
    """Depthwise conv holding one `(K, K, max_channels, 1)` kernel, K = largest kernel size.

    A smaller kernel is the centre of the larger one. With `kernel_mode="transform"`
    (OFA, "Once-for-All" §3.2) each step down (7->5, 5->3) also passes the centre
    through a learned (k*k x k*k) matrix shared by all channels, initialised to the
    identity; `"center_crop"` (CompOFA, DεpS, AttentiveNAS) uses the plain centre.

    The kernel size is the `kernel_size` call argument: a Python int, or a scalar int32
    tensor that slices the active centre, so one graph serves all sizes. `padding`:
    `same` or `symmetric` (PyTorch's, see `padded_conv`).
    """

    def __init__(self, kernel_sizes: Sequence[int] = (3, 5, 7), strides: int = 1,
                 kernel_mode: str = "center_crop", depthwise_initializer: Any = None, padding: str = "same",
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.padding = padding
        sizes = sorted({int(k) for k in kernel_sizes})
        if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
            raise OfaError(f"kernel_sizes={list(kernel_sizes)}: expected odd positive sizes")
        check_kernel_mode(kernel_mode)
        self.kernel_sizes = tuple(sizes)
        self.strides = int(strides)
        self.kernel_mode = kernel_mode
        # He-normal over one channel's k*k taps: Keras' own fan-in for a (k, k, C, 1) kernel
        # counts k*k*C and would start the depthwise outputs C times too small.
        self.depthwise_initializer = (keras.initializers.get(depthwise_initializer) if depthwise_initializer
                                      else None)

    @property
    def max_kernel_size(self) -> int:
        return self.kernel_sizes[-1]

    def build(self, input_shape):
        self.max_channels = int(input_shape[-1])
        k = self.max_kernel_size
        self.depthwise_kernel = self.add_weight(name="depthwise_kernel", shape=(k, k, self.max_channels, 1),
                                                initializer=self.depthwise_initializer or
                                                keras.initializers.RandomNormal(stddev=(2.0 / (k * k)) ** 0.5))
        self.transforms = {}
        if self.kernel_mode == "transform":
            for size in self.kernel_sizes[:-1]:
                self.transforms[size] = self.add_weight(
                    name=f"transform_{size}x{size}", shape=(size * size, size * size), initializer="identity")

    def active_kernel(self, kernel_size, channels) -> tf.Tensor:
        """The `(k, k, channels, 1)` kernel for kernel size `k` (Python int or int32 tensor).

        A tensor `k` selects with one dynamic slice, so no branch per kernel size enters
        the graph (branches made tracing the backward pass several times slower).
        """
        if self.transforms:
            kernel = self._transformed_kernel(leading(self.depthwise_kernel.value, [channels, None]),
                                              kernel_size, channels)
        else:
            kernel = self.depthwise_kernel.value
        if isinstance(kernel_size, int) and kernel_size == self.max_kernel_size:
            return leading(kernel, [channels, None])
        start = (self.max_kernel_size - kernel_size) // 2  # one slice: the centre, the first channels
        return tf.strided_slice(kernel, [start, start, 0, 0], [start + kernel_size, start + kernel_size, channels, 1],
                                [1, 1, 1, 1])

    def _transformed_kernel(self, kernel: tf.Tensor, kernel_size, channels) -> tf.Tensor:
        """OFA's chain (7 -> 5 -> 3): each smaller kernel is the learned transform of the
        previous one's centre. Every size's kernel is made (cheap: weights only), zero-padded
        to max size, and the one for `kernel_size` is picked with a gather (smallest first, as
        `kernel_sizes`), so a tensor size needs no branch."""
        candidates = [kernel]
        current, big = kernel, self.max_kernel_size
        for size in reversed(self.kernel_sizes[:-1]):
            cut = (current.shape[0] - size) // 2
            centre = current[cut:cut + size, cut:cut + size]
            # (k*k, C) taps by channel, in OFA's row-major tap order; the transform acts on the taps
            flat = tf.matmul(self.transforms[size].value, tf.reshape(centre, (size * size, -1)), transpose_a=True)
            current = tf.reshape(flat, (size, size, -1, 1))
            pad = (big - size) // 2
            candidates.append(tf.pad(current, [[pad, pad], [pad, pad], [0, 0], [0, 0]]))
        return tf.gather(tf.stack(candidates[::-1]), size_position(self.kernel_sizes, kernel_size))

    def call(self, inputs, kernel_size=None):
        if kernel_size is None or len(self.kernel_sizes) == 1:
            kernel_size = self.max_kernel_size
        kernel = self.active_kernel(kernel_size, channels_of(inputs))
        return padded_conv(lambda x, mode: depthwise_conv(x, kernel, kernel_size, self.kernel_sizes, self.strides,
                                                          mode), inputs, self.strides, self.padding, kernel_size)

    def symmetric_pad(self, kernel_size: int | None = None, **_: Any) -> int:
        return (kernel_size or self.max_kernel_size) // 2 if self.padding == "symmetric" and self.strides > 1 else 0

    def static_layer(self, kernel_size: int | None = None, name: str | None = None) -> keras.layers.Layer:
        return keras.layers.DepthwiseConv2D(kernel_size or self.max_kernel_size, strides=self.strides,
                                            padding="valid" if self.symmetric_pad(kernel_size) else "same",
                                            use_bias=False, depthwise_initializer="zeros", name=name or self.name)

    @property
    def sliced_variables(self):
        return [self.depthwise_kernel]

    def weights_for(self, static: keras.layers.Layer) -> list[np.ndarray]:
        kernel = static.weights[0]  # (k, k, channels, 1)
        return self.static_weights(int(kernel.shape[2]), kernel_size=int(kernel.shape[0]))

    def static_weights(self, in_channels: int, kernel_size: int | None = None, **_: Any) -> list[np.ndarray]:
        return [self.active_kernel(kernel_size or self.max_kernel_size, in_channels).numpy()]

    def get_config(self):
        config = super().get_config()
        config.update(kernel_sizes=list(self.kernel_sizes), strides=self.strides, kernel_mode=self.kernel_mode,
                      padding=self.padding,
                      depthwise_initializer=(keras.initializers.serialize(self.depthwise_initializer)
                                             if self.depthwise_initializer else None))
        return config
