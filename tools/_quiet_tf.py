"""Imports TensorFlow with its C++ start-up chatter silenced (import this first in a tool).

TF 2.21 writes oneDNN notices and "no CUDA driver" lines straight to file descriptor 2
before its log level applies, which would bury a tool's one-line error. Standard error is
pointed at /dev/null while TensorFlow loads and probes devices, then restored. Python
exceptions still propagate normally. OFA_TF_TF_LOGS=1 keeps the chatter.
"""

import os

if os.environ.get("OFA_TF_TF_LOGS") != "1":
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.constant(0.0) + 1.0  # first op: device initialisation logs happen here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
