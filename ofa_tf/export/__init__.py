"""Deployment: a trained run's subnet as `.tflite` (float32, float16, dynamic-range, int8,
QAT int8), `.keras` and SavedModel, with a metadata JSON (docs/deployment.md)."""

from ofa_tf.export.calibration import INT8_CALIBRATIONS
from ofa_tf.export.exporter import FORMATS, ExportOptions, check_request, export_subnet, output_paths
from ofa_tf.export.float16 import FLOAT16_MAX_DIFF, fit_float16, keras_to_float16
from ofa_tf.export.graph import fold_gate_scales
from ofa_tf.export.interpreter import OP_RESOLVERS, make_interpreter
from ofa_tf.export.tflite import (MODES_NEEDING_DATA, QUANTIZE_MODES, TFLiteClassifier, compare_on, keras_to_tflite,
                                  representative_dataset)

__all__ = ["ExportOptions", "FLOAT16_MAX_DIFF", "FORMATS", "INT8_CALIBRATIONS", "MODES_NEEDING_DATA", "OP_RESOLVERS",
           "QUANTIZE_MODES", "TFLiteClassifier", "check_request", "compare_on", "export_subnet", "fit_float16",
           "fold_gate_scales", "keras_to_float16", "keras_to_tflite", "make_interpreter", "output_paths",
           "representative_dataset"]
