"""Strong augmentation for FixMatch (TOFA, arXiv:2303.15485, §4.2): RandAugment-style ops plus Cutout.

FixMatch trains the max net to predict, on a *strongly* distorted view of an unlabelled
image, the label it confidently predicts on a *weakly* augmented view (the pipeline's
flip + pad-crop, `ofa_tf.data.pipeline.augment`). The strong view here is the weak one followed by
`num_ops` operations drawn uniformly from a RandAugment list (each at a random magnitude,
as FixMatch's RandAugment variant does, so there is no magnitude to tune) and a Cutout
square of up to half the image side filled with grey.

Everything is TF ops on one float [0, 1] HxWx3 image with a stateless seed, so it runs
inside `tf.data.Dataset.map` (graph mode), gives the same view for the same seed on every
run and worker, and needs no Python randomness. Equalize (histogram equalisation) is left
out: it has no cheap graph-friendly form and the list is ample without it.
"""

from __future__ import annotations

import math

import tensorflow as tf

GREY = 0.5


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL ImageEnhance: factor 0 gives `degenerate`, 1 the image, > 1 extrapolates."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _factor(magnitude: tf.Tensor) -> tf.Tensor:
    return 0.05 + 1.9 * magnitude  # [0.05, 1.95], RandAugment's enhancement range


def _transform(image: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """Projective transform (output pixel -> input pixel, 8 numbers), grey fill outside."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.cast(matrix, tf.float32)[None], output_shape=tf.stack([height, width]),
        fill_value=GREY, interpolation="BILINEAR", fill_mode="CONSTANT")[0]


def _center(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.cast(tf.shape(image), tf.float32)
    return (shape[1] - 1.0) / 2.0, (shape[0] - 1.0) / 2.0


def identity(image, magnitude, sign):
    return image


def auto_contrast(image, magnitude, sign):
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scale = tf.where(high > low, 1.0 / tf.maximum(high - low, 1e-6), 1.0)
    return tf.where(high > low, (image - low) * scale, image)


def brightness(image, magnitude, sign):
    return _blend(tf.zeros_like(image), image, _factor(magnitude))


def color(image, magnitude, sign):
    return _blend(tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image)), image, _factor(magnitude))


def contrast(image, magnitude, sign):
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(image))
    return _blend(tf.fill(tf.shape(image), mean), image, _factor(magnitude))


def sharpness(image, magnitude, sign):
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "SAME")[0]
    return _blend(smooth, image, _factor(magnitude))


def posterize(image, magnitude, sign):
    bits = 4 + tf.cast(tf.round(magnitude * 4.0), tf.int32)  # keep 4..8 bits
    shift = tf.cast(8 - bits, tf.uint8)
    pixels = tf.cast(tf.round(image * 255.0), tf.uint8)
    pixels = tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift)
    return tf.cast(pixels, tf.float32) / 255.0


def solarize(image, magnitude, sign):
    return tf.where(image < magnitude, image, 1.0 - image)  # threshold in [0, 1]


def rotate(image, magnitude, sign):
    angle = sign * magnitude * (30.0 * math.pi / 180.0)
    cx, cy = _center(image)
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _transform(image, tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                                       sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0]))


def shear_x(image, magnitude, sign):
    shear = sign * magnitude * 0.3
    _, cy = _center(image)
    return _transform(image, tf.stack([1.0, shear, -shear * cy, 0.0, 1.0, 0.0, 0.0, 0.0]))


def shear_y(image, magnitude, sign):
    shear = sign * magnitude * 0.3
    cx, _ = _center(image)
    return _transform(image, tf.stack([1.0, 0.0, 0.0, shear, 1.0, -shear * cx, 0.0, 0.0]))


def translate_x(image, magnitude, sign):
    shift = sign * magnitude * 0.3 * tf.cast(tf.shape(image)[1], tf.float32)
    return _transform(image, tf.stack([1.0, 0.0, -shift, 0.0, 1.0, 0.0, 0.0, 0.0]))


def translate_y(image, magnitude, sign):
    shift = sign * magnitude * 0.3 * tf.cast(tf.shape(image)[0], tf.float32)
    return _transform(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, -shift, 0.0, 0.0]))


# RandAugment's list as used by FixMatch, without Equalize (see the module docstring).
OPS = (identity, auto_contrast, brightness, color, contrast, sharpness, posterize, solarize, rotate,
       shear_x, shear_y, translate_x, translate_y)


def cutout(image: tf.Tensor, seed: tf.Tensor, max_fraction: float = 0.5) -> tf.Tensor:
    """Greys out a square of side U(0, max_fraction] x the shorter image side at a random
    centre (it may be clipped by the border)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.cast(tf.minimum(height, width), tf.float32)
    half = tf.random.stateless_uniform([], seeds[0], 0.0, max_fraction) * side / 2.0
    centre = tf.random.stateless_uniform([2], seeds[1]) * tf.cast(tf.stack([height, width]), tf.float32)
    rows = tf.abs(tf.range(tf.cast(height, tf.float32)) - centre[0]) < half
    cols = tf.abs(tf.range(tf.cast(width, tf.float32)) - centre[1]) < half
    inside = tf.logical_and(rows[:, None], cols[None, :])[:, :, None]
    return tf.where(inside, tf.constant(GREY, image.dtype), image)


def rand_augment(image: tf.Tensor, seed: tf.Tensor, num_ops: int = 2) -> tf.Tensor:
    """`num_ops` ops drawn uniformly from `OPS`, each at a uniform random magnitude and sign."""
    for op_seed in tf.unstack(tf.random.experimental.stateless_split(seed, num_ops)):
        seeds = tf.random.experimental.stateless_split(op_seed, 3)
        index = tf.random.stateless_uniform([], seeds[0], 0, len(OPS), dtype=tf.int32)
        magnitude = tf.random.stateless_uniform([], seeds[1])
        sign = tf.where(tf.random.stateless_uniform([], seeds[2]) < 0.5, -1.0, 1.0)
        image = tf.switch_case(index, [lambda op=op: op(image, magnitude, sign) for op in OPS])
        image = tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), image.shape)
    return image


def strong_augment(image: tf.Tensor, seed: tf.Tensor, num_ops: int = 2) -> tf.Tensor:
    """RandAugment then Cutout on an already weakly augmented float [0, 1] RGB image."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    return cutout(rand_augment(image, seeds[0], num_ops), seeds[1])
