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
images normalised as the metadata says; with --include_preprocessing, raw uint8 RGB images of
any size (resize and normalisation inside the model). The .tflite file carries its labels
(--labels=FILE, else the run's class names) and input contract in its metadata, its tensors
named `image` / `logits`. --formats=...,onnx (pip install 'ofa_tf[onnx]') also writes an ONNX
model, checked in onnxruntime against Keras like the .tflite file.

A progress bar on stderr follows the stages; a converted model that agrees with Keras on
fewer than --warn_agreement_below of the images, or loses more than
--warn_accuracy_drop_above accuracy, is a `warning:` line (and in the metadata's `warnings`),
as is an int8 model that is not faster than float32 on this machine (--check_int8_latency).

--dataset takes the images from other data with the supernet's classes. A run imported from
OFA's PyTorch checkpoints has no training data here: without --dataset its subnet is written
with the checkpoint's BN statistics, and the metadata (`accuracy_checked: false`) and one log
line say that no accuracy was checked (int8 and qat need --dataset). --bn_calibration_images=0
keeps the checkpoint's BN statistics in any case:

  ofa-export --model_dir=runs/ofa_w10 --arch=max --output=exports/ofa_max.tflite
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

import json  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import config_flags, flag_checks  # noqa: E402
from ofa_tf.export.options import OUTPUT, SUBNET, ExportOptions  # noqa: E402 (no TensorFlow: --help answers without it)
from ofa_tf.interrupts import Interrupted  # noqa: E402

PROGRAM = "ofa-export"
FLAGS = flags.FLAGS
# the settings of one quantisation mode: given with another mode they would be ignored
MODE_FLAGS = {"qat": ("qat_epochs", "qat_steps_per_epoch", "qat_learning_rate", "qat_distillation", "qat_batch_size"),
              "float16": ("float16_max_diff", "float16_check_images"),
              "int8": ("representative_images", "int8_calibration")}


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The tool's own flags, then one flag per `ExportOptions` field (but `verbose`)."""
    config_flags.define("string", "model_dir", None, "Run directory written by ofa-train.", group="run",
                        flag_values=flag_values)
    config_flags.define("string", "arch", "max", "Subnet: max, min, random, a JSON object or a JSON file (a search "
                        "result works); a directory ofa-finetune wrote: its fine-tuned subnet.", group=SUBNET,
                        flag_values=flag_values)
    config_flags.define_config_flags(ExportOptions, flag_values, exclude=["verbose"])
    config_flags.define("string", "output", None, "Path of the .tflite file to write; the other files go beside "
                        "it.", group=OUTPUT, flag_values=flag_values)


def options_from_flags(flag_values: flags.FlagValues = FLAGS) -> ExportOptions:
    """The export settings of the flags (checked by `check_flags`)."""
    return config_flags.config_from_flags(ExportOptions, flag_values)


def check_flags(flag_values: flags.FlagValues = FLAGS) -> ExportOptions:
    """Every flag checked before any work: the options and the output path
    (`export.check_request`), the run (trained) and the subnet, parsed in the run's space
    (`export_subnet` runs these checks again before it loads the model). Returns the options."""
    from ofa_tf.export.exporter import check_data, check_request
    from ofa_tf.runs import RunDirectory

    options = options_from_flags(flag_values)
    check_request(flag_values.output, options)
    for mode, names in MODE_FLAGS.items():
        flag_checks.only_with(flag_values, names, options.quantize == mode, f"--quantize={mode}")
    flag_checks.only_with(flag_values, ["seed"], flag_values.arch.strip() == "random", "--arch=random")
    flag_checks.only_with(flag_values, ["check_int8_latency"], options.quantize in ("int8", "qat"),
                          "--quantize=int8 or qat")
    flag_checks.only_with(flag_values, ["rewrite_for_xnnpack"], options.quantize != "qat",
                          "--quantize=none, float16, dynamic or int8 (qat converts its own graph)")
    directory = RunDirectory(flag_values.model_dir)
    space = directory.read_trained().space
    space.parse_arch(arch_spec(flag_values), rng=options.seed)
    check_data(directory, options)  # a mode that needs images without any, a dataset's class count
    return options


def arch_spec(flag_values: flags.FlagValues = FLAGS) -> str:
    """--arch; without it, for a directory ofa-finetune wrote, its fine-tuned subnet (arch.json)."""
    import os

    from ofa_tf.runs import RunDirectory
    from ofa_tf.runs.finetuned import ARCH_FILE, is_finetune_config

    if not flag_values["arch"].present and is_finetune_config(RunDirectory(flag_values.model_dir).read_raw()):
        return os.path.join(flag_values.model_dir, ARCH_FILE)
    return flag_values.arch


def _main(argv: list[str]) -> None:
    from ofa_tf.export import export_subnet

    options = check_flags()
    try:
        metadata = export_subnet(FLAGS.model_dir, arch_spec(FLAGS), FLAGS.output, options)
    except Interrupted as stop:  # raised before any file is put in place (export_subnet)
        raise Interrupted(stop.signum, "interrupted; no file of the export was written") from None
    print(json.dumps(metadata))


def main() -> None:
    """The `ofa-export` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
