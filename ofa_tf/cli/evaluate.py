"""ofa-evaluate: accuracy of subnets of a trained run, each after BN recalibration, as JSON.

  ofa-evaluate --model_dir=runs/demo --archs=max,min --num_random=5

--archs takes max, min, random or JSON files (comma-separated; an ofa_tf arch, OFA's
{"ks", "e", "d", "r"} dict or a search result); --num_random adds N random subnets (seeded).
max, min and random subnets are measured at the run's largest input size, a file's arch at
its own. Evaluation uses the run's validation split (or --split=test), all of it or its first
--eval_images images.

--dataset measures on other data with the supernet's classes (a run imported from OFA's
PyTorch checkpoints has none of its own, so it needs one); --bn_calibration_images=0 keeps
the checkpoint's BN statistics instead of recalibrating each subnet:

  ofa-evaluate --model_dir=runs/ofa_w10 --dataset=folder:imagenet/val \\
      --bn_calibration_images=0 --archs=max,min
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

import random  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.spaces import Arch  # noqa: E402

if TYPE_CHECKING:
    from ofa_tf.runs.directory import SavedRun

PROGRAM = "ofa-evaluate"


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    add = definer(flag_values)
    add("string", "model_dir", None, "Run directory written by ofa-train.", "run")
    add("string", "output", None, "Also write the JSON to this file.", "run")
    add("list", "archs", ["max", "min"], "Subnets: max, min, random, or JSON arch files.", "subnets")
    add("integer", "num_random", 0, "Also evaluate this many random subnets.", "subnets")
    add("integer", "seed", 0, "Seed for random subnets.", "subnets")
    add("enum", "split", "validation", "Which data to measure accuracy on.", "measuring",
        enum_values=["validation", "test"])
    add("string", "dataset", None, "Data to measure on instead of the run's own, with the supernet's classes: "
        "npz:FILE, folder:DIR, tfrecord:GLOB, idx:DIR or tfds:NAME, as ofa-train's --dataset (needed for a run "
        "imported from OFA, which has no training data here).", "measuring")
    add("integer", "eval_images", None, "Measure accuracy on at most this many images (default: all).", "measuring")
    add("integer", "bn_calibration_images", 2000, "Training images used to recalibrate BN for each subnet; 0 "
        "keeps the checkpoint's BN statistics.", "measuring")


def check_flags() -> tuple[SavedRun, list[Arch]]:
    """Every flag checked before any work: the run (config and an intact checkpoint, read
    without building the model), the output path, the subnets (parsed in the run's space)
    and the counts. Returns the saved run and the subnets to evaluate."""
    from ofa_tf.data.sources import check_dataset_spec
    from ofa_tf.runs import RunDirectory
    from ofa_tf.runs.tool_dataset import check_dataset, require_dataset

    flag_checks.output_file("output", FLAGS.output)
    flag_checks.at_least("num_random", FLAGS.num_random, 0, "an integer")
    flag_checks.seed("seed", FLAGS.seed)
    flag_checks.only_with(FLAGS, ["seed"], "random" in FLAGS.archs or FLAGS.num_random > 0,
                          "random subnets (--archs=random or --num_random)")
    flag_checks.positive("eval_images", FLAGS.eval_images)
    flag_checks.at_least("bn_calibration_images", FLAGS.bn_calibration_images, 0, "an integer")
    if FLAGS.dataset is not None:
        check_dataset_spec(FLAGS.dataset, "dataset")
    if not FLAGS.archs and not FLAGS.num_random:
        raise OfaError("--archs is empty and --num_random=0: no subnet to evaluate")
    saved = RunDirectory(FLAGS.model_dir).read_trained()
    resolution = max(saved.space.resolutions)
    rng = random.Random(FLAGS.seed)
    archs = []
    for spec in FLAGS.archs:
        at = resolution if spec.strip() in ("max", "min", "random") else None  # a file's arch keeps its size
        try:
            archs.append(saved.space.parse_arch(spec, rng=rng, resolution=at))
        except OfaError as e:
            raise OfaError(f"--archs={','.join(FLAGS.archs)}: {e}") from None
    archs += [saved.space.sample(rng, resolution) for _ in range(FLAGS.num_random)]
    require_dataset(saved, FLAGS.dataset, FLAGS.model_dir, "measuring accuracy")
    check_dataset(FLAGS.dataset, saved)  # loads it: its class count, before the model
    return saved, archs


def _main(argv: list[str]) -> None:
    from ofa_tf.evaluation import evaluate_archs
    from ofa_tf.runs import RunDirectory

    _, archs = check_flags()
    directory = RunDirectory(FLAGS.model_dir)
    model, saved = directory.load_supernet()
    results: list = [None] * len(archs)
    for resolution in sorted({a.resolution for a in archs}):  # data made once per input size
        indices = [i for i, a in enumerate(archs) if a.resolution == resolution]
        data = directory.evaluation_data(saved, resolution, split=FLAGS.split, eval_images=FLAGS.eval_images,
                                         bn_calibration_images=FLAGS.bn_calibration_images, dataset=FLAGS.dataset)
        measured = evaluate_archs(model, [archs[i] for i in indices], data.calibration, data.evaluation,
                                  data.num_calibration_images, progress=True)
        for i, result in zip(indices, measured):
            results[i] = result
    startup.print_json({"model_dir": FLAGS.model_dir, "split": FLAGS.split, "dataset": data.source.name,
                        "results": results}, FLAGS.output)


def main() -> None:
    """The `ofa-evaluate` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
