"""How every tool starts: absl `app.run`, with user errors reported as one line.

A user mistake (`OfaError`) or a bad file path ends the program with one line on stderr,
naming the bad value, and exit status 2; never a traceback from deep inside TensorFlow.
"""

from __future__ import annotations

import sys
from typing import Callable


from absl import app  # noqa: E402

from ofa_tf.errors import OfaError  # noqa: E402

USER_ERROR_EXIT = 2


def run(main: Callable[[list[str]], int | None], before_first_op: Callable[[], object] | None = None) -> None:
    """`app.run(main)` with one-line user errors. `before_first_op` runs after the flags are
    parsed and before TensorFlow's runtime starts (see tools/_tf_startup.py)."""
    def guarded(argv: list[str]) -> int | None:
        if len(argv) > 1:
            _fail(f"unexpected positional arguments {argv[1:]}; every option is a --flag")
        try:
            if before_first_op is not None:
                from tools._tf_startup import start_runtime
                start_runtime(before_first_op)
            return main(argv)
        except OfaError as e:
            _fail(str(e))
        except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
            _fail(f"{e.filename}: {e.strerror}")
        return None

    app.run(guarded)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT)
