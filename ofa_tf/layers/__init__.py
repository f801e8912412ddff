"""Elastic Keras layers: each owns its weights at max size and hands back plain Keras twins."""

from ofa_tf.layers.base import ElasticComposite, ElasticLayer, prefix_slice
from ofa_tf.layers.batch_norm import ElasticBatchNormalization
from ofa_tf.layers.block import ElasticInvertedResidual
from ofa_tf.layers.conv import ElasticConv2D
from ofa_tf.layers.dense import ElasticDense
from ofa_tf.layers.depthwise import KERNEL_MODES, ElasticDepthwiseConv2D, check_kernel_mode
from ofa_tf.layers.squeeze_excite import ElasticSqueezeExcite
from ofa_tf.layers.stage import BLOCK_CHOICE_FIELDS, ElasticStage, resolve_block_class

__all__ = ["BLOCK_CHOICE_FIELDS", "KERNEL_MODES", "ElasticBatchNormalization", "ElasticComposite",
           "ElasticConv2D", "ElasticDense", "ElasticDepthwiseConv2D", "ElasticInvertedResidual",
           "ElasticLayer", "ElasticSqueezeExcite", "ElasticStage", "check_kernel_mode", "prefix_slice",
           "resolve_block_class"]
