"""What an export can be asked for: `ExportOptions` (ofa-export's flags are generated from
its fields) and the choices its settings take.

Light on purpose (no TensorFlow): ofa-export defines its flags, and answers `--help`, before
TensorFlow loads. The modules that implement a choice (`ofa_tf.export.tflite`,
`ofa_tf.export.calibration`, `ofa_tf.export.float16`) import its names from here.
"""

from __future__ import annotations

import dataclasses

from ofa_tf.runs.config import setting

FORMATS = ("tflite", "keras", "saved_model", "onnx")  # onnx: the optional `onnx` extra
QUANTIZE_MODES = ("none", "float16", "dynamic", "int8", "qat")
INT8_CALIBRATIONS = ("mse", "minmax")
FLOAT16_MAX_DIFF = 1e-2  # the default bound on max |logit difference| from float32
FLOAT16_CHECK_IMAGES = 5000  # training images the bound is checked on (ofa_tf/export/float16.py says why so many)
WARN_AGREEMENT_BELOW = 0.9  # top-1 agreement of a converted model with Keras below this: a warning
WARN_ACCURACY_DROP_ABOVE = 0.02  # accuracy lost in conversion above this (a fraction: 0.02 = 2 points): a warning

# help groups of the fields (ofa-export --help)
QUANTIZATION, DATA, QAT, OUTPUT, SUBNET = "quantization", "data", "quantization-aware training", "output", "subnet"
CHECKS = "checks"


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What to export and how (`ofa-export`'s flags are generated from these fields)."""

    quantize: str = setting("none", f"One of {list(QUANTIZE_MODES)}: none (float32), float16 (float16 weights), "
                            "dynamic (int8 weights), int8 (full integer), qat (quantisation-aware fine-tuning, "
                            "then int8).", QUANTIZATION)
    formats: tuple[str, ...] = setting(("tflite",), f"Files to write besides the metadata JSON: any of "
                                       f"{list(FORMATS)} (onnx needs pip install 'ofa_tf[onnx]'; it is checked in "
                                       "onnxruntime like the .tflite file).", OUTPUT)
    include_preprocessing: bool = setting(
        False, "Put the evaluation preprocessing (pixels / 255, resize to the subnet's resolution, normalise) "
        "inside the .tflite, ONNX and SavedModel files: they then take raw uint8 RGB images [N, H, W, 3] of any size "
        "(the .keras file stays the plain subnet). Not with quantize=qat.", OUTPUT)
    labels: str | None = setting(
        None, "A text file of the class names, one per line, written into the .tflite file and the metadata "
        "(default: the run's dataset's class names, else class_0 .. class_N-1).", OUTPUT, path="input")
    dataset: str | None = setting(None, "Data for BN recalibration, int8 calibration, QAT and accuracy, with the "
                                  "supernet's classes (default: the run's own dataset; a run imported from OFA has "
                                  "none here); 'none' skips recalibration and accuracy. Without data the model is "
                                  "written with the checkpoint's BN statistics and no accuracy is checked.", DATA)
    split: str = setting("validation", "Where accuracy is measured: validation or test.", DATA)
    bn_calibration_images: int | None = setting(None, "Images for BN recalibration (default: the run's setting); 0 "
                                                "keeps the checkpoint's BN statistics.", DATA)
    representative_images: int = setting(500, "Training images that calibrate full-int8 ranges.", QUANTIZATION)
    rewrite_for_xnnpack: bool = setting(
        True, "Convert the graph rewritten for XNNPACK, LiteRT's default CPU kernels: 7x7 depthwise convolutions in "
        "strips of at most 25 taps, int8 hard-swish as ops XNNPACK runs (docs/deployment.md). Off: the graph as it "
        "is, for runtimes without XNNPACK (TFLite's own kernels run the rewritten graph slower).", QUANTIZATION)
    int8_calibration: str = setting(
        "mse", f"Full-int8 activation ranges, one of {list(INT8_CALIBRATIONS)}: mse fits each range to the least "
        "rounding + clipping error on the representative images (docs/deployment.md); minmax keeps the "
        "converter's min / max.", QUANTIZATION)
    float16_max_diff: float = setting(
        FLOAT16_MAX_DIFF, "quantize=float16: bound on the max |logit difference| from float32, met by keeping the "
        "layers whose float16 weights move the logits most in float32 (as few as needed; listed in the "
        "metadata). Fitted to half the bound on float16_check_images training images, leaving room for unseen "
        "ones (ofa_tf/export/float16.py). 0: every weight float16.", QUANTIZATION)
    float16_check_images: int = setting(
        FLOAT16_CHECK_IMAGES, "Training images float16_max_diff is fitted on. The worst case comes from rare "
        "images, and fewer images undershoot the unseen worst case more (docs/deployment.md).", QUANTIZATION)
    eval_images: int | None = setting(None, "Measure accuracy on at most this many images (default: all).",
                                      DATA)
    qat_epochs: int = setting(2, "Quantisation-aware fine-tuning epochs (quantize=qat).", QAT)
    qat_steps_per_epoch: int | None = setting(
        None, "QAT steps per epoch (default: one pass over the training split).", QAT)
    qat_learning_rate: float = setting(1e-3, "Peak learning rate of QAT fine-tuning (cosine decay).", QAT)
    qat_distillation: float = setting(
        0.0, "QAT loss: this weight x distillation from the float subnet's logits + (1 - weight) x label "
        "cross-entropy; 1: distillation only, 0: labels only.", QAT)
    qat_batch_size: int = setting(64, "QAT fine-tuning batch size.", QAT)
    warn_agreement_below: float = setting(
        WARN_AGREEMENT_BELOW, "Warn (stderr and the metadata's warnings) when a converted model's top-1 agreement "
        "with the Keras subnet is below this fraction (0: never).", CHECKS)
    warn_accuracy_drop_above: float = setting(
        WARN_ACCURACY_DROP_ABOVE, "Warn when conversion loses more accuracy than this fraction (0.02: 2 points; 1: "
        "never).", CHECKS)
    check_int8_latency: bool = setting(
        True, "quantize=int8 or qat: time the integer model against the same subnet in float32 on this machine "
        "(LiteRT's default XNNPACK kernels, 1 thread, a few seconds) and warn when it is not faster; the metadata "
        "records both (latency).", CHECKS)
    seed: int = setting(0, "Seed of a random subnet (arch random).", SUBNET)
    verbose: int = 1  # progress output (not a flag)
