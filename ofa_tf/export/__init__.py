"""Deployment: a trained run's subnet as `.tflite` (float32, float16, dynamic-range, int8,
QAT int8), `.keras` and SavedModel, with a metadata JSON (docs/deployment.md).

Names load on first use (`ofa_tf.lazy`): `ExportOptions` comes without TensorFlow."""

from ofa_tf.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "ofa_tf.export.options": ("ExportOptions",),
    "ofa_tf.export.exporter": ("export_subnet",),
    "ofa_tf.export.float16": ("keras_to_float16",),
    "ofa_tf.export.tflite": ("TFLiteClassifier", "keras_to_tflite"),
    "ofa_tf.export.tflite_metadata": ("read_description",),
})
