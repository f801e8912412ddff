"""Small checks and renderings of values read from users' files, in one place.

Readers of config.json, arch files, lock files and dataset fingerprints all ask the same
questions of a JSON value (is it a count? a finite number?) and all quote a bad one in a
one-line message. A JSON value can be odd in ways Python's own checks trip over: `true` is
an int to `isinstance`, a 400-digit integer overflows `math.isfinite` and is too long for
`str`, NaN and 1e400 parse as floats. These helpers answer without raising, so every reader
words such a value the same way. Standard library only: the lowest layers use it.
"""

from __future__ import annotations

import json
import math
import reprlib
from typing import Any

MAX_INT64 = 2 ** 63  # an integer at or beyond it is no count or setting a run used (int64 everywhere)


def is_int(value: Any) -> bool:
    """An integer (not a bool) that fits int64."""
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_INT64 < value < MAX_INT64


def is_count(value: Any) -> bool:
    """An integer >= 0 (not a bool) that fits int64."""
    return is_int(value) and value >= 0


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is finite: not NaN, not infinite, and not an integer
    too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def shown(value: Any, limit: int = 60, *, as_json: bool = False) -> str:
    """`value` for a one-line message, shortened to `limit` characters: its repr (`'abc'`,
    `inf`), or with `as_json` as a JSON file holds it (`"abc"`, `[]`), for values quoted
    from config.json. Never raises (a 400-digit number, a deeply nested list)."""
    text = None
    if as_json:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            pass
    if text is None:
        try:
            text = reprlib.repr(value)
        except (ValueError, RecursionError):  # an int too long for str()
            text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


__all__ = ["MAX_INT64", "is_count", "is_finite_number", "is_int", "shown"]
