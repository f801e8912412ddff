"""ofa-check-data: decodes every image of a dataset, in parallel, and lists those that do not decode.

  ofa-check-data --dataset=folder:/data/imagenet/train
  ofa-check-data --dataset=tfrecord:/data/imagenet/train-* --label_offset=1

Training skips an image that does not decode (and counts it in metrics.csv); this finds them
all before a run starts. Prints a JSON summary: images checked, and the undecodable ones by
path (or, for encoded records, by size and digest). Exit status 1 when any image is bad.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

from absl import flags  # noqa: E402

from ofa_tf.cli import config_flags, flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.interrupts import interruptible  # noqa: E402
from ofa_tf.runs.config import RunConfig  # noqa: E402 (no TensorFlow: --help answers without it)

PROGRAM = "ofa-check-data"
DATA_FLAGS = ("dataset", "data_dir", "label_offset")


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The data flags of `RunConfig` (same names, defaults and help as ofa-train's), and an output."""
    config_flags.define_config_flags(RunConfig, flag_values, only=DATA_FLAGS)
    definer(flag_values)("string", "output", None, "Also write the JSON to this file.", "run")


def check_flags(flag_values: flags.FlagValues = FLAGS) -> RunConfig:
    """Every flag checked before any work: the data settings as a run checks them
    (`RunPlan.resolve`: the spec's kind, its file / directory / glob and first record, the
    label offset, the TFDS directory) and the output path. Returns the config."""
    from ofa_tf.runs.plan import RunPlan

    config = RunPlan.resolve(config_flags.config_from_flags(RunConfig, flag_values)).config
    flag_checks.only_with(flag_values, ["label_offset"], config.dataset.startswith("tfrecord:"), "a tfrecord: dataset")
    flag_checks.output_file("output", flag_values.output)
    return config


def _main(argv: list[str]) -> int:
    from ofa_tf.data import load_dataset
    from ofa_tf.data.check import find_undecodable

    config = check_flags()
    source = load_dataset(config.dataset, config.data_dir, label_offset=config.label_offset,
                          check_decoding=False)  # every image is decoded below, the bad ones listed
    # Ctrl-C stops the check at once: images decode in tf.data's threads, the main thread only
    # counts batches, and nothing is written before the result
    with interruptible():
        result = find_undecodable(source, progress=True)
    startup.print_json(result, FLAGS.output)
    return 1 if result["undecodable"] else 0


def main() -> None:
    """The `ofa-check-data` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
