"""Elastic blocks defined outside ofa_tf, as a user's module (`--block_class=tests.custom_blocks:CLASS`),
and classes that are not usable blocks, for the bad-input rows."""

import keras

from ofa_tf.layers import ElasticInvertedResidual


@keras.saving.register_keras_serializable(package="ofa_tf_tests_custom")
class GeluBlock(ElasticInvertedResidual):
    """Inverted residual with GELU everywhere."""

    def activation_function(self):
        return keras.activations.gelu

    def static_activation(self, name):
        return keras.layers.Activation("gelu", name=name)


@keras.saving.register_keras_serializable(package="ofa_tf_tests_custom")
class NotABlock(keras.layers.Layer):
    """A registered Keras layer that is no elastic block."""


class UnregisteredBlock(ElasticInvertedResidual):
    """An elastic block never registered with Keras serialization."""
