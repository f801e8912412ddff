"""TOFA transfer on Fashion-MNIST as JSON + Markdown (Transfer-Once-For-All, arXiv:2303.15485, Table 4).

  python benchmarks/tofa_transfer.py --data=DIR [--work_dir=runs/tofa_transfer]

(or `python -m benchmarks.tofa_transfer ...`, from a checkout with ofa_tf installed.) --data is a
directory holding Fashion-MNIST's four idx files (train-images-idx3-ubyte.gz, ...,
t10k-labels-idx1-ubyte.gz).

1. The Fashion-MNIST train split is cut in two halves (first / second 30,000 images).
2. Pretraining: an ofa_mbv3 supernet (32x32, DεpS) on the second half with all its labels.
3. Transfer: TOFA on the first half with only `--labelled_per_class` labelled images per class,
   initialised from the pretrained supernet, twice with the same steps and seed:
   - labelled only (L_TOFA^lab: labels for the max net, in-place KD for the subnets);
   - labelled + the rest of the first half as unlabelled data (L_TOFA: + FixMatch for the
     max net, + in-place KD on the unlabelled images for the subnets).
4. The max and min subnets of each are evaluated on the 10,000 test images after BN
   recalibration (`ofa-evaluate`), and the pretrained supernet itself is evaluated too
   (the "no transfer" reference).
Every step runs the commands (`python -m ofa_tf.cli.*`) exactly as a user would; runs
already complete are reused (the commands resume), so a second call only re-evaluates.
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output (ofa_tf.data loads it)

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from ofa_tf.data.sources import read_idx_file  # noqa: E402
from ofa_tf.errors import OfaError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_string("data", None, "Required: a directory of Fashion-MNIST's idx files (*-ubyte.gz).")
flags.DEFINE_string("work_dir", os.path.join(ROOT, "runs", "tofa_transfer"), "Where the runs go.")
flags.DEFINE_integer("pretrain_epochs", 3, "Pretraining epochs.")
flags.DEFINE_integer("pretrain_steps", 100, "Steps per pretraining epoch.")
flags.DEFINE_string("pretrained", None, "Use this run directory or .weights.h5 instead of pretraining (step 2).")
flags.DEFINE_integer("labelled_per_class", 20, "Labelled images per class of the transfer runs.")
flags.DEFINE_integer("epochs", 3, "Transfer epochs.")
flags.DEFINE_integer("steps", 50, "Steps per transfer epoch.")
flags.DEFINE_integer("batch_size", 32, "Labelled images per batch (TOFA: 32).")
flags.DEFINE_float("learning_rate", 0.01, "TOFA: 0.01.")
flags.DEFINE_integer("num_subnets", None, "Subnets per step (TOFA: 3, min + 2 random).")
flags.DEFINE_integer("unlabelled_ratio", 1, "TOFA: 32 labelled + 32 unlabelled.")
flags.DEFINE_float("fixmatch_threshold", 0.8, "Below 1 - 0.9 * 0.1 = 0.91, the top probability label smoothing "
                   "0.1 trains towards.")
flags.DEFINE_bool("pretrain_only", False, "Stop after pretraining.")
FLAGS = flags.FLAGS


def write_halves(data_dir: str, work_dir: str) -> tuple[str, str]:
    """npz files holding the first / second half of the train split (the test split in both)."""
    paths = tuple(os.path.join(work_dir, f"{half}_half.npz") for half in ("first", "second"))
    if all(os.path.exists(p) for p in paths):
        return paths
    os.makedirs(work_dir, exist_ok=True)
    x = read_idx_file(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    y = read_idx_file(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    x_test = read_idx_file(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"))
    y_test = read_idx_file(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz"))
    half = len(x) // 2
    for path, part in zip(paths, (slice(0, half), slice(half, None))):
        np.savez(path, x_train=x[part], y_train=y[part], x_test=x_test, y_test=y_test)
    return paths


def tool(name: str, *args: str) -> subprocess.Popen:
    """Starts the command `python -m ofa_tf.cli.NAME ARGS` (stdout/stderr captured)."""
    return subprocess.Popen([sys.executable, "-m", f"ofa_tf.cli.{name}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(*processes: subprocess.Popen) -> list[dict]:
    """Waits for tool processes (run side by side); their last stdout JSON lines."""
    results = []
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            sys.exit(f"{' '.join(process.args[2:])} failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def pretrain_args(args, second_half: str) -> list[str]:
    return ["--method=deps", "--space=ofa_mbv3", "--image_size=32", f"--dataset=npz:{second_half}",
            f"--epochs={args.pretrain_epochs}", f"--steps_per_epoch={args.pretrain_steps}", "--batch_size=64",
            "--epsilon_ramp_epochs=0.5", "--bn_calibration_images=500", "--validation_fraction=0.05",
            f"--model_dir={os.path.join(args.work_dir, 'pretrained')}"]


def transfer_args(args, first_half: str, pretrained: str, name: str, unlabelled: bool) -> list[str]:
    command = ["--method=tofa", "--space=ofa_mbv3", "--image_size=32", f"--dataset=npz:{first_half}",
               f"--labelled_per_class={args.labelled_per_class}", f"--init_checkpoint={pretrained}",
               f"--epochs={args.epochs}", f"--steps_per_epoch={args.steps}", f"--batch_size={args.batch_size}",
               f"--learning_rate={args.learning_rate}", "--bn_calibration_images=500", "--validation_fraction=0.02",
               f"--model_dir={os.path.join(args.work_dir, name)}"]
    if args.num_subnets is not None:
        command.append(f"--num_subnets={args.num_subnets}")
    if unlabelled:
        command += ["--unlabelled_dataset=rest", f"--unlabelled_ratio={args.unlabelled_ratio}",
                    f"--fixmatch_threshold={args.fixmatch_threshold}"]
    return command


def evaluate_args(model_dir: str) -> list[str]:
    return [f"--model_dir={model_dir}", "--split=test", "--archs=max,min", "--bn_calibration_images=1000"]


def main(argv: list[str]) -> None:
    args = FLAGS
    if not args.data:
        raise OfaError("--data is required: a directory of Fashion-MNIST's idx files (train-images-idx3-ubyte.gz, "
                       "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)")
    first, second = write_halves(args.data, args.work_dir)
    started = time.time()
    pretrained = args.pretrained
    if pretrained is None:
        finish(tool("train", *pretrain_args(args, second)))
        pretrained = os.path.join(args.work_dir, "pretrained")
    if args.pretrain_only:
        return
    runs = {"labelled only": "tofa_labelled", "labelled + unlabelled": "tofa_unlabelled"}
    finish(*[tool("train", *transfer_args(args, first, pretrained, name, unlabelled="+" in label))
             for label, name in runs.items()])
    pretrained_dir = pretrained if os.path.isdir(pretrained) else os.path.dirname(os.path.dirname(pretrained))
    dirs = {"pretrained (no transfer)": pretrained_dir,
            **{label: os.path.join(args.work_dir, name) for label, name in runs.items()}}
    evaluated = finish(*[tool("evaluate", *evaluate_args(d)) for d in dirs.values()])
    table = {label: {r_name: r["accuracy"] for r_name, r in zip(("max", "min"), result["results"])}
             for label, result in zip(dirs, evaluated)}
    for label, name in runs.items():
        with open(os.path.join(args.work_dir, name, "sampled_subnets.json")) as f:
            table[label]["recorded_subnets"] = len(json.load(f)["entries"])
    print(json.dumps({"table": table, "seconds": round(time.time() - started), "pretrained": pretrained,
                      "transfer_flags": transfer_args(args, first, pretrained, "NAME", True)}, indent=1))
    print("\n| TOFA on Fashion-MNIST, 20 labels/class | max net | min net |\n|---|---|---|")
    for label, row in table.items():
        print(f"| {label} | {100 * row['max']:.1f}% | {100 * row['min']:.1f}% |")


if __name__ == "__main__":
    startup.run(main, program="benchmarks/tofa_transfer.py", doc=__doc__)
