"""The evaluation preprocessing inside the exported graph (`ofa-export --include_preprocessing`).

Without it an app must repeat ofa_tf's input pipeline exactly: pixels / 255, resize to the
subnet's resolution (bilinear, as `tf.image.resize`), ImageNet-style runs first keep the
centre square of side shorter x R / ceil(R / 0.875), then `(x - mean) / std`. Any slip
(another resize, 0-255 input, no normalisation) costs accuracy silently. With it the
model takes raw uint8 RGB images of any size, `[N, H, W, 3]` (grayscale repeated to RGB by
the app), and runs those steps itself: `RawImagePreprocessing` does what
`ofa_tf.data.make_pipeline` does to evaluation images, in the same TensorFlow ops, so
converted models reproduce the Keras pipeline's predictions.

`raw_batches` gives a split's images in that form (uint8 RGB at their stored size), for
the representative set of an int8 export and for checking the exported model.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.data.decode import EVAL_CROP, PIXELS, decode_rgb, read


@keras.saving.register_keras_serializable(package="ofa_tf")
class RawImagePreprocessing(keras.layers.Layer):
    """uint8 RGB `[N, H, W, 3]` -> the normalised float32 `[N, R, R, 3]` a subnet takes
    (module docstring). `centre_crop`: ImageNet-style evaluation (the run's augmentation
    is `imagenet`)."""

    def __init__(self, resolution: int, mean: Sequence[float], std: Sequence[float], centre_crop: bool = False,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.resolution = int(resolution)
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.centre_crop = bool(centre_crop)

    def call(self, images):
        size = self.resolution
        if self.centre_crop:
            shape = tf.shape(images)
            height, width = shape[1], shape[2]
            shorter = tf.cast(tf.minimum(height, width), tf.float32)
            side = tf.cast(tf.maximum(tf.round(shorter * size / np.ceil(size / EVAL_CROP)), 1.0), tf.int32)
            images = images[:, (height - side) // 2: (height - side) // 2 + side,
                            (width - side) // 2: (width - side) // 2 + side]
        x = tf.cast(images, tf.float32) * (1.0 / 255.0)
        x = tf.image.resize(x, [size, size])
        return (x - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.resolution, self.resolution, 3)

    def get_config(self):
        return {**super().get_config(), "resolution": self.resolution, "mean": self.mean, "std": self.std,
                "centre_crop": self.centre_crop}


def with_preprocessing(subnet: keras.Model, resolution: int, normalization: dict[str, Sequence[float]],
                       centre_crop: bool = False) -> keras.Model:
    """`subnet` behind `RawImagePreprocessing`: input `image`, uint8 `[N, H, W, 3]`.

    One flat functional model (the subnet's layers copied, with its weights, after the
    preprocessing layer), not the subnet nested as a layer: the export's graph rewrites
    (`ofa_tf.export.xnnpack`, `fold_gate_scales`) see every layer."""
    image = keras.Input((None, None, 3), dtype="uint8", name="image")
    normalized = RawImagePreprocessing(resolution, normalization["mean"], normalization["std"], centre_crop,
                                       name="preprocessing")(image)
    # what `keras.models.clone_model` does, onto a tensor that is not an Input (clone_model
    # would make it the new model's input)
    logits = subnet._run_through_graph(normalized, operation_fn=lambda layer: layer.__class__.from_config(
        layer.get_config()))
    model = keras.Model(image, logits, name=f"{subnet.name}_with_preprocessing")
    for layer in subnet.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return model


def _rgb_uint8(image: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:  # pixel sources hold uint8 (`ofa_tf.data` checks them on load)
        image = tf.cast(image, tf.uint8)
    return tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image


def raw_batches(split: tf.data.Dataset, encoding: str = PIXELS, batch_size: int = 100
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(uint8 RGB images at their stored size, int32 labels) of `split`, in order: pixel
    images in batches of `batch_size` when they share a size, decoded files one at a time
    (their sizes differ); images that do not decode are left out."""
    if encoding == PIXELS:
        dataset = split.map(lambda image, label: (_rgb_uint8(image), tf.cast(label, tf.int32)))
        shapes = dataset.element_spec[0].shape
        batch = batch_size if shapes.is_fully_defined() else 1
        for images, labels in dataset.batch(batch):
            yield images.numpy(), labels.numpy()
        return
    for data, label in split:
        try:
            image = decode_rgb(read(data, encoding))
        except tf.errors.OpError:
            continue
        yield image.numpy()[None], np.asarray([label.numpy()], np.int32)


__all__ = ["RawImagePreprocessing", "raw_batches", "with_preprocessing"]
