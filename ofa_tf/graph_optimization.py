"""Whether TensorFlow's graph optimiser (Grappler) rewrites the traced functions.

Grappler rewrites every traced function before its first run. On a CPU's train steps that
rewrite lengthens the first call far more than it shortens each later step, so on a CPU it is
off: most CPU work here (evaluation, search, export, small runs) is short, and a long run gains
little. `python benchmarks/startup.py --graph_optimization=on` and `=off` report both (their
figures: docs/results.md). On a GPU its layout and fusion passes (NCHW
convolutions, fused convolution + bias + activation) are what make the steps fast, so it stays
on there.

Every command applies `configure_graph_optimization()` as TensorFlow starts; the
environment variable OFA_TF_GRAPH_OPTIMIZATION (`auto`, `on` or `off`) chooses:
`auto` (the default) turns Grappler off on a host with no GPU or TPU and leaves it on
otherwise. Library code that builds its own steps can call it the same way.
"""

from __future__ import annotations

import os
from types import ModuleType

from ofa_tf.errors import OfaError

ENVIRONMENT_VARIABLE = "OFA_TF_GRAPH_OPTIMIZATION"
MODES = ("auto", "on", "off")


def _tensorflow() -> ModuleType:
    """TensorFlow, imported when first needed: `ofa_tf.cli.startup` imports this module
    before TensorFlow is loaded (silenced) there."""
    import tensorflow as tf  # noqa: PLC0415

    return tf


def has_accelerator() -> bool:
    """A GPU or TPU is visible to TensorFlow."""
    tf = _tensorflow()
    return bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))


def configure_graph_optimization(mode: str | None = None) -> bool:
    """Turns Grappler on or off for the functions traced from now on; returns whether it is on.

    `mode`: `auto`, `on` or `off`; None reads OFA_TF_GRAPH_OPTIMIZATION (default `auto`:
    on only with a GPU or TPU)."""
    source = "mode" if mode is not None else ENVIRONMENT_VARIABLE
    mode = mode if mode is not None else os.environ.get(ENVIRONMENT_VARIABLE, "auto")
    if mode not in MODES:
        raise OfaError(f"{source}={mode!r}: expected one of {list(MODES)}")
    on = mode == "on" or (mode == "auto" and has_accelerator())
    _tensorflow().config.optimizer.set_experimental_options({"disable_meta_optimizer": not on})
    return on


def graph_optimization_enabled() -> bool:
    """Whether Grappler is on for the functions traced now."""
    return not _tensorflow().config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
