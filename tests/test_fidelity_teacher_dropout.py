"""Where the teacher and the classifier's dropout sit, preset by preset, as their
references place them (docs/methods.md)."""

import keras
import numpy as np
import pytest

from ofa_tf.training import build_method


def _tiny_once_for_all(**kwargs):
    from helpers import randomize_weights, tiny_space
    from ofa_tf.training import OnceForAllModel
    model = OnceForAllModel(tiny_space(), num_classes=4, **kwargs)
    model.build()
    randomize_weights(model, seed=2)
    return model


@pytest.mark.integration
def test_ofa_teacher_is_snapshotted_once_and_runs_without_dropout():
    """OFA's teacher is one converged net (dropout_rate=0, run in train mode): the snapshot
    taken when the full phase ends stays the teacher through every shrinking phase."""
    from ofa_tf.training import PhaseController
    model = _tiny_once_for_all(max_subnets=4, dropout=0.5, frozen_teacher=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    method = build_method("ofa", model.space)
    controller = PhaseController(method, total_steps=121, seed=0)
    controller.set_model(model)
    bounds = method.phase_bounds(121)
    rng = np.random.default_rng(0)
    snapshot = None
    for step in range(bounds[3][0] + 1):  # full, kernel, depth_1, into depth_2
        if step == bounds[1][0]:
            snapshot = [v.numpy().copy() for v in model.supernet_weights]
        controller.prepare_step(step)
        for v in model.supernet_trainable_variables:  # training moves the student every step
            v.assign(v + rng.normal(0, 0.01, v.shape).astype("float32"))
    assert [h["phase"] for h in controller.history] == ["full", "kernel", "depth_1", "depth_2"]
    for teacher, snap, student in zip(model.teacher.weights, snapshot, model.supernet_weights):
        np.testing.assert_array_equal(teacher.numpy(), snap)
    assert not all(np.array_equal(s, v.numpy()) for s, v in zip(snapshot, model.supernet_trainable_variables))

    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    assert model.teacher.dropout_rate == 0.0
    np.testing.assert_array_equal(model.teacher(x, training=True), model.teacher(x, training=True))
    assert not np.allclose(model(x, training=True), model(x, training=True))  # the student's dropout is on


@pytest.mark.integration
def test_deps_and_bignas_give_dropout_to_the_max_net_only():
    """DεpS's and AttentiveNAS's code: the max net runs the classifier's dropout, the subnets
    do not; OFA-style presets (fofa here) give it to every network. The subnet's label loss
    (no distillation, weights unchanged) repeats exactly across steps only without dropout."""
    from ofa_tf.training import PhaseController
    model = _tiny_once_for_all(max_subnets=3, dropout=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, size=(8,)).astype("int32")
    arch = model.space.sample(5, resolution=16)
    assert arch != model.space.min_arch(16)  # its loss is logged as loss_random
    np.testing.assert_array_equal(model(x, arch=arch, training=True, dropout=False),
                                  model(x, arch=arch, training=True, dropout=False))

    def two_steps(name):
        controller = PhaseController(build_method(name, model.space), total_steps=10)
        controller.set_model(model)
        controller.on_train_begin()
        slots = np.zeros(model.step_archs.shape, np.int32)
        slots[0] = model.layout.to_vector(arch)
        model.step_archs.assign(slots)
        model.step_active.assign([1.0, 0.0, 0.0])
        model.epsilon.assign(1.0)
        model.train_full.assign(1.0)
        model.teacher_code.assign(1)
        model.kd_weight.assign(0.0)
        model.subnet_label_weight.assign(1.0)
        logs = []
        for _ in range(2):
            model.reset_metrics()
            logs.append(model.train_on_batch(x, y, return_dict=True))
        return logs

    for name, subnet_dropout in (("deps", False), ("bignas", False), ("fofa", True)):
        first, second = two_steps(name)
        assert model.subnet_dropout is subnet_dropout, name
        assert first["loss_full"] != pytest.approx(second["loss_full"], abs=1e-6), name
        same = first["loss_random"] == pytest.approx(second["loss_random"], abs=1e-7)
        assert same is not subnet_dropout, name
