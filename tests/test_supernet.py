"""The supernet: elastic forward == extracted static subnet, gradients, one trace, saving."""

import json
import os
import random
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import randomize_weights, tiny_space
from ofa_tf import OfaError
from ofa_tf.evaluation import ArchEvaluator, evaluate_arch
from ofa_tf.layers.base import prefix_slice
from ofa_tf.models import Supernet
from ofa_tf.evaluation import recalibrate_bn

# Every arch is compared elastic vs extracted; every RELOAD_EVERY-th one also goes through a
# .keras file (save + load costs ~2.5 s per subnet on 2 cores). OFA_TF_EXHAUSTIVE=1: 50 archs
# per space, each reloaded; by default 10 (the four spaces took 75-160 s each at 25 in the suite).
EXHAUSTIVE = os.environ.get("OFA_TF_EXHAUSTIVE") == "1"
ARCHS_PER_SPACE = 50 if EXHAUSTIVE else 10
RELOAD_EVERY = 1 if EXHAUSTIVE else 5


@pytest.mark.integration
@pytest.mark.parametrize("name", ["ofa_mbv3", "compofa", "proxyless", "tofa"])
def test_elastic_model_equals_extracted_subnet_and_its_keras_file(name, tmp_path):
    model = Supernet(name, num_classes=10, resolutions=[32])
    model.build()
    randomize_weights(model, seed=3)
    rng = random.Random(11)
    x = tf.random.stateless_normal((2, 32, 32, 3), seed=(1, 2))
    worst = worst_reloaded = 0.0
    for i in range(ARCHS_PER_SPACE):
        arch = model.space.sample(rng)
        elastic = model(x, arch=arch, training=False).numpy()
        subnet = model.get_subnet(arch)
        static = subnet(x, training=False).numpy()
        # relative to the logits' scale (random weights make some in the hundreds): the elastic
        # 1x1 convolutions are matrix products, the static twin's Conv2D sums in another order
        scale = max(1.0, float(np.abs(elastic).max()))
        worst = max(worst, float(np.abs(elastic - static).max()) / scale)
        assert float(np.abs(elastic).max()) > 1e-3  # the comparison is not between zeros
        if i % RELOAD_EVERY:
            continue
        path = tmp_path / f"subnet{i}.keras"
        subnet.save(path)
        with zipfile.ZipFile(path) as archive:
            assert "ofa_tf" not in archive.read("config.json").decode()  # plain Keras layers only
        reloaded = keras.saving.load_model(path, compile=False)
        worst_reloaded = max(worst_reloaded,
                             float(np.abs(reloaded(x, training=False).numpy() - elastic).max()) / scale)
        os.remove(path)
    # float rounding only: 1.1e-4 measured on compofa, whose random weights amplify it most; a
    # wrong slice, kernel or statistic differs by the logits' own scale
    assert worst < 1e-3 and worst_reloaded < 1e-3, (worst, worst_reloaded)


@pytest.mark.integration
def test_tensor_arch_equals_python_arch_in_a_traced_call():
    model = Supernet(tiny_space(), num_classes=4)
    model.build()
    randomize_weights(model)
    fn = tf.function(lambda x, a: model(x, arch=a, training=False), autograph=False)
    x = tf.random.normal((3, 16, 16, 3))
    for seed in range(8):
        arch = model.space.sample(seed, resolution=16)
        np.testing.assert_allclose(fn(x, model.arch_tensor(arch)).numpy(),
                                   model.get_subnet(arch)(x).numpy(), atol=1e-5)
    assert fn.experimental_get_tracing_count() == 1


@pytest.mark.integration
def test_kernel_transform_mode_extracts_transformed_kernels():
    model = Supernet(tiny_space(), num_classes=4, kernel_mode="transform")
    model.build()
    randomize_weights(model, seed=5)
    x = tf.random.normal((2, 24, 24, 3))
    for seed in range(6):
        arch = model.space.sample(seed, resolution=24)
        np.testing.assert_allclose(model(x, arch=arch).numpy(), model.get_subnet(arch)(x).numpy(), atol=1e-5)


def _elastic_and_static_gradients(model, arch, x, y, traced: bool):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def elastic_grads(x, y, vec):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, arch=vec, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        return [tf.zeros(v.shape) if g is None else g for v, g in zip(model.trainable_variables, grads)]

    fn = tf.function(elastic_grads, autograph=False) if traced else elastic_grads
    grads = {id(v): g.numpy() for v, g in zip(model.trainable_variables, fn(x, y, model.arch_tensor(arch)))}
    subnet = model.get_subnet(arch)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, subnet(x, training=True))
    static = {id(v): g.numpy() for v, g in zip(subnet.trainable_variables,
                                                tape.gradient(loss, subnet.trainable_variables))}
    return grads, static, subnet


@pytest.mark.parametrize("traced", [pytest.param(False, marks=pytest.mark.unit),
                                    pytest.param(True, marks=pytest.mark.integration)])  # tracing: ~25 s
def test_gradient_equals_static_gradient_mapped_back(traced):
    model = Supernet(tiny_space(), num_classes=5, dropout=0.0)
    model.build()
    randomize_weights(model, seed=2)
    x = tf.random.normal((6, 24, 24, 3))
    y = tf.constant([0, 1, 2, 3, 4, 0])
    arch = model.space.validate({"resolution": 24, "widths": [8, 16, 16], "depths": [1, 2, 1],
                                 "kernels": [[3], [5, 3], [3]], "expands": [[1], [2, 3], [2]]})
    grads, static, subnet = _elastic_and_static_gradients(model, arch, x, y, traced)
    layers = model.elastic_layers()
    covered = {k: np.zeros(g.shape, bool) for k, g in grads.items()}
    mapped = 0
    for static_layer in subnet.layers:
        if static_layer.name not in layers:
            continue
        for weight, source in zip(static_layer.weights, layers[static_layer.name].sliced_variables):
            if not weight.trainable:
                continue
            index = prefix_slice(tuple(weight.shape), tuple(source.shape))
            np.testing.assert_allclose(grads[id(source)][index], static[id(weight)], atol=1e-5, rtol=1e-4,
                                       err_msg=weight.path)
            covered[id(source)][index] = True
            mapped += 1
    assert mapped == len(subnet.trainable_weights)
    for key, grad in grads.items():  # everything the subnet does not use gets exactly zero
        assert not np.any(grad[~covered[key]]), "an unused slice received gradient"
    assert any(np.any(covered[k]) and np.any(grads[k]) for k in grads)


@pytest.mark.integration
def test_one_trace_serves_every_arch_per_resolution():
    model = Supernet(tiny_space(), num_classes=3)
    model.build()
    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    traces = []

    @tf.function(autograph=False)
    def train_step(x, y, arch):
        traces.append(1)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, arch=arch, training=True))
        grads = tape.gradient(loss, model.trainable_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    rng = random.Random(0)
    y = tf.constant([0, 1, 2, 0])
    archs = {model.space.sample(rng, resolution=16) for _ in range(60)}
    archs = sorted(archs, key=lambda a: a.to_json())[:30]
    assert len(archs) == 30
    for arch in archs:
        assert np.isfinite(float(train_step(tf.random.normal((4, 16, 16, 3)), y, model.arch_tensor(arch))))
    assert len(traces) == 1
    for arch in archs[:5]:
        train_step(tf.random.normal((4, 24, 24, 3)), y, model.arch_tensor(arch))
    assert len(traces) == 2


@pytest.mark.unit
def test_supernet_config_and_saving_round_trip(tmp_path):
    model = Supernet(tiny_space(), num_classes=6, dropout=0.2, kernel_mode="transform")
    model.build()
    randomize_weights(model, seed=9)
    x = tf.random.normal((2, 16, 16, 3))
    arch = model.space.sample(4, resolution=16)
    expected = model(x, arch=arch).numpy()

    clone = Supernet.from_config(json.loads(json.dumps(model.get_config())))
    assert clone.get_config() == model.get_config() and clone.space == model.space
    model.save_weights(tmp_path / "w.weights.h5")
    clone.build()
    clone.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(clone(x, arch=arch).numpy(), expected, atol=1e-6)

    model.save(tmp_path / "supernet.keras")
    loaded = keras.saving.load_model(tmp_path / "supernet.keras", compile=False)
    assert isinstance(loaded, Supernet)
    np.testing.assert_allclose(loaded(x, arch=arch).numpy(), expected, atol=1e-6)


@pytest.mark.integration
def test_min_subnet_has_fewer_weights_and_same_interface():
    model = Supernet("ofa_mbv3", num_classes=10, resolutions=[32])
    small, big = model.get_subnet("min"), model.get_subnet("max")
    assert small.count_params() < big.count_params()
    assert small.input_shape == big.input_shape == (None, 32, 32, 3)
    assert {type(layer).__module__.split(".")[0] for layer in small.layers} == {"keras"}


@pytest.mark.unit
@pytest.mark.parametrize("make,match", [
    (lambda: Supernet("resnet50"), r"space='resnet50'"),
    (lambda: Supernet("ofa_mbv3", num_classes=0), r"num_classes=0: expected a positive integer"),
    (lambda: Supernet("ofa_mbv3", num_classes=-2), r"num_classes=-2"),
    (lambda: Supernet("ofa_mbv3", dropout=1.5), r"dropout=1.5"),
    (lambda: Supernet("ofa_mbv3", kernel_mode="warp"), r"kernel_mode='warp'"),
])
def test_bad_supernet_arguments(make, match):
    with pytest.raises(OfaError, match=match):
        make().build()


@pytest.mark.unit
def test_bad_archs_and_resolutions_are_named():
    model = Supernet(tiny_space(), num_classes=3)
    with pytest.raises(OfaError, match=r"resolution=20: space 'tiny' allows \[16, 24\]"):
        model.get_subnet(model.space.max_arch(resolution=16).to_dict() | {"resolution": 20})
    with pytest.raises(OfaError, match=r"arch.kernels\[1\]\[0\]=9: expected one of \[3, 5, 7\]"):
        model(tf.zeros((1, 16, 16, 3)), arch={"resolution": 16, "depths": [1, 1, 1],
                                               "kernels": [[3], [9], [3]], "expands": [[1], [2], [2]],
                                               "widths": [8, 16, 16]})


@pytest.mark.unit
@pytest.mark.parametrize("space, kernel_mode", [("tiny", "transform"), ("ofa_mbv3", "center_crop")])
def test_a_refreshed_subnet_holds_what_a_fresh_extraction_would(space, kernel_mode):
    model = Supernet(tiny_space() if space == "tiny" else space, num_classes=10, resolutions=[32],
                     kernel_mode=kernel_mode)
    model.build()
    arch = model.space.sample(random.Random(5))
    subnet = model.get_subnet(arch)
    randomize_weights(model, seed=8)  # the supernet trains on: every weight, statistic and transform moves
    for v in model.trainable_variables:
        v.assign(v + 0.01)
    stale = [w.copy() for w in subnet.get_weights()]
    model.refresh_subnet(subnet)
    fresh = model.get_subnet(arch).get_weights()
    assert len(subnet.get_weights()) == len(fresh)
    for refreshed, expected, old in zip(subnet.get_weights(), fresh, stale):
        np.testing.assert_array_equal(refreshed, expected)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, stale))  # there was something to refresh


@pytest.mark.integration
def test_an_arch_evaluator_measures_what_evaluate_arch_does_and_traces_once():
    model = Supernet(tiny_space(), num_classes=4)
    model.build()
    arch = model.space.sample(random.Random(3), resolution=16)
    rng = np.random.default_rng(0)
    calibration = [rng.normal(size=(200, 16, 16, 3)).astype("float32") for _ in range(6)]  # 1,200: traced
    evaluation = [(rng.normal(size=(50, 16, 16, 3)).astype("float32"), rng.integers(0, 4, 50)) for _ in range(2)]
    evaluator = ArchEvaluator(model, arch)
    for seed in (1, 2):  # two "epochs", the supernet's weights changed in between
        randomize_weights(model, seed=seed)
        measured = evaluator(calibration, evaluation, 1200)
        expected = evaluate_arch(model, arch, calibration, evaluation, 1200)
        assert measured["bn_calibration_images"] == expected["bn_calibration_images"] == 1200
        assert measured["accuracy"] == pytest.approx(expected["accuracy"])
        np.testing.assert_allclose(evaluator.subnet(evaluation[0][0], training=False),
                                   expected_subnet_logits(model, arch, calibration, evaluation[0][0]), atol=1e-5)
    assert sorted(kind for kind, *_ in evaluator.traced_calls) == ["inference", "recalibration"]
    assert all(call.experimental_get_tracing_count() == 1 for call in evaluator.traced_calls.values())


def expected_subnet_logits(model, arch, calibration, images):
    subnet = model.get_subnet(arch)
    recalibrate_bn(subnet, calibration, 1200)
    return subnet(images, training=False)
