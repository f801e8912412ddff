"""TensorFlow start-up with its C++ chatter silenced, split in two steps.

TF 2.21 writes oneDNN notices and "no CUDA driver" lines straight to file descriptor 2
before its log level applies, which would bury a tool's one-line error. `quiet_native_logs()` (ofa_tf/native_logs.py)
points standard error at /dev/null while TensorFlow loads and while it initialises its
runtime (the first op); Python exceptions still propagate normally. OFA_TF_TF_LOGS=1 keeps
the chatter.

Importing this module only loads TensorFlow. The runtime starts at `start_runtime()`: a
tool that must configure TensorFlow before its first op (MultiWorkerMirroredStrategy,
logical CPU devices) passes that set-up to `tools._runner.run(main, before_first_op=...)`.
Other tools import `tools._quiet_tf`, which starts the runtime at once.
"""

from __future__ import annotations

from typing import Callable

from ofa_tf.native_logs import quiet_native_logs


with quiet_native_logs():
    import tensorflow as tf

    tf.config.list_physical_devices()

_started = False


def start_runtime(before_first_op: Callable[[], object] | None = None) -> None:
    """Runs `before_first_op` (if any), then TensorFlow's first op, both silenced; once."""
    global _started
    if _started:
        return
    with quiet_native_logs():
        if before_first_op is not None:
            before_first_op()
        tf.constant(0.0) + 1.0  # device initialisation logs happen here
    _started = True
