"""Each preset's optimizer settings against its reference, and the mechanisms behind them.

The table these tests pin is docs/methods.md: a changed default fails here first.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ofa_tf import OfaError
from ofa_tf.spaces import get_space
from ofa_tf.training import PhaseCosineSchedule, build_method
from ofa_tf.training.optimizer import ReferenceSGD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), dtype="float64")
    hidden = keras.layers.Dense(5, activation="relu", dtype="float64")(inputs)
    hidden = keras.layers.BatchNormalization(dtype="float64")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, dtype="float64")(hidden))


def _torch_twin(model):
    import torch
    dense1, bn, dense2 = [layer for layer in model.layers if layer.weights]
    params = {}
    for layer in (dense1, bn, dense2):
        for variable in layer.weights:
            if variable.trainable:
                params[variable.path] = torch.nn.Parameter(torch.tensor(variable.numpy(), dtype=torch.float64))
    return params


def _torch_forward(params, model, x):
    import torch
    dense1, bn, dense2 = [layer for layer in model.layers if layer.weights]
    p = lambda layer, name: params[f"{layer.name}/{name}"]  # noqa: E731
    h = torch.relu(x @ p(dense1, "kernel") + p(dense1, "bias"))
    mean, var = h.mean(0), h.var(0, unbiased=False)
    h = (h - mean) / torch.sqrt(var + bn.epsilon) * p(bn, "gamma") + p(bn, "beta")
    return h @ p(dense2, "kernel") + p(dense2, "bias")


@pytest.mark.unit
@pytest.mark.parametrize("nesterov", [True, False])
def test_coupled_weight_decay_equals_pytorch_sgd(nesterov):
    """L2 in the gradient before momentum, no decay on BN and biases (OFA's no_decay_keys
    "bn#bias"), PyTorch's momentum buffer, a learning rate that changes every step."""
    import torch
    model = _tiny_model()
    rates = [0.3, 0.2, 0.25, 0.05, 0.1]
    step = tf.Variable(0)
    optimizer = ReferenceSGD(lambda: rates[int(step.numpy())], momentum=0.9, nesterov=nesterov,
                             weight_decay=0.01, weight_decay_form="coupled")
    params = _torch_twin(model)
    decayed = [v for k, v in params.items() if k.endswith("kernel")]
    others = [v for k, v in params.items() if not k.endswith("kernel")]
    torch_opt = torch.optim.SGD([{"params": decayed, "weight_decay": 0.01}, {"params": others, "weight_decay": 0}],
                                lr=rates[0], momentum=0.9, nesterov=nesterov)
    rng = np.random.default_rng(0)
    for t, rate in enumerate(rates):
        x = rng.normal(size=(8, 6))
        y = rng.integers(0, 3, size=8)
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True), from_logits=True)
            loss = tf.reduce_mean(loss)
        step.assign(t)
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        for group in torch_opt.param_groups:
            group["lr"] = rate
        torch_opt.zero_grad()
        torch.nn.functional.cross_entropy(_torch_forward(params, model, torch.tensor(x)),
                                          torch.tensor(y)).backward()
        torch_opt.step()
    for variable in model.trainable_variables:
        np.testing.assert_allclose(variable.numpy(), params[variable.path].detach().numpy(), atol=1e-6)
    kernel = model.trainable_variables[0]
    assert not np.allclose(kernel.numpy(), _tiny_model().trainable_variables[0].numpy())


@pytest.mark.unit
def test_coupled_decay_is_the_l2_gradient_and_decoupled_keeps_keras_sgd():
    """One step from zero momentum, zero gradient: coupled moves w by lr*(1+m)*wd*w
    (Nesterov), decoupled by lr*wd*w; BN gamma and biases never decay."""
    for form, factor in (("coupled", 1.9), ("decoupled", 1.0)):
        w = keras.Variable(np.ones(3, "float32"), name="kernel")
        b = keras.Variable(np.ones(3, "float32"), name="bias")
        opt = ReferenceSGD(0.1, momentum=0.9, weight_decay=0.5, weight_decay_form=form)
        opt.apply([tf.zeros(3), tf.zeros(3)], [w, b])
        np.testing.assert_allclose(w.numpy(), 1 - 0.1 * 0.5 * factor, rtol=1e-6)
        np.testing.assert_allclose(b.numpy(), 1.0)


@pytest.mark.unit
def test_clip_modes_on_one_device():
    w = keras.Variable(np.zeros(2, "float32"), name="kernel")
    grad = tf.constant([3.0, -0.5])
    expected = {"none": [-3.0, 0.5], "value": [-1.0, 0.5], "norm": list(-grad.numpy() / np.linalg.norm(grad))}
    for mode, after in expected.items():
        w.assign([0.0, 0.0])
        opt = ReferenceSGD(1.0, momentum=0.0, clip_mode=mode, clip=None if mode == "none" else 1.0)
        opt.apply([grad], [w])
        np.testing.assert_allclose(w.numpy(), after, rtol=1e-6)


@pytest.mark.unit
def test_momentum_restarts_at_the_given_steps():
    w = keras.Variable(np.zeros(1, "float32"), name="kernel")
    opt = ReferenceSGD(1.0, momentum=0.5, nesterov=False, restart_steps=[2])
    moves = []
    for _ in range(3):
        before = w.numpy().copy()
        opt.apply([tf.ones(1)], [w])
        moves.append(float(before[0] - w.numpy()[0]))
    assert moves == pytest.approx([1.0, 1.5, 1.0])  # buffer 1, 1.5, then zeroed: 1


@pytest.mark.unit
@pytest.mark.parametrize("bad, message", [
    (dict(weight_decay_form="l2"), "weight_decay_form='l2': expected one of"),
    (dict(clip_mode="global"), "grad_clip_mode='global': expected one of"),
    (dict(clip_mode="value"), "grad_clip=None: expected a positive number with grad_clip_mode=value"),
])
def test_bad_optimizer_settings_are_named(bad, message):
    with pytest.raises(OfaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ReferenceSGD(0.1, **bad)


@pytest.mark.integration
def test_value_clipping_acts_on_the_all_reduced_gradient():
    """MirroredStrategy over 2 logical CPUs. w: replica 0's gradient is 2.4, replica 1's
    -0.8; their mean 0.8 is under the clip of 1, so the step moves w by lr * 0.8 (clipping
    each replica's share (1.2, -0.4) first would give 1 - 0.4 = 0.6). v: 3.0 and 0.6, mean
    1.8, is clipped to 1 by value; by norm both scale by 1 / |(0.8, 1.8)|."""
    done = subprocess.run([sys.executable, "-c", _MIRRORED_CLIP], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["value"] == pytest.approx([-0.8, -1.0], abs=1e-6)
    norm = np.hypot(0.8, 1.8)
    assert result["norm"] == pytest.approx([-0.8 / norm, -1.8 / norm], abs=1e-6)
    assert result["none"] == pytest.approx([-0.8, -1.8], abs=1e-6)


_MIRRORED_CLIP = r"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from ofa_tf.training.optimizer import ReferenceSGD

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
result = {"replicas": strategy.num_replicas_in_sync}
for mode in ("value", "norm", "none"):
    with strategy.scope():
        w = keras.Variable([0.0], name="kernel")
        v = keras.Variable([0.0], name="kernel")
        opt = ReferenceSGD(1.0, momentum=0.0, clip_mode=mode, clip=None if mode == "none" else 1.0)
        opt.build([w, v])

    @tf.function
    def step():
        def replica_fn():
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            first = tf.equal(replica, 0)
            grads = [tf.where(first, 2.4, -0.8) * tf.ones(1), tf.where(first, 3.0, 0.6) * tf.ones(1)]
            # each replica's share of the mean, as OnceForAllModel.train_step passes it
            opt.apply([g / 2 for g in grads], [w, v])
        strategy.run(replica_fn)

    step()
    result[mode] = [float(w.numpy()[0]), float(v.numpy()[0])]
print(json.dumps(result))
"""


# ---------------------------------------------------------------- each preset's resolved settings
# docs/methods.md, one row per knob; "space" is the space a preset is built on here.
EXPECTED = {
    "deps": dict(space="ofa_mbv3", lr_per_256=0.325, lr_schedule="run", weight_decay=3e-5, weight_decay_form="coupled",
                 grad_clip_mode="none", grad_clip=None, restart_optimizer=False, subnet_dropout=False,
                 phases=[("fm_warmup", 0.5, 1.0, 0.0), ("shrink", 0.5, 1.0, 0.0)]),
    "bignas": dict(space="ofa_mbv3", lr_per_256=0.1, lr_schedule="run", weight_decay=1e-5, weight_decay_form="coupled",
                   grad_clip_mode="value", grad_clip=1.0, restart_optimizer=False, subnet_dropout=False,
                   phases=[("sandwich", 1.0, 1.0, 5 / 360)]),
    "ofa": dict(space="ofa_mbv3", lr_per_256=0.325, lr_schedule="phase", weight_decay=3e-5,
                weight_decay_form="coupled", grad_clip_mode="none", grad_clip=None, restart_optimizer=True,
                subnet_dropout=True,
                phases=[("full", 180 / 605, 1.0, 0.0), ("kernel", 125 / 605, 0.96 / 2.6, 5 / 125),
                        ("depth_1", 25 / 605, 0.08 / 2.6, 0.0), ("depth_2", 125 / 605, 0.24 / 2.6, 5 / 125),
                        ("expand_1", 25 / 605, 0.08 / 2.6, 0.0), ("expand_2", 125 / 605, 0.24 / 2.6, 5 / 125)]),
    "compofa": dict(space="compofa", lr_per_256=0.325, lr_schedule="phase", weight_decay=3e-5,
                    weight_decay_form="coupled", grad_clip_mode="none", grad_clip=None, restart_optimizer=True,
                    subnet_dropout=True,
                    phases=[("full", 180 / 330, 1.0, 0.0), ("compound_1", 25 / 330, 0.08 / 2.6, 0.0),
                            ("compound_2", 125 / 330, 0.24 / 2.6, 5 / 125)]),
    "fofa": dict(space="compofa", lr_per_256=0.325, lr_schedule="run", weight_decay=3e-5, weight_decay_form="coupled",
                 grad_clip_mode="value", grad_clip=1.0, restart_optimizer=False, subnet_dropout=True,
                 phases=[("warmup", 5 / 185, 1.0, 0.0), ("upper_attentive", 180 / 185, 1.0, 0.0)]),
    "tofa": dict(space="ofa_mbv3", lr_per_256=0.08, lr_schedule="run", weight_decay=1e-5, weight_decay_form="coupled",
                 grad_clip_mode="none", grad_clip=None, restart_optimizer=False, subnet_dropout=True,
                 phases=[("sandwich", 1.0, 1.0, 0.0)]),
    "full": dict(space="ofa_mbv3", lr_per_256=0.325, lr_schedule="run", weight_decay=3e-5, weight_decay_form="coupled",
                 grad_clip_mode="none", grad_clip=None, restart_optimizer=False, subnet_dropout=True,
                 phases=[("full", 1.0, 1.0, 0.0)]),
}


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_optimizer_settings_match_the_table(name):
    expected = dict(EXPECTED[name])
    method = build_method(name, get_space(expected.pop("space")))
    phases = expected.pop("phases")
    assert {k: getattr(method, k) for k in expected} == pytest.approx(expected)
    assert [p.name for p in method.phases] == [p[0] for p in phases]
    for phase, (_, fraction, lr_scale, lr_warmup) in zip(method.phases, phases):
        assert (phase.fraction, phase.lr_scale, phase.lr_warmup) == pytest.approx((fraction, lr_scale, lr_warmup))


@pytest.mark.unit
def test_every_preset_is_in_the_table_and_the_doc():
    from ofa_tf.training import PRESETS
    assert set(EXPECTED) == set(PRESETS)
    with open(os.path.join(ROOT, "docs", "methods.md"), encoding="utf-8") as f:
        doc = f.read()
    for name in PRESETS:
        assert f"## `{name}`" in doc, name


@pytest.mark.unit
def test_peak_learning_rate_scales_with_the_global_batch():
    assert build_method("deps").peak_learning_rate(256) == pytest.approx(0.325)
    assert build_method("deps").peak_learning_rate(64) == pytest.approx(0.08125)
    assert build_method("bignas").peak_learning_rate(2048) == pytest.approx(0.8)
    assert build_method("tofa").peak_learning_rate(32) == pytest.approx(0.01)  # TOFA's 0.01 at batch 32


@pytest.mark.unit
def test_run_config_resolves_the_method_defaults_and_overrides():
    from ofa_tf.runs.config import RunConfig
    config = RunConfig(method="bignas")
    method = build_method(config.method, **config.optimizer_overrides())
    assert (method.grad_clip_mode, method.grad_clip, method.weight_decay) == ("value", 1.0, 1e-5)
    config = RunConfig(method="bignas", grad_clip_mode="norm", weight_decay=3e-5, weight_decay_form="decoupled",
                       lr_schedule="phase")
    method = build_method(config.method, **config.optimizer_overrides())
    assert (method.grad_clip_mode, method.grad_clip, method.weight_decay, method.weight_decay_form,
            method.lr_schedule) == ("norm", 1.0, 3e-5, "decoupled", "phase")
    assert build_method("deps", grad_clip=2.0).grad_clip_mode == "norm"  # a threshold alone: by norm
    assert build_method("bignas", grad_clip_mode="none").grad_clip is None
    with pytest.raises(OfaError, match="grad_clip_mode=value: needs grad_clip"):
        build_method("deps", grad_clip_mode="value")


@pytest.mark.unit
def test_a_method_saved_before_optimizer_settings_reads_as_it_trained():
    from ofa_tf.training.methods import Method
    saved = build_method("bignas").to_config()
    for key in ("grad_clip", "grad_clip_mode", "lr_per_256", "lr_schedule", "weight_decay", "weight_decay_form",
                "restart_optimizer"):
        saved.pop(key)
    saved["clipnorm"] = 1.0
    method = Method.from_config(saved)
    assert (method.grad_clip_mode, method.grad_clip, method.weight_decay_form) == ("norm", 1.0, "decoupled")
    assert Method.from_config(build_method("ofa").to_config()) == build_method("ofa")


@pytest.mark.unit
def test_phase_warmups_ramp_from_zero_then_follow_each_phase_cosine():
    schedule = PhaseCosineSchedule(1.0, [0, 40, 60], 100, [1.0, 0.1, 0.5], mode="phase", phase_warmups=[0, 0, 10])
    lr = lambda step: float(schedule(step))  # noqa: E731
    assert lr(0) == pytest.approx(1.0) and lr(39) < 0.01  # first phase: no warm-up, a full cosine
    assert lr(40) == pytest.approx(0.1)  # no warm-up: the phase restarts at its peak
    assert [lr(s) for s in (60, 65, 70)] == pytest.approx([0.0, 0.25, 0.5])  # linear from 0 ...
    assert lr(85) == pytest.approx(0.5 * 0.5 * (1 + np.cos(np.pi * 15 / 30)))  # ... then its cosine over 30 steps
    run = PhaseCosineSchedule(1.0, [0], 100, mode="run", phase_warmups=[10])
    assert [float(run(s)) for s in (0, 5)] == pytest.approx([0.0, 0.5 * 0.5 * (1 + np.cos(np.pi * 0.05))])
    assert float(run(50)) == pytest.approx(0.5)  # the run's cosine, unshifted (AttentiveNAS's shape)
    assert schedule.get_config()["phase_warmups"] == [0, 0, 10]
    with pytest.raises(OfaError, match="shorter than each phase"):
        PhaseCosineSchedule(1.0, [0, 40], 100, mode="phase", phase_warmups=[40, 0])


@pytest.mark.unit
def test_a_run_builds_the_presets_schedule_and_optimizer():
    """What `ofa-train` builds from a RunConfig: the rate per 256 images at the run's batch,
    the phase cosine with OFA's warm-ups, a momentum restart at each phase start."""
    from types import SimpleNamespace
    from ofa_tf.runs.config import RunConfig
    from ofa_tf.runs.train import learning_rate_schedule, make_optimizer
    config = RunConfig(method="ofa", epochs=121, batch_size=64)  # 605 steps: one per reference epoch
    method = build_method("ofa", get_space("ofa_mbv3"), **config.optimizer_overrides())
    run = SimpleNamespace(config=config, method=method, steps_per_epoch=5)
    schedule = learning_rate_schedule(run)
    optimizer = make_optimizer(run, schedule)
    assert schedule.learning_rate == pytest.approx(0.325 * 64 / 256) and schedule.mode == "phase"
    assert schedule.phase_starts == [0, 180, 305, 330, 455, 480]
    assert schedule.phase_warmups == [0, 5, 0, 5, 0, 5]
    assert optimizer.restart_steps == [180, 305, 330, 455, 480]
    assert (optimizer.weight_decay_form, optimizer.reference_weight_decay, optimizer.clip_mode) == (
        "coupled", 3e-5, "none")
    assert float(schedule(180)) == 0.0 and float(schedule(185)) == pytest.approx(0.08125 * 0.96 / 2.6)

    config = RunConfig(method="bignas", epochs=10, batch_size=64, learning_rate=0.5, lr_warmup_epochs=2,
                       weight_decay_form="decoupled")
    method = build_method("bignas", **config.optimizer_overrides())
    run = SimpleNamespace(config=config, method=method, steps_per_epoch=5)
    schedule = learning_rate_schedule(run)
    optimizer = make_optimizer(run, schedule)
    assert (schedule.learning_rate, schedule.warmup_steps, schedule.phase_warmups) == (0.5, 10, [0])
    assert (optimizer.restart_steps, optimizer.clip_mode, optimizer.clip) == ([], "value", 1.0)
    assert optimizer.weight_decay == pytest.approx(1e-5)  # decoupled: Keras's own decay


@pytest.mark.unit
def test_a_skipped_variable_is_left_alone_as_pytorch_sgd_skips_a_none_gradient():
    """`skip_masks` 0 for a variable at a step = PyTorch SGD with that parameter's grad None:
    no decay, no momentum, no update (coupled L2, Nesterov, momentum restarts)."""
    import torch
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4,)).astype("float32") for _ in range(2)]
    weights = [keras.Variable(w, name=f"kernel{i}") for i, w in enumerate(start)]
    optimizer = ReferenceSGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.05, weight_decay_form="coupled",
                             restart_steps=[3])
    params = [torch.tensor(w.astype("float64"), requires_grad=True) for w in start]
    torch_opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
    ran = [[1, 1], [1, 0], [1, 0], [1, 0], [0, 1], [1, 1]]  # variable 1 skipped at steps 1-3 (3 restarts), 0 at 4
    for t, mask in enumerate(ran):
        grads = [rng.normal(size=(4,)).astype("float32") for _ in range(2)]
        if t == 3:  # a fresh optimizer at the phase start, as OFA runs each phase
            torch_opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
        optimizer.skip_masks = {i: tf.constant(float(m)) for i, m in enumerate(mask)}
        before = [w.numpy().copy() for w in weights]
        optimizer.apply([tf.constant(g) for g in grads], weights)
        for p, g, m in zip(params, grads, mask):
            p.grad = torch.tensor(g.astype("float64")) if m else None
        torch_opt.step()
        for i, (w, p) in enumerate(zip(weights, params)):
            np.testing.assert_allclose(w.numpy(), p.detach().numpy(), atol=1e-6, err_msg=f"step {t} variable {i}")
            if not mask[i]:
                np.testing.assert_array_equal(w.numpy(), before[i])


@pytest.mark.integration
def test_a_block_that_no_network_of_the_step_ran_does_not_move():
    """A shrinking step whose only subnet has every stage at its minimum depth: the blocks
    beyond it keep their weights and momentum; the blocks it ran move."""
    from helpers import tiny_space
    from ofa_tf.training import OnceForAllModel

    model = OnceForAllModel(tiny_space(resolutions=(16,)), num_classes=3, max_subnets=1, dropout=0.0)
    model.build()
    model.compile(optimizer=ReferenceSGD(0.1, momentum=0.9, weight_decay=1e-2, weight_decay_form="coupled"))
    model.optimizer.build(model.supernet_trainable_variables)
    x = tf.random.stateless_uniform((8, 16, 16, 3), seed=(1, 2))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    step = tf.function(model.train_step)
    model.step_active.assign([1.0])
    model.step_archs.assign([model.layout.encode(model.space.max_arch(16))])
    step((x, y))  # the max net: every block runs, every momentum buffer fills
    model.train_full.assign(0.0)
    model.step_archs.assign([model.layout.encode(model.space.min_arch(16))])
    variables = model.supernet_trainable_variables
    optimizer_index = {id(v): i for i, v in enumerate(variables)}
    skipped = {id(v) for stage in model.stages for b, block in enumerate(stage.blocks) if b >= stage.min_depth
               for v in block.trainable_variables}
    assert skipped
    before = {id(v): v.numpy().copy() for v in variables}
    buffers = {id(v): model.optimizer.momentums[optimizer_index[id(v)]].numpy().copy() for v in variables}
    step((x, y))
    for v in variables:
        moved = not np.array_equal(v.numpy(), before[id(v)])
        buffer_moved = not np.array_equal(model.optimizer.momentums[optimizer_index[id(v)]].numpy(), buffers[id(v)])
        assert moved == buffer_moved == (id(v) not in skipped), v.path


@pytest.mark.integration
def test_a_kernel_transform_no_network_of_the_step_used_does_not_move():
    """`kernel_mode="transform"`: the transform to size k moves only when a network of the
    step ran its block at kernel <= k (the full model's max kernel uses none), as PyTorch's
    SGD leaves a parameter with no gradient alone."""
    import dataclasses

    from helpers import tiny_space
    from ofa_tf.training import OnceForAllModel

    model = OnceForAllModel(tiny_space(resolutions=(16,)), num_classes=3, max_subnets=1, dropout=0.0,
                            kernel_mode="transform")
    model.build()
    model.compile(optimizer=ReferenceSGD(0.1, momentum=0.9, weight_decay=1e-2, weight_decay_form="coupled"))
    variables = model.supernet_trainable_variables
    model.optimizer.build(variables)
    x = tf.random.stateless_uniform((8, 16, 16, 3), seed=(1, 2))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    step = tf.function(model.train_step)
    model.step_active.assign([1.0])
    full = model.space.max_arch(16)

    def with_kernels(size_of):  # the max arch, with stage s's kernels from size_of(s, k)
        return dataclasses.replace(full, kernels=tuple(tuple(size_of(s, k) for k in ks)
                                                       for s, ks in enumerate(full.kernels)))

    transforms = {id(m): (s, size) for s, stage in enumerate(model.stages) for block in stage.blocks
                  for size, m in block.depthwise.transforms.items()}
    assert {size for _, size in transforms.values()} == {3, 5}
    index = {id(v): i for i, v in enumerate(variables)}

    def moved_by(arch) -> dict:
        model.step_archs.assign([model.layout.encode(arch)])
        before = {i: (v.numpy().copy(), model.optimizer.momentums[index[i]].numpy().copy())
                  for i, v in ((id(v), v) for v in variables) if i in transforms}
        step((x, y))
        return {i: (not np.array_equal(v.numpy(), before[id(v)][0]),
                    not np.array_equal(model.optimizer.momentums[index[id(v)]].numpy(), before[id(v)][1]))
                for v in variables for i in [id(v)] if i in transforms}

    smallest = with_kernels(lambda s, k: min(model.space.stages[s].kernels))
    assert all(m == (True, True) for m in moved_by(smallest).values())  # every transform used: all move
    assert all(m == (False, False) for m in moved_by(full).values())  # max kernels only: none moves
    fives = with_kernels(lambda s, k: 5 if 5 in model.space.stages[s].kernels else k)
    for i, m in moved_by(fives).items():  # kernel 5 in stage 1 (3, 5, 7) and stage 2 (3, 5)
        assert m == ((True, True) if transforms[i][1] == 5 else (False, False)), transforms[i]


# ---------------------------------------------------------------- phases, spaces and networks
@pytest.mark.unit
def test_compofa_trains_all_243_networks_in_both_compound_phases():
    """CompOFA's compound phases both sample the whole coupled space (its train_ofa_net.py)."""
    space = get_space("compofa")
    method = build_method("compofa", space)
    for phase in method.phases[1:]:
        restricted = phase.sampler.restrict(space)
        assert restricted.size() == space.size() == 243, phase.name
        assert [s.depths for s in restricted.stages] == [s.depths for s in space.stages]


@pytest.mark.unit
def test_fofa_warns_once_off_the_coupled_space(monkeypatch):
    """fOFA is defined on CompOFA's space (paper §3.1); another space trains, with one warning."""
    from ofa_tf.training import methods
    warnings = []
    monkeypatch.setattr(methods.logging, "warning", warnings.append)
    monkeypatch.setattr(methods, "_WARNED", set())
    build_method("fofa", get_space("compofa"))
    assert warnings == []
    for _ in range(2):  # a run builds its method more than once: one line
        build_method("fofa", get_space("ofa_mbv3"))
    assert len(warnings) == 1 and "fOFA is defined on CompOFA's coupled space" in warnings[0]
    assert "'ofa_mbv3'" in warnings[0]


@pytest.mark.unit
def test_deps_k7_space_fixes_the_kernel_and_validates_a_deps_run():
    from ofa_tf.models import Supernet
    from ofa_tf.runs.config import RunConfig
    from ofa_tf.spaces import SPACES
    from ofa_tf.training.samplers import step_rng
    space = get_space("ofa_mbv3_k7")
    full = get_space("ofa_mbv3")
    assert "ofa_mbv3_k7" in SPACES and space.name == "ofa_mbv3_k7"
    assert {k for stage in space.stages[1:] for k in stage.kernels} == {7}
    assert [(s.depths, s.expands, s.widths) for s in space.stages] == [(s.depths, s.expands, s.widths)
                                                                        for s in full.stages]
    assert space.size() == (3 ** 2 + 3 ** 3 + 3 ** 4) ** 5
    config = RunConfig(method="deps", space="ofa_mbv3_k7", image_size=(32,))
    config.validate()
    method = build_method("deps", get_space(config.space), **config.optimizer_overrides())
    archs = [arch for t in range(5) for _, arch in method.phases[1].sampler.sample(space, step_rng(0, t))]
    assert all(k == 7 for arch in archs for stage in arch.kernels[1:] for k in stage)
    model = Supernet("ofa_mbv3_k7", num_classes=10, resolutions=[32])
    assert model(np.zeros((1, 32, 32, 3), "float32"), arch=model.space.min_arch(), training=False).shape == (1, 10)


# ---------------------------------------------------------------- teacher and dropout placement
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
    np.testing.assert_array_equal(model(x, arch=arch, training=True, dropout=False),
                                  model(x, arch=arch, training=True, dropout=False))

    def two_steps(name):
        controller = PhaseController(build_method(name, model.space), total_steps=10)
        controller.set_model(model)
        controller.on_train_begin()
        slots = np.zeros(model.step_archs.shape, np.int32)
        slots[0] = model.layout.encode(arch)
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
        same = first["loss_subnet0"] == pytest.approx(second["loss_subnet0"], abs=1e-7)
        assert same is not subnet_dropout, name


@pytest.mark.unit
def test_grouped_channel_sorting_keeps_the_function_and_the_expand_groups():
    """OFA's / DεpS's re-organisation: with expand ratios {2, 3, 4} the channels that only
    ratio 4 uses stay behind those of ratio 3, each group sorted within itself; then the SE
    hidden channels are sorted."""
    import dataclasses
    from helpers import randomize_weights, tiny_space
    from ofa_tf.models import Supernet
    from ofa_tf.training import sort_mid_channels
    from ofa_tf.training.channel_sorting import mid_channel_groups
    space = tiny_space()
    space = dataclasses.replace(space, stages=(space.stages[0],) + tuple(
        dataclasses.replace(stage, expands=(2.0, 3.0, 4.0)) for stage in space.stages[1:]))
    model = Supernet(space, num_classes=4)
    model.build()
    randomize_weights(model, seed=6)
    x = np.random.default_rng(6).normal(size=(4, 16, 16, 3)).astype("float32")
    before = model(x, arch="max").numpy()
    blocks = [b for stage in model.stages for b in stage.blocks if b.mid_channel_variables()]
    groups = [mid_channel_groups(b) for b in blocks]
    assert all(g == [(0, 3 * b.max_in_channels), (3 * b.max_in_channels, 4 * b.max_in_channels)]
               for g, b in zip(groups, blocks))  # split at ratio 3's width only, as OFA's stage len - 2
    old = [b.mid_channel_importance() for b in blocks]
    # not vacuous: a global ranking would move channels across a group boundary
    assert any(imp[g[1][0]:g[1][1]].max() > imp[g[0][0]:g[0][1]].min() for imp, g in zip(old, groups))
    assert sort_mid_channels(model, mode="grouped") == len(blocks)
    np.testing.assert_allclose(model(x, arch="max").numpy(), before, atol=1e-5)
    for block, group, importance in zip(blocks, groups, old):
        new = block.mid_channel_importance()
        for start, end in group:
            np.testing.assert_allclose(np.sort(new[start:end]), np.sort(importance[start:end]), rtol=1e-6)
            assert np.all(np.diff(new[start:end]) <= 1e-6)
        if block.use_se:
            hidden = np.abs(block.se.expand_conv.kernel.numpy()).sum(axis=(0, 1, 3))
            assert np.all(np.diff(hidden) <= 1e-6)
    assert any(b.use_se for b in blocks)
    with pytest.raises(OfaError, match="channel sort mode='ofa'"):
        sort_mid_channels(model, mode="ofa")


@pytest.mark.unit
def test_presets_sort_channels_as_their_references():
    """DεpS sorts once, grouped (its code); OFA globally before expand_1 and grouped before
    expand_2 (`train_elastic_expand`'s stage len - 2); the others never."""
    expected = {"deps": [("shrink", "grouped")], "ofa": [("expand_1", "global"), ("expand_2", "grouped")]}
    for name in EXPECTED:
        method = build_method(name, get_space(EXPECTED[name]["space"]))
        assert [(p.name, p.sort_mode) for p in method.phases if p.sort_channels] == expected.get(name, []), name
    with pytest.raises(OfaError, match="sort_mode='ofa'"):
        build_method("deps").phases[1].__class__("x", 1.0, build_method("deps").phases[0].sampler, sort_mode="ofa")
