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

from ofa_tf.data import load_dataset, make_pipeline, split_validation
from ofa_tf.errors import OfaError
from ofa_tf.evaluation import calibration_images, evaluate_archs
from ofa_tf.run import load_trained_supernet
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
    if not FLAGS.model_dir:
        raise OfaError("--model_dir is required")
    model, saved = load_trained_supernet(FLAGS.model_dir)
    cfg = saved["run"]
    resolution = max(model.space.resolutions)
    rng = random.Random(FLAGS.seed)
    archs = [model.space.parse_arch(a, rng=rng, resolution=resolution) for a in FLAGS.archs]
    archs += [model.space.sample(rng, resolution) for _ in range(FLAGS.num_random)]
    data = load_dataset(cfg["dataset"], cfg["data_dir"], max(cfg["image_size"]))
    train_split, validation_split = split_validation(data.train, cfg["validation_fraction"], cfg["seed"])
    if FLAGS.split == "test" and data.test is None:
        raise OfaError(f"--split=test: dataset {cfg['dataset']} has no test split")
    eval_split = data.test if FLAGS.split == "test" else validation_split
    calibration = calibration_images(train_split, resolution, FLAGS.bn_calibration_images, cfg["seed"] + 1)
    evaluation = list(make_pipeline(eval_split, 256, [resolution], training=False))
    results = evaluate_archs(model, archs, calibration, evaluation, FLAGS.bn_calibration_images, progress=True)
    text = json.dumps({"model_dir": FLAGS.model_dir, "split": FLAGS.split, "results": results})
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    run(main)
