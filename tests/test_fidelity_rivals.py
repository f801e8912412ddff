"""The rivals' presets as their references run them (docs/methods.md, `compofa` and `bignas`):
CompOFA's teacher is OFA's kernel-7 network (CompOFA `train_ofa_net.py`); BigNAS's zero-initialised
last BN gamma per residual block, drop-connect on the max net's last two stages and one input
size per network (AttentiveNAS `attentive_nas_dynamic_model.py`, `train_attentive_nas.py`);
BigNAS's ImageNet RMSProp (DεpS's `pytorch_utils.py`, checked against `torch.optim.RMSprop`) and
its exponential schedule with a constant ending."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import tiny_space
from ofa_tf.models import Supernet
from ofa_tf.runs.config import RunConfig
from ofa_tf.runs.plan import RunPlan, build_model
from ofa_tf.spaces import get_space
from ofa_tf.training import PhaseCosineSchedule, build_method
from ofa_tf.training.controller import PhaseController
from ofa_tf.training.ofa_model import OnceForAllModel
from ofa_tf.training.optimizer import RMSPROP_EPSILON, ReferenceRMSProp
from ofa_tf.training.samplers import step_rng


def _micro_space(resolutions=(16,), coupled=False):
    """tiny_space's fixed first block and one elastic stage (fast to trace); `coupled`: with
    CompOFA's fixed kernel (3) and depth-expand coupling."""
    base = tiny_space(resolutions)
    stage = dataclasses.replace(base.stages[1], depths=(1, 2))
    if coupled:
        stage = dataclasses.replace(stage, kernels=(3,), expand_for_depth=((1, 2.0), (2, 3.0)))
    return dataclasses.replace(base, name="micro", stages=(base.stages[0], stage))


# ------------------------------------------------------------------------------- CompOFA
@pytest.mark.integration
def test_compofa_teacher_is_ofa_kernel_7_network_everywhere():
    """On CompOFA's space the run's full network and frozen teacher are kernel 7 in every block
    of the five elastic stages (the first, fixed block keeps MobileNetV3's 3), depth 4, expand 6;
    the teacher's output is that network's and not the coupled space's own max net's (3 / 5)."""
    config = RunConfig(method="compofa", space="compofa", image_size=(32,))
    plan = RunPlan.resolve(config)
    assert plan.method.full_kernel == 7
    model = build_model(config, plan.space, 10, plan.method)
    full = model.full_arch()
    assert full.kernels[0] == (3,) and all(ks == (7, 7, 7, 7) for ks in full.kernels[1:])
    assert full.depths[1:] == (4,) * 5 and all(es == (6.0,) * 4 for es in full.expands[1:])
    sizes = [[b.depthwise.max_kernel_size for b in stage.blocks] for stage in model.teacher.stages]
    assert sizes[0] == [3] and all(s == [7, 7, 7, 7] for s in sizes[1:])
    assert model.space.max_arch().kernels[1:] == ((3,) * 4, (5,) * 4, (3,) * 4, (3,) * 4, (5,) * 4)
    model.copy_full_model_to_teacher()
    x = tf.random.stateless_normal((2, 32, 32, 3), seed=(1, 2))
    teacher = model.teacher(x, training=True).numpy()
    np.testing.assert_allclose(teacher, model(x, arch=model.full_arch_tensor(), training=True, dropout=False).numpy(),
                               atol=1e-5)
    assert np.abs(teacher - model(x, arch="max", training=True, dropout=False).numpy()).max() > 1e-2


@pytest.mark.integration
def test_compofa_full_phase_trains_the_kernel_7_network_and_the_compound_phases_start_from_it():
    """A full-phase step moves the outer ring of the 7x7 depthwise kernels (only the kernel-7
    network uses it); the compound phase's first step snapshots those 7x7 weights as its teacher
    and, without weight decay, leaves the ring alone (its subnets run the 3x3 centres)."""
    keras.utils.set_random_seed(0)
    space = _micro_space(coupled=True)
    method = build_method("compofa", space, weight_decay=0.0)
    model = OnceForAllModel(space, num_classes=3, frozen_teacher=True, full_kernel=method.full_kernel,
                            max_subnets=method.max_subnets)
    model.build()
    model.compile(optimizer=method.optimizer(0.05, 20))
    kernel = model.stages[1].blocks[0].depthwise.depthwise_kernel
    ring = np.ones((7, 7), bool)
    ring[2:5, 2:5] = False  # the 3x3 centre the subnets use
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 8)
    controller = PhaseController(method, total_steps=20)  # full: steps 0-10 (180/330), compound_1: step 11
    before = kernel.numpy().copy()
    model.fit(x, y, batch_size=8, epochs=11, callbacks=[controller], verbose=0)  # the full phase
    after_full = kernel.numpy().copy()
    assert controller.phase.name == "full" and np.abs(after_full - before)[ring].min() > 0
    model.fit(x, y, batch_size=8, epochs=12, initial_epoch=11, callbacks=[controller], verbose=0)
    assert controller.phase.name.startswith("compound")
    teacher_kernel = model.teacher.stages[1].blocks[0].depthwise.depthwise_kernel.numpy()
    np.testing.assert_array_equal(teacher_kernel, after_full)
    np.testing.assert_array_equal(kernel.numpy()[ring], after_full[ring])
    assert np.abs(kernel.numpy() - after_full)[~ring].max() > 0


# ------------------------------------------------------------------------------- BigNAS
@pytest.mark.unit
def test_zero_gamma_init_makes_each_residual_block_start_as_the_identity():
    model = Supernet(tiny_space(), num_classes=3, zero_residual_gamma=True)
    model.build()
    plain = Supernet(tiny_space(), num_classes=3)
    plain.build()
    blocks = [(b, p) for s, ps in zip(model.stages, plain.stages) for b, p in zip(s.blocks, ps.blocks)]
    assert any(b.residual for b, _ in blocks) and any(not b.residual for b, _ in blocks)
    for block, twin in blocks:
        gamma = block.project_bn.gamma.numpy()
        assert np.all(gamma == 0) if block.residual else np.all(gamma == 1)
        assert np.all(twin.project_bn.gamma.numpy() == 1)
    residual = next(b for b, _ in blocks if b.residual and b.has_expand_conv)
    x = tf.random.stateless_normal((4, 8, 8, residual.max_in_channels), seed=(0, 1))
    np.testing.assert_allclose(residual(x, training=True).numpy(), x.numpy())
    assert Supernet.from_config(model.get_config()).zero_residual_gamma


@pytest.mark.unit
def test_drop_connect_on_the_max_nets_last_two_stages_as_attentive_nas():
    """Block i of n at rate * i / n, residual blocks of the last two stages only; in training with
    the max net's regularisation on, a dropped image's branch is 0 (the block passes its input),
    a kept one is scaled by 1 / (1 - rate); off (a subnet) or in inference, nothing is dropped."""
    model = Supernet(tiny_space(), num_classes=3, drop_connect=0.2)
    model.build()
    blocks = [(s, b) for s, stage in enumerate(model.stages) for b in stage.blocks]
    for i, (s, block) in enumerate(blocks):
        expected = 0.2 * i / len(blocks) if s >= len(model.stages) - 2 and block.residual else 0.0
        assert block.drop_connect_rate == pytest.approx(expected)
    block = blocks[-1][1]
    block.drop_connect_rate = 0.5  # (a high rate: both outcomes in one batch)
    block.project_bn.gamma.assign(np.full(block.project_bn.gamma.shape, 2.0, np.float32))
    x = tf.random.stateless_normal((64, 4, 4, block.max_in_channels), seed=(3, 4))
    plain = block(x, training=True, drop_connect=False).numpy()
    dropped = block(x, training=True, drop_connect=True).numpy()
    passed = np.all(np.isclose(dropped, x.numpy(), atol=1e-6), axis=(1, 2, 3))
    assert 10 < passed.sum() < 54
    kept = ~passed
    np.testing.assert_allclose(dropped[kept] - x.numpy()[kept], 2.0 * (plain[kept] - x.numpy()[kept]), rtol=1e-4,
                               atol=1e-4)
    assert not np.any(np.all(np.isclose(plain, x.numpy(), atol=1e-6), axis=(1, 2, 3)))
    np.testing.assert_allclose(block(x, training=False, drop_connect=True).numpy(),
                               block(x, training=False).numpy())


class _SizeRecorder(OnceForAllModel):
    """Notes the input size of every network the train step runs (a py_function in the graph)."""

    seen: list = []

    def call(self, inputs, *args, **kwargs):
        tf.py_function(lambda size: self.seen.append(int(size)) or 0, [tf.shape(inputs)[1]], tf.int64)
        return super().call(inputs, *args, **kwargs)


@pytest.mark.integration
def test_each_network_of_a_bignas_step_sees_its_own_input_size():
    """AttentiveNAS's sandwich: the max net at the largest size, the min net at the smallest,
    each random net at its arch's size; every network resizes the batch (given here at 20 px),
    all in the one traced step."""
    space = _micro_space((12, 16, 20, 24))
    method = build_method("bignas", space)
    model = _SizeRecorder(space, num_classes=3, max_subnets=3, resolution_per_network=True, subnet_dropout=False)
    model.build()
    model.compile(optimizer=method.optimizer(0.01, 3))
    controller = PhaseController(method, total_steps=3, seed=5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 20, 20, 3)).astype("float32"), rng.integers(0, 3, 4)
    _SizeRecorder.seen = []
    drawn = []
    for step in range(3):
        archs = method.phases[0].sampler.sample(space, step_rng(5, step))
        drawn.append([24] + [arch.resolution for _, arch in archs])
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[controller], verbose=0)
    traces = model.train_step_traces
    model.fit(x, y, batch_size=4, epochs=3, initial_epoch=1, callbacks=[controller], verbose=0)
    seen = _SizeRecorder.seen[-12:]  # (a first trace may run the model symbolically)
    assert [seen[4 * k:4 * k + 4] for k in range(3)] == drawn
    assert all(row[1] == 12 for row in drawn) and len({r for row in drawn for r in row[2:]}) > 1
    assert model.train_step_traces == traces  # new sizes, no new trace


# ------------------------------------------------------------------------------- RMSProp and its schedule
@pytest.mark.unit
def test_rmsprop_equals_pytorch_rmsprop_with_coupled_decay_and_momentum():
    import torch
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(4, 3)), rng.normal(size=3)
    w = keras.Variable(w0.astype("float32"), name="kernel")
    b = keras.Variable(b0.astype("float32"), name="bias")
    rates = [0.05, 0.02, 0.03, 0.01, 0.04]
    step = tf.Variable(0)
    optimizer = ReferenceRMSProp(lambda: rates[int(step.numpy())], momentum=0.9, weight_decay=1e-2)
    tw, tb = (torch.nn.Parameter(torch.tensor(v, dtype=torch.float32)) for v in (w0, b0))
    torch_opt = torch.optim.RMSprop([{"params": [tw], "weight_decay": 1e-2}, {"params": [tb], "weight_decay": 0}],
                                    lr=rates[0], alpha=0.9, eps=RMSPROP_EPSILON, momentum=0.9)
    for t, rate in enumerate(rates):
        gw, gb = rng.normal(size=(4, 3)), rng.normal(size=3)
        step.assign(t)
        optimizer.apply([tf.constant(gw, tf.float32), tf.constant(gb, tf.float32)], [w, b])
        for group in torch_opt.param_groups:
            group["lr"] = rate
        tw.grad, tb.grad = torch.tensor(gw, dtype=torch.float32), torch.tensor(gb, dtype=torch.float32)
        torch_opt.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(b.numpy(), tb.detach().numpy(), atol=1e-6)
    restored = ReferenceRMSProp.from_config(ReferenceRMSProp(0.1, weight_decay=1e-2).get_config())
    assert (restored.rho, restored.rms_epsilon, restored.momentum) == (0.9, RMSPROP_EPSILON, 0.9)


@pytest.mark.unit
def test_bignas_rmsprop_recipe_rate_and_exponential_schedule_with_a_constant_ending():
    method = build_method("bignas", get_space("ofa_mbv3"), optimizer="rmsprop")
    assert (method.optimizer_name, method.lr_schedule) == ("rmsprop", "exponential")
    assert method.peak_learning_rate(4096) == pytest.approx(0.256)
    assert isinstance(method.optimizer(0.1, 100), ReferenceRMSProp)
    total = 40_000  # 400 epochs of 100 steps: a period of 2.4 epochs is 240 steps
    schedule = PhaseCosineSchedule(0.256, [0], total, mode="exponential")
    assert schedule.decay_steps == 240
    for step, expected in ((0, 0.256), (239, 0.256), (240, 0.256 * 0.97), (2400, 0.256 * 0.97 ** 10),
                           (39_999, 0.256 * 0.05)):
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)
    assert build_method("bignas", get_space("ofa_mbv3"), optimizer="rmsprop", lr_schedule="run").lr_schedule == "run"
    with pytest.raises(Exception, match="rmsprop decays in the coupled form"):
        build_method("bignas", optimizer="rmsprop", weight_decay_form="decoupled")


# ------------------------------------------------------------------------------- DεpS's data recipe
def _pil_reference(name, image, value=None):
    from PIL import Image, ImageEnhance, ImageOps
    pil = Image.fromarray(image)
    out = {"equalize": lambda: ImageOps.equalize(pil), "posterize": lambda: ImageOps.posterize(pil, int(value)),
           "solarize": lambda: ImageOps.solarize(pil, int(value)), "auto_contrast": lambda: ImageOps.autocontrast(pil),
           "color": lambda: ImageEnhance.Color(pil).enhance(1 + value),
           "contrast": lambda: ImageEnhance.Contrast(pil).enhance(1 + value),
           "sharpness": lambda: ImageEnhance.Sharpness(pil).enhance(1 + value),
           "invert": lambda: ImageOps.invert(pil)}[name]()
    return np.asarray(out).astype(int)


@pytest.mark.unit
@pytest.mark.parametrize("name,value,tolerance", [
    ("equalize", None, 0), ("posterize", 5, 0), ("solarize", 142, 0), ("auto_contrast", None, 0), ("invert", None, 0),
    ("color", 0.7, 1), ("contrast", -0.4, 1), ("sharpness", 0.6, 1)])
def test_autoaugment_operations_match_pil(name, value, tolerance):
    """AutoAugment's operations as the 8-bit PIL images of DεpS's data provider get them
    (grey conversion and rounding may move a pixel by one level)."""
    from ofa_tf.data import autoaugment
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (13, 11, 3)).astype(np.uint8)
    image[:3] = 17  # an uneven histogram for equalize
    ours = autoaugment.OPS[name](tf.constant(image, tf.float32) / 255.0, value)
    ours = np.round(np.clip(ours.numpy(), 0, 1) * 255).astype(int)
    assert np.abs(ours - _pil_reference(name, image, value)).max() <= tolerance


@pytest.mark.unit
def test_random_erasing_fills_one_rectangle_of_the_drawn_area_and_ratio():
    from ofa_tf.data.autoaugment import erase
    image = tf.zeros((40, 30, 3))
    areas = []
    for k in range(20):
        out = erase(image, tf.constant([7, k], tf.int64), fill=(0.25, 0.5, 0.75), probability=1.0).numpy()
        filled = np.all(out == [0.25, 0.5, 0.75], axis=-1)
        rows, cols = np.nonzero(filled.any(axis=1))[0], np.nonzero(filled.any(axis=0))[0]
        assert filled.sum() == len(rows) * len(cols)  # one rectangle
        areas.append(filled.sum() / (40 * 30))
        assert 0.3 / 1.5 <= len(rows) / len(cols) <= 3.3 * 1.5  # (rounding of small sides)
    assert 0.015 <= min(areas) and max(areas) <= 0.36
    untouched = erase(image, tf.constant([7, 0], tf.int64), fill=(0.25, 0.5, 0.75), probability=0.0)
    np.testing.assert_array_equal(untouched.numpy(), image.numpy())


@pytest.mark.integration
def test_imagenet_autoaugment_is_imagenet_plus_deps_distortions_and_is_seeded():
    from ofa_tf.data.pipeline import make_pipeline
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 40, 40, 3)).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(8)))

    def pipeline(augmentation):
        return make_pipeline(dataset, 8, [24], training=True, seed=1, shuffle_buffer=1, augmentation=augmentation)

    first = lambda batches: next(iter(batches))[0].numpy()  # noqa: E731
    distorting = pipeline("imagenet_autoaugment")
    plain, distorted = first(pipeline("imagenet")), first(distorting)
    assert plain.shape == distorted.shape == (8, 24, 24, 3)
    assert np.abs(plain - distorted).mean() > 0.05  # the same crops, then distorted
    np.testing.assert_array_equal(distorted, first(distorting))


# ------------------------------------------------------------------------------- the comparison's budget
@pytest.mark.unit
def test_paper_budget_gives_each_method_its_papers_epochs_scaled_by_one_factor():
    """--budget=paper: DεpS trains --steps_per_epoch steps an epoch, the others in the ratio of
    their papers' epochs (DεpS 270 : OFA 605 : CompOFA 330 : BigNAS 400 : fOFA 185); --budget=steps:
    every method the same."""
    from types import SimpleNamespace

    from benchmarks.compare_methods import steps_per_epoch
    paper = SimpleNamespace(budget="paper", steps_per_epoch=27)
    assert {m: steps_per_epoch(paper, m) for m in ("deps", "ofa", "compofa", "bignas", "bignas_unclipped", "fofa")} \
        == {"deps": 27, "ofa": 60, "compofa": 33, "bignas": 40, "bignas_unclipped": 40, "fofa": 18}
    same = SimpleNamespace(budget="steps", steps_per_epoch=27)
    assert {steps_per_epoch(same, m) for m in ("deps", "ofa", "bignas")} == {27}


# ------------------------------------------------------------------------------- runs from before these settings
@pytest.mark.unit
@pytest.mark.parametrize("method", ["deps", "bignas"])
def test_a_run_from_before_the_new_settings_resumes_unless_its_methods_default_changed(tmp_path, method):
    """An older run saved dropout 0.1 and none of drop_connect, size_sampling, optimizer,
    full_kernel (their legacy values: 0, per_batch, sgd, 0). Today's defaults (None: the method's)
    resolve to exactly those for deps, so it resumes; bignas's now differ, so it is refused with
    the flag that resumes it."""
    import json

    from helpers import make_run_dir
    from ofa_tf import OfaError
    from ofa_tf.runs.directory import RunDirectory
    from ofa_tf.runs.train import PreparedRun

    path = make_run_dir(tmp_path / method, method=method)
    with open(tmp_path / method / "config.json") as f:
        saved = json.load(f)
    for key in ("drop_connect", "size_sampling", "optimizer", "full_kernel"):
        del saved["run"][key]
    saved["run"]["dropout"] = 0.1
    with open(tmp_path / method / "config.json", "w") as f:
        json.dump(saved, f)
    config = RunConfig.from_saved(saved["run"])
    config = dataclasses.replace(config, dropout=None, drop_connect=None, size_sampling=None, optimizer=None,
                                 full_kernel=None)  # today's command line: nothing given
    run = PreparedRun.__new__(PreparedRun)
    run.plan = RunPlan(config, tiny_space(), build_method(method, tiny_space(), steps_per_epoch=1))
    run.config, run.directory, run.chief = config, RunDirectory(path), False
    if method == "deps":
        assert run._check_model_dir().endswith("ckpt-00000001")
    else:
        with pytest.raises(OfaError, match=r"drop_connect=0\.0 there, None now; pass --drop_connect=0\.0 to resume"):
            run._check_model_dir()
