"""The supernet model and the graph-side arch encoding."""

from ofa_tf.models.arch_tensor import ArchTensorLayout
from ofa_tf.models.supernet import Supernet

__all__ = ["ArchTensorLayout", "Supernet"]
