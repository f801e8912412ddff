"""DεpS's ImageNet augmentation: AutoAugment (ImageNet policy), colour jitter and random erasing.

DεpS (arXiv:2407.06167) trains on ImageNet with its README's `--auto_augment imagenet
--distort_color torch --random_erase_prob 0.2`; its data provider
(`deps/imagenet_classification/data_providers/imagenet.py`, `build_train_transform`) then applies,
after the random-resized crop and the flip:

  1. torchvision's `AutoAugment(AutoAugmentPolicy.IMAGENET)` with bilinear interpolation: one of
     25 sub-policies, each two operations applied with their own probability and magnitude
     (`IMAGENET_POLICY`, magnitudes binned into 10 levels as torchvision bins them);
  2. `ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)`: the four
     adjustments in a random order, each factor drawn uniformly;
  3. after normalisation, `RandomErasing(p=0.2)`: a rectangle of 2-33% of the image with aspect
     ratio in [0.3, 3.3] set to 0, i.e. to the mean pixel (`erase` takes that pixel).

Everything here is TF ops on one float [0, 1] HxWx3 image with a stateless seed, so it runs inside
`tf.data.Dataset.map` and gives the same image for the same seed on every run and worker. The
reference works on 8-bit PIL images: each operation's result is rounded to 8 bits here too, so
posterize, solarize and equalize see the values they see there. Geometric operations fill with
black, as torchvision's AutoAugment does (`fill=None`).
"""

from __future__ import annotations

import math

import tensorflow as tf

# torchvision's AutoAugmentPolicy.IMAGENET: (operation, probability, magnitude bin or None) pairs.
IMAGENET_POLICY = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
    (("solarize", 0.6, 5), ("auto_contrast", 0.6, None)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
    (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("equalize", 0.4, None), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, None)),
    (("posterize", 0.8, 5), ("equalize", 1.0, None)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
    (("equalize", 0.6, None), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)),
    (("rotate", 0.4, 9), ("equalize", 0.6, None)),
    (("equalize", 0.0, None), ("equalize", 0.8, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)),
    (("sharpness", 0.4, 7), ("invert", 0.6, None)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, None)),
    (("color", 0.4, 0), ("equalize", 0.6, None)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("solarize", 0.6, 5), ("auto_contrast", 0.6, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
)
BINS = 10
# DεpS's colour jitter (`--distort_color torch`) and erasing probability (`--random_erase_prob 0.2`).
JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
ERASE_PROBABILITY = 0.2
ERASE_AREA = (0.02, 0.33)  # torchvision RandomErasing's defaults
ERASE_RATIO = (0.3, 3.3)
ERASE_ATTEMPTS = 10


def magnitude(op: str, level: int | None) -> float:
    """torchvision's value of bin `level` (of 10) for `op` (`_augmentation_space`)."""
    if level is None:
        return 0.0
    fraction = level / (BINS - 1)
    if op == "shear_x":
        return 0.3 * fraction
    if op == "rotate":
        return 30.0 * fraction
    if op in ("color", "contrast", "sharpness"):
        return 0.9 * fraction
    if op == "posterize":
        return float(8 - int(round(level / ((BINS - 1) / 4))))
    if op == "solarize":
        return 255.0 * (1.0 - fraction)
    raise ValueError(op)


SIGNED = ("shear_x", "rotate", "color", "contrast", "sharpness")


def _quantized(image: tf.Tensor) -> tf.Tensor:
    """The image rounded to 8 bits (what a PIL image holds after each operation)."""
    return tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0) / 255.0


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
    """PIL ImageEnhance: factor 0 gives `degenerate`, 1 the image, > 1 extrapolates."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _grey(image: tf.Tensor) -> tf.Tensor:
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _transform(image: tf.Tensor, matrix) -> tf.Tensor:
    """Output pixel -> input pixel (8 numbers), bilinear, black outside."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.cast(tf.stack(matrix), tf.float32)[None],
        output_shape=tf.stack([height, width]), fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")[0]


def shear_x(image, m):
    """torchvision's ShearX: `affine(shear=atan(m) degrees, center=[0, 0])`, x_in = x + m y."""
    return _transform(image, [1.0, m, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def rotate(image, degrees):
    """Counter-clockwise by `degrees` about the image centre (PIL's `rotate`)."""
    angle = degrees * math.pi / 180.0
    shape = tf.cast(tf.shape(image), tf.float32)
    cx, cy = shape[1] / 2.0, shape[0] / 2.0
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _transform(image, [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])


def color(image, m):
    return _blend(_grey(image), image, 1.0 + m)


def contrast(image, m):
    mean = tf.round(tf.reduce_mean(tf.image.rgb_to_grayscale(image)) * 255.0) / 255.0
    return _blend(tf.fill(tf.shape(image), mean), image, 1.0 + m)


def sharpness(image, m):
    """PIL's Sharpness: blend with the SMOOTH-filtered image, whose border pixels are the image's."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    rows, cols = tf.range(height), tf.range(width)
    border = tf.logical_or(tf.logical_or(rows[:, None] == 0, rows[:, None] == height - 1),
                           tf.logical_or(cols[None, :] == 0, cols[None, :] == width - 1))[:, :, None]
    degenerate = tf.where(border, image, _quantized(smooth))
    return _blend(degenerate, image, 1.0 + m)


def posterize(image, bits):
    shift = tf.cast(8 - tf.cast(bits, tf.int32), tf.uint8)
    pixels = tf.cast(tf.round(image * 255.0), tf.uint8)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(pixels, shift), shift), tf.float32) / 255.0


def solarize(image, threshold):
    """Pixels at or above `threshold` (of 255) inverted."""
    return tf.where(image * 255.0 >= threshold, 1.0 - image, image)


def auto_contrast(image, _=None):
    """PIL's `ImageOps.autocontrast`, per channel: the darkest level to 0, the brightest to 255,
    in between `int(p * scale + offset)` (truncated, as PIL's table)."""
    pixels = tf.round(image * 255.0)
    low = tf.reduce_min(pixels, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(pixels, axis=[0, 1], keepdims=True)
    scale = 255.0 / tf.maximum(high - low, 1.0)
    stretched = tf.clip_by_value(tf.floor(pixels * scale - low * scale + 1e-4), 0.0, 255.0) / 255.0
    return tf.where(high > low, stretched, image)


def equalize(image, _=None):
    """PIL's `ImageOps.equalize`, per channel: lut[i] = (step // 2 + pixels below i) // step, with
    step = (pixels - pixels of the highest level present) // 255; a channel with one level, or
    step 0, is left as it is."""
    pixels = tf.cast(tf.round(image * 255.0), tf.int32)

    def channel(values):
        flat = tf.reshape(values, [-1])
        histogram = tf.math.bincount(flat, minlength=256, maxlength=256)
        last = tf.gather(histogram, tf.reduce_max(flat))
        step = (tf.reduce_sum(histogram) - last) // 255
        below = tf.cumsum(histogram, exclusive=True)
        lut = tf.minimum((step // 2 + below) // tf.maximum(step, 1), 255)
        levels = tf.math.count_nonzero(histogram)
        return tf.where(tf.logical_or(step == 0, levels <= 1), values, tf.gather(lut, values))

    channels = [channel(pixels[:, :, c]) for c in range(3)]
    return tf.cast(tf.stack(channels, axis=-1), tf.float32) / 255.0


def invert(image, _=None):
    return 1.0 - image


OPS = {"shear_x": shear_x, "rotate": rotate, "color": color, "contrast": contrast, "sharpness": sharpness,
       "posterize": posterize, "solarize": solarize, "auto_contrast": auto_contrast, "equalize": equalize,
       "invert": invert}


NAMES = tuple(OPS)


def _policy_tables():
    """Per position of a sub-policy: each sub-policy's operation index, probability, magnitude
    and whether the magnitude takes a random sign (so one `switch_case` over the 10 operations
    serves all 25 sub-policies)."""
    tables = []
    for position in range(2):
        ops = [pairs[position] for pairs in IMAGENET_POLICY]
        tables.append((tf.constant([NAMES.index(op) for op, _, _ in ops], tf.int32),
                       tf.constant([p for _, p, _ in ops], tf.float32),
                       tf.constant([magnitude(op, level) for op, _, level in ops], tf.float32),
                       tf.constant([op in SIGNED for op, _, _ in ops])))
    return tables


def auto_augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """torchvision's `AutoAugment(IMAGENET)`: a uniformly drawn sub-policy; each of its two
    operations runs when a uniform draw is <= its probability, a signed magnitude negated with
    probability 1/2."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    policy = tf.random.stateless_uniform([], seeds[0], 0, len(IMAGENET_POLICY), dtype=tf.int32)
    draws = tf.random.stateless_uniform([2], seeds[1])
    signs = tf.where(tf.random.stateless_uniform([2], seeds[2]) < 0.5, -1.0, 1.0)
    shape = image.shape
    image = _quantized(image)
    for position, (ops, probabilities, magnitudes, signed) in enumerate(_policy_tables()):
        value = tf.gather(magnitudes, policy)
        value = tf.where(tf.gather(signed, policy), value * signs[position], value)
        run = lambda x=image, value=value, ops=ops: tf.switch_case(  # noqa: E731
            tf.gather(ops, policy), [lambda name=name: _quantized(OPS[name](x, value)) for name in NAMES])
        image = tf.cond(draws[position] <= tf.gather(probabilities, policy), run, lambda x=image: x)
        image = tf.ensure_shape(image, shape)
    return image


def color_jitter(image: tf.Tensor, seed: tf.Tensor, strengths: tuple[float, float, float, float] = JITTER
                 ) -> tf.Tensor:
    """torchvision's `ColorJitter(b, c, s, h)`: brightness, contrast and saturation factors drawn
    from [1 - x, 1 + x], a hue shift from [-h, h], applied in a random order."""
    brightness, contrast_, saturation, hue = strengths
    seeds = tf.random.experimental.stateless_split(seed, 5)
    order = tf.argsort(tf.random.stateless_uniform([4], seeds[0]))
    b = tf.random.stateless_uniform([], seeds[1], 1.0 - brightness, 1.0 + brightness)
    c = tf.random.stateless_uniform([], seeds[2], 1.0 - contrast_, 1.0 + contrast_)
    s = tf.random.stateless_uniform([], seeds[3], 1.0 - saturation, 1.0 + saturation)
    h = tf.random.stateless_uniform([], seeds[4], -hue, hue)
    adjustments = [
        lambda x: _blend(tf.zeros_like(x), x, b),
        lambda x: _blend(tf.fill(tf.shape(x), tf.reduce_mean(tf.image.rgb_to_grayscale(x))), x, c),
        lambda x: _blend(_grey(x), x, s),
        lambda x: tf.clip_by_value(tf.image.adjust_hue(x, h), 0.0, 1.0),
    ]
    for k in range(4):
        image = tf.switch_case(order[k], [lambda f=f, x=image: _quantized(f(x)) for f in adjustments])
        image = tf.ensure_shape(image, [None, None, 3])
    return image


def erase(image: tf.Tensor, seed: tf.Tensor, fill: tuple[float, float, float],
          probability: float = ERASE_PROBABILITY) -> tf.Tensor:
    """torchvision's `RandomErasing(p)` on the normalised image with value 0, i.e. the pixel
    `fill` (the normalisation mean) before normalisation: with probability `p`, the first of 10
    drawn rectangles (area in [2%, 33%] of the image, aspect ratio log-uniform in [0.3, 3.3])
    that fits is filled; none fits, nothing is."""
    seeds = tf.random.experimental.stateless_split(seed, 6)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    area = tf.cast(height * width, tf.float32)
    target = area * tf.random.stateless_uniform([ERASE_ATTEMPTS], seeds[0], *ERASE_AREA)
    ratio = tf.exp(tf.random.stateless_uniform([ERASE_ATTEMPTS], seeds[1], math.log(ERASE_RATIO[0]),
                                               math.log(ERASE_RATIO[1])))
    h = tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32)
    fits = tf.logical_and(h < height, w < width)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    h, w = h[first], w[first]
    top = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(height - h + 1, 1), dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[3], 0, tf.maximum(width - w + 1, 1), dtype=tf.int32)
    rows, cols = tf.range(height), tf.range(width)
    inside = tf.logical_and((rows[:, None] >= top) & (rows[:, None] < top + h),
                            (cols[None, :] >= left) & (cols[None, :] < left + w))[:, :, None]
    apply = tf.logical_and(tf.random.stateless_uniform([], seeds[4]) < probability, tf.reduce_any(fits))
    erased = tf.where(inside, tf.constant(fill, image.dtype), image)
    return tf.where(apply, erased, image)


def deps_imagenet_augment(image: tf.Tensor, seed: tf.Tensor, fill: tuple[float, float, float]) -> tf.Tensor:
    """AutoAugment, colour jitter, then random erasing (filled with `fill`) of a cropped and
    flipped float [0, 1] image (module docstring)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    image = color_jitter(auto_augment(image, seeds[0]), seeds[1])
    return erase(image, seeds[2], fill)


__all__ = ["IMAGENET_POLICY", "auto_augment", "color_jitter", "deps_imagenet_augment", "equalize", "erase"]
