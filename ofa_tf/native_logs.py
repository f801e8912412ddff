"""Silencing native (C++) log output on file descriptor 2.

TensorFlow and LiteRT write start-up notices, delegate banners and converter summaries
straight to fd 2, below Python's `sys.stderr`, where they would bury a tool's one-line
error. No TensorFlow import here: tools use it before TensorFlow loads.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Points fd 2 at /dev/null for the block; OFA_TF_TF_LOGS=1 keeps the output."""
    if os.environ.get("OFA_TF_TF_LOGS") == "1":
        yield
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
