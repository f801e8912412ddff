"""Trains a once-for-all supernet into a run directory (re-run the same command to resume).

  python -m tools.train --method=deps --space=ofa_mbv3 --dataset=npz:data/fashion_mnist_small.npz \\
      --image_size=32 --epochs=4 --model_dir=runs/demo

Flags can also come from a file: --flagfile=run.flags. --helpfull lists them by group.
"""

from __future__ import annotations

import tools._tf_startup  # noqa: F401  (first: loads TensorFlow silently; the runtime starts after the flags)
import json
import os
import sys

from absl import flags

from flags.data_flags import define_data_flags, image_sizes
from flags.space_flags import define_space_flags
from flags.train_flags import define_train_flags, transfer_settings
from ofa_tf.distribute import WorkerLost, create_strategy
from ofa_tf.errors import OfaError
from ofa_tf.runs import RunConfig, train
from tools._runner import run

define_space_flags()
define_data_flags()
define_train_flags()
flags.DEFINE_integer("max_worker_restarts", 3, "multi_worker: how many times this worker restarts itself "
                     "after losing a peer before it gives up.")
FLAGS = flags.FLAGS


def config_from_flags() -> RunConfig:
    return RunConfig(
        method=FLAGS.method, space=FLAGS.space, width_mult=FLAGS.width_mult, image_size=tuple(image_sizes()),
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, validation_fraction=FLAGS.validation_fraction,
        epochs=FLAGS.epochs, steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
        strategy=FLAGS.strategy, learning_rate=FLAGS.learning_rate, lr_warmup_epochs=FLAGS.lr_warmup_epochs,
        lr_schedule=FLAGS.lr_schedule,
        momentum=FLAGS.momentum, weight_decay=FLAGS.weight_decay, grad_clip=FLAGS.grad_clip,
        label_smoothing=FLAGS.label_smoothing, dropout=FLAGS.dropout, warmup_fraction=FLAGS.warmup_fraction,
        epsilon_start=FLAGS.epsilon_start, epsilon_ramp_epochs=FLAGS.epsilon_ramp_epochs,
        epsilon_mode=FLAGS.epsilon_mode, num_subnets=FLAGS.num_subnets, kd_temperature=FLAGS.kd_temperature,
        kernel_mode=FLAGS.kernel_mode, bn_calibration_images=FLAGS.bn_calibration_images,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps, **transfer_settings())


RESTARTS_ENV = "OFA_TF_WORKER_RESTARTS"


def main(argv: list[str]) -> None:
    try:
        summary = train(config_from_flags(), FLAGS.model_dir, download=FLAGS.download)
    except WorkerLost as lost:
        restart_after_worker_loss(lost)
    print(json.dumps(summary))


def restart_after_worker_loss(lost: WorkerLost) -> None:
    """Re-executes this command, which resumes from the last checkpoint once every worker
    is back (a collective runtime cannot be re-initialised inside a running process)."""
    restarts = int(os.environ.get(RESTARTS_ENV, "0"))
    if restarts >= FLAGS.max_worker_restarts:
        raise OfaError(f"{lost}; gave up after {restarts} restart(s) (--max_worker_restarts)")
    print(f"warning: {lost}; restarting from the last checkpoint ({restarts + 1}/{FLAGS.max_worker_restarts})",
          file=sys.stderr, flush=True)
    os.environ[RESTARTS_ENV] = str(restarts + 1)
    os.execv(sys.executable, [sys.executable, "-m", "tools.train", *sys.argv[1:]])


if __name__ == "__main__":
    # the strategy (multi-worker collectives, logical CPU devices) must exist before TF's first op
    run(main, before_first_op=lambda: create_strategy(FLAGS.strategy, FLAGS.cpu_devices))
