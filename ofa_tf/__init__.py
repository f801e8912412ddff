"""ofa_tf: once-for-all supernet training, search and deployment for Keras 3 / TensorFlow."""

from ofa_tf.errors import OfaError

__version__ = "0.1.0"
__all__ = ["OfaError", "__version__"]
