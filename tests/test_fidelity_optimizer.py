"""`ReferenceSGD` against PyTorch's SGD, the optimizer of the presets' references: coupled
weight decay, gradient clipping (on one device and on the all-reduced gradient), momentum
restarts, and a variable no network of a step used: by default updated with a zero gradient,
as the references' Horovod / DDP runtime gives every parameter one (decay and momentum move
it), or, with `unused_parameters="freeze"`, left alone as PyTorch leaves a parameter whose
gradient is None.

The settings these tests pin are docs/methods.md's: a changed default fails here first.
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


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["freeze", "update"])
def test_an_unused_variable_is_frozen_or_updated_as_pytorch_sgd_with_a_none_or_zero_gradient(mode):
    """freeze: `skip_masks` 0 for a variable at a step = PyTorch SGD with that parameter's grad
    None: no decay, no momentum, no update. update (the default): the masks are not read, the
    train step's zero gradient reaches the update = PyTorch SGD with a zero gradient, which
    Horovod gives every parameter no backward reached (coupled L2, Nesterov, momentum restarts)."""
    import torch
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4,)).astype("float32") for _ in range(2)]
    weights = [keras.Variable(w, name=f"kernel{i}") for i, w in enumerate(start)]
    optimizer = ReferenceSGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.05, weight_decay_form="coupled",
                             restart_steps=[3], unused_parameters=mode)
    params = [torch.tensor(w.astype("float64"), requires_grad=True) for w in start]
    torch_opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
    ran = [[1, 1], [1, 0], [1, 0], [1, 0], [0, 1], [1, 1]]  # variable 1 skipped at steps 1-3 (3 restarts), 0 at 4
    for t, mask in enumerate(ran):
        grads = [rng.normal(size=(4,)).astype("float32") for _ in range(2)]
        if t == 3:  # a fresh optimizer at the phase start, as OFA runs each phase
            torch_opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)
        grads = [g * m for g, m in zip(grads, mask)]  # the train step's zero gradient of an unused variable
        optimizer.skip_masks = {i: tf.constant(float(m)) for i, m in enumerate(mask)}
        before = [w.numpy().copy() for w in weights]
        optimizer.apply([tf.constant(g) for g in grads], weights)
        for p, g, m in zip(params, grads, mask):
            p.grad = torch.tensor(g.astype("float64")) if m or mode == "update" else None
        torch_opt.step()
        for i, (w, p) in enumerate(zip(weights, params)):
            np.testing.assert_allclose(w.numpy(), p.detach().numpy(), atol=1e-6, err_msg=f"step {t} variable {i}")
            if not mask[i]:  # frozen, or moved by decay and momentum alone
                assert np.array_equal(w.numpy(), before[i]) == (mode == "freeze"), (t, i)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["freeze", "update"])
def test_a_block_that_no_network_of_the_step_ran_is_frozen_or_updated(mode):
    """A shrinking step whose only subnet has every stage at its minimum depth. freeze: the
    blocks beyond it keep their weights and momentum; the blocks it ran move. update (the
    references' runtime): every block moves, the skipped ones by decay and momentum alone."""
    from helpers import tiny_space
    from ofa_tf.training import OnceForAllModel

    model = OnceForAllModel(tiny_space(resolutions=(16,)), num_classes=3, max_subnets=1, dropout=0.0)
    model.build()
    model.compile(optimizer=ReferenceSGD(0.1, momentum=0.9, weight_decay=1e-2, weight_decay_form="coupled",
                                         unused_parameters=mode))
    model.optimizer.build(model.supernet_trainable_variables)
    x = tf.random.stateless_uniform((8, 16, 16, 3), seed=(1, 2))
    y = tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    step = tf.function(model.train_step)
    model.step_active.assign([1.0])
    model.step_archs.assign([model.layout.to_vector(model.space.max_arch(16))])
    step((x, y))  # the max net: every block runs, every momentum buffer fills
    model.train_full.assign(0.0)
    model.step_archs.assign([model.layout.to_vector(model.space.min_arch(16))])
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
        assert moved == buffer_moved == (mode == "update" or id(v) not in skipped), v.path


@pytest.mark.integration
def test_a_kernel_transform_no_network_of_the_step_used_does_not_move_when_frozen():
    """`kernel_mode="transform"`, `unused_parameters="freeze"`: the transform to size k moves
    only when a network of the step ran its block at kernel <= k (the full model's max kernel
    uses none), as PyTorch's SGD leaves a parameter with no gradient alone."""
    import dataclasses

    from helpers import tiny_space
    from ofa_tf.training import OnceForAllModel

    model = OnceForAllModel(tiny_space(resolutions=(16,)), num_classes=3, max_subnets=1, dropout=0.0,
                            kernel_mode="transform")
    model.build()
    model.compile(optimizer=ReferenceSGD(0.1, momentum=0.9, weight_decay=1e-2, weight_decay_form="coupled",
                                         unused_parameters="freeze"))
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
        model.step_archs.assign([model.layout.to_vector(arch)])
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
