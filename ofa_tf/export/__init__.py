"""Deployment: a trained run's subnet as `.tflite` (float32, float16, dynamic-range, int8,
QAT int8), `.keras` and SavedModel, with a metadata JSON (docs/deployment.md).

Names load on first use (`ofa_tf.lazy`): `ExportOptions` and `OP_RESOLVERS` come without
TensorFlow."""

from ofa_tf.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.export.options": ("ExportOptions", "FLOAT16_MAX_DIFF", "FORMATS", "INT8_CALIBRATIONS", "QUANTIZE_MODES"),
    "ofa_tf.export.exporter": ("check_request", "export_subnet", "output_paths"),
    "ofa_tf.export.float16": ("fit_float16", "keras_to_float16"),
    "ofa_tf.export.graph": ("fold_gate_scales",),
    "ofa_tf.export.interpreter": ("OP_RESOLVERS", "make_interpreter"),
    "ofa_tf.export.tflite": ("MODES_NEEDING_DATA", "TFLiteClassifier", "compare_on", "keras_to_tflite",
                             "representative_dataset"),
})
