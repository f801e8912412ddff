"""Accuracy of subnets of a trained run, each after BN recalibration, as JSON.

  python -m tools.evaluate --model_dir=runs/demo --archs=max,min --num_random=5

--archs takes max, min, random or JSON files (comma-separated); --num_random adds N
random subnets (seeded). Evaluation uses the run's validation split (or --split=test).
"""

from __future__ import annotations

import tools._quiet_tf  # noqa: F401  (first: silences TensorFlow start-up logs)
import json
import random

from absl import flags

from ofa_tf.evaluation import evaluate_archs
from ofa_tf.io import write_text
from ofa_tf.runs import RunDirectory
from tools._runner import run

flags.DEFINE_string("model_dir", None, "Run directory written by tools.train.")
flags.DEFINE_list("archs", ["max", "min"], "Subnets: max, min, random, or JSON arch files.")
flags.DEFINE_integer("num_random", 0, "Also evaluate this many random subnets.")
flags.DEFINE_integer("seed", 0, "Seed for random subnets.")
flags.DEFINE_enum("split", "validation", ["validation", "test"], "Which data to measure accuracy on.")
flags.DEFINE_integer("bn_calibration_images", 2000, "Images used to recalibrate BN for each subnet.")
flags.DEFINE_string("output", None, "Also write the JSON to this file.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    directory = RunDirectory(FLAGS.model_dir)
    model, saved = directory.load_supernet()
    resolution = max(model.space.resolutions)
    rng = random.Random(FLAGS.seed)
    archs = [model.space.parse_arch(a, rng=rng, resolution=resolution) for a in FLAGS.archs]
    archs += [model.space.sample(rng, resolution) for _ in range(FLAGS.num_random)]
    data = directory.evaluation_data(saved, resolution, split=FLAGS.split,
                                     bn_calibration_images=FLAGS.bn_calibration_images)
    results = evaluate_archs(model, archs, data.calibration, data.evaluation, data.num_calibration_images,
                             progress=True)
    text = json.dumps({"model_dir": FLAGS.model_dir, "split": FLAGS.split, "results": results})
    if FLAGS.output:
        write_text(FLAGS.output, text)
    print(text)


if __name__ == "__main__":
    run(main)
