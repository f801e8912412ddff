"""Elastic Keras layers: each owns its weights at max size and hands back plain Keras twins."""

from ofa_tf.layers.base import ElasticComposite, ElasticLayer
from ofa_tf.layers.batch_norm import ElasticBatchNormalization
from ofa_tf.layers.block import ElasticInvertedResidual
from ofa_tf.layers.conv import ElasticConv2D
from ofa_tf.layers.dense import ElasticDense
from ofa_tf.layers.depthwise import ElasticDepthwiseConv2D
from ofa_tf.layers.squeeze_excite import ElasticSqueezeExcite
from ofa_tf.layers.stage import ElasticStage

__all__ = ["ElasticBatchNormalization", "ElasticComposite", "ElasticConv2D", "ElasticDense", "ElasticDepthwiseConv2D",
           "ElasticInvertedResidual", "ElasticLayer", "ElasticSqueezeExcite", "ElasticStage"]
