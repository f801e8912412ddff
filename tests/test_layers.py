"""Every elastic layer and block through the shared harness, plus layer-specific facts."""

import numpy as np
import pytest
import tensorflow as tf

from layer_harness import run_elastic_layer_test
from ofa_tf import OfaError
from ofa_tf.layers import (ElasticBatchNormalization, ElasticConv2D, ElasticDense, ElasticDepthwiseConv2D,
                           ElasticInvertedResidual, ElasticSqueezeExcite, ElasticStage)
from ofa_tf.layers.base import leading


@pytest.mark.unit
def test_elastic_conv2d():
    run_elastic_layer_test(
        lambda: ElasticConv2D(16, 3, strides=2, use_bias=True, name="conv"), (9, 9, 12),
        [{}, {"out_channels": 8}, {"in_channels": 5, "out_channels": 3}])


@pytest.mark.unit
def test_elastic_dense():
    layer_shape = (20,)
    run_elastic_layer_test(lambda: ElasticDense(7, name="dense"), layer_shape,
                           [{}, {"in_channels": 9}, {"in_channels": 4, "out_units": 3}])


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["center_crop", "transform"])
def test_elastic_depthwise(mode):
    run_elastic_layer_test(
        lambda: ElasticDepthwiseConv2D((3, 5, 7), strides=2, kernel_mode=mode, name="dw"), (11, 11, 6),
        [{}, {"kernel_size": 5}, {"kernel_size": 3, "in_channels": 4}, {"kernel_size": 7, "in_channels": 2}])


@pytest.mark.unit
def test_depthwise_small_kernel_is_centre_of_big_one():
    layer = ElasticDepthwiseConv2D((3, 5, 7), name="dw")
    layer.build((None, 8, 8, 4))
    full = layer.depthwise_kernel.numpy()
    np.testing.assert_array_equal(layer.active_kernel(3, 4).numpy(), full[2:5, 2:5])
    np.testing.assert_array_equal(layer.active_kernel(5, 4).numpy(), full[1:6, 1:6])


@pytest.mark.unit
def test_transform_mode_changes_small_kernels_only_through_learned_matrices():
    layer = ElasticDepthwiseConv2D((3, 5, 7), kernel_mode="transform", name="dw")
    layer.build((None, 8, 8, 4))
    assert sorted(w.path.split("/")[-1] for w in layer.weights) == ["depthwise_kernel", "transform_3x3",
                                                                     "transform_5x5"]
    full = layer.depthwise_kernel.numpy()
    np.testing.assert_allclose(layer.active_kernel(3, 4).numpy(), full[2:5, 2:5], atol=1e-6)  # identity init
    layer.transforms[5].assign(np.eye(25, dtype="float32") * 2.0)
    np.testing.assert_allclose(layer.active_kernel(5, 4).numpy(), 2 * full[1:6, 1:6], atol=1e-6)
    np.testing.assert_allclose(layer.active_kernel(3, 4).numpy(), 2 * full[2:5, 2:5], atol=1e-6)
    np.testing.assert_allclose(layer.active_kernel(7, 4).numpy(), full, atol=1e-6)


@pytest.mark.unit
def test_elastic_batch_norm_inference_and_training():
    run_elastic_layer_test(lambda: ElasticBatchNormalization(name="bn"), (5, 5, 10),
                           [{}, {"in_channels": 6}], training_modes=(False, True))


@pytest.mark.unit
def test_batch_norm_updates_only_active_statistics():
    bn = ElasticBatchNormalization(momentum=0.5, name="bn")
    bn.build((None, 4, 4, 8))
    x = tf.random.normal((4, 4, 4, 3)) + 3.0
    bn(x, training=True)
    mean = bn.moving_mean.numpy()
    np.testing.assert_allclose(mean[:3], 0.5 * tf.reduce_mean(x, (0, 1, 2)).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(mean[3:], 0.0)
    np.testing.assert_array_equal(bn.moving_variance.numpy()[3:], 1.0)


@pytest.mark.unit
def test_elastic_squeeze_excite():
    run_elastic_layer_test(lambda: ElasticSqueezeExcite(name="se"), (6, 6, 32),
                           [{}, {"in_channels": 16, "se_channels": 8}, {"in_channels": 24, "se_channels": 8}])


@pytest.mark.unit
@pytest.mark.parametrize("use_se,activation", [(True, "hard_swish"), (False, "relu")])
def test_elastic_inverted_residual(use_se, activation):
    run_elastic_layer_test(
        lambda: ElasticInvertedResidual(16, (3, 5, 7), (3.0, 4.0, 6.0), 1, activation, use_se, name="block"),
        (8, 8, 16),
        [{}, {"kernel_size": 3, "mid_channels": 48, "se_channels": 16},
         {"kernel_size": 5, "mid_channels": 64, "se_channels": 16}],
        training_modes=(False, True))


@pytest.mark.unit
def test_block_expand_ratio_argument_matches_mid_channels():
    block = ElasticInvertedResidual(24, (3,), (3.0, 6.0), 2, "relu", False, name="b")
    block.build((None, 8, 8, 16))
    assert block.max_mid_channels == 96 and block.residual is False
    x = tf.random.normal((1, 8, 8, 16))
    np.testing.assert_allclose(block(x, expand_ratio=3.0).numpy(), block(x, mid_channels=48).numpy())


@pytest.mark.integration
def test_elastic_stage_depth_and_width():
    def make():
        return ElasticStage(24, (1, 2, 3), (3, 5), (2.0, 3.0), 2, "relu", True, first_residual=False, name="st")

    run_elastic_layer_test(
        make, (8, 8, 16),
        [{"depth": 3}, {"depth": 1, "out_channels": 16},
         {"depth": 2, "out_channels": 24, "block_choices": [[5, 48, 8], [3, 48, 16], [3, 48, 16]]}],
        training_modes=(False, True))


@pytest.mark.unit
def test_skipped_blocks_pass_input_through_exactly():
    stage = ElasticStage(16, (1, 3), (3,), (2.0,), 1, "relu", False, name="st")
    stage.build((None, 4, 4, 16))
    x = tf.random.normal((1, 4, 4, 16))
    one = stage(x, depth=1).numpy()
    np.testing.assert_array_equal(one, stage.blocks[0](x).numpy())
    np.testing.assert_array_equal(stage(x, depth=tf.constant(1)).numpy(), one)


@pytest.mark.unit
@pytest.mark.parametrize("make,bad", [
    (lambda: ElasticDepthwiseConv2D((3, 4)), "kernel_sizes"),
    (lambda: ElasticDepthwiseConv2D((3,), kernel_mode="warp"), "kernel_mode"),
    (lambda: ElasticInvertedResidual(8, expand_ratios=(0.0,)), "expand_ratios"),
    (lambda: ElasticStage(8, depths=(0, 1)), "depths"),
    (lambda: ElasticStage(8, block_class="NoSuchBlock"), "block_class"),
])
def test_bad_layer_arguments_raise_clear_errors(make, bad):
    with pytest.raises(OfaError, match=bad):
        make()


@pytest.mark.unit
def test_leading_slices_the_first_entries_and_leaves_a_whole_tensor_alone():
    value = tf.reshape(tf.range(3 * 3 * 6 * 8, dtype=tf.float32), (3, 3, 6, 8))
    assert leading(value, [6, 8]) is value  # the max net: no op at all
    assert leading(value, [None, 8]) is value
    np.testing.assert_array_equal(leading(value, [4, None]).numpy(), value.numpy()[..., :4, :])

    @tf.function(input_signature=[tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32)])
    def sliced(inputs, outputs):
        result = leading(value, [inputs, outputs])
        assert result.shape.as_list() == [3, 3, None, None]  # the whole axes keep their static size
        mixed = leading(value, [inputs, 5])
        assert mixed.shape.as_list() == [3, 3, None, 5]
        return result

    np.testing.assert_array_equal(sliced(tf.constant(2), tf.constant(3)).numpy(), value.numpy()[..., :2, :3])


def _depthwise_gradients(conv, x, kernel):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        y = conv(x, kernel)
        loss = tf.reduce_sum(y * tf.sin(y))  # a non-uniform upstream gradient
    return [y, *tape.gradient(loss, [x, kernel])]


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["SAME", "VALID"])
@pytest.mark.parametrize("strides", [1, 2])
def test_depthwise_conv_gradients_equal_tensorflows_for_every_kernel_size(mode, strides):
    """`depthwise_conv` (TensorFlow's own filter-gradient kernel from 5x5 on, picked by a
    `tf.switch_case` for a tensor kernel size) gives TensorFlow's gradients, and the traced
    graph really takes the explicit-padding op for 5x5 and 7x7 only."""
    from ofa_tf.layers.depthwise import depthwise_conv

    x = tf.random.stateless_normal((3, 10, 10, 5), seed=(4, 5))
    sizes = (3, 5, 7)
    for k in sizes:
        kernel = tf.random.stateless_normal((k, k, 5, 1), seed=(k, 1))
        expected = _depthwise_gradients(lambda a, w: tf.nn.depthwise_conv2d(a, w, [1, strides, strides, 1], mode),
                                        x, kernel)
        for size in (k, tf.constant(k)):  # a Python int, and a tensor as the supernet passes it
            traced = tf.function(lambda a, w, size=size: _depthwise_gradients(
                lambda b, v: depthwise_conv(b, v, size, sizes, strides, mode), a, w))
            got = traced(x, kernel)
            for e, g in zip(expected, got):
                np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)
        paddings = {op.get_attr("padding") for op in tf.function(lambda a, w: _depthwise_gradients(
            lambda b, v: depthwise_conv(b, v, k, sizes, strides, mode), a, w)).get_concrete_function(
                x, kernel).graph.get_operations() if op.type == "DepthwiseConv2dNativeBackpropFilter"}
        assert paddings == ({b"EXPLICIT"} if k >= 5 else {mode.encode()}), (k, paddings)


@pytest.mark.unit
def test_pointwise_conv_is_a_1x1_convolution_with_tensor_channel_counts():
    """1x1 stride-1 elastic convolutions run as matrix products: the same outputs and
    gradients as `tf.nn.conv2d`, also when the channel counts are tensors."""
    from ofa_tf.layers.conv import pointwise_conv

    layer = ElasticConv2D(12, 1, name="pw")
    layer.build((None, 6, 6, 9))
    x = tf.random.stateless_normal((2, 6, 6, 9), seed=(7, 8))

    @tf.function
    def both(x, in_channels, out_channels):
        x = x[..., :in_channels]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = layer(x, out_channels=out_channels)
            kernel = layer.kernel[:, :, :in_channels, :out_channels]
            reference = tf.nn.conv2d(x, kernel, 1, "SAME")
            loss_ours, loss_reference = tf.reduce_sum(ours * ours), tf.reduce_sum(reference * reference)
        return (ours, reference, tape.gradient(loss_ours, [x, layer.kernel]),
                tape.gradient(loss_reference, [x, layer.kernel]))

    for in_channels, out_channels in [(9, 12), (4, 5)]:
        ours, reference, grads, reference_grads = both(x, tf.constant(in_channels), tf.constant(out_channels))
        assert ours.shape == (2, 6, 6, out_channels)
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)
        for g, r in zip(grads, reference_grads):
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-5, atol=1e-5)
    assert pointwise_conv(x, layer.kernel).shape == (2, 6, 6, 12)
    ops = {op.type for op in tf.function(lambda a: layer(a)).get_concrete_function(x).graph.get_operations()}
    assert "MatMul" in ops and "Conv2D" not in ops
