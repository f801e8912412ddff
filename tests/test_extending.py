"""Keras users subclass the elastic block (other activation; an extra elastic part) and train."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import randomize_weights, tiny_space
from layer_harness import run_elastic_layer_test
from ofa_tf.layers import ElasticInvertedResidual
from ofa_tf.models import Supernet

pytestmark = pytest.mark.integration


@keras.saving.register_keras_serializable(package="ofa_tf_tests")
class SwishBlock(ElasticInvertedResidual):
    """Inverted residual with swish everywhere."""

    def activation_function(self):
        return keras.activations.silu

    def static_activation(self, name):
        return keras.layers.Activation("silu", name=name)


@keras.saving.register_keras_serializable(package="ofa_tf_tests")
class ScaledBlock(ElasticInvertedResidual):
    """Adds a learnable per-channel output scale, elastic with the block's width."""

    def build_sublayers(self, input_shape):
        super().build_sublayers(input_shape)
        self.out_scale = self.add_weight(name="out_scale", shape=(self.out_channels,), initializer="ones")

    def call(self, inputs, out_channels=None, training=None, **choice):
        body = super().call(inputs, out_channels=out_channels, training=training, **choice)
        if self.residual:
            body = body - inputs
        channels = tf.shape(body)[-1]
        body = body * self.out_scale.value[:channels]
        return body + inputs if self.residual else body

    def apply_static(self, x, out_channels=None, **choice):
        inputs = x
        residual, self.residual = self.residual, False
        try:
            body = super().apply_static(x, out_channels=out_channels, **choice)
        finally:
            self.residual = residual
        channels = int(body.shape[-1])
        dw = keras.layers.DepthwiseConv2D(1, use_bias=False, name=f"{self.name}_out_scale")
        dw.build(body.shape)
        dw.set_weights([self.out_scale.numpy()[:channels].reshape(1, 1, channels, 1)])
        body = dw(body)
        return keras.layers.Add(name=f"{self.name}_add")([body, inputs]) if self.residual else body


def _train(model, steps=30):
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16, 16, 3)).astype("float32")
    y = (x[:, :8].mean(axis=(1, 2, 3)) > 0).astype("int32")  # learnable: brightness of the top half
    history = model.fit(x, y, batch_size=16, epochs=steps // 4, verbose=0)
    return history.history["loss"], x


def test_subclassed_activation_block_trains_and_extracts():
    model = Supernet(tiny_space(), num_classes=2, block_class=SwishBlock)
    losses, x = _train(model)
    assert losses[-1] < losses[0] * 0.8
    assert all(isinstance(b, SwishBlock) for stage in model.stages for b in stage.blocks)
    for seed in range(3):
        arch = model.space.sample(seed, resolution=16)
        subnet = model.get_subnet(arch)
        assert any(getattr(l, "activation", None) is keras.activations.silu for l in subnet.layers)
        np.testing.assert_allclose(model(x[:4], arch=arch).numpy(), subnet(x[:4]).numpy(), atol=1e-4)
    clone = Supernet.from_config(model.get_config())
    assert clone.block_class is SwishBlock


def test_subclass_with_extra_elastic_weight_passes_the_layer_harness_and_trains():
    run_elastic_layer_test(
        lambda: ScaledBlock(16, (3, 5), (2.0, 3.0), 1, "relu", True, name="scaled"), (8, 8, 16),
        [{}, {"kernel_size": 3, "mid_channels": 32, "se_channels": 8}], training_modes=(False, True))
    model = Supernet(tiny_space(), num_classes=2, block_class=ScaledBlock)
    losses, x = _train(model)
    assert losses[-1] < losses[0] * 0.8
    scales = [b.out_scale.numpy() for stage in model.stages for b in stage.blocks]
    assert any(not np.allclose(s, 1.0) for s in scales)  # the new weight was trained
    randomize_weights(model, seed=1)
    arch = model.space.sample(2, resolution=16)
    np.testing.assert_allclose(model(x[:4], arch=arch).numpy(), model.get_subnet(arch)(x[:4]).numpy(), atol=1e-4)
