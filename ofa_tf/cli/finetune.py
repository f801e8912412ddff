"""ofa-finetune: fine-tunes one subnet of a trained run as a plain Keras model, into a run directory of its own.

  ofa-finetune --model_dir=runs/demo --arch=runs/demo/search/flops-6M.json --epochs=5 \\
      --output_dir=runs/demo_6M_finetuned
  ofa-export --model_dir=runs/demo_6M_finetuned --output=exports/demo_6M.tflite

The subnet starts from the supernet's weights (BN recalibrated) and trains on the run's own
training images with the run's augmentation and label smoothing; --distill_from_supernet
adds distillation from the supernet's max net. Its accuracy before and after, each after BN
recalibration on the same images and measured on the same images (--split, --eval_images),
is printed as JSON and kept in OUTPUT_DIR/result.json. Re-running the same command resumes
(every epoch, and every --checkpoint_every_steps, is a checkpoint). ofa-export and
ofa-evaluate take OUTPUT_DIR as a --model_dir holding that one subnet (ofa-export: by default).
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

from absl import flags  # noqa: E402

from ofa_tf.cli import config_flags  # noqa: E402
from ofa_tf.runs.finetune_config import FinetuneConfig  # noqa: E402 (no TensorFlow: --help answers without it)

PROGRAM = "ofa-finetune"
FLAGS = flags.FLAGS
RUN, MEASURE = "run", "measurement"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The tool's own flags, then one flag per `FinetuneConfig` field."""
    add = config_flags.definer(flag_values)
    add("string", "model_dir", None, "Run directory of the trained supernet (written by ofa-train).", RUN,
        path="input")
    add("string", "arch", "max", "The subnet: max, min, a JSON object or a JSON file (a search result works).", RUN)
    add("string", "output_dir", None, "Run directory of the fine-tune (checkpoints, metrics.csv, result.json); "
        "re-running the same command resumes it.", RUN)
    config_flags.define_config_flags(FinetuneConfig, flag_values)
    add("string", "split", "validation", "Where the accuracy before and after is measured: validation (the run's "
        "held-out images) or test.", MEASURE)
    add("integer", "eval_images", None, "Measure on at most this many images (default: all).", MEASURE)
    add("integer", "bn_calibration_images", None, "Training images that recalibrate BN before training and before "
        "each measurement (default: the run's setting); 0 keeps the supernet's BN statistics.", MEASURE)


def check_flags(flag_values: flags.FlagValues = FLAGS) -> FinetuneConfig:
    """Every flag checked before any work (`finetune.check_request`: the settings, the run, the
    arch in its space, the output directory). Returns the settings."""
    from ofa_tf.runs.finetune import check_request

    config = config_flags.config_from_flags(FinetuneConfig, flag_values)
    check_request(flag_values.model_dir, flag_values.arch, flag_values.output_dir, config, split=flag_values.split,
                  eval_images=flag_values.eval_images, bn_calibration_images=flag_values.bn_calibration_images)
    return config


def _main(argv: list[str]) -> None:
    from ofa_tf.runs.finetune import finetune

    config = check_flags()
    result = finetune(FLAGS.model_dir, FLAGS.arch, FLAGS.output_dir, config, split=FLAGS.split,
                      eval_images=FLAGS.eval_images, bn_calibration_images=FLAGS.bn_calibration_images)
    startup.print_json(result)


def main() -> None:
    """The `ofa-finetune` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
