"""ofa-export: exports one subnet of a trained run as .tflite (+ .keras / SavedModel) with a metadata JSON.

  ofa-export --model_dir=runs/demo --arch=max --output=exports/max.tflite
  ofa-export --model_dir=runs/demo --arch=search/best.json --quantize=int8 \\
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

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import json  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import config_flags  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.export import ExportOptions, export_subnet  # noqa: E402
from ofa_tf.export.exporter import OUTPUT, SUBNET  # noqa: E402

PROGRAM = "ofa-export"
FLAGS = flags.FLAGS
POSITIVE = ("bn_calibration_images", "representative_images", "float16_check_images", "max_eval_images",
            "qat_steps_per_epoch", "qat_batch_size")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The tool's own flags, then one flag per `ExportOptions` field (but `verbose`)."""
    config_flags.define("string", "model_dir", None, "Run directory written by ofa-train.", group="run",
                        flag_values=flag_values)
    config_flags.define("string", "arch", "max", "Subnet: max, min, random, a JSON object or a JSON file (a search "
                        "result works).", group=SUBNET, flag_values=flag_values)
    config_flags.define_config_flags(ExportOptions, flag_values, exclude=["verbose"])
    config_flags.define("string", "output", None, "Path of the .tflite file to write; the other files go beside "
                        "it.", group=OUTPUT, flag_values=flag_values)


def options_from_flags(flag_values: flags.FlagValues = FLAGS) -> ExportOptions:
    """The export settings of the flags (counts checked here; the rest by `export_subnet`)."""
    options = config_flags.config_from_flags(ExportOptions, flag_values)
    for name in POSITIVE:
        value = getattr(options, name)
        if value is not None and value <= 0:
            raise OfaError(f"{name}={value}: expected a positive number")
    return options


def _main(argv: list[str]) -> None:
    if not FLAGS.output:
        raise OfaError("--output is required: the .tflite file to write")
    options = options_from_flags()
    metadata = export_subnet(FLAGS.model_dir, FLAGS.arch, FLAGS.output, options)
    print(json.dumps(metadata))


def main() -> None:
    """The `ofa-export` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
