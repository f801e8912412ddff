"""ofa-evaluate: accuracy of subnets of a trained run, each after BN recalibration, as JSON.

  ofa-evaluate --model_dir=runs/demo --archs=max,min --num_random=5

--archs takes max, min, random or JSON files (comma-separated); --num_random adds N
random subnets (seeded). Evaluation uses the run's validation split (or --split=test).
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import random  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import flag_checks  # noqa: E402
from ofa_tf.cli.config_flags import FLAGS, definer  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.evaluation import evaluate_archs  # noqa: E402
from ofa_tf.runs import RunDirectory, SavedRun  # noqa: E402
from ofa_tf.spaces import Arch  # noqa: E402

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
    add("integer", "bn_calibration_images", 2000, "Images used to recalibrate BN for each subnet.", "measuring")


def check_flags() -> tuple[SavedRun, list[Arch]]:
    """Every flag checked before any work: the run (config and an intact checkpoint, read
    without building the model), the output path, the subnets (parsed in the run's space)
    and the counts. Returns the saved run and the subnets to evaluate."""
    flag_checks.output_file("output", FLAGS.output)
    flag_checks.at_least("num_random", FLAGS.num_random, 0, "an integer")
    flag_checks.seed("seed", FLAGS.seed)
    flag_checks.only_with(FLAGS, ["seed"], "random" in FLAGS.archs or FLAGS.num_random > 0,
                          "random subnets (--archs=random or --num_random)")
    flag_checks.positive("bn_calibration_images", FLAGS.bn_calibration_images)
    if not FLAGS.archs and not FLAGS.num_random:
        raise OfaError("--archs is empty and --num_random=0: no subnet to evaluate")
    saved = RunDirectory(FLAGS.model_dir).read_trained()
    resolution = max(saved.space.resolutions)
    rng = random.Random(FLAGS.seed)
    archs = []
    for spec in FLAGS.archs:
        try:
            archs.append(saved.space.parse_arch(spec, rng=rng, resolution=resolution))
        except OfaError as e:
            raise OfaError(f"--archs={','.join(FLAGS.archs)}: {e}") from None
    archs += [saved.space.sample(rng, resolution) for _ in range(FLAGS.num_random)]
    return saved, archs


def _main(argv: list[str]) -> None:
    _, archs = check_flags()
    directory = RunDirectory(FLAGS.model_dir)
    model, saved = directory.load_supernet()
    resolution = max(model.space.resolutions)
    data = directory.evaluation_data(saved, resolution, split=FLAGS.split,
                                     bn_calibration_images=FLAGS.bn_calibration_images)
    results = evaluate_archs(model, archs, data.calibration, data.evaluation, data.num_calibration_images,
                             progress=True)
    startup.print_json({"model_dir": FLAGS.model_dir, "split": FLAGS.split, "results": results}, FLAGS.output)


def main() -> None:
    """The `ofa-evaluate` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__)


if __name__ == "__main__":
    main()
