"""Measuring subnets: BN recalibration, top-1 accuracy, and the traced calls both use.

Importing this package imports TensorFlow.
"""

from ofa_tf.evaluation.bn_recalibration import recalibrate_bn
from ofa_tf.evaluation.callbacks import SubnetAccuracy
from ofa_tf.evaluation.subnet_accuracy import ArchEvaluator, accuracy, evaluate_arch, evaluate_archs, inference_logits

__all__ = ["ArchEvaluator", "SubnetAccuracy", "accuracy", "evaluate_arch", "evaluate_archs", "inference_logits",
           "recalibrate_bn"]
