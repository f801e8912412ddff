"""absl command-line programs; run them from the repository root as `python -m tools.NAME`.

TensorFlow's C++ start-up chatter (oneDNN notices, "no CUDA driver" on CPU machines) is
silenced here, before any tool imports TensorFlow, so a tool's stderr holds only what it
means to say; set TF_CPP_MIN_LOG_LEVEL yourself to see it again.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
