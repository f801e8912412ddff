"""TOFA's semi-supervised mode and transfer (arXiv:2303.15485): FixMatch loss, the semi-supervised
train step, labelled subsets, the two-view pipeline, --init_checkpoint, and tools.train."""

import dataclasses
import glob
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_one_line_error, make_run_dir, randomize_weights, run_tool, tiny_space
from ofa_tf.data import strong_augment
from ofa_tf.errors import OfaError
from ofa_tf.spaces import Arch
from ofa_tf.training import OnceForAllModel, build_method
from ofa_tf.training.distillation import distillation_loss, label_loss
from ofa_tf.data.semi_supervised import LABELLED, STRONG, WEAK
from ofa_tf.training.semi_supervised import fixmatch_loss, pseudo_labels
from ofa_tf.data import labelled_subset, semi_supervised_pipeline, unlabelled_images
from ofa_tf.runs import RunConfig, RunDirectory, load_init_checkpoint
from ofa_tf.runs.directory import CHECKPOINT_DIR
from ofa_tf.runs.init_checkpoint import check_init_checkpoint, validation_leak
from ofa_tf.runs.plan import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


# ---------------------------------------------------------------------------- the loss
@pytest.mark.unit
def test_pseudo_labels_keep_only_confident_images():
    weak = tf.constant([[4.0, 0.0, 0.0], [0.3, 0.2, 0.1], [0.0, 0.0, 5.0], [1.0, 1.2, 0.0]])
    labels, mask = pseudo_labels(weak, threshold=0.9)
    assert labels.numpy().tolist() == [0, 0, 2, 1]
    assert mask.numpy().tolist() == [1.0, 0.0, 1.0, 0.0]  # softmax tops: 0.96, 0.37, 0.99, 0.47
    assert pseudo_labels(weak, threshold=1.0)[1].numpy().sum() == 0


@pytest.mark.unit
def test_fixmatch_loss_equals_a_hand_computation_and_sends_no_gradient_to_the_weak_view():
    rng = np.random.default_rng(0)
    weak = (rng.normal(size=(6, 4)) * 3).astype("float32")
    strong = rng.normal(size=(6, 4)).astype("float32")
    threshold, smoothing = 0.7, 0.1
    probabilities = np.exp(_log_softmax(weak))
    mask = probabilities.max(-1) >= threshold
    assert 0 < mask.sum() < len(mask)  # the case is not trivial
    targets = np.full((6, 4), smoothing / 4)
    targets[np.arange(6), probabilities.argmax(-1)] += 1 - smoothing
    expected = (-(targets * _log_softmax(strong)).sum(-1) * mask).sum() / 6

    weak_t, strong_t = tf.constant(weak), tf.constant(strong)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([weak_t, strong_t])
        loss, got_mask = fixmatch_loss(strong_t, weak_t, threshold, smoothing)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_array_equal(got_mask.numpy(), mask.astype("float32"))
    assert tape.gradient(loss, weak_t) is None  # pseudo-labels and mask are constants
    strong_grad = tape.gradient(loss, strong_t).numpy()
    assert np.all(strong_grad[~mask] == 0) and np.all(np.abs(strong_grad[mask]).sum(-1) > 0)


# ---------------------------------------------------------------------------- the train step
@pytest.fixture(scope="module")
def ssl_setup():
    model = OnceForAllModel(tiny_space(), num_classes=4, max_subnets=2, dropout=0.0, kd_temperature=2.0,
                            unlabelled_weight=0.7)
    model.build()
    randomize_weights(model, seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.supernet_trainable_variables)
    rng = np.random.default_rng(1)
    x = {LABELLED: rng.normal(size=(4, 16, 16, 3)).astype("float32"),
         WEAK: rng.normal(size=(6, 16, 16, 3)).astype("float32"),
         STRONG: rng.normal(size=(6, 16, 16, 3)).astype("float32")}
    y = rng.integers(0, 4, size=(4,)).astype("int32")
    return model, x, y, [model.space.min_arch(16), model.space.sample(7, resolution=16)]


@pytest.mark.integration
def test_semi_supervised_step_equals_the_hand_computed_tofa_gradient(ssl_setup):
    model, x, y, archs = ssl_setup
    variables = model.supernet_trainable_variables
    saved = [v.numpy() for v in model.weights]
    all_images = tf.concat([x[LABELLED], x[WEAK], x[STRONG]], 0)
    # a threshold that splits this batch's weak-view confidences, so the mask is not trivial
    weak_logits = model(all_images, arch="max", training=True)[4:10]
    model.fixmatch_threshold = float(np.median(tf.reduce_max(tf.nn.softmax(weak_logits), -1)))
    for v, value in zip(model.weights, saved):
        v.assign(value)

    with tf.GradientTape() as tape:
        logits = model(all_images, arch="max", training=True)
        fixmatch, mask = fixmatch_loss(logits[10:], logits[4:10], model.fixmatch_threshold, model.label_smoothing)
        loss = label_loss(y, logits[:4], model.label_smoothing) + 0.7 * fixmatch
    expected = tape.gradient(loss, variables)
    teacher = tf.concat([logits[:4], logits[4:10]], 0)
    epsilon = 0.5
    for arch in archs:
        with tf.GradientTape() as tape:
            student = model(tf.concat([x[LABELLED], x[WEAK]], 0), arch=arch, training=True)
            kd = distillation_loss(student, teacher, model.kd_temperature)
        expected = [e if g is None else (g * epsilon if e is None else e + epsilon * g)
                    for e, g in zip(expected, tape.gradient(kd, variables))]
    for v, value in zip(model.weights, saved):
        v.assign(value)

    slots = np.zeros(model.step_archs.shape, np.int32)
    for j, arch in enumerate(archs):
        slots[j] = model.layout.to_vector(arch)
    model.step_archs.assign(slots)
    model.step_active.assign(np.ones(2, np.float32))
    model.epsilon.assign(epsilon)
    before = [v.numpy() for v in variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    for v, b, e in zip(variables, before, expected):
        np.testing.assert_allclose((b - v.numpy()) / 0.1, 0 if e is None else e.numpy(), atol=2e-5)
    assert logs["pseudo_label_rate"] == pytest.approx(float(tf.reduce_mean(mask)))
    assert logs["loss_fixmatch"] == pytest.approx(float(fixmatch), rel=1e-4)
    for v, value in zip(model.weights, saved):
        v.assign(value)


# ---------------------------------------------------------------------------- data
def _indexed_dataset(labels):
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1) * np.ones((1, 8, 8, 1), np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, np.array(labels, np.int64)))


def _ids(dataset):
    return [int(x[0, 0, 0]) for x, *_ in dataset.as_numpy_iterator()]


@pytest.mark.unit
def test_labelled_subset_is_balanced_deterministic_and_leaves_the_rest():
    labels = [0, 1, 2] * 10 + [2] * 5
    dataset = _indexed_dataset(labels)
    labelled, rest = labelled_subset(dataset, 3, ["a", "b", "c"], seed=4)
    chosen = _ids(labelled)
    assert sorted(np.bincount([labels[i] for i in chosen]).tolist()) == [3, 3, 3]
    assert chosen == _ids(labelled_subset(dataset, 3, ["a", "b", "c"], seed=4)[0])
    assert chosen != _ids(labelled_subset(dataset, 3, ["a", "b", "c"], seed=5)[0])
    assert sorted(chosen + _ids(rest)) == list(range(len(labels)))
    with pytest.raises(OfaError, match=r"labelled_per_class=11: class 'a' has only 10 training images"):
        labelled_subset(dataset, 11, ["a", "b", "c"], seed=0)
    with pytest.raises(OfaError, match=r"unlabelled_dataset=rest: needs labelled_per_class > 0"):
        unlabelled_images("rest", None)


@pytest.mark.integration
def test_semi_supervised_pipeline_batches_two_views_and_resumes_at_a_batch():
    labels = [0, 1] * 8
    labelled = _indexed_dataset(labels)
    unlabelled = _indexed_dataset([0] * 12).map(lambda x, y: x)
    make = lambda start=0: semi_supervised_pipeline(labelled, unlabelled, 4, 2, [8, 12], seed=1,  # noqa: E731
                                                   start_batch=start)
    batches = list(make().take(3).as_numpy_iterator())
    for x, y in batches:
        assert set(x) == {LABELLED, WEAK, STRONG} and y.shape == (4,) and y.dtype == np.int32
        size = x[LABELLED].shape[1]
        assert size in (8, 12) and x[LABELLED].shape == (4, size, size, 3)
        assert x[WEAK].shape == x[STRONG].shape == (8, size, size, 3)
        assert not np.allclose(x[WEAK], x[STRONG])
    again = list(make(start=1).take(2).as_numpy_iterator())
    for (x1, y1), (x2, y2) in zip(batches[1:], again):
        np.testing.assert_array_equal(y1, y2)
        for key in x1:
            np.testing.assert_allclose(x1[key], x2[key], atol=1e-6)
    image = tf.random.stateless_uniform([16, 16, 3], [0, 1])
    seed = tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(strong_augment(image, seed).numpy(), strong_augment(image, seed).numpy())


# ---------------------------------------------------------------------------- init checkpoint
def _checkpoint_file(run_dir) -> str:
    return sorted(glob.glob(os.path.join(str(run_dir), CHECKPOINT_DIR, "*.weights.h5")))[-1]


def _model(method: str, num_classes: int = 10):
    space = tiny_space()
    config = RunConfig(method=method, space="tiny", image_size=(16, 24))
    return build_model(config, space, num_classes, build_method(method, space))


@pytest.mark.integration
def test_init_checkpoint_loads_exactly_the_pretrained_weights(tmp_path):
    source_dir = make_run_dir(tmp_path / "pre", method="fofa", seed=2)  # 2 subnet slots; tofa has 3
    init = check_init_checkpoint(source_dir, tiny_space(resolutions=(16,)), 10, 1.0)  # resolutions may differ
    model = _model("tofa")
    load_init_checkpoint(model, init)
    source, _ = RunDirectory(source_dir).load_supernet()
    assert len(model.supernet_weights) == len(source.supernet_weights) > 0
    for mine, theirs in zip(model.supernet_weights, source.supernet_weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    # a bare .weights.h5 (not inside a run directory) of a model with the same layout
    bare = tmp_path / "bare.weights.h5"
    make_run_dir(tmp_path / "same", method="tofa", seed=5)
    shutil.copy(_checkpoint_file(tmp_path / "same"), bare)
    other = _model("tofa")
    load_init_checkpoint(other, check_init_checkpoint(str(bare), tiny_space(), 10, 1.0))
    reference, _ = RunDirectory(str(tmp_path / "same")).load_supernet()
    for mine, theirs in zip(other.supernet_weights, reference.supernet_weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.unit
def test_continuing_a_run_with_another_split_warns_that_validation_leaks(tmp_path):
    source_dir = make_run_dir(tmp_path / "pre", seed=0)
    init = check_init_checkpoint(source_dir, tiny_space(), 10, 1.0)
    with open(os.path.join(source_dir, "config.json")) as f:
        dataset = json.load(f)["run"]["dataset"]
    same_split = RunConfig(method="deps", space="tiny", dataset=dataset, seed=0)
    assert validation_leak(init, same_split) is None
    assert validation_leak(init, dataclasses.replace(same_split, dataset="idx:elsewhere")) is None  # other data
    message = validation_leak(init, dataclasses.replace(same_split, seed=1))
    assert "seed=0 validation_fraction=0.1" in message and "(seed=1 " in message
    assert validation_leak(init, dataclasses.replace(same_split, validation_fraction=0.2)) is not None


@pytest.mark.integration
def test_init_checkpoint_mismatches_name_what_differs(tmp_path):
    five = make_run_dir(tmp_path / "five", num_classes=5)
    # another class count is a transfer: every weight but the classifier, which stays fresh
    model = _model("deps")
    fresh = [v.numpy().copy() for v in model.classifier.weights]
    load_init_checkpoint(model, check_init_checkpoint(five, tiny_space(), 10, 1.0))
    source, _ = RunDirectory(five).load_supernet()
    classifier = {id(v) for v in model.classifier.weights}
    for mine, theirs in zip(model.supernet_weights, source.supernet_weights):
        if id(mine) not in classifier:
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(fresh, model.classifier.weights))
    with pytest.raises(OfaError, match="a supernet of width_mult 1.0; this run has 1.2"):
        check_init_checkpoint(five, tiny_space(), 5, 1.2)
    wider = tiny_space()
    wider = type(wider).from_config({**wider.to_config(), "head_widths": [40]})
    with pytest.raises(OfaError, match="its space 'tiny' differs from this run's in 'head_widths'"):
        check_init_checkpoint(five, wider, 5, 1.0)
    with pytest.raises(OfaError, match="expected a training run directory or a .weights.h5 file"):
        check_init_checkpoint(str(tmp_path / "missing"), tiny_space(), 10, 1.0)
    bare = tmp_path / "five.weights.h5"
    shutil.copy(_checkpoint_file(five), bare)
    with pytest.raises(OfaError, match="its weights do not fit this run's supernet"):
        load_init_checkpoint(_model("deps"), check_init_checkpoint(str(bare), tiny_space(), 10, 1.0))


# ---------------------------------------------------------------------------- tools.train
@pytest.mark.integration
def test_tools_train_semi_supervised_run_and_its_bad_inputs(tmp_path):
    space_file = tmp_path / "tiny.json"
    space_file.write_text(json.dumps(tiny_space().to_config()))
    pretrained = make_run_dir(tmp_path / "pre")
    run = ["--method=tofa", f"--space={space_file}", "--image_size=16", f"--dataset=npz:{DEMO}",
           "--labelled_per_class=3", "--unlabelled_dataset=rest", "--unlabelled_ratio=2", "--epochs=1",
           "--steps_per_epoch=2", "--batch_size=6", "--bn_calibration_images=32"]

    done = run_tool("train", *run, f"--init_checkpoint={pretrained}", f"--model_dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 <= summary["pseudo_label_rate"] <= 1 and summary["loss_fixmatch"] >= 0
    record = json.loads((tmp_path / "run" / "sampled_subnets.json").read_text())
    last_steps = {Arch.from_dict(e["arch"]): e["last_step"] for e in record["entries"]}
    space = tiny_space(resolutions=(16,))
    assert last_steps[space.max_arch()] == 1 and last_steps[space.min_arch()] == 1  # trained at steps 0 and 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["run"]
    assert saved["unlabelled_dataset"] == "rest" and saved["init_checkpoint"] == pretrained

    wider = tiny_space()
    wider = type(wider).from_config({**wider.to_config(), "head_widths": [40]})
    other = make_run_dir(tmp_path / "wider", space=wider)
    bad = run_tool("train", *run, f"--init_checkpoint={other}", f"--model_dir={tmp_path / 'bad1'}")
    assert_one_line_error(bad, "its space 'tiny' differs from this run's in 'head_widths'")
    assert not os.path.exists(tmp_path / "bad1")


@pytest.mark.unit
def test_an_unlabelled_source_with_malformed_labels_is_named_with_the_flag(tmp_path):
    with np.load(DEMO) as demo:
        np.savez(tmp_path / "onehot.npz", x_train=demo["x_train"][:50],
                 y_train=np.eye(10, dtype=np.int64)[demo["y_train"][:50]])
    spec = f"npz:{tmp_path / 'onehot.npz'}"
    with pytest.raises(OfaError) as raised:
        unlabelled_images(spec, None)
    assert str(raised.value) == (f"unlabelled_dataset={spec}: y_train has shape (50, 10); "
                                 "expected (50,) integer labels")
