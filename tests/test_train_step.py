"""The mathematics of OnceForAllModel.train_step on a tiny supernet (DεpS, arXiv:2407.06167, eq. 4)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import randomize_weights, tiny_space
from ofa_tf.evaluation import recalibrate_bn
from ofa_tf.training import OnceForAllModel, PhaseController, build_method, sort_mid_channels
from ofa_tf.training.distillation import distillation_loss, label_loss
from ofa_tf.models import Supernet
from ofa_tf.evaluation.bn_recalibration import batch_norm_layers

LR = 0.1


@pytest.fixture(scope="module")
def setup():
    model = OnceForAllModel(tiny_space(), num_classes=4, max_subnets=2, dropout=0.0, kd_temperature=2.0)
    model.build()
    randomize_weights(model, seed=4)
    model.compile(optimizer=keras.optimizers.SGD(LR))
    model.optimizer.build(model.supernet_trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, size=(8,)).astype("int32")
    archs = [model.space.min_arch(16), model.space.sample(5, resolution=16)]
    return model, x, y, archs


def _state(model, archs, active, epsilon, train_full=1.0, kd_weight=1.0, label_weight=0.0):
    slots = np.zeros(model.step_archs.shape, np.int32)
    for j, arch in enumerate(archs):
        slots[j] = model.layout.to_vector(arch)
    model.step_archs.assign(slots)
    model.step_active.assign(np.array(active, np.float32))
    model.epsilon.assign(epsilon)
    model.train_full.assign(train_full)
    model.kd_weight.assign(kd_weight)
    model.subnet_label_weight.assign(label_weight)
    model.teacher_code.assign(1)


def _step(model, x, y):
    before = [v.numpy() for v in model.supernet_trainable_variables]
    stats = [v.numpy() for v in model.non_trainable_variables]
    model.train_on_batch(x, y)
    after = [v.numpy() for v in model.supernet_trainable_variables]
    for v, value in zip(model.supernet_trainable_variables, before):  # restore for the next case
        v.assign(value)
    for v, value in zip(model.non_trainable_variables, stats):
        v.assign(value)
    return [b - a for b, a in zip(before, after)]  # = lr * gradient (plain SGD)


def _manual_gradients(model, x, y, archs):
    variables = model.supernet_trainable_variables
    with tf.GradientTape() as tape:
        full = model(x, arch="max", training=True)
        loss = label_loss(y, full, model.label_smoothing)
    g_full = tape.gradient(loss, variables)
    subnet_grads = []
    for arch in archs:
        with tf.GradientTape() as tape:
            loss = distillation_loss(model(x, arch=arch, training=True), full, model.kd_temperature)
        subnet_grads.append(tape.gradient(loss, variables))
    zero = lambda g, v: np.zeros(v.shape) if g is None else g.numpy()  # noqa: E731
    return ([zero(g, v) for g, v in zip(g_full, variables)],
            [[zero(g, v) for g, v in zip(gs, variables)] for gs in subnet_grads])


@pytest.mark.integration
def test_epsilon_zero_equals_a_full_model_only_step(setup):
    model, x, y, archs = setup
    _state(model, archs, [1, 1], epsilon=0.0)
    with_subnets = _step(model, x, y)
    _state(model, archs, [0, 0], epsilon=1.0)
    full_only = _step(model, x, y)
    for a, b in zip(with_subnets, full_only):
        np.testing.assert_allclose(a, b, atol=1e-7)
    assert any(np.any(d) for d in full_only)


@pytest.mark.integration
def test_epsilon_one_equals_the_summed_gradients(setup):
    model, x, y, archs = setup
    g_full, g_subnets = _manual_gradients(model, x, y, archs)
    _state(model, archs, [1, 1], epsilon=1.0)
    update = _step(model, x, y)
    for j, u in enumerate(update):
        expected = LR * (g_full[j] + g_subnets[0][j] + g_subnets[1][j])
        np.testing.assert_allclose(u, expected, atol=2e-5, rtol=1e-3)
    _state(model, archs, [1, 1], epsilon=0.25)
    quarter = _step(model, x, y)
    for j, u in enumerate(quarter):
        expected = LR * (g_full[j] + 0.25 * (g_subnets[0][j] + g_subnets[1][j]))
        np.testing.assert_allclose(u, expected, atol=2e-5, rtol=1e-3)


@pytest.mark.integration
def test_distillation_sends_no_gradient_into_the_teacher(setup):
    # The teacher is the full model's output. Weights that only the full model uses (the
    # third block of stage 1, skipped by the min subnet) must be updated by the full
    # model's own label loss alone: the subnets' distillation terms add nothing to them.
    model, x, y, _ = setup
    small = [model.space.min_arch(16)] * 2
    g_full, _ = _manual_gradients(model, x, y, [])
    _state(model, small, [1, 1], epsilon=1.0)
    update = _step(model, x, y)
    used_only_by_max = [i for i, v in enumerate(model.supernet_trainable_variables) if "stage1_block2" in v.path]
    assert used_only_by_max
    for i in used_only_by_max:
        np.testing.assert_allclose(update[i], LR * g_full[i], atol=1e-6, rtol=1e-4)
    # Not vacuous: every max-only weight with a real gradient moved. (The block's last BN
    # beta has none: the next training-mode BN removes any per-channel constant, so its
    # gradient is float noise around 0.)
    moving = [i for i in used_only_by_max if np.abs(g_full[i]).max() > 1e-6]
    assert len(moving) >= len(used_only_by_max) - 1
    assert all(np.any(update[i]) for i in moving)


@pytest.mark.integration
def test_train_step_is_traced_once_across_phases_and_subnets(setup):
    model, x, y, archs = setup
    model.make_train_function(force=True)
    method = build_method("deps", model.space, steps_per_epoch=4, warmup_fraction=0.5, epsilon_ramp_epochs=1,
                          num_subnets=2)
    controller = PhaseController(method, total_steps=8, seed=1)
    model.optimizer.iterations.assign(0)
    traces_before = model.train_step_traces
    saved = [v.numpy() for v in model.weights]  # the fixture is shared: leave it as found
    try:
        history = model.fit(x, y, batch_size=4, epochs=4, callbacks=[controller], verbose=0)
    finally:
        for v, value in zip(model.weights, saved):
            v.assign(value)
    assert [h["phase"] for h in controller.history] == ["fm_warmup", "shrink"]
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.train_step_traces - traces_before == 1  # 8 steps, 2 phases, 6 different subnets


@pytest.mark.unit
def test_channel_sorting_keeps_the_function_and_orders_by_importance(setup):
    model, x, _, _ = setup
    before = model(x, arch="max").numpy()
    assert sort_mid_channels(model, model.optimizer) > 0
    np.testing.assert_allclose(model(x, arch="max").numpy(), before, atol=1e-5)
    for stage in model.stages:
        for block in stage.blocks:
            if block.mid_channel_variables():
                importance = block.mid_channel_importance()
                assert np.all(np.diff(importance) <= 1e-6)


@pytest.mark.unit
def test_bn_recalibration_sets_cumulative_batch_statistics():
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.99)(inputs))
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=i, size=(5, 4, 4, 3)).astype("float32") for i in range(4)]
    used = recalibrate_bn(model, batches, num_images=17)
    assert used == 17
    bn = model.layers[-1]
    cut = batches[:3] + [batches[3][:2]]
    means = np.mean([b.reshape(-1, 3).mean(0) for b in cut], 0)
    variances = np.mean([b.reshape(-1, 3).var(0) for b in cut], 0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), means, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variances, rtol=1e-4)
    assert bn.momentum == 0.99


@pytest.mark.unit
def test_large_batches_recalibrate_and_evaluate_in_bounded_memory_with_the_same_numbers(monkeypatch):
    """Above `EAGER_PIXELS` a recalibration batch runs as a tf.function and an evaluation
    batch in chunks (an eager Keras call keeps all its intermediate tensors: ~20 GB for 200
    images at 224 px); the numbers are those of whole eager calls."""
    from ofa_tf.evaluation import subnet_accuracy as evaluation
    from ofa_tf.evaluation import bn_recalibration, traced_calls
    model = Supernet(tiny_space(resolutions=(24,)), num_classes=5)
    model.build()
    randomize_weights(model, seed=3)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(40, 24, 24, 3)).astype("float32") for _ in range(3)]
    labels = rng.integers(0, 5, 40)
    results = []
    # everything eager; graph recalibration (large batches) with eager chunks of 7; graph
    # recalibration because many images are asked for (`GRAPH_MIN_IMAGES`)
    for pixels, graph_min_images in ((10 ** 9, 10 ** 9), (24 * 24 * 7, 10 ** 9), (10 ** 9, 100)):
        monkeypatch.setattr(traced_calls, "EAGER_PIXELS", pixels)
        monkeypatch.setattr(bn_recalibration, "GRAPH_MIN_IMAGES", graph_min_images)
        monkeypatch.setattr(evaluation, "EAGER_PIXELS", pixels)
        subnet = model.get_subnet(model.space.max_arch(24))
        assert recalibrate_bn(subnet, batches, 100) == 100  # 40 + 40 + 20: a partial last batch
        logits = evaluation.inference_logits(subnet, tf.constant(batches[0]))
        results.append(([layer.moving_variance.numpy() for layer in batch_norm_layers(subnet)], logits.numpy(),
                        evaluation.accuracy(subnet, [(batches[0], labels)])))
    (eager_variances, eager_logits, eager_accuracy), *graph_results = results
    for variances, logits, accuracy in graph_results:
        assert logits.shape == (40, 5) and accuracy == eager_accuracy
        np.testing.assert_allclose(logits, eager_logits, atol=1e-5)
        for a, b in zip(variances, eager_variances):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_accuracy_metric_follows_the_first_subnet_when_the_full_model_is_not_trained():
    model = OnceForAllModel(tiny_space(), num_classes=4, max_subnets=2, dropout=0.0)
    model.build()
    randomize_weights(model, seed=7)
    model.compile(optimizer=keras.optimizers.SGD(0.0), metrics=["accuracy"])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 16, 16, 3)).astype("float32")
    archs = [model.space.min_arch(16), model.space.max_arch(16)]
    min_pred = np.argmax(model(x, arch=archs[0], training=True), -1)
    full_pred = np.argmax(model(x, arch="max", training=True), -1)
    y = np.where(np.arange(64) % 2 == 0, min_pred, (min_pred + 1) % 4).astype("int32")  # min net: 50% right
    assert not np.array_equal(min_pred, full_pred)
    expected = {1.0: float(np.mean(full_pred == y)), 0.0: 0.5}
    assert expected[1.0] != 0.5
    for train_full in (1.0, 0.0):  # 0: an OFA / CompOFA shrinking phase
        _state(model, archs, [1, 0], epsilon=1.0, train_full=train_full)
        model.reset_metrics()
        logs = model.train_on_batch(x, y, return_dict=True)
        assert logs["accuracy"] == pytest.approx(expected[train_full]), train_full


@pytest.mark.integration
def test_frozen_teacher_distils_with_batch_statistics_and_stays_frozen():
    """OFA / CompOFA: subnets learn from a snapshot run in training mode, as OFA's code runs it."""
    model = OnceForAllModel(tiny_space(), num_classes=4, max_subnets=1, dropout=0.0, kd_temperature=2.0,
                            frozen_teacher=True)
    model.build()
    randomize_weights(model, seed=11)
    model.compile(optimizer=keras.optimizers.SGD(LR))
    model.optimizer.build(model.supernet_trainable_variables)
    model.copy_full_model_to_teacher()
    for v in model.supernet_trainable_variables:  # the student moves on after the snapshot
        v.assign(v * 0.9)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, size=(8,)).astype("int32")
    arch = model.space.min_arch(16)
    _state(model, [arch], [1], epsilon=1.0, train_full=0.0)
    model.teacher_code.assign(2)  # frozen

    variables = model.supernet_trainable_variables
    teacher_train = model.teacher(x, arch="max", training=True)
    teacher_infer = model.teacher(x, arch="max", training=False)
    assert np.abs(np.asarray(teacher_train) - np.asarray(teacher_infer)).max() > 1e-3  # the mode matters here
    with tf.GradientTape() as tape:
        loss = distillation_loss(model(x, arch=arch, training=True), teacher_train, model.kd_temperature)
    expected = [np.zeros(v.shape) if g is None else LR * g.numpy() for g, v in zip(tape.gradient(loss, variables),
                                                                                     variables)]
    teacher_before = [v.numpy().copy() for v in model.teacher.weights
                      if "moving" not in v.path]
    before = [v.numpy().copy() for v in variables]
    model.train_on_batch(x, y)
    for b, v, e in zip(before, variables, expected):
        np.testing.assert_allclose(b - v.numpy(), e, atol=2e-6)
    teacher_after = [v.numpy() for v in model.teacher.weights if "moving" not in v.path]
    for a, b in zip(teacher_before, teacher_after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.integration
@pytest.mark.parametrize("subnet_dropout", [False, True])
def test_the_classifier_dropout_of_the_subnets_follows_subnet_dropout(subnet_dropout):
    """The full model and the subnets run in one loop body, so whether a network gets the
    classifier's dropout is chosen in the graph: the full model always, the subnets only with
    `subnet_dropout` (max-net-only dropout, as BigNAS / AttentiveNAS give it)."""
    model = OnceForAllModel(tiny_space(), num_classes=4, max_subnets=1, dropout=0.5, subnet_dropout=subnet_dropout)
    model.build()
    randomize_weights(model, seed=2)
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # the step moves no weight: losses only
    model.optimizer.build(model.supernet_trainable_variables)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, size=(8,)).astype("int32")
    arch = model.space.min_arch(16)
    _state(model, [arch], [1], epsilon=1.0, kd_weight=0.0, label_weight=1.0)  # subnet loss: its label loss
    no_dropout = {name: float(label_loss(y, model(x, arch=a, training=True, dropout=False), model.label_smoothing))
                  for name, a in (("loss_full", "max"), ("loss_min", arch))}
    logs = model.train_on_batch(x, y, return_dict=True)
    assert abs(logs["loss_full"] - no_dropout["loss_full"]) > 1e-4  # dropout at 0.5 changed the full model's logits
    if subnet_dropout:
        assert abs(logs["loss_min"] - no_dropout["loss_min"]) > 1e-4
    else:
        assert logs["loss_min"] == pytest.approx(no_dropout["loss_min"], rel=1e-5)
