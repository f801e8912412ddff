"""A self-describing `.tflite`: labels and the input contract inside the file, tensors named.

An app that gets only the `.tflite` file must still know what the model's outputs mean
and how to prepare its input. TFLite's flatbuffer has a place for that: `Model.metadata`, a
list of (name, buffer) entries that the interpreter ignores. `describe` writes two:

  `ofa_tf`  UTF-8 JSON: the input (name, dtype, shape, layout, normalisation, whether the
            preprocessing is inside the model), the output, `class_names`, the arch, the
            quantisation mode and the ofa_tf metadata format version;
  `labels`  the class names, one per line (UTF-8), for readers that want only them.

TensorFlow's own schema module (`tensorflow.lite.python.schema_py_generated`, through
`tensorflow.lite.tools.flatbuffer_utils`) reads and writes the flatbuffer. TFLite Support's
standard `TFLITE_METADATA` entry needs the `tflite-support` package, whose last release
pins protobuf < 4 and does not install beside TensorFlow 2.21; so the entries are ofa_tf's
own, and `read_description` reads them back.

`describe` also names the graph's input and output tensors and signature keys `image`
and `logits` (the converter writes `serving_default_image:0` and `StatefulPartitionedCall:0`,
and the signature's output key `output_0`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ofa_tf import io
from ofa_tf.errors import OfaError

DESCRIPTION_ENTRY = "ofa_tf"
LABELS_ENTRY = "labels"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def _model_object(model: bytes | str):
    from tensorflow.lite.tools import flatbuffer_utils

    data = io.read_bytes(model) if isinstance(model, str) else model
    try:
        return flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    except Exception as e:  # noqa: BLE001 - a damaged flatbuffer raises anything from struct to IndexError
        name = model if isinstance(model, str) else "model bytes"
        raise OfaError(f"{name}: not a readable TFLite flatbuffer ({type(e).__name__})") from None


def _name_io(model, input_name: str, output_name: str) -> None:
    """Names subgraph 0's only input and output tensors and its signature keys."""
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise OfaError(f"expected a model with one input and one output, got {len(graph.inputs)} and "
                       f"{len(graph.outputs)}")
    graph.tensors[graph.inputs[0]].name = input_name.encode()
    graph.tensors[graph.outputs[0]].name = output_name.encode()
    for signature in model.signatureDefs or []:
        for mapping, name in ((signature.inputs or [], input_name), (signature.outputs or [], output_name)):
            if len(mapping) == 1:
                mapping[0].name = name.encode()


def describe(tflite_bytes: bytes, description: dict[str, Any], class_names: list[str],
             input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> bytes:
    """`tflite_bytes` with the `ofa_tf` (JSON of `description`) and `labels` metadata entries
    (replacing earlier ones of those names) and its input / output named (module docstring)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    if any("\n" in name for name in class_names):
        raise OfaError("class names hold a line break: they cannot be written one per line")
    model = _model_object(tflite_bytes)
    _name_io(model, input_name, output_name)
    entries = {DESCRIPTION_ENTRY: json.dumps(description, sort_keys=True).encode(),
               LABELS_ENTRY: "\n".join(class_names).encode()}
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in entries]
    for name, payload in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name.encode()
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(model: bytes | str) -> dict[str, bytes]:
    """{name: payload} of every metadata entry of a `.tflite` model (path or bytes)."""
    graph = _model_object(model)
    found = {}
    for entry in graph.metadata or []:
        data = graph.buffers[entry.buffer].data
        found[entry.name.decode()] = b"" if data is None else bytes(np.asarray(data, np.uint8))
    return found


def read_description(model: bytes | str) -> dict[str, Any]:
    """The `ofa_tf` JSON entry of an exported model, with `class_names` from its `labels`
    entry. OfaError when the model carries neither (not written by `describe`)."""
    entries = read_metadata(model)
    name = model if isinstance(model, str) else "model bytes"
    if DESCRIPTION_ENTRY not in entries:
        raise OfaError(f"{name}: no {DESCRIPTION_ENTRY!r} metadata entry (not exported by ofa-export)")
    description = json.loads(entries[DESCRIPTION_ENTRY].decode())
    labels = entries.get(LABELS_ENTRY)
    description["class_names"] = labels.decode().split("\n") if labels else []
    return description


__all__ = ["DESCRIPTION_ENTRY", "INPUT_NAME", "LABELS_ENTRY", "OUTPUT_NAME", "describe", "read_description",
           "read_metadata"]
