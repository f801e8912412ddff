"""Checks of flag values the commands share, run by each command's `check_flags()` before
any work (before a model, dataset or TFLite file is loaded and before anything is written).

Each raises `OfaError` with one line naming the flag and its value (`--seed=-1: expected an
integer >= 0`). Numbers are compared as `not (value >= low)`, so NaN fails every range.
Settings of a library object are checked by that object (`RunConfig.validate`,
`export.check_request`, `SubnetMeter.check_settings`, ...), not here.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from absl import flags

from ofa_tf.errors import OfaError
from ofa_tf import io
from ofa_tf.io import unwritable_reason


def _shown(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def at_least(name: str, value: float | None, low: float, what: str = "a number") -> None:
    """`value` >= `low` (None passes: the flag's default "unset")."""
    if value is not None and not (value >= low and math.isfinite(value)):
        raise OfaError(f"--{name}={value}: expected {what} >= {low:g}")


def positive(name: str, value: float | None) -> None:
    """`value` > 0 and finite (None passes)."""
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise OfaError(f"--{name}={value}: expected a positive number")


def fraction(name: str, value: float | None, low_open: bool = False, high_open: bool = False) -> None:
    """`value` in [0, 1], with either end open (None passes)."""
    if value is None:
        return
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        span = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise OfaError(f"--{name}={value}: expected a fraction in {span}")


def seed(name: str, value: int) -> None:
    at_least(name, value, 0, "an integer")


def choice(name: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise OfaError(f"--{name}={value}: expected one of {choices}")


def required(name: str, value: Any, what: str) -> None:
    if value is None or value == "" or value == []:
        raise OfaError(f"--{name} is required: {what}")


def input_path(name: str, path: str | None, kind: str = "file") -> None:
    """`path` (when given) exists and is a `kind` ("file", "directory" or "any")."""
    if path is None:
        return
    if kind == "directory" and io.isdir(path) or kind == "file" and io.isfile(path) or (
            kind == "any" and io.exists(path)):
        return
    if io.exists(path):
        raise OfaError(f"--{name}={path}: not a {kind}")
    raise OfaError(f"--{name}={path}: no such {'file or directory' if kind == 'any' else kind}")


def output_file(name: str, path: str | None) -> None:
    """`path` can be written as a file: its directory exists and is writable."""
    reason = unwritable_reason(path) if path else None
    if reason:
        raise OfaError(f"--{name}={path}: {reason}")


def output_dir(name: str, path: str | None) -> None:
    """`path` is, or can be created as, a writable directory."""
    reason = unwritable_reason(path, directory=True) if path else None
    if reason:
        raise OfaError(f"--{name}={path}: {reason}")


def sizes_of(space: Any, name: str, sizes: Iterable[int]) -> Any:
    """`space` (a run's `SearchSpace`) at the input sizes `sizes` of `--name`, which must be
    some of the run's: its supernet trained at those only."""
    sizes = list(sizes)
    if not sizes or any(size not in space.resolutions for size in sizes):
        raise OfaError(f"--{name}={_shown(sizes)}: the run trained {list(space.resolutions)}")
    return space.with_resolutions(sizes)


def only_with(flag_values: flags.FlagValues, names: Iterable[str], condition: bool, when: str) -> None:
    """Each flag of `names` given on the command line needs `condition` (`when` says
    which): a flag that would be accepted and ignored is an error."""
    if condition:
        return
    for name in names:
        if flag_values[name].present:
            raise OfaError(f"--{name}={_shown(flag_values[name].value)}: only used with {when}")
