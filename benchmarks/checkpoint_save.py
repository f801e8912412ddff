"""Checkpoint save time and size of a real training run, as one JSON object.

  python benchmarks/checkpoint_save.py --model_dir=DIR [ofa-train flags...]

runs `ofa-train` in this process with the flags given (add `--checkpoint_every_steps=1` for a
checkpoint at every step) and times each `RunCheckpoint.save` (the weights file made and
written, the optimizer file, checksums, manifest, rotation), then lists the files of the
newest checkpoint. DIR must not hold a run yet.

Keys: `saves` (how many), `save_s_median`, `save_s_min`, `files` (bytes of each file of the
newest checkpoint), `checkpoint_mb` (their sum, 10^6 bytes), and `weights_h5_groups` (the
top-level groups of its weights file: `optimizer` there means the optimizer state is stored
in it as well as in `.optimizer.npz`).

Machines here are shared: compare figures of runs made one after the other, not across days.
"""

from __future__ import annotations

from ofa_tf.cli import startup

tf = startup.load_tensorflow()  # first: TensorFlow loads silently; its runtime starts when ofa-train starts it

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import h5py  # noqa: E402

from ofa_tf.cli import train as train_cli  # noqa: E402
from ofa_tf.runs import checkpoints  # noqa: E402


def main() -> None:
    model_dirs = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--model_dir=")]
    if len(model_dirs) != 1 or os.path.exists(model_dirs[0]):
        print("error: give one --model_dir=DIR that does not exist yet", file=sys.stderr)
        sys.exit(2)

    seconds: list[float] = []
    save = checkpoints.RunCheckpoint.save

    def timed_save(self, step: int) -> None:
        start = time.perf_counter()
        save(self, step)
        seconds.append(time.perf_counter() - start)

    checkpoints.RunCheckpoint.save = timed_save
    sys.argv = ["ofa-train", *sys.argv[1:]]
    try:
        train_cli.main()
    except SystemExit as done:
        if done.code:
            raise
    folder = os.path.join(model_dirs[0], "checkpoints")
    newest = sorted(n for n in os.listdir(folder) if n.endswith(".json"))[-1][:-len(".json")]
    files = {n: os.path.getsize(os.path.join(folder, n)) for n in sorted(os.listdir(folder)) if n.startswith(newest)}
    with h5py.File(os.path.join(folder, newest + ".weights.h5"), "r") as f:
        groups = sorted(f.keys())
    print(json.dumps({"saves": len(seconds), "save_s_median": round(statistics.median(seconds), 3),
                      "save_s_min": round(min(seconds), 3), "files": files,
                      "checkpoint_mb": round(sum(files.values()) / 1e6, 2), "weights_h5_groups": groups}))


if __name__ == "__main__":
    main()
