"""Activation ranges for full-int8 conversion: the converter's min / max, or fitted (MSE).

TFLite's calibrator gives every activation tensor the min and max it saw on the
representative images, and int8 spreads 256 levels over that range. MobileNetV3 blocks
have heavy-tailed outputs: a project conv's range can span a hundred standard deviations
or more, so most values fall on a handful of levels. More representative images only widen
the ranges, and agreement with the float model falls as they grow (docs/deployment.md).

`"mse"` (the default) keeps the converter but replaces each range before quantisation:
1. the converter only calibrates (`_experimental_calibrate_only`): a float model whose
   activation tensors carry the min / max seen on the representative images;
2. that model runs again on the same images and each activation is histogrammed
   (`HISTOGRAM_BINS` bins between its min and max);
3. each range shrinks to the (low, high) on a grid of fractions of (min, max) that
   minimises the int8 rounding-plus-clipping error over the histogram; the model's
   outputs keep their full range (a clipped top logit would tie with the next);
4. `mlir_quantize`, the converter's own last step, quantises with those ranges.
This raises top-1 agreement with the float model over the converter's ranges (the figures:
docs/deployment.md, docs/results.md).

`"minmax"` is the converter's result, unchanged.

Either way the result is checked before it is used (`check_int8_model`): an int8 conv
multiplies by input scale × weight scale / output scale, which int8 kernels (XNNPACK's
among them) hold below `MAX_RESCALE`. Activations that reach millions break that: BN
statistics recalibrated on one or two images are the usual cause (a 1×1 feature map of one
image has zero variance, so its BN divides by sqrt(epsilon) and the next layers multiply
that), and the model would fail to load with "failed to create XNNPACK runtime". That is
an OfaError naming the layer and the likely cause instead.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from ofa_tf.errors import OfaError
from ofa_tf.export.interpreter import make_interpreter
from ofa_tf.export.options import INT8_CALIBRATIONS
from ofa_tf.native_logs import quiet_native_logs

HISTOGRAM_BINS = 2048
# Candidate range ends, as fractions of the calibrated min (low end) and max (high end).
RANGE_FRACTIONS = np.linspace(0.05, 1.0, 39)
_LEVELS = 255.0  # int8: 256 levels, 255 steps
# The largest input scale × weight scale / output scale an int8 conv / dense can requantize
# with (XNNPACK refuses a node at or over it).
MAX_RESCALE = 256.0
_RESCALING_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def check_int8_calibration(name: str) -> str:
    if name not in INT8_CALIBRATIONS:
        raise OfaError(f"int8_calibration={name!r}: expected one of {list(INT8_CALIBRATIONS)}")
    return name


def quantization_error(centers: np.ndarray, counts: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Mean squared int8 fake-quantisation error of a histogram (bin `centers`, `counts`)
    for each candidate range (`lows[i]`, `highs[i]`), as TFLite quantises: the range is
    widened to hold 0, zero point rounded to an integer in [-128, 127]."""
    lows = np.minimum(lows, 0.0)[:, None]
    highs = np.maximum(highs, 0.0)[:, None]
    scale = np.maximum(highs - lows, 1e-12) / _LEVELS
    zero_point = np.clip(np.round(-128.0 - lows / scale), -128, 127)
    levels = np.clip(np.round(centers[None] / scale) + zero_point, -128, 127)
    error = (levels - zero_point) * scale - centers[None]
    return (error * error * counts[None]).sum(1) / max(counts.sum(), 1.0)


def mse_range(counts: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The (low, high) with the least int8 error for a histogram of `counts` over
    [low, high], searched on `RANGE_FRACTIONS` of each end (both ends for signed data)."""
    edges = np.linspace(low, high, len(counts) + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    counts = counts.astype(np.float64)
    high_ends = high * RANGE_FRACTIONS
    low_ends = low * RANGE_FRACTIONS if low < 0 else np.array([low])
    lows, highs = (a.ravel() for a in np.meshgrid(low_ends, high_ends))
    best = int(np.argmin(quantization_error(centers, counts, lows, highs)))
    return float(lows[best]), float(highs[best])


def _activation_ranges(model) -> dict[int, tuple[float, float]]:
    """{tensor index: (min, max)} of the calibrated, non-constant tensors of subgraph 0."""
    graph = model.subgraphs[0]
    ranges = {}
    for index, tensor in enumerate(graph.tensors):
        q = tensor.quantization
        constant = tensor.buffer and model.buffers[tensor.buffer].data is not None
        if q is None or q.min is None or q.max is None or not len(q.min) or constant:
            continue
        ranges[index] = (float(q.min[0]), float(q.max[0]))
    return ranges


def _histograms(calibrated: bytes, ranges: dict[int, tuple[float, float]],
                representative: Callable[[], Iterator[list[np.ndarray]]]) -> dict[int, np.ndarray]:
    """Per-tensor histograms of the float model's activations on the representative images."""
    with warnings.catch_warnings():  # LiteRT warns that keeping every tensor is for debugging: it is
        warnings.simplefilter("ignore")
        interpreter = make_interpreter(calibrated, op_resolver="builtin", preserve_all_tensors=True)
    input_index, input_dtype = (interpreter.get_input_details()[0][key] for key in ("index", "dtype"))
    histograms = {index: np.zeros(HISTOGRAM_BINS, np.int64) for index in ranges}
    shape = None
    for sample in representative():
        image = np.asarray(sample[0], input_dtype)  # float32 images, or raw uint8 (preprocessing inside)
        if image.shape != shape:
            interpreter.resize_tensor_input(input_index, image.shape)
            interpreter.allocate_tensors()
            shape = image.shape
        interpreter.set_tensor(input_index, image)
        interpreter.invoke()
        for index, (low, high) in ranges.items():
            if high > low:
                values = np.clip(interpreter.get_tensor(index).ravel(), low, high)
                histograms[index] += np.histogram(values, HISTOGRAM_BINS, (low, high))[0]
    return histograms


def fit_ranges(calibrated: bytes, representative: Callable[[], Iterator[list[np.ndarray]]]) -> bytes:
    """The calibrated model with each activation range (except the outputs') replaced by
    its `mse_range` on the representative images."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    ranges = _activation_ranges(model)
    for output in model.subgraphs[0].outputs:
        ranges.pop(int(output), None)
    histograms = _histograms(calibrated, ranges, representative)
    for index, (low, high) in ranges.items():
        if high <= low or not histograms[index].any():
            continue
        fitted_low, fitted_high = mse_range(histograms[index], low, high)
        quantization = model.subgraphs[0].tensors[index].quantization
        quantization.min = np.array([fitted_low], np.float32)
        quantization.max = np.array([fitted_high], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _oversized_rescale(tflite_bytes: bytes) -> tuple[str, float, float] | None:
    """(layer, rescale, input range) of the first int8 conv / dense whose input scale ×
    weight scale / output scale reaches `MAX_RESCALE`, or None when every one is below it."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    codes = {getattr(schema.BuiltinOperator, name): name for name in _RESCALING_OPS}
    graph = model.subgraphs[0]

    def scales(index: int) -> np.ndarray | None:
        q = graph.tensors[index].quantization if index >= 0 else None
        return None if q is None or q.scale is None or not len(q.scale) else np.asarray(q.scale, np.float64)

    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) not in codes or len(op.inputs) < 2:
            continue
        image, weights, output = scales(op.inputs[0]), scales(op.inputs[1]), scales(op.outputs[0])
        if image is None or weights is None or output is None:
            continue
        rescale = float((image[0] * weights / output[0]).max())
        if not rescale < MAX_RESCALE:
            return _layer_name(graph.tensors[op.outputs[0]].name), rescale, float(image[0] * _LEVELS)
    return None


def _layer_name(tensor_name: bytes | str) -> str:
    """The Keras layer of a converted tensor: its name lists the fused ops
    (`model/layer/Relu6;model/layer/BiasAdd;...`); the conv's (or else the first) layer."""
    name = tensor_name.decode() if isinstance(tensor_name, bytes) else str(tensor_name)
    parts = [part.split("/") for part in name.split(";") if "/" in part]
    for path in parts:
        if any(op in path[-1].lower() for op in ("conv", "depthwise", "matmul")):
            return path[-2]
    return parts[0][-2] if parts else name


def check_int8_model(tflite_bytes: bytes, mode: str = "int8") -> None:
    """The int8 model can run: every conv / dense requantizes within `MAX_RESCALE` and the
    interpreter prepares it. Otherwise an OfaError (one line, worded for the quantize `mode`
    that made it: int8 or qat) with the layer and the cause."""
    oversized = _oversized_rescale(tflite_bytes)
    if oversized is not None:
        layer, rescale, span = oversized
        raise OfaError(f"quantize={mode}: activations reach {span:.3g} before layer {layer} (its int8 rescale, input x "
                       f"weight / output scale, is {rescale:.3g}; int8 kernels need < {MAX_RESCALE:g}): the subnet's "
                       "BN statistics are degenerate, usually from too few BN-calibration images "
                       "(bn_calibration_images: use more, or 0 to keep the checkpoint's)")
    interpreter = make_interpreter(tflite_bytes)
    try:
        with quiet_native_logs():  # (XNNPACK announces its delegate)
            interpreter.allocate_tensors()
    except RuntimeError as e:
        raise OfaError(f"quantize={mode}: the converted model does not load in TFLite's interpreter "
                       f"({' '.join(str(e).split())[:160]})") from None


def convert_int8(converter: "tf.lite.TFLiteConverter", representative: Callable[[], Iterator[list[np.ndarray]]],
                 calibration: str = "mse") -> bytes:
    """Full-int8 `.tflite` bytes from a converter set up for int8 with `representative`
    (`configure_converter`), its activation ranges chosen by `calibration` (module docstring),
    checked to run (`check_int8_model`)."""
    if check_int8_calibration(calibration) == "minmax":
        result = converter.convert()
    else:
        from tensorflow.lite.python.convert import mlir_quantize

        # lite.py's own switch: stop after calibration and return the float model with ranges
        converter._experimental_calibrate_only = True
        calibrated = converter.convert()
        result = mlir_quantize(fit_ranges(calibrated, representative), input_data_type=tf.float32,
                               output_data_type=tf.float32)
    check_int8_model(result)
    return result


__all__ = ["HISTOGRAM_BINS", "INT8_CALIBRATIONS", "MAX_RESCALE", "RANGE_FRACTIONS", "check_int8_calibration",
           "check_int8_model", "convert_int8", "fit_ranges", "mse_range", "quantization_error"]
