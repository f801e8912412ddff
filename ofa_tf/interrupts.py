"""Ctrl-C and SIGTERM as an exception that long work can clean up after.

A run, a search or an export that the user stops must leave nothing half-written and end
with one line. Within `stop_on_signals()` SIGINT and SIGTERM become `Interrupted` (a
`KeyboardInterrupt`, so generic `except Exception` handlers inside libraries let it
through), and the caller says what was kept. The command line exits with 128 + the signal
number (130 for Ctrl-C, 143 for SIGTERM). Every command runs its work within
`stop_on_signals()` (`ofa_tf.cli.startup.run`), and before and after its work takes the
signals as `ofa_tf.cli.startup` describes, from the moment it starts.

Where the exception may be raised matters. Python runs a signal handler at the next
bytecode of the main thread, which can be the middle of Keras creating a variable or of a
callback that TensorFlow's C++ runtime is calling; unwinding from there has crashed the
process (SIGSEGV instead of exit 130). So a signal is recorded, not raised, and the work
raises it at points where nothing is half-built: `raise_if_interrupted()` between steps,
between evaluated subnets, between calibration batches. Regions where unwinding at any
instruction is known to be safe (tracing and running a compiled step: pure Python graph
building, then waiting on the runtime) are marked `interruptible()`, so a Ctrl-C during a
minutes-long first trace stops at once. A second signal always raises at once: the user
insists.
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


class _State:
    pending: int | None = None  # the first signal received and not raised yet
    interruptible = 0  # depth of `interruptible()` blocks: raise at once
    depth = 0  # depth of `stop_on_signals()` blocks (a command's, around a library call with its own)


def _record_or_raise(signum, frame) -> None:
    if _State.interruptible or _State.pending is not None:
        _State.pending = None
        raise Interrupted(signum)
    _State.pending = signum


def interrupted_now() -> int | None:
    """The pending signal's number, taken (so it is not raised again), or None."""
    signum, _State.pending = _State.pending, None
    return signum


def raise_if_interrupted() -> None:
    """Raises `Interrupted` if a signal arrived since the last check (a no-op outside
    `stop_on_signals()`). Call it where stopping leaves nothing half-done."""
    signum = interrupted_now()
    if signum is not None:
        raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block a signal raises at once (and one that arrived before it, on entry)."""
    raise_if_interrupted()
    _State.interruptible += 1
    try:
        yield
    finally:
        _State.interruptible -= 1


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block SIGINT / SIGTERM end the work with `Interrupted` at the next
    `raise_if_interrupted()` or inside `interruptible()` (main thread only; elsewhere a
    no-op, since Python delivers signals to the main thread). A signal still pending when
    the block ends is raised then. Blocks nest: every command's work runs in one
    (`ofa_tf.cli.startup.run`), and a library call with its own (`ofa_tf.runs.train`) keeps a
    signal that arrived before it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _State.depth:  # the handlers are in place, and a pending signal stays pending
        _State.depth += 1
        try:
            yield
            raise_if_interrupted()
        finally:
            _State.depth -= 1
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _State.pending, _State.interruptible, _State.depth = None, 0, 1
    for s in SIGNALS:
        signal.signal(s, _record_or_raise)
    try:
        yield
        raise_if_interrupted()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _State.pending, _State.depth = None, 0
