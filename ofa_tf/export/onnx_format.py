"""ONNX export (`ofa-export --formats=...,onnx`), checked in onnxruntime.

Keras 3's own `model.export(path, format="onnx")` converts through tf2onnx on the
TensorFlow backend; tf2onnx 1.17 is the first release whose protobuf requirement
(>= 3.20, no upper bound) installs beside TensorFlow 2.21's protobuf, with onnx 1.23 and
onnxruntime 1.32 (the `onnx` extra of pyproject.toml). The ONNX model is float32, of the
same graph as the `.keras` export (with `--include_preprocessing`, the preprocessing too),
its input named `image` and its output renamed to `logits` (tf2onnx writes `Identity:0`).

The packages are optional: `check_onnx_installed` names the missing ones and the install
command in one line, before an export starts.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Sequence

import keras
import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.export.tflite import quiet_conversion
from ofa_tf.interrupts import raise_if_interrupted

ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
ONNX_EXTRA = "pip install 'ofa_tf[onnx]'"
OUTPUT_NAME = "logits"


def missing_packages(packages: Sequence[str]) -> list[str]:
    """The modules of `packages` that cannot be imported here (found without importing them)."""
    return [name for name in packages if importlib.util.find_spec(name) is None]


def check_onnx_installed(packages: Sequence[str] = ONNX_PACKAGES) -> None:
    """OfaError naming what `--formats=onnx` lacks, unless every package is installed."""
    missing = missing_packages(packages)
    if missing:
        raise OfaError(f"formats=onnx needs {', '.join(missing)}, not installed: {ONNX_EXTRA}")


def keras_to_onnx(model: keras.Model, path: str, output_name: str = OUTPUT_NAME) -> None:
    """Writes `model` as an ONNX file at `path` (a local path), its output named `output_name`."""
    import onnx

    with quiet_conversion(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Keras's tf2onnx patch probes np.object
        model.export(path, format="onnx", verbose=False)
    raise_if_interrupted()
    graph_model = onnx.load(path)
    graph = graph_model.graph
    old = graph.output[0].name
    if old != output_name:
        for node in graph.node:
            node.output[:] = [output_name if name == old else name for name in node.output]
            node.input[:] = [output_name if name == old else name for name in node.input]
        graph.output[0].name = output_name
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, path)


class ONNXClassifier:
    """Runs an ONNX classifier in onnxruntime (CPU) on batches shaped like its input."""

    def __init__(self, path: str, num_threads: int = 1):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.log_severity_level = 3  # errors only
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        detail = self.session.get_inputs()[0]
        self.input_name = detail.name
        self.input_dtype = np.uint8 if detail.type == "tensor(uint8)" else np.float32

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(images, self.input_dtype)})[0]


__all__ = ["ONNXClassifier", "ONNX_EXTRA", "ONNX_PACKAGES", "check_onnx_installed", "keras_to_onnx",
           "missing_packages"]
