"""ofa-train: trains a once-for-all supernet into a run directory (re-run the same command to resume).

  ofa-train --method=deps --space=ofa_mbv3 --dataset=npz:data/fashion_mnist_small.npz \\
      --image_size=32 --epochs=4 --model_dir=runs/demo

Every setting of the run is a flag generated from `ofa_tf.runs.RunConfig` (same name,
default and help); the run directory's config.json keeps them. Prints a JSON summary.
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first: takes the signals from the program's start

import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli import config_flags, flag_checks  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.runs.config import DATA, SCHEDULE, RunConfig  # noqa: E402 (no TensorFlow: --help answers without it)

if TYPE_CHECKING:
    from ofa_tf.distribute import WorkerLost
    from ofa_tf.runs.plan import RunPlan

PROGRAM = "ofa-train"
MODULE = "ofa_tf.cli.train"  # what a multi-worker restart re-executes
RESTARTS_ENV = "OFA_TF_WORKER_RESTARTS"
RUN = "run"
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """The tool's own flags, then one flag per `RunConfig` field."""
    config_flags.define("string", "model_dir", None, "Run directory (config, checkpoints, TensorBoard logs, "
                        "metrics.csv). Re-running with the same flags resumes.", group=RUN, flag_values=flag_values)
    config_flags.define("integer", "max_worker_restarts", 3, "multi_worker: how many times this worker restarts "
                        "itself after losing a peer before it gives up.", group=RUN, flag_values=flag_values)
    config_flags.define_config_flags(RunConfig, flag_values)
    config_flags.define("bool", "download", False, "Let TFDS download and prepare a missing dataset.",
                        group=DATA, flag_values=flag_values)
    config_flags.define("integer", "cpu_devices", None, "With --strategy=mirrored on a machine without GPUs: "
                        "split the CPU into this many logical devices (one replica each).",
                        group=SCHEDULE, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> RunConfig:
    """The run's `RunConfig` as the flags give it; image sizes sorted, once each."""
    config = config_flags.config_from_flags(RunConfig, flag_values)
    return dataclasses.replace(config, image_size=tuple(sorted(set(config.image_size))))


def check_flags(flag_values: flags.FlagValues = FLAGS) -> RunPlan:
    """Every flag checked before any work: the run's settings, resolved into its `RunPlan`
    (once: the plan is what the run uses), the run directory (writable: not a file, nor
    under one) and the tool's own flags. Returns the plan."""
    from ofa_tf.runs.directory import RunDirectory
    from ofa_tf.runs.plan import RunPlan

    plan = RunPlan.resolve(config_from_flags(flag_values))
    config = plan.config
    flag_checks.required("model_dir", flag_values.model_dir, "the run directory")
    RunDirectory(flag_values.model_dir).check_writable()
    flag_checks.at_least("max_worker_restarts", flag_values.max_worker_restarts, 0, "an integer")
    flag_checks.positive("cpu_devices", flag_values.cpu_devices)
    flag_checks.only_with(flag_values, ["cpu_devices"], config.strategy == "mirrored", "--strategy=mirrored")
    flag_checks.only_with(flag_values, ["max_worker_restarts"], config.strategy == "multi_worker",
                          "--strategy=multi_worker")
    tfds = any((spec or "").startswith("tfds:") for spec in (config.dataset, config.unlabelled_dataset))
    flag_checks.only_with(flag_values, ["download"], tfds, "a tfds: dataset")
    flag_checks.only_with(flag_values, ["label_offset"], config.dataset.startswith("tfrecord:"), "a tfrecord: dataset")
    flag_checks.only_with(flag_values, ["unlabelled_ratio", "unlabelled_weight", "fixmatch_threshold"],
                          config.unlabelled_dataset is not None, "--unlabelled_dataset (semi-supervised training)")
    flag_checks.only_with(flag_values, ["epsilon_start", "epsilon_ramp_epochs", "epsilon_mode"], plan.uses_epsilon,
                          f"a method with an ε schedule (deps), not --method={config.method}")
    return plan


_resolved: list[RunPlan] = []  # the plan `_prepare` resolved, for `_main` (the same process)


def _prepare() -> None:
    """Before TensorFlow's first op: every flag is checked, then the strategy exists
    (multi-worker collectives and logical CPU devices must be set up before it)."""
    from ofa_tf.distribute import create_strategy

    plan = check_flags()
    create_strategy(plan.config.strategy, FLAGS.cpu_devices)
    _resolved[:] = [plan]


def _main(argv: list[str]) -> None:
    from ofa_tf.distribute import WorkerLost
    from ofa_tf.runs.train import train

    plan = _resolved.pop() if _resolved else check_flags()  # (none when the runtime had started before)
    try:
        summary = train(plan, FLAGS.model_dir, download=FLAGS.download)
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
    os.execv(sys.executable, [sys.executable, "-m", MODULE, *sys.argv[1:]])


def main() -> None:
    """The `ofa-train` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__, before_first_op=_prepare)


if __name__ == "__main__":
    main()
