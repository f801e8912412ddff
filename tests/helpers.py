"""Shared test fixtures: a tiny space (fast to trace) and trained-looking random weights."""

from __future__ import annotations

import os

import numpy as np

from ofa_tf.spaces import SearchSpace, StageSpec


def tiny_space(resolutions=(16, 24)) -> SearchSpace:
    """Three small stages covering every elastic dimension: kernel, expand, depth, width,
    SE, a fixed first block and an elastic-width last stage."""
    return SearchSpace(
        name="tiny", stem_widths=(8,), stem_activation="hard_swish",
        stages=(
            StageSpec((8,), (1,), (3,), (1.0,), 1, "relu", False),
            StageSpec((16,), (1, 2, 3), (3, 5, 7), (2.0, 3.0), 2, "relu", True),
            StageSpec((16, 24), (1, 2), (3, 5), (2.0, 3.0), 2, "hard_swish", True),
        ),
        final_expand_ratio=2.0, head_widths=(32,), head_activation="hard_swish",
        resolutions=tuple(resolutions))


def randomize_weights(model, seed: int = 0) -> None:
    """Gives BN statistics, gammas and kernel transforms trained-looking random values, so
    that comparisons in inference mode exercise every weight (fresh BN is the identity)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        name = v.path.split("/")[-1]
        shape = tuple(v.shape)
        if name == "moving_variance":
            v.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name == "moving_mean":
            v.assign(rng.normal(0, 0.1, shape).astype("float32"))
        elif name == "gamma":
            v.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif name in ("beta", "bias"):
            v.assign(rng.normal(0, 0.1, shape).astype("float32"))
        elif name.startswith("transform_"):
            v.assign((np.eye(shape[0]) + rng.normal(0, 0.1, shape)).astype("float32"))


# tools.NAME aliases whose ofa_tf.cli module has another name
CLI_MODULES = {"export_tflite": "export"}


def run_tool(name: str, *args: str, timeout: int = 900, env: dict | None = None):
    """Runs the command `python -m ofa_tf.cli.NAME ARGS...` (what `ofa-NAME` runs) from the
    repository root, capturing output. `name` may be a `tools.NAME` alias (export_tflite);
    `env` adds to (or overrides) this process's environment."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    module = f"ofa_tf.cli.{CLI_MODULES.get(name, name)}"
    return subprocess.run([sys.executable, "-m", module, *args], cwd=root, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_error(done, message: str) -> None:
    """A user error: exit status 2 and exactly one stderr line, containing `message`."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]


def make_run_dir(path, space=None, num_classes: int = 10, seed: int = 0, dataset: str | None = None,
                 method: str = "deps", image_size=None) -> str:
    """A run directory as `ofa-train` leaves it (config.json + one checkpoint), without
    training: the supernet gets `randomize_weights`, so tools that load a run (evaluate,
    search, export) can be tested in seconds. `space` defaults to `tiny_space()`; the
    dataset defaults to the shipped Fashion-MNIST subset."""
    import json

    from ofa_tf.data import MEAN, STD
    from ofa_tf.runs import RunConfig
    from ofa_tf.runs.directory import CHECKPOINT_DIR, CONFIG_FILE
    from ofa_tf.runs.plan import build_model
    from ofa_tf.training import build_method

    space = space or tiny_space()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dataset = dataset or "npz:" + os.path.join(root, "data", "fashion_mnist_small.npz")
    image_size = tuple(image_size or space.resolutions)
    config = RunConfig(method=method, space=space.name, image_size=image_size, dataset=dataset, seed=seed,
                       epochs=1, steps_per_epoch=1, batch_size=16, bn_calibration_images=64)
    method_obj = build_method(method, space, steps_per_epoch=1)
    model = build_model(config, space, num_classes, method_obj)
    randomize_weights(model, seed)
    os.makedirs(os.path.join(path, CHECKPOINT_DIR), exist_ok=True)
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump({"run": config.to_dict(), "method": method_obj.to_config(), "space": space.to_config(),
                   "class_names": [str(i) for i in range(num_classes)], "num_classes": num_classes,
                   "steps_per_epoch": 1, "normalization": {"mean": list(MEAN), "std": list(STD)}}, f)
    model.save_weights(os.path.join(path, CHECKPOINT_DIR, "ckpt-00000001.weights.h5"))
    np.savez(os.path.join(path, CHECKPOINT_DIR, "ckpt-00000001.optimizer.npz"))  # tools load weights only
    with open(os.path.join(path, CHECKPOINT_DIR, "ckpt-00000001.json"), "w") as f:
        json.dump({"epoch": 1, "step": 1}, f)
    return str(path)


def synthetic_latency_table(space, path: str, num_classes: int = 10):
    """A real `LatencyTable` file whose op latencies are made up (timing ops takes minutes):
    each op's ms grows with its work, so bigger subnets are slower."""
    from ofa_tf.latency.lut import LatencyTable, distinct_op_specs
    tables = {}
    for resolution in space.resolutions:
        ops = {}
        for op in distinct_op_specs(space, resolution, num_classes):
            ms = (op.mid_channels * max(op.kernel, 1) ** 2 + op.in_shape[0] * op.out_shape[2]) / 1000
            ops[op.key] = {"count": 1, "mean": ms, "std": 0.0, "median": ms}
        tables[resolution] = {"overhead_ms": 0.0, "ops": ops}
    table = LatencyTable(space, num_classes, tables)
    table.save(path)
    return table


SIZES = [(20, 30), (36, 18), (24, 24), (40, 28), (18, 44), (30, 22)]


def random_image(rng, height, width, channels=3):
    """A uint8 image of random pixels."""
    return rng.integers(0, 255, (height, width, channels)).astype(np.uint8)


def make_folder(root, per_class=6, classes=("cat", "dog"), corrupt=None, seed=0):
    """Class folders of JPEGs and PNGs (a grayscale one too) of mixed sizes; `corrupt`:
    (class, file name) written as a file that is not an image."""
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            height, width = SIZES[(i + c) % len(SIZES)]
            if i % 3 == 2:
                data, ext = tf.io.encode_png(random_image(rng, height, width, 1)), "png"
            elif i % 3 == 1:
                data, ext = tf.io.encode_png(random_image(rng, height, width)), "png"
            else:
                data, ext = tf.io.encode_jpeg(random_image(rng, height, width)), "jpg"
            tf.io.write_file(os.path.join(root, name, f"{i}.{ext}"), data)
    if corrupt:
        with open(os.path.join(root, *corrupt), "wb") as f:
            f.write(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return root
