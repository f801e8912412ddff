"""Shared test fixtures: a tiny space (fast to trace) and trained-looking random weights."""

from __future__ import annotations

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


def run_tool(name: str, *args: str, timeout: int = 900):
    """Runs `python -m tools.NAME ARGS...` from the repository root, capturing output."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-m", f"tools.{name}", *args], cwd=root, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(done, message: str) -> None:
    """A user error: exit status 2 and exactly one stderr line, containing `message`."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr[-2000:]
