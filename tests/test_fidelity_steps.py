"""One training step of every kind, ours against its reference's in PyTorch: from the same
weights and batch, with the same sampled subnets and learning rates, two steps of each kind
leave every weight and momentum buffer equal within `TOLERANCE`, and a changed knob does not;
the learning-rate and ε schedules equal the references' formulas at every step of a short run.

The networks are OFA's own (`ofa` package, `OFAMobileNetV3`), small (width 0.25, 10 classes,
40 px, 4 images, OFA's depths 2-4, kernels 3-7, expand ratios 3-6), exported to ours with
`ofa_tf.interop` (a centre-crop model has no kernel-transform matrices, nor has OFA's net built
under a centre crop). The PyTorch side is each reference's step written out from its code (file
and lines cited at each step), with OFA's package for the networks, losses, optimizer and LR
functions where it has them; it runs in float64, so the tolerance measures our float32 step
against the exact one. The references' runtime is Horovod (OFA, CompOFA, DεpS: every parameter
has a zero gradient from the start, `horovod/torch/__init__.py` v0.19 `_register_hooks`; the
gradients of several workers averaged) and PyTorch 1.x, whose `zero_grad()` zeroes gradients
rather than dropping them; one process emulates both. Our side is the real preset
(`build_method`), its optimizer and schedule, the `PhaseController` and
`OnceForAllModel.train_step`, run eagerly (the traced step runs the same ops).

Not compared: dropout and BigNAS's drop-connect (random masks; 0 on both sides: their
placement is `test_fidelity_teacher_dropout.py`'s and `test_fidelity_rivals.py`'s), BN moving
statistics (not trained; PyTorch keeps the unbiased batch variance and updates them network by
network in the reference's order), and the sampling itself (both sides train the subnets our
sampler drew).

The start weights are chosen so that float32 rounding stays far below the tolerance:
- every activation stays away from its kinks (ReLU inputs positive, hard-swish and
  hard-sigmoid inputs inside (-3, 3)). A batch of this net has about 10^6 activations, and an
  input within float32 rounding of a kink flips its derivative: PyTorch's own float32 gradient
  was then up to a few % away from its float64 one in one block, for one subnet in three;
- the convolutions that a BN follows are scaled by `CONV_SCALE` and the classifier by
  `CLASSIFIER_SCALE`: BN makes the function independent of the former and both shrink the
  gradients, whose float32 error (1e-5 of a gradient here, from BN over a 4-image batch) the
  momentum buffers hold unscaled by the learning rate.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import math
import os
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F

from ofa_reference import OFAMobileNetV3  # (OFA's package, unmodified; stubs its data loader)
from ofa.imagenet_classification.elastic_nn.modules.dynamic_op import DynamicSeparableConv2d
from ofa.utils import cross_entropy_loss_with_soft_target, cross_entropy_with_label_smoothing
from ofa.utils.pytorch_utils import build_optimizer

from ofa_tf.interop.mapping import import_state_dict, tensor_slots
from ofa_tf.interop.nets import OfaNet
from ofa_tf.spaces import get_space
from ofa_tf.training import OnceForAllModel, PhaseController, build_method
from ofa_tf.training.samplers import step_rng

pytestmark = pytest.mark.filterwarnings("ignore:Implicit dimension choice for log_softmax")  # OFA's own loss

WIDTH, CLASSES, RESOLUTION, BATCH = 0.25, 10, 40, 4
TOLERANCE = 1e-5
CONV_SCALE = 10.0
CLASSIFIER_SCALE = 0.1
PEAK = 1.0  # the runs' --learning_rate (phase scales and schedules apply): OFA's phases run at 3-37% of it
INPLACE_PEAK = 0.05  # (DεpS, BigNAS and fOFA train at the full rate: a step moves BN scales by ~0.01)
SEED = 1
NET = OfaNet("ofa_mbv3_w0.25", "ofa_mbv3", WIDTH, 1e-5)  # OFA's MobileNetV3 layout at width 0.25


# ------------------------------------------------------------------ shared set-up
@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """PyTorch's threads compete with TensorFlow's on 2 cores: one thread is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _kernel_transform(mode):
    """OFA's class-wide switch: 1 for its learned kernel transform, None for a centre crop
    (CompOFA's `dy_conv_scaling_mode = -1`, DεpS's and AttentiveNAS's kernels)."""
    before = DynamicSeparableConv2d.KERNEL_TRANSFORM_MODE
    DynamicSeparableConv2d.KERNEL_TRANSFORM_MODE = mode
    try:
        yield
    finally:
        DynamicSeparableConv2d.KERNEL_TRANSFORM_MODE = before


def _followed_by_relu(bn_name: str) -> bool:
    """Whether OFA's MobileNetV3 applies a ReLU after this BN (`ofa_mbv3.py`: ReLU in the first
    block and stages 1-2, hard-swish in the stem, stages 3-5 and the final expand layer; none
    after a projection)."""
    if not bn_name.startswith("blocks.") or ".point_linear." in bn_name:
        return False
    return int(bn_name.split(".")[1]) <= 8


@pytest.fixture(scope="module")
def start_state() -> dict[str, np.ndarray]:
    """OFA's OFAMobileNetV3 with random weights that keep every activation away from its kinks
    (module doc): BN scales in [0.2, 0.4], BN shifts +3 before a ReLU (its input stays positive)
    and about 0 before a hard-swish (its input stays inside (-3, 3)), SE convolutions scaled by
    0.1 with reduce biases +3; kernel transforms away from the identity; convolutions followed by
    BN scaled by `CONV_SCALE`, the classifier by `CLASSIFIER_SCALE` (module doc)."""
    torch.manual_seed(0)
    net = OFAMobileNetV3(n_classes=CLASSES, width_mult=WIDTH, dropout_rate=0.0, ks_list=[3, 5, 7],
                         expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.dtype.is_floating_point or "running" in name:
                continue
            if name.endswith("matrix"):
                t.copy_(torch.eye(t.shape[0]) + 0.1 * torch.randn_like(t))
            elif ".bn." in name and name.endswith("weight"):
                t.copy_(0.2 + 0.2 * torch.rand_like(t))
            elif ".bn." in name:  # the BN shift
                t.copy_(3.0 + 0.1 * torch.randn_like(t) if _followed_by_relu(name) else 0.1 * torch.randn_like(t))
            elif ".se." in name and name.endswith("weight"):
                t.mul_(0.1)
            elif ".se." in name:  # SE biases: the reduce ReLU's input positive, the hard-sigmoid's near 0
                t.copy_((3.0 if ".reduce." in name else 0.0) + 0.1 * torch.randn_like(t))
            elif name.endswith("bias"):
                t.copy_(torch.randn_like(t) * 0.1)
            elif name == "classifier.linear.weight":
                t.mul_(CLASSIFIER_SCALE)
            elif t.dim() == 4 and not name.startswith("feature_mix_layer"):
                t.mul_(CONV_SCALE)  # a BN follows: the same function, gradients / CONV_SCALE
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(size=(BATCH, RESOLUTION, RESOLUTION, 3)).astype("float32"), np.array([1, 7, 3, 3])


def _space(name: str):
    """Our `name` space at OFA's layout: width 0.25, symmetric padding, no head bias, one size."""
    return dataclasses.replace(get_space(name, WIDTH), padding="symmetric", head_bias=False,
                               resolutions=(RESOLUTION,))


_MODELS: dict = {}


def _model(space_name: str, kernel_mode: str, full_kernel: int | None = None) -> OnceForAllModel:
    """One built model per space and kernel mode, shared by the tests (each one loads its start
    weights and a fresh optimizer): building the OFA layout twice costs seconds."""
    key = (space_name, kernel_mode, full_kernel)
    if key not in _MODELS:
        model = OnceForAllModel(_space(space_name), num_classes=CLASSES, dropout=0.0, kernel_mode=kernel_mode,
                                max_subnets=4, frozen_teacher=True, full_kernel=full_kernel)
        model.build()
        _MODELS[key] = model
    return _MODELS[key]


def _reference_net(state) -> torch.nn.Module:
    """OFA's network in float64 with the start weights, in training mode (build it inside
    `_kernel_transform` of its mode)."""
    net = OFAMobileNetV3(n_classes=CLASSES, width_mult=WIDTH, dropout_rate=0.0, ks_list=[3, 5, 7],
                         expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    own = net.state_dict()  # (built under a centre crop, OFA's net has no transform matrices)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items() if k in own})
    return net.double().train()


@dataclasses.dataclass
class Step:
    """What one of our steps trained: its phase, subnets (besides the full model), LR and ε."""
    phase: str
    archs: list
    lr: float
    epsilon: float
    train_full: bool


class _OurRun:
    """A run of `method` (`total_steps` steps) taken from global step `first_step`, as `ofa-train`
    takes it: the preset's schedule and optimizer, the controller's subnets, ε and phase entries
    (channel sort, teacher snapshot), the model's train step; `steps(n)` takes the next n."""

    def __init__(self, model: OnceForAllModel, state, method, first_step: int, total_steps: int, batch,
                 label_smoothing: float = 0.1, peak: float = PEAK):
        names = {slot.name for slot in tensor_slots(model, NET)}
        import_state_dict(model, {k: v for k, v in state.items() if k in names or k.endswith("num_batches_tracked")},
                          NET, "start weights")
        model.copy_full_model_to_teacher()  # OFA's teacher: the converged full net the shrinking starts from
        model.label_smoothing = label_smoothing
        self.schedule = method.learning_rate_schedule(total_steps, BATCH, learning_rate=peak)
        self.optimizer = method.optimizer(self.schedule, total_steps)
        model.compile(optimizer=self.optimizer)
        self.optimizer.build(model.supernet_trainable_variables)
        self.optimizer.iterations.assign(first_step)
        self.controller = PhaseController(method, total_steps=total_steps, seed=SEED,
                                          lr_at=lambda s: float(self.schedule(s)))
        self.controller.set_model(model)
        self.controller.apply_method_settings(model)
        self.model, self.next_step = model, first_step
        self.x, self.y = tf.constant(batch[0]), tf.constant(batch[1])

    def steps(self, count: int) -> list[Step]:
        model, record = self.model, []
        for step in range(self.next_step, self.next_step + count):
            self.controller.prepare_step(step)
            phase = self.controller.phase
            archs = [arch for _, arch in phase.sampler.sample(model.space, step_rng(SEED, step))]
            written = model.step_archs.numpy()[:len(archs)]
            assert all(np.array_equal(model.layout.to_vector(a), w) for a, w in zip(archs, written))  # what it trains
            record.append(Step(phase.name, archs, float(self.schedule(step)), self.controller.current_epsilon,
                               phase.train_full))
            model.train_step((self.x, self.y))
        self.next_step += count
        return record


def _train_ours(model: OnceForAllModel, state, method, first_step: int, steps: int, total_steps: int, batch,
                label_smoothing: float = 0.1, peak: float = PEAK) -> tuple[object, list[Step]]:
    """`steps` steps of an `_OurRun`; returns its optimizer and what each step trained."""
    run = _OurRun(model, state, method, first_step, total_steps, batch, label_smoothing, peak)
    return run.optimizer, run.steps(steps)


def _differences(model, optimizer, net, reference_optimizer) -> dict[str, tuple[float, float]]:
    """Per trained tensor (OFA's name): max |ours - reference| of the weight and of its momentum
    buffer (PyTorch's, as ours keeps it)."""
    params = dict(net.named_parameters())
    index = {id(v): i for i, v in enumerate(model.supernet_trainable_variables)}
    out = {}
    for slot in tensor_slots(model, NET):
        if slot.name not in params:
            continue  # a BN running statistic (not compared: module docstring)
        p = params[slot.name]
        weight = np.abs(slot.to_torch(slot.variable.numpy()) - p.detach().numpy()).max()
        ours = optimizer.momentums[index[id(slot.variable)]].numpy()
        buffer = np.abs(slot.to_torch(ours) - reference_optimizer.state[p]["momentum_buffer"].numpy()).max()
        out[slot.name] = (float(weight), float(buffer))
    return out


def _assert_equal(differences: dict[str, tuple[float, float]], what: str) -> float:
    worst_name = max(differences, key=lambda k: max(differences[k]))
    worst = max(differences[worst_name])
    assert worst <= TOLERANCE, f"{what}: {worst_name} differs by {differences[worst_name]} (weight, momentum)"
    return worst


def _moved(net, state) -> float:
    """How far the reference's weights moved from the start (so that equality is not vacuous)."""
    return max(float(np.abs(p.detach().numpy() - state[k]).max()) for k, p in net.named_parameters())


def _set_active(net, space, arch) -> None:
    ofa = space.to_ofa_arch(arch)
    net.set_active_subnet(ks=ofa["ks"], e=ofa["e"], d=ofa["d"])


def _images(batch):
    return torch.from_numpy(batch[0].transpose(0, 3, 1, 2)).double(), torch.from_numpy(batch[1])


# ------------------------------------------------------------------ the references' optimizers
def _horovod_sgd(net, weight_decay: float) -> torch.optim.Optimizer:
    """OFA's optimizer (`distributed_run_manager.py:93-118`: `no_decay_keys` "bn#bias" groups,
    `build_optimizer` of `ofa/utils/pytorch_utils.py:196-223`, Nesterov 0.9; DεpS's and CompOFA's
    are the same lines) under Horovod's DistributedOptimizer, which gives every parameter a zero
    gradient when it is built (`horovod/torch/__init__.py:128-137`, v0.19.x) and all-reduces it
    even when no backward reached it (`synchronize`, 165-180): weight decay and momentum then
    apply to a parameter no network of a step used."""
    keys = ["bn", "bias"]
    optimizer = build_optimizer([list(net.get_parameters(keys, mode="exclude")),
                                 list(net.get_parameters(keys, mode="include"))], "sgd",
                                {"momentum": 0.9, "nesterov": True}, 0.0, weight_decay, "bn#bias")
    for p in net.parameters():
        p.grad = p.data.new(p.size()).zero_()
    return optimizer


def _attentive_nas_sgd(net, weight_decay: float) -> torch.optim.Optimizer:
    """AttentiveNAS's optimizer (`solver/build.py:8-37`): no decay on names holding ".bn" or
    ".bias", SGD Nesterov 0.9 (`configs/train_attentive_nas_models.yml`). Under DDP
    (`find_unused_parameters=True`, `utils/comm.py:50-55`) every parameter has a gradient from
    the first step on: the max net uses them all."""
    no_wd, wd = [], []
    for name, param in net.named_parameters():
        (no_wd if ".bn" in name or ".bias" in name else wd).append(param)
    optimizer = torch.optim.SGD([{"params": wd, "weight_decay": weight_decay},
                                 {"params": no_wd, "weight_decay": 0.0}], lr=0.0, momentum=0.9, nesterov=True)
    for p in net.parameters():
        p.grad = p.data.new(p.size()).zero_()
    return optimizer


def _set_lr(optimizer, lr: float) -> None:
    # `adjust_learning_rate` / `warmup_adjust_learning_rate` (run_config.py:67-83) and the LR
    # schedulers end this way; the rates themselves are compared in the schedule tests below
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------ the references' steps
def _ofa_step(net, teacher, optimizer, space, batch, step: Step, label_smoothing=0.1, kd_ratio=1.0,
              gpus: int = 1) -> None:
    """OFA's progressive-shrinking step (`ofa/imagenet_classification/elastic_nn/training/
    progressive_shrinking.py:157-213`; CompOFA's `ofa/elastic_nn/training/progressive_shrinking.py:
    133-176` is the same, with `loss * 2 / (kd_ratio + 1)` = 1 at kd_ratio 1): the frozen teacher
    in training mode, each subnet's KD + label-smoothed CE summed into the gradients, one update.
    With `gpus`, each of that many workers takes its share of the batch (its own BN statistics,
    teacher included) and Horovod averages their gradients before the update (`op=Average`)."""
    images, labels = _images(batch)
    _set_lr(optimizer, step.lr)
    net.zero_grad(set_to_none=False)  # PyTorch 1.x's `dynamic_net.zero_grad()`
    share = len(labels) // gpus
    for worker in range(gpus):
        part = slice(worker * share, (worker + 1) * share)
        worker_images, worker_labels = images[part], labels[part]
        teacher.train()
        with torch.no_grad():
            soft_logits = teacher(worker_images).detach()
            soft_label = F.softmax(soft_logits, dim=1)
        for arch in step.archs:
            _set_active(net, space, arch)
            output = net(worker_images)
            kd_loss = cross_entropy_loss_with_soft_target(output, soft_label)
            loss = kd_ratio * kd_loss + cross_entropy_with_label_smoothing(output, worker_labels, label_smoothing)
            (loss / gpus).backward()  # (the all-reduce's average of the workers' gradients)
    optimizer.step()


def _deps_soft_ce(pred, soft_target, temperature=1.0):
    """DεpS's `cross_entropy_loss_with_soft_target` (`deps/utils/pytorch_utils.py:64-66`)."""
    return torch.mean(torch.sum(-soft_target * F.log_softmax(pred / temperature, dim=1), 1))


def _deps_step(net, optimizer, space, batch, step: Step, temperature=1.0, label_smoothing=0.1) -> None:
    """DεpS's step (`deps/imagenet_classification/elastic_nn/training/deps.py:185-413`,
    `--gradient_aggregation sum --inplace_distillation`): FM-Warmup trains the max net on the
    labels; a shrinking step weighs the max net 1 and each subnet (min, then random) β = ε,
    each subnet distilling from the max net's detached soft labels at temperature T, T²-scaled;
    the gradients are summed per network (`gradient_store`) and copied back before the update."""
    images, labels = _images(batch)
    _set_lr(optimizer, step.lr)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)  # distributed_run_manager.py:88-90
    net.zero_grad(set_to_none=False)
    if not step.archs:  # teacher mode (deps.py:200-236)
        net.set_max_net()
        loss = criterion(net(images), labels)
        loss.backward()
    else:
        gradient_store = {}
        soft_labels = None
        for subnet_no, arch in enumerate([None] + step.archs):
            if subnet_no == 0:  # deps.py:240-259
                net.set_max_net()
                weight = 1.0  # --max_multiplier
                output = net(images)
                soft_labels = F.softmax(output.clone().detach() / temperature, dim=1)
                loss = criterion(output, labels)
            else:  # deps.py:261-333: min net, then random ones; weight = new_beta
                _set_active(net, space, arch)
                weight = step.epsilon
                output = net(images)
                loss = temperature ** 2 * _deps_soft_ce(output, soft_labels, temperature)
            loss.backward()
            # optimizer.synchronize() (deps.py:365): one worker's all-reduce is the identity. The
            # subnet mask of deps.py:372-381 is 1 wherever the subnet's gradient is non-zero.
            for name, param in net.named_parameters():
                gradient_store[name] = gradient_store.get(name, 0) + weight * param.grad.data
            net.zero_grad(set_to_none=False)
        for name, param in net.named_parameters():  # deps.py:390-411, "sum"
            param.grad.data.copy_(gradient_store[name])
    optimizer.step()


def _attentive_nas_step(net, optimizer, space, batch, step: Step, clip: float, label_smoothing=0.1) -> None:
    """AttentiveNAS's sandwich step (`train_attentive_nas.py:256-318`): the max net on the
    label-smoothed loss (`CrossEntropyLossSmooth`, `utils/loss_ops.py:46-65`), then each other
    network on `KLLossSoft` of the max net's detached logits (`utils/loss_ops.py:17-43`, target
    None: soft cross-entropy at T = 1), the min net last; each gradient value clipped to
    [-clip, clip] (`clip_grad_value_`) before the update. fOFA's step is this loop without the
    min net (its paper §3.3, and §4: clipping at 1.0 "following BigNAS")."""
    images, labels = _images(batch)
    _set_lr(optimizer, step.lr)
    optimizer.zero_grad(set_to_none=False)
    net.set_max_net()
    output = net(images)
    one_hot = torch.zeros_like(output).scatter(1, labels.view(-1, 1), 1)
    target = one_hot * (1 - label_smoothing) + label_smoothing / output.size(1)
    loss = -torch.bmm(target.unsqueeze(1), F.log_softmax(output, dim=1).unsqueeze(2)).mean()
    loss.backward()
    soft_logits = output.clone().detach()
    others = [a for a in step.archs if a != space.min_arch(RESOLUTION)]
    others += [a for a in step.archs if a == space.min_arch(RESOLUTION)]  # min net last, as sandwich_rule
    for arch in others:
        _set_active(net, space, arch)
        output = net(images)
        loss = -torch.sum(F.softmax(soft_logits, dim=1) * F.log_softmax(output, dim=1), dim=1).mean()
        loss.backward()
    step.largest_gradient = max(float(p.grad.abs().max()) for p in net.parameters())
    torch.nn.utils.clip_grad_value_(net.parameters(), clip)
    optimizer.step()


# ------------------------------------------------------------------ OFA: kernel, depth, expand
_REFERENCE_CACHE: dict = {}


def _ofa_phase(phase_name: str, start_state, batch, unused_parameters=None, label_smoothing=0.1, reuse=True):
    """Two steps at the start of OFA's `phase_name` (steps are reference epochs: 605 of them),
    ours and the reference's; returns (differences, reference net, our steps)."""
    space = _space("ofa_mbv3")
    method = build_method("ofa", space, steps_per_epoch=1, epochs=605, unused_parameters=unused_parameters)
    index = [p.name for p in method.phases].index(phase_name)
    first = method.phase_bounds(605)[index][0]
    model = _model("ofa_mbv3", "transform")
    optimizer, steps = _train_ours(model, start_state, method, first, 2, 605, batch, label_smoothing)
    key = ("ofa", phase_name)
    if key not in _REFERENCE_CACHE or not reuse:
        with _kernel_transform(1):  # OFA's train_ofa_net.py:124,181 (dy_conv_scaling_mode 1)
            net = _reference_net(start_state)
            teacher = copy.deepcopy(net)
            teacher.set_max_net()  # the K7 / D4 / E6 teacher, dropout 0 (train_ofa_net.py:207-216)
            if phase_name.startswith("expand"):  # progressive_shrinking.py:342-354
                expand_stage_list = sorted([3, 4, 6] if phase_name == "expand_2" else [4, 6], reverse=True)
                net.re_organize_middle_weights(expand_ratio_stage=len(expand_stage_list) - 1 - 1)
            reference = _horovod_sgd(net, 3e-5)  # a fresh optimizer: each phase is a new job
            for step in steps:
                _ofa_step(net, teacher, reference, space, batch, step)
        _REFERENCE_CACHE[key] = (net, reference, steps)
    net, reference, reference_steps = _REFERENCE_CACHE[key]
    assert [(s.lr, [space.to_ofa_arch(a) for a in s.archs]) for s in steps] == [
        (s.lr, [space.to_ofa_arch(a) for a in s.archs]) for s in reference_steps]
    return _differences(model, optimizer, net, reference), net, steps


@pytest.mark.integration
def test_ofa_kernel_phase_steps_equal_ofas(start_state, batch, record_property):
    """Elastic kernel: one subnet per step at full depth and width, learned kernel transforms,
    KD from the frozen teacher + label-smoothed CE; transforms no subnet ran still move."""
    differences, net, steps = _ofa_phase("kernel", start_state, batch)
    assert [s.phase for s in steps] == ["kernel"] * 2 and all(len(s.archs) == 1 for s in steps)
    worst = _assert_equal(differences, "ofa kernel phase")
    assert _moved(net, start_state) > 100 * TOLERANCE
    record_property("summary", f"ofa kernel: 2 steps, worst difference {worst:.1e}")


@pytest.mark.integration
@pytest.mark.parametrize("knob", [None, "unused_parameters=freeze", "label_smoothing=0"])
def test_ofa_depth_phase_steps_equal_ofas_and_a_changed_knob_does_not(knob, start_state, batch, record_property):
    """Elastic depth (stage 2: depths 2-4, two subnets a step). Freezing the blocks a step's
    subnets skip (PyTorch SGD's reading of a missing gradient, not the references' runtime), or
    dropping the label smoothing, moves some weight or buffer far beyond the tolerance."""
    changed = dict([knob.split("=")]) if knob else {}
    differences, net, steps = _ofa_phase(
        "depth_2", start_state, batch, unused_parameters=changed.get("unused_parameters"),
        label_smoothing=float(changed.get("label_smoothing", 0.1)))
    assert [len(s.archs) for s in steps] == [2, 2]
    # not vacuous: a stage ran deeper in the first step than in the second, so a block with
    # momentum is unused in the second (the references' runtime moves it, freezing does not)
    assert any(max(a.depths[s] for a in steps[0].archs) > max(a.depths[s] for a in steps[1].archs)
               for s in range(1, 6))
    worst = max(max(d) for d in differences.values())
    if knob is None:
        _assert_equal(differences, "ofa depth phase")
        assert _moved(net, start_state) > 100 * TOLERANCE
    else:
        assert worst > 10 * TOLERANCE, knob
    record_property("summary", f"ofa depth_2 with {knob or 'the preset'}: worst difference {worst:.1e}")


@pytest.mark.integration
def test_ofa_expand_phase_steps_equal_ofas(start_state, batch, record_property):
    """Elastic expand (stage 2: four subnets a step) after OFA's grouped channel sort."""
    differences, net, steps = _ofa_phase("expand_2", start_state, batch)
    assert [len(s.archs) for s in steps] == [4, 4]
    worst = _assert_equal(differences, "ofa expand phase")
    assert _moved(net, start_state) > 100 * TOLERANCE
    record_property("summary", f"ofa expand_2: 2 steps of 4 subnets after the grouped sort, worst difference "
                               f"{worst:.1e}")


# ------------------------------------------------------------------ CompOFA: compound
@pytest.mark.integration
def test_compofa_compound_steps_equal_compofas(start_state, batch, record_property):
    """CompOFA's compound stage 1: four coupled subnets a step (kernels fixed per stage, depth and
    expand coupled), centre-cropped from the kernel-7 teacher's weights, KD from that teacher."""
    space = _space("compofa")
    method = build_method("compofa", space, steps_per_epoch=1, epochs=330)
    index = [p.name for p in method.phases].index("compound_1")
    first = method.phase_bounds(330)[index][0]
    model = _model("compofa", "center_crop", method.full_kernel)
    optimizer, steps = _train_ours(model, start_state, method, first, 2, 330, batch)
    assert [len(s.archs) for s in steps] == [4, 4] and {s.phase for s in steps} == {"compound_1"}
    assert all(e == {2: 3.0, 3: 4.0, 4: 6.0}[len(es)] for s in steps for a in s.archs for es in a.expands[1:]
               for e in es)  # coupled
    with _kernel_transform(None):  # CompOFA's train_ofa_net.py:71 (dy_conv_scaling_mode -1: centre crop)
        net = _reference_net(start_state)
        teacher = copy.deepcopy(net)
        teacher.set_max_net()  # OFAMobileNetV3(ks_list=7, expand_ratio_list=6, depth_list=4), train_ofa_net.py:219-224
        reference = _horovod_sgd(net, 3e-5)
        for step in steps:
            _ofa_step(net, teacher, reference, space, batch, step)
    worst = _assert_equal(_differences(model, optimizer, net, reference), "compofa compound phase")
    assert _moved(net, start_state) > 100 * TOLERANCE
    record_property("summary", f"compofa compound_1: 2 steps of 4 subnets, worst difference {worst:.1e}")


# ------------------------------------------------------------------ DεpS: FM-Warmup, then shrinking
@pytest.mark.integration
def test_deps_fm_warmup_and_shrink_steps_equal_depss(start_state, batch, record_property):
    """Two FM-Warmup steps (the max net on the labels), then DεpS's channel sort at the switch
    and two shrinking steps (max + min + 2 random, ε < 1, in-place KD). DεpS's sort leaves the
    optimizer's momentum in the old channel order, as the preset does (`--sort_momentum=stay`;
    `permute` reorders it: test_fidelity_channel_sorting.py)."""
    space = _space("ofa_mbv3")
    total = 8
    method = build_method("deps", space, steps_per_epoch=1, epochs=total, epsilon_start=0.3, epsilon_ramp_epochs=4)
    switch = method.phase_bounds(total)[1][0]
    run = _OurRun(_model("ofa_mbv3", "center_crop"), start_state, method, switch - 2, total, batch,
                  peak=INPLACE_PEAK)
    warmup = run.steps(2)
    assert [(s.phase, len(s.archs)) for s in warmup] == [("fm_warmup", 0)] * 2
    with _kernel_transform(None):  # DεpS's train_options.py:168, train_net.py:144-147: centre crop
        net = _reference_net(start_state)
        reference = _horovod_sgd(net, 3e-5)
        for step in warmup:
            _deps_step(net, reference, space, batch, step)
        worst_warmup = _assert_equal(_differences(run.model, run.optimizer, net, reference), "deps FM-Warmup")
        assert any(float(b.abs().max()) > 100 * TOLERANCE for b in
                   (reference.state[p]["momentum_buffer"] for p in net.parameters()))  # momentum to reorder, or not
        shrink = run.steps(2)
        assert [s.phase for s in shrink] == ["shrink"] * 2 and all(len(s.archs) == 3 for s in shrink)
        assert all(0.25 < s.epsilon < 1 for s in shrink)
        # deps.py:123-132: the first shrinking epoch re-organises once, expand_ratio_stage =
        # len(expand_list) - 2, with `.data` assignments (dynamic_layers.py:374-437)
        net.re_organize_middle_weights(expand_ratio_stage=1)
        for step in shrink:
            _deps_step(net, reference, space, batch, step)
    worst = _assert_equal(_differences(run.model, run.optimizer, net, reference), "deps shrinking")
    assert _moved(net, start_state) > 100 * TOLERANCE
    epsilons = ", ".join(f"{s.epsilon:.2f}" for s in shrink)
    record_property("summary", f"deps: 2 FM-Warmup steps, worst difference {worst_warmup:.1e}; then the sort and "
                               f"2 shrinking steps (ε {epsilons}), {worst:.1e}")


# ------------------------------------------------------------------ BigNAS (AttentiveNAS), fOFA
# BigNAS and fOFA clip each gradient value at 1.0; this small network's gradients stay below it,
# so the steps compared clip at a threshold that bites (`grad_clip`, the same value-clip code).
CLIP = 0.01


@pytest.mark.integration
@pytest.mark.parametrize("name, phase_name", [("bignas", "sandwich"), ("fofa", "upper_attentive")])
def test_inplace_distillation_steps_equal_attentive_nas(name, phase_name, start_state, batch, record_property):
    """BigNAS's sandwich step as AttentiveNAS's code takes it (max + 2 random + min, in-place KD,
    value clipping after the all-reduce), and fOFA's upper-attentive step (max + 2 random)."""
    space = _space("ofa_mbv3")
    total = {"bignas": 360, "fofa": 185}[name]
    method = build_method(name, space, steps_per_epoch=1, epochs=total, grad_clip=CLIP, dropout=0.0, drop_connect=0.0)
    index = [p.name for p in method.phases].index(phase_name)
    first = method.phase_bounds(total)[index][0] + 10  # past BigNAS's warm-up
    optimizer, steps = _train_ours(_model("ofa_mbv3", "center_crop"), start_state, method, first, 2, total, batch,
                                   peak=INPLACE_PEAK)
    assert [len(s.archs) for s in steps] == [3 if name == "bignas" else 2] * 2 and all(s.train_full for s in steps)
    with _kernel_transform(None):  # AttentiveNAS's kernels are centre crops (dynamic_ops.py)
        net = _reference_net(start_state)
        reference = _attentive_nas_sgd(net, method.weight_decay)
        for step in steps:
            _attentive_nas_step(net, reference, space, batch, step, CLIP)
    assert all(s.largest_gradient > 2 * CLIP for s in steps)  # the clip bites
    worst = _assert_equal(_differences(_MODELS[("ofa_mbv3", "center_crop", None)], optimizer, net, reference),
                          f"{name} {phase_name}")
    assert _moved(net, start_state) > 100 * TOLERANCE
    record_property("summary", f"{name} {phase_name}: 2 steps, worst difference {worst:.1e}")


# ------------------------------------------------------------------ schedules
def _ofa_run_config():
    """OFA's `RunConfig` (run_config.py, its `adjust_learning_rate` / `warmup_adjust_learning_rate`),
    loaded from OFA's package file: its package `__init__` imports the ImageNet loaders
    (torchvision), which the LR functions do not use."""
    import ofa
    stub = types.ModuleType("ofa.imagenet_classification.data_providers")
    stub.ImagenetDataProvider = object
    saved = sys.modules.get(stub.__name__)
    sys.modules[stub.__name__] = saved or stub
    try:
        path = os.path.join(os.path.dirname(ofa.__file__), "imagenet_classification", "run_manager", "run_config.py")
        spec = importlib.util.spec_from_file_location("ofa_run_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules[stub.__name__]
    return module.RunConfig


@pytest.mark.unit
@pytest.mark.parametrize("name, per_gpu, gpus", [("ofa", 64, 4), ("compofa", 256, 2)])
def test_ofa_and_compofa_learning_rates_are_ofas_at_every_step(name, per_gpu, gpus):
    """Each phase, a job of OFA's / CompOFA's train_ofa_net.py at `gpus` GPUs of `per_gpu` images
    (2 steps an epoch): `warmup_adjust_learning_rate` from one GPU's `base_lr` over the warm-up
    epochs, then `calc_learning_rate`'s cosine over the phase's other epochs (run_config.py:67-83,
    pytorch_utils.py:226-237); ours at the same global batch, step by step."""
    run_config_class = _ofa_run_config()
    space = get_space("compofa" if name == "compofa" else "ofa_mbv3")
    n_batch = 2
    # (phase, epochs after the warm-up, warm-up epochs, base_lr per GPU): train_ofa_net.py:42-90 (OFA),
    # 126-156 (CompOFA, base_lr * base_batch_size / 2048); the teacher: 2.6 per 2048 images, 180 epochs
    jobs = {"ofa": [("full", 180, 0, 2.6 * 64 / 2048), ("kernel", 120, 5, 3e-2), ("depth_1", 25, 0, 2.5e-3),
                    ("depth_2", 120, 5, 7.5e-3), ("expand_1", 25, 0, 2.5e-3), ("expand_2", 120, 5, 7.5e-3)],
            "compofa": [("full", 180, 0, 2.6 * 256 / 2048), ("compound_1", 25, 0, 0.08 * 256 / 2048),
                        ("compound_2", 120, 5, 0.24 * 256 / 2048)]}[name]
    epochs = sum(e + w for _, e, w, _ in jobs)
    method = build_method(name, space, steps_per_epoch=n_batch, epochs=epochs)
    schedule = method.learning_rate_schedule(epochs * n_batch, per_gpu * gpus)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    for (phase, n_epochs, warmup, base_lr), (start, end) in zip(jobs, method.phase_bounds(epochs * n_batch)):
        assert end - start == (n_epochs + warmup) * n_batch, phase
        run_config = run_config_class(n_epochs, base_lr * gpus, "cosine", None, None, per_gpu, per_gpu, None, "sgd",
                                      None, 3e-5, 0.1, "bn#bias", None, None, 1, 10)
        for k in range(end - start):
            epoch, i = divmod(k, n_batch)
            if epoch < warmup:  # progressive_shrinking.py:140-152; warmup_lr = base_lr (train_ofa_net.py:164-166)
                expected = run_config.warmup_adjust_learning_rate(optimizer, warmup * n_batch, n_batch, epoch, i,
                                                                  base_lr)
            else:
                expected = run_config.adjust_learning_rate(optimizer, epoch - warmup, i, n_batch)
            # (float32: the cosine's last steps agree to 1e-6 of the peak)
            assert float(schedule(start + k)) == pytest.approx(expected, rel=1e-5, abs=1e-6 * schedule.learning_rate), (
                phase, k)
    # before this issue the warm-up rose from 0: the first warm-up step's rate was 0, not OFA's
    kernel = [p.name for p in method.phases].index("kernel" if name == "ofa" else "compound_2")
    assert float(schedule(method.phase_bounds(epochs * n_batch)[kernel][0])) > 0


@pytest.mark.unit
def test_bignas_learning_rate_is_attentive_nas_warmup_cosine_lr_at_every_step():
    """AttentiveNAS's `WarmupCosineLR` (solver/lr_scheduler.py:8-33 and `_get_warmup_factor_at_iter`
    113-122, built by solver/build.py:46-66: warm-up factor from 0.001 over 5 epochs, cosine over
    all 360 epochs' iterations, clamp 0) at base_lr 0.1 x max(1, batch // 256)
    (train_attentive_nas.py:121), stepped once per iteration (:342-344); ours at batch 512."""
    epochs, n_iters, batch_size = 360, 2, 512
    method = build_method("bignas", get_space("ofa_mbv3"), steps_per_epoch=n_iters, epochs=epochs)
    schedule = method.learning_rate_schedule(epochs * n_iters, batch_size)
    base_lr, max_iters = 0.1 * max(1, batch_size // 256), epochs * n_iters
    warmup_iters, warmup_factor = 5 * n_iters, 0.001

    def reference(it: int) -> float:
        if it >= warmup_iters:
            factor = 1.0
        else:
            alpha = float(it) / float(warmup_iters)
            factor = warmup_factor * (1.0 - alpha) + alpha
        return max(0.0, base_lr * factor * 0.5 * (1.0 + math.cos(math.pi * it / max_iters)))

    ours = [float(schedule(it)) for it in range(max_iters)]
    np.testing.assert_allclose(ours, [reference(it) for it in range(max_iters)], rtol=1e-5, atol=1e-6 * base_lr)
    assert ours[0] == pytest.approx(0.001 * base_lr)  # 0.001 of the peak, not 0


@pytest.mark.unit
def test_deps_learning_rate_and_epsilon_are_depss_at_every_step():
    """DεpS's cosine floored at `min_lr` (deps/utils/pytorch_utils.py:250-299, `--min_lr` 2.5e-3,
    train_options.py:153) at 0.1625 per GPU of 128 images on 16 GPUs (its README's command), and
    its ε (`adjust_beta_value`, deps.py:39-102, `--smallnet_warmup 5`): 0 before the shrinking,
    (T_cur / T_total) x the rate at the ramp's end / the step's rate during the ramp, then 1;
    ours with `--epsilon_mode=lr_ratio` and the shrinking from epoch teacher_warmup - 5, on a run
    of 27 epochs of 3 steps (teacher_warmup 15)."""
    n_epochs, n_batch, teacher_warmup, smallnet_warmup = 27, 3, 15, 5
    init_lr, min_lr = 0.1625 * 16, 2.5e-3
    method = build_method("deps", get_space("ofa_mbv3"), steps_per_epoch=n_batch, epochs=n_epochs,
                          warmup_fraction=(teacher_warmup - smallnet_warmup) / n_epochs, epsilon_mode="lr_ratio",
                          epsilon_ramp_epochs=smallnet_warmup)
    total = n_epochs * n_batch
    schedule = method.learning_rate_schedule(total, 128 * 16)
    controller = PhaseController(method, total_steps=total, lr_at=lambda s: float(schedule(s)))

    def reference_lr(epoch: int, batch: int) -> float:  # calculate_and_adjust_learning_rate, "cosine"
        t_total, t_cur = n_epochs * n_batch, epoch * n_batch + batch
        return max(min_lr, 0.5 * init_lr * (1 + math.cos(math.pi * t_cur / t_total)))

    def reference_beta(epoch: int, batch: int, lr: float) -> float:  # adjust_beta_value, multiplier 1
        desired_lr = reference_lr(teacher_warmup, 0)  # lr_dict[teacher_warmup] (see EpsilonSchedule's note)
        if epoch < teacher_warmup - smallnet_warmup:
            return 0.0
        if epoch < teacher_warmup:
            t_total = smallnet_warmup * n_batch
            warmup_epoch = epoch - (teacher_warmup - smallnet_warmup)
            t_cur = warmup_epoch * n_batch + batch + 1  # smallnet_warmup_adjust_learning_rate, warmup_lr 0
            return t_cur / t_total * desired_lr / lr
        return lr / lr

    shrink_start = method.phase_bounds(total)[1][0]
    assert shrink_start == (teacher_warmup - smallnet_warmup) * n_batch
    for step in range(total):
        epoch, i = divmod(step, n_batch)
        lr = reference_lr(epoch, i)
        assert float(schedule(step)) == pytest.approx(lr, rel=1e-5, abs=1e-6 * init_lr), step
        phase = method.phase_at(step, total)[1]
        epsilon = (phase.epsilon.for_run(total).value(step - shrink_start, controller.lr_at, shrink_start)
                   if phase.epsilon else 0.0)
        assert epsilon == pytest.approx(reference_beta(epoch, i, lr), rel=1e-5), step
    assert float(schedule(total - 1)) == pytest.approx(min_lr)  # the floor holds the run's end


# ------------------------------------------------------------------ BN per GPU
@pytest.mark.unit
def test_virtual_batches_normalise_each_group_of_images_on_its_own(tmp_path):
    """`bn_virtual_batch`: a batch of 8 at 4 normalises as two separate batches of 4 would, in one
    op, and the moving statistics move by the groups' mean; a batch that is not a multiple is
    normalised whole; every BN of a run's model (the frozen teacher's too) gets the setting."""
    import json

    from helpers import tiny_space
    from ofa_tf.layers import ElasticBatchNormalization
    from ofa_tf.layers.batch_norm import set_virtual_batch
    from ofa_tf.runs.config import RunConfig
    from ofa_tf.runs.plan import RunPlan

    x = np.random.default_rng(0).normal(loc=1.0, scale=3.0, size=(8, 5, 5, 6)).astype("float32")
    grouped, whole = ElasticBatchNormalization(virtual_batch=4), ElasticBatchNormalization()
    for layer in (grouped, whole):
        layer.build(x.shape)
    separately = np.concatenate([whole(x[:4], training=True).numpy(), whole(x[4:], training=True).numpy()])
    np.testing.assert_allclose(grouped(x, training=True).numpy(), separately, atol=1e-5)
    group_means = np.mean([x[:4].reshape(-1, 6).mean(0), x[4:].reshape(-1, 6).mean(0)], axis=0)
    np.testing.assert_allclose(grouped.moving_mean.numpy(), 0.1 * group_means, rtol=1e-5)
    fresh = ElasticBatchNormalization()
    fresh.build(x.shape)
    np.testing.assert_allclose(grouped(x[:6], training=True).numpy(), fresh(x[:6], training=True).numpy(), atol=1e-6)
    assert not np.allclose(grouped(x, training=True).numpy(), fresh(x, training=True).numpy(), atol=1e-3)

    space_file = tmp_path / "tiny.json"
    space_file.write_text(json.dumps(tiny_space().to_config()))
    model = RunPlan.resolve(RunConfig(method="ofa", space=str(space_file), bn_virtual_batch=32,
                                      image_size=(16,))).build_model(10)
    layers = [l for l in model._flatten_layers() if isinstance(l, ElasticBatchNormalization)]
    teacher_layers = [l for l in model.teacher._flatten_layers() if isinstance(l, ElasticBatchNormalization)]
    assert teacher_layers and {l.virtual_batch for l in layers + teacher_layers} == {32}
    assert set_virtual_batch(model, None) == len(layers) and {l.virtual_batch for l in layers} == {None}


@pytest.mark.unit
def test_recipes_normalise_bn_over_their_references_per_gpu_images():
    """OFA 64 images per GPU (train_ofa_net.py `base_batch_size`), CompOFA 256 (its
    train_ofa_net.py), DεpS 128 (its README's `--base_batch_size`), fOFA 256 (paper §4),
    AttentiveNAS 32 (`batch_size_per_gpu`)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    expected = {"ofa": 64, "compofa": 256, "deps": 128, "fofa": 256, "bignas": 32}
    for name, images in expected.items():
        with open(os.path.join(root, "flags", f"{name}_imagenet.flags"), encoding="utf-8") as f:
            assert f"--bn_virtual_batch={images}" in f.read().splitlines(), name
    assert {name: build_method(name).device_batch for name in expected} == expected


@pytest.mark.integration
@pytest.mark.parametrize("virtual_batch", [4, None])
def test_virtual_batches_equal_a_reference_step_on_two_gpus(virtual_batch, start_state, record_property):
    """OFA's depth phase on 8 images as two Horovod workers of 4 take it (each normalising its
    own share, the teacher's too; the gradients averaged) equals our step with
    `bn_virtual_batch=4`, and differs with BN over the whole batch."""
    from ofa_tf.layers.batch_norm import set_virtual_batch
    rng = np.random.default_rng(2)
    batch = (rng.normal(size=(2 * BATCH, RESOLUTION, RESOLUTION, 3)).astype("float32"), rng.integers(0, CLASSES, 8))
    space = _space("ofa_mbv3")
    method = build_method("ofa", space, steps_per_epoch=1, epochs=605)
    first = method.phase_bounds(605)[[p.name for p in method.phases].index("depth_2")][0]
    model = _model("ofa_mbv3", "transform")
    set_virtual_batch(model, virtual_batch)
    try:
        optimizer, steps = _train_ours(model, start_state, method, first, 2, 605, batch)
    finally:
        set_virtual_batch(model, None)
    key = ("ofa", "depth_2", "2 gpus")
    if key not in _REFERENCE_CACHE:
        with _kernel_transform(1):
            net = _reference_net(start_state)
            teacher = copy.deepcopy(net)
            teacher.set_max_net()
            reference = _horovod_sgd(net, 3e-5)
            for step in steps:
                _ofa_step(net, teacher, reference, space, batch, step, gpus=2)
        _REFERENCE_CACHE[key] = (net, reference)
    net, reference = _REFERENCE_CACHE[key]
    differences = _differences(model, optimizer, net, reference)
    worst = max(max(d) for d in differences.values())
    if virtual_batch:
        _assert_equal(differences, "ofa depth phase on 2 GPUs")
    else:
        assert worst > 10 * TOLERANCE
    record_property("summary", f"ofa depth_2 on 2 GPUs of 4 images, bn_virtual_batch={virtual_batch}: worst "
                               f"difference {worst:.1e}")
