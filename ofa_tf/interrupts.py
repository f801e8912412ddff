"""Ctrl-C and SIGTERM as an exception that long work can clean up after.

A run, a search or an export that the user stops must leave nothing half-written and end
with one line. `stop_on_signals()` turns SIGINT and SIGTERM into `Interrupted` (a
`KeyboardInterrupt`, so generic `except Exception` handlers inside libraries let it
through), raised at the next Python instruction of the main thread: file writes are atomic
(`ofa_tf.io.atomic_write` removes its temporary file), and the caller says what was kept.
The command line exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The process received `signum`; `message` says what was kept (one line)."""

    def __init__(self, signum: int, message: str | None = None):
        self.signum = signum
        self.message = message or f"interrupted by {signal.Signals(signum).name}"
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def __str__(self) -> str:
        return self.message


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block SIGINT / SIGTERM raise `Interrupted` (main thread only; elsewhere a
    no-op, since Python delivers signals to the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
