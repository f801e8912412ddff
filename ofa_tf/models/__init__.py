"""The supernet model (its graph-side arch encoding is `ofa_tf.models.arch_tensor`)."""

from ofa_tf.models.supernet import Supernet

__all__ = ["Supernet"]
