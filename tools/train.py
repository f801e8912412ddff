"""Trains a once-for-all supernet into a run directory (re-run the same command to resume).

  python -m tools.train --method=deps --space=ofa_mbv3 --dataset=npz:data/fashion_mnist_small.npz \\
      --image_size=32 --epochs=4 --model_dir=runs/demo

Flags can also come from a file: --flagfile=run.flags. --helpfull lists them by group.
"""

from __future__ import annotations

import tools._quiet_tf  # noqa: F401  (first: silences TensorFlow start-up logs)
import json

from absl import flags

from flags.data_flags import define_data_flags, image_sizes
from flags.space_flags import define_space_flags
from flags.train_flags import define_train_flags
from ofa_tf.run import RunConfig, train
from tools._runner import run

define_space_flags()
define_data_flags()
define_train_flags()
FLAGS = flags.FLAGS


def config_from_flags() -> RunConfig:
    return RunConfig(
        method=FLAGS.method, space=FLAGS.space, width_mult=FLAGS.width_mult, image_size=tuple(image_sizes()),
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, validation_fraction=FLAGS.validation_fraction,
        epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
        strategy=FLAGS.strategy, learning_rate=FLAGS.learning_rate, lr_warmup_epochs=FLAGS.lr_warmup_epochs,
        momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay, grad_clip=FLAGS.grad_clip,
        label_smoothing=FLAGS.label_smoothing, dropout=FLAGS.dropout, warmup_fraction=FLAGS.warmup_fraction,
        epsilon_start=FLAGS.epsilon_start, epsilon_ramp_epochs=FLAGS.epsilon_ramp_epochs,
        epsilon_mode=FLAGS.epsilon_mode, num_subnets=FLAGS.num_subnets, kd_temperature=FLAGS.kd_temperature,
        kernel_mode=FLAGS.kernel_mode, bn_calibration_images=FLAGS.bn_calibration_images)


def main(argv: list[str]) -> None:
    summary = train(config_from_flags(), FLAGS.model_dir, download=FLAGS.download)
    print(json.dumps(summary))


if __name__ == "__main__":
    run(main)
