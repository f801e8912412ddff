"""Float16 weights, with the few layers that cannot take them kept in float32.

TFLite's float16 mode stores every float weight as float16 behind a DEQUANTIZE op, so the
model computes in float32 from weights rounded by up to 2^-11 of their size. Almost all of
that rounding is harmless, but one early layer can carry nearly all of the error (a small
depthwise conv whose folded BN scales are large), and keeping that one layer's weights in
float32, a few hundred bytes, removes most of it (docs/deployment.md).

`fit_float16` finds such layers on images:
1. float32 and float16 are converted from the same SavedModel (`keras_to_float16`), and
   every float16 weight is matched to its float32 original (same tensor name, and exactly
   its float16 rounding);
2. if the float16 model is further than its target (`margin` x `max_abs_diff`, below) from
   the float32 one on the images (max |logit difference|), it measures each layer's own
   share: the model with only that layer in float16, on the `SENSITIVITY_IMAGES` images
   float16 got most wrong;
3. it keeps the most sensitive layers in float32, as few as reach the target on all
   the images (doubling, then bisecting, the number kept).
A kept layer's weights go back into the float16 flatbuffer as float32 constants and its
DEQUANTIZE ops are dropped; everything else stays as the converter wrote it.

The check images stand in for unseen ones, and the largest errors come from rare inputs, so
the fit needs thousands of images and a margin: it brings the error on the check images
within `FLOAT16_MARGIN` x the bound. The worst case over more images only grows, and a
few hundred check images undershot the unseen worst case by more than thousands did
(docs/deployment.md); the margin covers what thousands still miss. The images are
streamed in batches (`ImageBatches`), so a large resolution needs no array of all of them.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Iterable, Sequence

import keras
import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.export.graph import fold_gate_scales
from ofa_tf.export.options import FLOAT16_CHECK_IMAGES, FLOAT16_MAX_DIFF  # noqa: F401 (re-exported)
from ofa_tf.export.tflite import TFLiteClassifier, saved_model_to_tflite, scratch_saved_model
from ofa_tf.export.xnnpack import for_xnnpack
from ofa_tf.interrupts import raise_if_interrupted

FLOAT16_MARGIN = 0.5  # fit to this share of the bound on the check images, for unseen ones
SENSITIVITY_IMAGES = 64  # images each layer's share is measured on
_BATCH = 100

# A callable that yields the check images afresh on each call, in the same order, as float32
# batches of the model's normalised input; the fit passes over them once per candidate model.
ImageBatches = Callable[[], Iterable[np.ndarray]]


@dataclasses.dataclass(frozen=True)
class WeightLayer:
    """One op's float16 weights: the op reading them and the DEQUANTIZE ops feeding it."""

    op_index: int
    name: str
    dequantize_ops: tuple[int, ...]
    num_weights: int


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    return schema, flatbuffer_utils


class Float16Weights:
    """A float16 model next to its float32 twin: which ops read float16 weights, and the
    model with any of them given their float32 weights back (`with_float32`)."""

    def __init__(self, float16_model: bytes, float32_model: bytes):
        schema, flatbuffer_utils = _schema()
        self._schema, self._utils = schema, flatbuffer_utils
        self._model = flatbuffer_utils.convert_bytearray_to_object(bytearray(float16_model))
        twin = flatbuffer_utils.convert_bytearray_to_object(bytearray(float32_model))
        originals: dict[bytes, list[np.ndarray]] = {}
        for tensor in twin.subgraphs[0].tensors:
            data = twin.buffers[tensor.buffer].data
            if data is not None and tensor.type == schema.TensorType.FLOAT32:
                originals.setdefault(tensor.name, []).append(np.frombuffer(bytes(data), np.float32))

        graph = self._model.subgraphs[0]
        dequantize = {i for i, c in enumerate(self._model.operatorCodes)
                      if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE}
        readers: dict[int, int] = {}
        for index, op in enumerate(graph.operators):
            for tensor in op.inputs:
                readers.setdefault(int(tensor), index)
        self._float32: dict[int, np.ndarray] = {}  # DEQUANTIZE op -> its weights in float32
        by_reader: dict[int, list[int]] = {}
        for index, op in enumerate(graph.operators):
            if op.opcodeIndex not in dequantize:
                continue
            source = graph.tensors[op.inputs[0]]
            data = self._model.buffers[source.buffer].data
            if source.type != schema.TensorType.FLOAT16 or data is None:
                continue
            rounded = np.frombuffer(bytes(data), np.float16)
            match = next((a for a in originals.get(source.name, [])
                          if a.shape == rounded.shape and np.array_equal(a.astype(np.float16), rounded)), None)
            reader = readers.get(int(op.outputs[0]))
            if match is None or reader is None:
                continue  # no float32 twin (e.g. an exact scalar): it stays float16
            self._float32[index] = match
            by_reader.setdefault(reader, []).append(index)
        self.layers = [
            WeightLayer(reader, graph.tensors[graph.operators[reader].outputs[0]].name.decode().split(";")[0],
                        tuple(ops), sum(self._float32[i].size for i in ops))
            for reader, ops in sorted(by_reader.items())]

    def with_float32(self, layers: Sequence[WeightLayer]) -> bytes:
        """The float16 model with `layers`' weights stored as float32 constants."""
        model = copy.deepcopy(self._model)
        graph = model.subgraphs[0]
        dropped = set()
        for layer in layers:
            for index in layer.dequantize_ops:
                op = graph.operators[index]
                buffer = self._schema.BufferT()
                buffer.data = np.frombuffer(self._float32[index].tobytes(), np.uint8)
                model.buffers.append(buffer)
                graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
                model.buffers[graph.tensors[op.inputs[0]].buffer].data = None  # the float16 copy, now unread
                dropped.add(index)
        sources = {int(graph.operators[i].inputs[0]) for i in dropped}
        graph.operators = [op for i, op in enumerate(graph.operators) if i not in dropped]
        _remove_tensors(model, sources)
        return bytes(self._utils.convert_object_to_bytearray(model))


def _remove_tensors(model: Any, candidates: set[int]) -> None:
    """Removes the tensors of `candidates` that nothing reads or writes any more (the float16
    copies of kept weights) from subgraph 0, renumbering every reference to the others."""
    graph = model.subgraphs[0]
    used = {int(t) for op in graph.operators for t in [*op.inputs, *op.outputs]}
    used |= {int(t) for t in [*graph.inputs, *graph.outputs]}
    removed = candidates - used
    if not removed:
        return
    kept = [i for i in range(len(graph.tensors)) if i not in removed]
    renumber = {old: new for new, old in enumerate(kept)}
    graph.tensors = [graph.tensors[i] for i in kept]

    def remap(indices):
        return [renumber[int(t)] if t >= 0 else int(t) for t in indices]  # -1: an omitted optional input
    for op in graph.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == 0:
            for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
                entry.tensorIndex = renumber[entry.tensorIndex]


def image_batches(images: np.ndarray | ImageBatches) -> ImageBatches:
    """`images` as `ImageBatches`: an array is cut into batches; a callable is returned as is."""
    if callable(images):
        return images
    array = np.asarray(images, np.float32)
    return lambda: (array[i:i + _BATCH] for i in range(0, len(array), _BATCH))


def _max_diff(model: bytes, batches: ImageBatches, reference: np.ndarray, stop_above: float = np.inf) -> float:
    """Max |logit difference| of `model` from `reference` over the batches; stops at the first
    batch past `stop_above` (a candidate that misses the bound needs no exact figure)."""
    classifier = TFLiteClassifier(model)
    worst, seen = 0.0, 0
    for batch in batches():
        raise_if_interrupted()
        outputs = classifier(batch)
        worst = max(worst, float(np.abs(outputs - reference[seen:seen + len(outputs)]).max()))
        seen += len(outputs)
        if worst > stop_above:
            break
    return worst


def _first_pass(float16_model: bytes, float32_model: bytes, batches: ImageBatches
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 outputs and plain float16's per-image error on every check image, and the
    `SENSITIVITY_IMAGES` images (with their float32 outputs) float16 got most wrong."""
    float32_net, float16_net = TFLiteClassifier(float32_model), TFLiteClassifier(float16_model)
    references, errors = [], []
    worst_images = worst_reference = worst_errors = None
    for batch in batches():
        raise_if_interrupted()
        batch = np.asarray(batch, np.float32)
        reference = float32_net(batch)
        error = np.abs(float16_net(batch) - reference).max(axis=1)
        references.append(reference)
        errors.append(error)
        if worst_images is None:
            worst_images, worst_reference, worst_errors = batch, reference, error
        else:
            worst_images = np.concatenate([worst_images, batch])
            worst_reference = np.concatenate([worst_reference, reference])
            worst_errors = np.concatenate([worst_errors, error])
        keep = np.argsort(-worst_errors, kind="stable")[:SENSITIVITY_IMAGES]
        worst_images, worst_reference, worst_errors = worst_images[keep], worst_reference[keep], worst_errors[keep]
    if not references:
        raise OfaError("float16 check: the check images are empty")
    return np.concatenate(references), np.concatenate(errors), worst_images, worst_reference


def fit_float16(float16_model: bytes, float32_model: bytes, images: np.ndarray | ImageBatches,
                max_abs_diff: float, verbose: int = 0, margin: float = FLOAT16_MARGIN
                ) -> tuple[bytes, dict[str, Any]]:
    """The float16 model with as few layers kept in float32 as bring its max |logit
    difference| from `float32_model` on `images` (an array, or `ImageBatches`) within
    `margin` x `max_abs_diff` (module docstring); returns (model bytes, a report for the
    metadata)."""
    if not max_abs_diff > 0:
        raise OfaError(f"float16_max_diff={max_abs_diff}: expected a positive bound (0 turns the check off)")
    if not 0 < margin <= 1:
        raise OfaError(f"float16 margin {margin}: expected a share of the bound in (0, 1]")
    target = max_abs_diff * margin
    batches = image_batches(images)
    reference, errors, worst, worst_reference = _first_pass(float16_model, float32_model, batches)
    report: dict[str, Any] = {"max_abs_diff_bound": float(max_abs_diff), "fit_target": float(target),
                              "check_images": len(reference), "plain_float16_max_abs_diff": float(errors.max()),
                              "float32_layers": [], "float32_weights": 0}
    if errors.max() <= target:
        return float16_model, {**report, "max_abs_diff": float(errors.max())}

    weights = Float16Weights(float16_model, float32_model)
    if not weights.layers:
        raise OfaError(f"float16: max |logit diff| {errors.max():.3g} > {target:.3g} (float16_max_diff="
                       f"{max_abs_diff} x margin {margin}), and no float16 weight could be matched to its float32 "
                       "original to keep")
    worst_batches = image_batches(worst)
    bar = keras.utils.Progbar(len(weights.layers), unit_name="layer") if verbose else None
    share = {}
    for layer in weights.layers:  # the model with only `layer` in float16
        others = [other for other in weights.layers if other is not layer]
        share[layer.op_index] = _max_diff(weights.with_float32(others), worst_batches, worst_reference)
        if bar is not None:
            bar.add(1)
    ranked = sorted(weights.layers, key=lambda layer: -share[layer.op_index])

    checked: dict[int, tuple[bytes, float]] = {}

    def keep(count: int) -> tuple[bytes, float]:
        if count not in checked:
            model = weights.with_float32(ranked[:count])
            checked[count] = (model, _max_diff(model, batches, reference, stop_above=target))
            if verbose:
                verdict = "meets" if checked[count][1] <= target else "misses"
                print(f"float16: {count} of {len(ranked)} layers float32 {verdict} the target {target:.4g} "
                      f"(max |logit diff| {'' if verdict == 'meets' else '>= '}{checked[count][1]:.4g})", flush=True)
        return checked[count]

    low, high = 0, 1  # keep(low) misses the bound; find the smallest `high` that meets it
    while high < len(ranked) and keep(high)[1] > target:
        low, high = high, min(2 * high, len(ranked))
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if keep(middle)[1] <= target else (middle, high)
    model, diff = keep(high)
    if diff > target:  # every layer float32 and still off: the bound is below float32's own noise
        raise OfaError(f"float16_max_diff={max_abs_diff}: unreachable; with every float16 weight kept in float32 "
                       f"the model is still {diff:.3g} from float32 (fit target {target:.3g})")
    kept = ranked[:high]
    return model, {**report, "max_abs_diff": diff, "float32_layers": [layer.name for layer in kept],
                   "float32_weights": int(sum(layer.num_weights for layer in kept))}


def keras_to_float16(model: keras.Model, images: np.ndarray | ImageBatches, max_abs_diff: float,
                     verbose: int = 0, xnnpack: bool = True) -> tuple[bytes, dict[str, Any]]:
    """Float16 `.tflite` bytes of a Keras 3 model (gates folded) within `FLOAT16_MARGIN` x
    `max_abs_diff` of its float32 conversion on `images`, and the report of `fit_float16`
    (with `xnnpack`, the graph rewritten for XNNPACK first, as `keras_to_tflite` does)."""
    folded = fold_gate_scales(model)
    with scratch_saved_model(for_xnnpack(folded, "float16") if xnnpack else folded) as directory:
        float32_model = saved_model_to_tflite(directory, "none")
        float16_model = saved_model_to_tflite(directory, "float16")
    return fit_float16(float16_model, float32_model, images, max_abs_diff, verbose)
