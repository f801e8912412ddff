"""Keras model -> `.tflite` bytes in every quantisation mode, and LiteRT inference.

Conversion goes Keras 3 `model.export(format="tf_saved_model")` -> `TFLiteConverter.
from_saved_model`, the path measured to be exact (float32 within ~1e-5);
`from_concrete_functions` wrote NaN models there. Every mode keeps float32 input and
output tensors (int8 models quantise / dequantise at their edges), so a caller feeds
all of them the same normalised images. For float16 the squeeze-excite gates' 1/6 is
folded into their convs first (`ofa_tf.export.graph.fold_gate_scales`): kept as a float16
constant it caused half or more of a float16 model's error. The other modes convert the
graph as it is (folding changed neither float32 nor int8 results).
`ofa_tf.export.float16.keras_to_float16` also keeps the few layers whose float16 weights move
the logits most in float32, as few as meet a bound on images. Every mode but QAT also
converts the graph rewritten for XNNPACK, LiteRT's default CPU kernels
(`ofa_tf.export.xnnpack`: depthwise kernels over 25 taps in strips, int8 hard-swish in
ops XNNPACK runs), without which the int8 model of a 7x7-kernel subnet was several
times slower than its float32 one.

Inference runs on the LiteRT interpreter (`ofa_tf.export.interpreter`).

Writing a SavedModel and converting it are long calls into TensorFlow's runtime that a
Ctrl-C / SIGTERM must not unwind from the middle of; each is followed by
`raise_if_interrupted()`, so a stopped export ends as soon as the call returns (and the
scratch SavedModel is removed on the way out). Accuracy comparisons check between batches.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from typing import Callable, Iterable, Iterator

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ofa_tf.errors import OfaError
from ofa_tf.evaluation import inference_logits
from ofa_tf.export.calibration import convert_int8
from ofa_tf.export.graph import fold_gate_scales
from ofa_tf.export.interpreter import make_interpreter
from ofa_tf.export.options import QUANTIZE_MODES
from ofa_tf.export.xnnpack import for_xnnpack
from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.native_logs import quiet_native_logs

# Modes that need training images: a representative set (int8) or fine-tuning data (qat).
MODES_NEEDING_DATA = ("int8", "qat")


def check_quantize(mode: str) -> str:
    if mode not in QUANTIZE_MODES:
        raise OfaError(f"quantize={mode!r}: expected one of {list(QUANTIZE_MODES)}")
    return mode


def configure_converter(converter: "tf.lite.TFLiteConverter", mode: str,
                        representative: Callable[[], Iterator[list[np.ndarray]]] | None = None) -> None:
    """Sets the converter options of `mode` (`qat` models carry their own ranges)."""
    check_quantize(mode)
    if mode == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None:
            raise OfaError("quantize=int8: needs a representative dataset (training images)")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


@contextlib.contextmanager
def quiet_conversion():
    """Keeps SavedModel writing / conversion chatter (graph dumps on stdout, absl INFO lines
    on stderr) out of a tool's output."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), quiet_native_logs():
            yield
    finally:
        logging.set_verbosity(verbosity)


def saved_model_to_tflite(saved_model_dir: str, mode: str = "none",
                          representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
                          int8_calibration: str = "mse") -> bytes:
    """`.tflite` bytes of a SavedModel; full-int8 ranges by `int8_calibration`
    (ofa_tf/export/calibration.py)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    configure_converter(converter, mode, representative)
    with quiet_conversion():
        if mode == "int8":
            converted = convert_int8(converter, representative, int8_calibration)
        else:
            converted = converter.convert()
    raise_if_interrupted()
    return converted


def export_saved_model(model: keras.Model, directory: str) -> None:
    """Keras 3 inference SavedModel (signature `serving_default`), quietly."""
    with quiet_conversion():
        model.export(directory, format="tf_saved_model", verbose=False)
    raise_if_interrupted()


@contextlib.contextmanager
def scratch_saved_model(model: keras.Model) -> Iterator[str]:
    """`model` exported to a temporary SavedModel directory, removed afterwards."""
    directory = tempfile.mkdtemp(prefix="ofa_tf_export_")
    try:
        export_saved_model(model, directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def keras_to_tflite(model: keras.Model, mode: str = "none",
                    representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
                    int8_calibration: str = "mse", xnnpack: bool = True) -> bytes:
    """`.tflite` bytes of a Keras 3 model (`mode` in none/float16/dynamic/int8); float16
    models get their squeeze-excite gates folded first, and with `xnnpack` the graph is
    rewritten for XNNPACK's fast kernels (module docstring; False: converted as it is)."""
    if check_quantize(mode) == "qat":
        raise OfaError("quantize=qat: use ofa_tf.export.qat (the model must be fine-tuned first)")
    model = fold_gate_scales(model) if mode == "float16" else model
    with scratch_saved_model(for_xnnpack(model, mode) if xnnpack else model) as directory:
        return saved_model_to_tflite(directory, mode, representative, int8_calibration)


def representative_dataset(batches: Iterable, num_images: int) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter `representative_dataset`: `num_images` single images from `batches`
    (arrays or (images, labels) tuples) of the same data the model sees: normalised float32
    images, or raw uint8 ones for a model with the preprocessing inside."""
    images: list[np.ndarray] = []
    for batch in batches:
        batch = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch)
        batch = batch if batch.dtype == np.uint8 else batch.astype(np.float32)
        images.extend(batch[: num_images - len(images)])
        if len(images) >= num_images:
            break
    if not images:
        raise OfaError("representative dataset: the data yielded no images")

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None]]
    return generate


class TFLiteClassifier:
    """Runs a `.tflite` classifier on batches shaped like its input: normalised float32
    images, or raw uint8 ones for a model with the preprocessing inside.

    The input is resized whenever a batch's shape changes (the exported models have a
    dynamic batch; with the preprocessing inside, any image size).
    """

    def __init__(self, model: str | bytes, num_threads: int = 1, op_resolver: str = "xnnpack"):
        self.interpreter = make_interpreter(model, num_threads, op_resolver)
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._shape = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, self._input["dtype"])
        if self._shape != images.shape:
            with quiet_native_logs():
                self.interpreter.resize_tensor_input(self._input["index"], list(images.shape))
                self.interpreter.allocate_tensors()
            self._shape = images.shape
        self.interpreter.set_tensor(self._input["index"], images)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"]).copy()


def compare_on(keras_model: keras.Model, tflite_model: Callable[[np.ndarray], np.ndarray], batches: Iterable,
               name: str = "tflite") -> dict[str, float]:
    """Accuracy of both models, their top-1 agreement and max |logit difference| on (images,
    labels) batches: the before/after-conversion figures of an export. `tflite_model` is
    any callable from images to logits (an ONNX model's too: `name` names its accuracy)."""
    right_keras = right_tflite = agree = total = 0
    max_diff = 0.0
    for images, labels in batches:
        raise_if_interrupted()
        images, labels = np.asarray(images), np.asarray(labels)
        a = inference_logits(keras_model, tf.convert_to_tensor(images)).numpy()
        b = tflite_model(images)
        pa, pb = a.argmax(-1), b.argmax(-1)
        right_keras += int((pa == labels).sum())
        right_tflite += int((pb == labels).sum())
        agree += int((pa == pb).sum())
        total += len(labels)
        max_diff = max(max_diff, float(np.abs(a - b).max()))
    total = max(total, 1)
    return {"keras_accuracy": right_keras / total, f"{name}_accuracy": right_tflite / total,
            "top1_agreement": agree / total, "max_abs_logit_diff": max_diff, "num_images": total}
