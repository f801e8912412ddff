"""Deployment: a trained run's subnet as `.tflite` (float32, float16, dynamic-range, int8,
QAT int8), `.keras` and SavedModel, with a metadata JSON (docs/deployment.md)."""

from ofa_tf.export.exporter import FORMATS, ExportOptions, check_request, export_subnet, output_paths
from ofa_tf.export.tflite import (MODES_NEEDING_DATA, OP_RESOLVERS, QUANTIZE_MODES, TFLiteClassifier, compare_on,
                                  keras_to_tflite, make_interpreter, representative_dataset)

__all__ = ["ExportOptions", "FORMATS", "MODES_NEEDING_DATA", "OP_RESOLVERS", "QUANTIZE_MODES", "TFLiteClassifier",
           "check_request", "compare_on", "export_subnet", "keras_to_tflite", "make_interpreter", "output_paths",
           "representative_dataset"]
