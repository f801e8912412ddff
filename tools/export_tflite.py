"""Exports one subnet of a trained run as .tflite (+ .keras / SavedModel) with a metadata JSON.

  python -m tools.export_tflite --model_dir=runs/demo --arch=max --output=exports/max.tflite
  python -m tools.export_tflite --model_dir=runs/demo --arch=search/best.json --quantize=int8 \\
      --output=exports/best_int8.tflite --formats=tflite,keras,saved_model

The subnet's BN statistics are recalibrated on the run's training images first, and its
accuracy is measured before and after conversion on the validation split (metadata
`accuracy`). --quantize: none (float32), float16 (float16 weights; the few layers it would
move the logits most for stay float32, see --float16_max_diff), dynamic (int8 weights), int8 (full
integer; ranges from a representative set of training images, fitted by --int8_calibration),
qat (BN folded into the convs, quantisation-aware fine-tuning for --qat_epochs on labels and/or
distillation from the float subnet, --qat_distillation, then int8). Inputs are float32
images normalised as the metadata says.
"""

from __future__ import annotations

import tools._quiet_tf  # noqa: F401  (first: silences TensorFlow start-up logs)
import json

from absl import flags

from ofa_tf.export import FORMATS, INT8_CALIBRATIONS, QUANTIZE_MODES, ExportOptions, export_subnet
from ofa_tf.export.float16 import FLOAT16_CHECK_IMAGES, FLOAT16_MAX_DIFF
from ofa_tf.errors import OfaError
from tools._runner import run

flags.DEFINE_string("model_dir", None, "Run directory written by tools.train.")
flags.DEFINE_string("arch", "max", "Subnet: max, min, random, a JSON object or a JSON file (a search result works).")
flags.DEFINE_integer("seed", 0, "Seed for --arch=random.")
flags.DEFINE_string("output", None, "Path of the .tflite file to write; the other files go beside it.")
flags.DEFINE_string("quantize", "none", f"One of {list(QUANTIZE_MODES)}.")
flags.DEFINE_list("formats", ["tflite"], f"Files to write besides the metadata JSON: any of {list(FORMATS)}.")
flags.DEFINE_string("dataset", None, "Data for BN recalibration, int8 calibration, QAT and accuracy "
                    "(default: the run's own dataset); 'none' skips recalibration and accuracy.")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "Where accuracy is measured.")
flags.DEFINE_integer("bn_calibration_images", None, "Images for BN recalibration (default: the run's setting).")
flags.DEFINE_integer("representative_images", 500, "Training images that calibrate full-int8 ranges.")
flags.DEFINE_string("int8_calibration", "mse", f"Full-int8 activation ranges, one of {list(INT8_CALIBRATIONS)}: "
                    "mse fits each range to the least rounding + clipping error on the representative images "
                    "(docs/deployment.md); minmax keeps the converter's min / max.")
flags.DEFINE_float("float16_max_diff", FLOAT16_MAX_DIFF,
                   "--quantize=float16: bound on the max |logit difference| from float32, met by keeping the "
                   "layers whose float16 weights move the logits most in float32 (as few as needed; listed in the "
                   "metadata). Fitted to half the bound on --float16_check_images training images, leaving room "
                   "for unseen ones. 0: every weight float16.")
flags.DEFINE_integer("float16_check_images", FLOAT16_CHECK_IMAGES,
                     "Training images --float16_max_diff is fitted on. The worst case comes from rare images: 500 "
                     "undershot the unseen worst case by 2-3x, 5000 by 5-30% (docs/deployment.md).")
flags.DEFINE_integer("max_eval_images", None, "Measure accuracy on at most this many images (default: all).")
flags.DEFINE_integer("qat_epochs", 2, "Quantisation-aware fine-tuning epochs (--quantize=qat).")
flags.DEFINE_integer("qat_steps_per_epoch", None, "QAT steps per epoch (default: one pass over the training split).")
flags.DEFINE_float("qat_learning_rate", 1e-3, "Peak learning rate of QAT fine-tuning (cosine decay).")
flags.DEFINE_float("qat_distillation", 0.0, "QAT loss: this weight x distillation from the float subnet's logits "
                   "+ (1 - weight) x label cross-entropy; 1: distillation only, 0: labels only.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if not FLAGS.output:
        raise OfaError("--output is required: the .tflite file to write")
    for name in ("bn_calibration_images", "representative_images", "float16_check_images", "max_eval_images",
                 "qat_steps_per_epoch"):
        value = getattr(FLAGS, name)
        if value is not None and value <= 0:
            raise OfaError(f"--{name}={value}: expected a positive number")
    options = ExportOptions(
        quantize=FLAGS.quantize, formats=tuple(FLAGS.formats), dataset=FLAGS.dataset, split=FLAGS.split,
        bn_calibration_images=FLAGS.bn_calibration_images, representative_images=FLAGS.representative_images,
        int8_calibration=FLAGS.int8_calibration, float16_max_diff=FLAGS.float16_max_diff,
        float16_check_images=FLAGS.float16_check_images,
        max_eval_images=FLAGS.max_eval_images, qat_epochs=FLAGS.qat_epochs,
        qat_steps_per_epoch=FLAGS.qat_steps_per_epoch, qat_learning_rate=FLAGS.qat_learning_rate,
        qat_distillation=FLAGS.qat_distillation, seed=FLAGS.seed)
    metadata = export_subnet(FLAGS.model_dir, FLAGS.arch, FLAGS.output, options)
    print(json.dumps(metadata))


if __name__ == "__main__":
    run(main)
