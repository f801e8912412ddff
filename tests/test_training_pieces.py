"""The composable training pieces: ε schedule, samplers, presets as phases, controller, KD."""

import math
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import tiny_space
from ofa_tf import OfaError
from ofa_tf.spaces import get_space
from ofa_tf.training import (EpsilonSchedule, OnceForAllModel, PhaseController, PhaseCosineSchedule, RestrictedSampler,
                             SandwichSampler, UpperAttentiveSampler, build_method)
from ofa_tf.training.distillation import distillation_loss
from ofa_tf.training.samplers import step_rng

pytestmark = pytest.mark.unit


def test_linear_epsilon_follows_its_schedule_step_by_step():
    schedule = EpsilonSchedule(start=1e-4, ramp_steps=10)
    values = [schedule.value(t) for t in range(14)]
    assert values[0] == pytest.approx(1e-4)
    increments = np.diff(values[:11])
    assert np.allclose(increments, (1 - 1e-4) / 10)  # a constant increment per step ...
    assert values[10:] == [1.0] * 4  # ... reaching 1 and staying there
    assert EpsilonSchedule(0.5, 0).value(0) == 1.0  # no ramp: no ε-shrinking


def test_lr_ratio_epsilon_is_ramped_lr_over_scheduled_lr():
    def lr_at(step):  # cosine over 100 steps
        return 0.1 * 0.5 * (1 + math.cos(math.pi * step / 100))

    schedule = EpsilonSchedule(start=1e-3, ramp_steps=10, mode="lr_ratio")
    for t in range(0, 10):  # DεpS's T_cur = t + 1: the first shrinking step is 1/10 of the way up
        expected = ((t + 1) / 10) * lr_at(50 + 10) / lr_at(50 + t)
        assert schedule.value(t, lr_at, 50) == pytest.approx(min(1.0, expected))
    assert schedule.value(10, lr_at, 50) == 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"start": 0.0}, r"epsilon_start=0.0: expected a value in \(0, 1\]"),
    ({"start": 1.5}, r"epsilon_start=1.5"),
    ({"mode": "cubic"}, r"epsilon_mode='cubic'"),
])
def test_bad_epsilon_settings(kwargs, match):
    with pytest.raises(OfaError, match=match):
        EpsilonSchedule(**kwargs)


def test_samplers_draw_the_same_subnets_for_the_same_step():
    space = get_space("ofa_mbv3")
    sampler = SandwichSampler(3)
    first = sampler.sample(space, step_rng(7, 123))
    assert first == sampler.sample(space, step_rng(7, 123))
    assert first != sampler.sample(space, step_rng(7, 124))
    assert [k for k, _ in first] == ["min", "random", "random"] and first[0][1] == space.min_arch()
    assert all(k == "random" for k, _ in UpperAttentiveSampler(2).sample(space, random.Random(0)))


def test_restricted_sampler_keeps_unlisted_choices_at_max():
    space = get_space("ofa_mbv3")
    kernel_phase = RestrictedSampler(1, kernels=[3, 5, 7])
    for seed in range(20):
        (_, arch), = kernel_phase.sample(space, random.Random(seed))
        assert arch.depths == space.max_arch().depths
        assert all(e == 6.0 for stage in arch.expands[1:] for e in stage)
    depth_phase = RestrictedSampler(2, kernels=[3, 5, 7], depths=[3, 4])
    depths = {d for seed in range(20) for _, a in depth_phase.sample(space, random.Random(seed)) for d in a.depths[1:]}
    assert depths == {3, 4}


@pytest.mark.parametrize("name,phases", [
    ("full", ["full"]),
    ("deps", ["fm_warmup", "shrink"]),
    ("bignas", ["sandwich"]),
    ("fofa", ["warmup", "upper_attentive"]),
    ("ofa", ["full", "kernel", "depth_1", "depth_2", "expand_1", "expand_2"]),
    ("compofa", ["full", "compound_1", "compound_2"]),
    ("tofa", ["sandwich"]),
])
def test_each_preset_produces_its_phases(name, phases):
    space = get_space("compofa" if name == "compofa" else "ofa_mbv3")
    method = build_method(name, space, steps_per_epoch=10)
    assert [p.name for p in method.phases] == phases
    assert sum(p.fraction for p in method.phases) == pytest.approx(1.0)
    bounds = method.phase_bounds(1000)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


def test_deps_preset_follows_the_paper():
    method = build_method("deps", get_space("ofa_mbv3"), steps_per_epoch=100, warmup_fraction=0.4,
                          epsilon_start=1e-3, epsilon_ramp_epochs=2)
    warmup, shrink = method.phases
    assert warmup.fraction == 0.4 and warmup.sampler.num_subnets == 0 and warmup.train_full
    assert shrink.train_full and shrink.teacher == "inplace" and shrink.sort_channels
    assert shrink.epsilon == EpsilonSchedule(1e-3, 200, "linear")
    assert [k for k in shrink.sampler.kinds()] == ["min", "random", "random"]
    # built before the data says how many steps an epoch has: the ramp is a share of the run
    unknown = build_method("deps", steps_per_epoch=None, epochs=10, epsilon_start=1e-3, epsilon_ramp_epochs=2)
    assert unknown.phases[1].epsilon.ramp_fraction == pytest.approx(0.2)
    assert unknown.phases[1].epsilon.for_run(10 * 100) == shrink.epsilon  # what steps_per_epoch=100 gives
    with pytest.raises(OfaError, match="for_run"):
        unknown.phases[1].epsilon.value(3)
    ofa = build_method("ofa", get_space("ofa_mbv3"))
    assert all(p.teacher == "frozen" and not p.train_full for p in ofa.phases[1:])
    bignas = build_method("bignas")
    assert (bignas.grad_clip_mode, bignas.grad_clip) == ("value", 1.0)  # AttentiveNAS's clip_grad_value_


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "dino"}, r"method='dino': expected one of"),
    ({"name": "deps", "warmup_fraction": 1.0}, r"warmup_fraction=1.0: expected a fraction in \[0, 1\)"),
    ({"name": "deps", "warmup_fraction": -0.1}, r"warmup_fraction=-0.1"),
    ({"name": "deps", "epsilon_start": 0.0}, r"epsilon_start=0.0"),
    ({"name": "deps", "num_subnets": -1}, r"num_subnets=-1"),
    ({"name": "compofa", "space": get_space("ofa_mbv3")}, r"method=compofa needs a space with coupled depth"),
])
def test_bad_method_knobs(kwargs, match):
    kwargs = dict(kwargs)
    with pytest.raises(OfaError, match=match):
        build_method(kwargs.pop("name"), kwargs.pop("space", None), **kwargs)


def test_distillation_sends_no_gradient_to_the_teacher():
    teacher = tf.Variable([[1.0, 2.0, 0.5]])
    student = tf.Variable([[0.3, -0.2, 0.1]])
    with tf.GradientTape(persistent=True) as tape:
        loss = distillation_loss(student * 1.0, teacher * 1.0, temperature=2.0)
    assert tape.gradient(loss, teacher) is None
    assert np.any(tape.gradient(loss, student).numpy())
    t = tf.nn.softmax(teacher / 2.0)
    expected = 4.0 * -tf.reduce_sum(t * tf.nn.log_softmax(student / 2.0))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_no_subnet_is_sampled_before_the_warmup_fraction():
    model = OnceForAllModel(tiny_space(), num_classes=3, max_subnets=3)
    model.build()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.supernet_trainable_variables)
    method = build_method("deps", model.space, steps_per_epoch=10, warmup_fraction=0.6, epsilon_ramp_epochs=1)
    controller = PhaseController(method, total_steps=50, seed=3)
    controller.set_model(model)
    epsilons = []
    for step in range(50):
        controller.prepare_step(step)
        active = model.step_active.numpy()
        if step < 30:
            assert not active.any() and controller.phase.name == "fm_warmup"
        else:
            assert active.tolist() == [1.0, 1.0, 1.0] and controller.phase.name == "shrink"
            epsilons.append(float(model.epsilon.numpy()))
    assert epsilons[0] == pytest.approx(1e-4) and epsilons[-1] == 1.0
    assert np.all(np.diff(epsilons) >= 0)
    assert [h["phase"] for h in controller.history] == ["fm_warmup", "shrink"]


def test_run_schedule_is_one_cosine_over_the_run_with_phase_scales():
    schedule = PhaseCosineSchedule(0.1, [0, 40, 70], 100, [1.0, 0.5, 0.25], mode="run")
    for step in (0, 10, 39, 40, 55, 69, 70, 99):
        scale = 1.0 if step < 40 else 0.5 if step < 70 else 0.25
        expected = 0.1 * scale * 0.5 * (1 + math.cos(math.pi * step / 100))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-7), step
    # unscaled, it is Keras's CosineDecay (the schedule every method used before phase scales)
    plain = PhaseCosineSchedule(0.1, [0, 40], 100, mode="run")
    keras_cosine = keras.optimizers.schedules.CosineDecay(0.1, 100)
    for step in range(0, 100, 7):
        assert float(plain(step)) == pytest.approx(float(keras_cosine(step)), rel=1e-5, abs=1e-7)


def test_phase_schedule_restarts_the_cosine_at_each_phase():
    schedule = PhaseCosineSchedule(0.1, [0, 40, 40, 70], 100, [1.0, 9.0, 0.5, 0.25], mode="phase")
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(20)) == pytest.approx(0.05, rel=1e-5)  # half-way through phase 0
    assert float(schedule(40)) == pytest.approx(0.05, rel=1e-5)  # restart at the (empty phase skipped) peak
    assert float(schedule(55)) == pytest.approx(0.025, rel=1e-5)
    assert float(schedule(70)) == pytest.approx(0.025, rel=1e-5)
    assert float(schedule(99)) < 0.001
    # a traced step gets the same values: the phase lookup is a tensor computation
    traced = tf.function(lambda s: schedule(s))
    assert float(traced(tf.constant(55, tf.int64))) == pytest.approx(0.025, rel=1e-5)


def test_schedule_warmup_and_serialisation():
    schedule = PhaseCosineSchedule(0.2, [0, 50], 100, [1.0, 0.5], mode="run", warmup_steps=10)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.1, rel=1e-5)
    assert float(schedule(10)) == pytest.approx(0.2, rel=1e-5)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert [float(again(s)) for s in (3, 30, 80)] == [float(schedule(s)) for s in (3, 30, 80)]


def test_phase_schedule_warms_up_then_runs_the_first_phase_cosine():
    schedule = PhaseCosineSchedule(0.2, [0, 50], 100, [1.0, 0.5], mode="phase", warmup_steps=10)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.1, rel=1e-5)
    assert float(schedule(10)) == pytest.approx(0.2, rel=1e-5)  # the first phase's peak, after the warmup
    assert float(schedule(30)) == pytest.approx(0.1, rel=1e-5)  # half-way through its remaining 40 steps
    assert float(schedule(50)) == pytest.approx(0.1, rel=1e-5)  # the next phase restarts at its (scaled) peak
    # an empty first phase (e.g. --warmup_fraction=0) hands the warmup to the next one
    empty_first = PhaseCosineSchedule(0.2, [0, 0], 100, mode="phase", warmup_steps=10)
    assert float(empty_first(5)) == pytest.approx(0.1, rel=1e-5)
    assert float(empty_first(55)) == pytest.approx(0.1, rel=1e-5)  # half-way through steps 10-100


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="cyclic"), "lr_schedule='cyclic'"),
    (dict(mode="phase", warmup_steps=50), "warmup of 50 steps does not end before the first phase"),
    (dict(phase_scales=[1.0]), "2 phases"),
    (dict(phase_scales=[1.0, -1.0]), "expected >= 0"),
])
def test_bad_schedule_settings(kwargs, match):
    with pytest.raises(OfaError, match=match):
        PhaseCosineSchedule(0.1, [0, 50], 100, **kwargs)


def test_ofa_preset_shrinks_at_the_reference_learning_rate_ratios():
    method = build_method("ofa", get_space("ofa_mbv3"))
    scales = {phase.name: phase.lr_scale for phase in method.phases}
    # relative to the teacher's 2.6 per 2048 images: kernel 3e-2, stage 1 2.5e-3, stage 2 7.5e-3 per 64
    assert scales["full"] == 1.0
    assert scales["kernel"] == pytest.approx(3e-2 * 32 / 2.6)
    assert scales["depth_1"] == scales["expand_1"] == pytest.approx(2.5e-3 * 32 / 2.6)
    assert scales["depth_2"] == scales["expand_2"] == pytest.approx(7.5e-3 * 32 / 2.6)
    assert all(phase.lr_scale == 1.0 for phase in build_method("deps", get_space("ofa_mbv3")).phases)

