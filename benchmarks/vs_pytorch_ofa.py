"""Train-step time of PyTorch OFA's own supernet vs ofa_tf's, on the same batch, as one JSON object.

  python benchmarks/vs_pytorch_ofa.py [--resolutions=32,224] [--batch_sizes=64,16] [--rounds=10] \
      [--warmup=2] [--threads=2] [--kinds=full,min,random,deps] [--profile_steps=0]

(or `python -m benchmarks.vs_pytorch_ofa ...`; needs `torch` and OFA's `ofa` package.)

Whether ofa_tf trains a supernet as fast as the reference implementation does on the same
CPU threads. Both sides are the OFA MobileNetV3 supernet of `ofa_mbv3_d234_e346_k357_w1.0`
(kernel {3,5,7}, expand {3,4,6}, depth {2,3,4}) with 10 classes: PyTorch's is OFA's own
`OFAMobileNetV3` (the `ofa` package, unmodified; its torchvision data loader module is
stubbed, as tests/ofa_reference.py does); ofa_tf's is `ofa_mbv3` in OFA's layout
(`ofa_tf.interop.ofa_space`: symmetric padding, no head bias; the kernel transform), so the
two run one architecture (`params` in the output: the trainable parameter counts, equal).
`--noofa_layout` builds ofa_tf's defaults instead (TensorFlow's "same" padding, a head bias,
centre-cropped kernels): a slightly different network. Weights are random on both sides.

Every step sees the same batch (random images, NHWC for TensorFlow and the same numbers NCHW
for PyTorch, random labels), the same loss and the same optimizer, in training's form on both
sides: SGD with learning rate 0.01, momentum 0.9, Nesterov (OFA's default and ofa_tf's),
L2 3e-5 added to the gradient (not BN parameters, not biases: OFA's `no_decay_keys="bn#bias"`,
ofa_tf's coupled `ReferenceSGD`), label smoothing 0.1, classifier dropout 0.1. A parameter
no network of the step used (the blocks a shallow subnet skips) has no gradient in PyTorch
(`zero_grad()` sets it to None) and its SGD leaves it alone; ofa_tf does the same with
`--unused_parameters=freeze`, the default here. (OFA's runs under Horovod give it a zero
gradient instead, ofa_tf's training default `update`: weight decay and momentum move it;
`--unused_parameters=update` times that.) Kinds (per resolution, `--kinds`):
  full, min: the max / min subnet; random: one fixed random subnet (OFA's
    `sample_active_subnet` after `random.seed(--seed)`, mapped to ofa_tf's `Arch` with
    `SearchSpace.validate`); one subnet trained on the labels. PyTorch: OFA's
    `set_max_net` / `set_active_subnet`, `zero_grad`, forward, `loss.backward()`,
    `optimizer.step()`, as OFA's `train_one_epoch`. ofa_tf: the elastic subnet step of
    benchmarks/step_time.py (`common.make_step`, the arch an input: one trace serves all).
  deps: one DεpS shrinking step: the max net on the labels, then the min subnet and 2 random
    ones distilled in place from the max net's detached logits (soft-target cross-entropy,
    OFA's `cross_entropy_loss_with_soft_target`; ε = 1; dropout on the max net only),
    gradients accumulated, one optimizer step. ofa_tf: `OnceForAllModel.train_step` set up by
    the `deps` preset's own `PhaseController` (its subnets, new each round), compiled as the
    training loop compiles it; PyTorch: the same subnets (`SearchSpace.to_ofa_arch`) in OFA's
    loop, one `backward` per network. (OFA's loop also updates accuracy meters; not timed.)

Timing: per resolution, --warmup untimed rounds, then --rounds rounds that each run every
kind on both sides in turn (torch full, tf full, torch min, tf min, ...), every other round in
reverse order. A PyTorch step ends with `loss.item()` (no `no_grad` anywhere); a TensorFlow
step's results are read back (`.numpy()`). --threads applies to both: `torch.set_num_threads`
/ `set_num_interop_threads` and TensorFlow's intra- / inter-op threads. Output per resolution
and kind: the median seconds of each side (`torch_s`, `tf_s`) and `torch_over_tf` (above 1:
ofa_tf is faster); `tf_trace_s`: the first calls of ofa_tf's two steps (tracing), not in the
medians. Compare ratios within one run on a quiet machine, not seconds across machines: on a
loaded one PyTorch's OpenMP threads, which meet at a barrier after every op, lose far more
than TensorFlow's thread pool does (--threads=1 shows how much).

Where the time goes (`--profile_steps=N`): after the timed rounds, N more steps of each kind
on each side under its library's profiler, and `op_ms` per kind: milliseconds per step of
op time by category, `convolution` (PyTorch's convolutions and matrix products; ofa_tf's
convolutions, depthwise convolutions and the MatMuls its 1x1 convolutions run as, forward
and backward), `batch_norm`, `slicing` (slices, their gradients, paddings, concatenations),
`optimizer` (the update, weight decay included), `other` (activations, losses, the rest),
and their `total`. PyTorch's figure is each op's self CPU time on the thread that calls it
(its OpenMP workers' share inside it); TensorFlow's the duration of each op kernel on the
thread that runs it, and its two inter-op threads run ops side by side, so its total can
exceed the step's wall time; with `--tf_inter_op_threads=1` TensorFlow runs one op at a time,
each on all --threads, and the categories add up to (a floor of) the step's time. The
profilers slow both sides a little; the timed medians are taken without them.
"""

from __future__ import annotations

from ofa_tf.cli import startup

tf = startup.load_tensorflow()  # first: TensorFlow loads silently; its runtime starts after the thread settings

import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import types  # noqa: E402
from typing import Callable  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from absl import flags  # noqa: E402

from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.interop import get_net
from ofa_tf.interop.nets import ofa_space  # noqa: E402
from ofa_tf.interop.nets import KERNEL_MODE  # noqa: E402
from ofa_tf.spaces import get_space  # noqa: E402
from ofa_tf.training import OnceForAllModel, PhaseController, build_method
from ofa_tf.training.distillation import label_loss
from ofa_tf.training.samplers import step_rng  # noqa: E402
from ofa_tf.training.optimizer import ReferenceSGD  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/vs_pytorch_ofa.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, ROOT)
from benchmarks import common  # noqa: E402

# `ofa.utils` imports OFA's ImageNet loader, which needs torchvision; no network uses it
sys.modules.setdefault("ofa.utils.my_dataloader", types.ModuleType("ofa.utils.my_dataloader"))
# OFA's soft-target loss builds `nn.LogSoftmax()` without a dim (PyTorch picks 1, right for logits)
warnings.filterwarnings("ignore", message="Implicit dimension choice for log_softmax", category=UserWarning)
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3  # noqa: E402
from ofa.utils import cross_entropy_loss_with_soft_target, cross_entropy_with_label_smoothing  # noqa: E402

NET_ID = "ofa_mbv3_d234_e346_k357_w1.0"
KINDS = ("full", "min", "random", "deps")
LEARNING_RATE = 0.01
MOMENTUM = 0.9
NESTEROV = True
LABEL_SMOOTHING = 0.1
DROPOUT = 0.1
NO_DECAY_KEYS = ["bn", "bias"]  # OFA's `no_decay_keys="bn#bias"` (ofa_tf: `optimizer.NO_DECAY`)
DEPS_RUN_STEPS = 1_000_000  # the run the DεpS step is taken from: its shrinking phase's middle has ε = 1

flags.DEFINE_list("resolutions", ["32", "224"], "Input resolutions.")
flags.DEFINE_list("batch_sizes", ["64", "16"], "Batch size at each resolution (one for all, or one each).")
flags.DEFINE_integer("rounds", 10, "Timed rounds per resolution (each: every kind on both sides).")
flags.DEFINE_integer("warmup", 2, "Untimed rounds first.")
flags.DEFINE_integer("threads", 2, "Threads of both: torch intra- and inter-op, TensorFlow intra- and inter-op.")
flags.DEFINE_integer("tf_inter_op_threads", 0,
                     "TensorFlow's inter-op threads instead of --threads (1: one op at a time, each with all "
                     "--threads; its `op_ms` then add up to wall time). 0: --threads.")
flags.DEFINE_list("kinds", list(KINDS), f"Steps to time, of {list(KINDS)}.")
flags.DEFINE_integer("num_classes", 10, "Classifier outputs.")
flags.DEFINE_integer("seed", 0, "Seed of the batch, the weights and the random subnet.")
flags.DEFINE_enum("unused_parameters", "freeze", ["freeze", "update"],
                  "ofa_tf's treatment of parameters a step did not use (freeze: as the PyTorch side's SGD).")
flags.DEFINE_integer("profile_steps", 0,
                     "After the timed rounds, this many steps of each kind on each side under its library's "
                     "profiler: op time per step by category (`op_ms`). 0: no profile.")
flags.DEFINE_bool("ofa_layout", True, "ofa_tf in OFA's layout (the same architecture); false: ofa_tf's defaults.")
FLAGS = flags.FLAGS


def set_threads() -> None:
    """Before either library's first parallel work: neither changes its thread pools later."""
    torch.set_num_threads(FLAGS.threads)
    torch.set_num_interop_threads(FLAGS.threads)
    common.set_threads(FLAGS.threads)
    if FLAGS.tf_inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.tf_inter_op_threads)


# ---------------------------------------------------------------------------------- PyTorch
def torch_net(num_classes: int, seed: int) -> OFAMobileNetV3:
    """OFA's supernet as `ofa.model_zoo.ofa_net(NET_ID)` builds it, with training's dropout."""
    torch.manual_seed(seed)
    net = OFAMobileNetV3(n_classes=num_classes, bn_param=(0.1, 1e-5), dropout_rate=DROPOUT, width_mult=1.0,
                         ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    return net.train()


def torch_optimizer(net: OFAMobileNetV3, weight_decay: float) -> torch.optim.Optimizer:
    """OFA's `build_optimizer` with `no_decay_keys`: SGD, decay on every parameter but BN's and biases."""
    groups = [{"params": list(net.get_parameters(NO_DECAY_KEYS, mode="exclude")), "weight_decay": weight_decay},
              {"params": list(net.get_parameters(NO_DECAY_KEYS, mode="include")), "weight_decay": 0.0}]
    return torch.optim.SGD(groups, LEARNING_RATE, momentum=MOMENTUM, nesterov=NESTEROV)


def uniform_setting(net: OFAMobileNetV3, pick) -> dict[str, list]:
    """OFA's subnet dict with `pick` (max / min) of every choice: `set_max_net`'s subnet for
    max (OFA's MobileNetV3 has no `set_min_net`)."""
    blocks, stages = len(net.blocks) - 1, len(net.block_group_info)  # (blocks[0] is the fixed first block)
    return {"ks": [pick(net.ks_list)] * blocks, "e": [pick(net.expand_ratio_list)] * blocks,
            "d": [pick(net.depth_list)] * stages}


def set_torch_subnet(net: OFAMobileNetV3, setting: dict | str) -> None:
    if setting == "max":
        net.set_max_net()
    else:
        net.set_active_subnet(ks=setting["ks"], e=setting["e"], d=setting["d"])


def torch_subnet_step(net, optimizer, images, labels, setting) -> float:
    """One subnet on the labels, as OFA's `train_one_epoch` trains one."""
    set_torch_subnet(net, setting)
    net.zero_grad()
    loss = cross_entropy_with_label_smoothing(net(images), labels, LABEL_SMOOTHING)
    loss.backward()
    optimizer.step()
    return loss.item()


def torch_deps_step(net, optimizer, images, labels, subnets: list[dict], subnet_dropout: bool) -> float:
    """DεpS's shrinking step in OFA's loop: the max net on the labels, each subnet distilled
    from its detached output (ε = 1), one `backward` per network, one optimizer step."""
    dropout = net.classifier.dropout
    net.zero_grad()
    net.set_max_net()
    dropout.p = DROPOUT
    output = net(images)
    loss = cross_entropy_with_label_smoothing(output, labels, LABEL_SMOOTHING)
    loss.backward()
    soft_label = F.softmax(output.detach(), dim=1)
    dropout.p = DROPOUT if subnet_dropout else 0.0
    for setting in subnets:
        set_torch_subnet(net, setting)
        kd_loss = cross_entropy_loss_with_soft_target(net(images), soft_label)
        kd_loss.backward()
        loss = loss + kd_loss.detach()
    optimizer.step()
    dropout.p = DROPOUT
    return loss.item()


# ------------------------------------------------------------------------------- TensorFlow
def tf_space(resolution: int):
    space = ofa_space(get_net(NET_ID)) if FLAGS.ofa_layout else get_space("ofa_mbv3")
    return space.with_resolutions([resolution])


def tf_optimizer(method) -> ReferenceSGD:
    """ofa_tf's training optimizer (`Method.optimizer`, Nesterov as NESTEROV says) at a constant rate."""
    return method.optimizer(LEARNING_RATE, total_steps=1, momentum=MOMENTUM)


def tf_model(space, method, num_classes: int) -> OnceForAllModel:
    """The model `ofa_tf.runs.plan.build_model` builds for the method, compiled as training compiles it."""
    model = OnceForAllModel(space, num_classes=num_classes, dropout=DROPOUT,
                            kernel_mode=KERNEL_MODE if FLAGS.ofa_layout else "center_crop",
                            max_subnets=method.max_subnets, label_smoothing=LABEL_SMOOTHING,
                            subnet_dropout=method.subnet_dropout)
    model.build()
    model.compile(optimizer=tf_optimizer(method), metrics=["accuracy"])
    model.optimizer.build(model.supernet_trainable_variables)
    model.build_metrics()
    return model


# ---------------------------------------------------------------------------------- one size
def check_same(space, name: str, ofa_setting: dict, arch) -> None:
    """`ofa_setting` (what the torch net runs) is `arch` (what ofa_tf runs), or an error."""
    mapped = space.validate({**ofa_setting, "r": [arch.resolution]})
    if mapped != space.validate(arch):
        raise RuntimeError(f"{name}: OFA's subnet {ofa_setting} maps to {mapped}, not ofa_tf's {arch}")


def measure(resolution: int, batch: int, kinds: list[str]) -> dict:
    args = FLAGS
    rng = np.random.default_rng(args.seed)
    images = rng.normal(size=(batch, resolution, resolution, 3)).astype(np.float32)  # NHWC
    labels = rng.integers(0, args.num_classes, size=batch)
    tf_x, tf_y = tf.constant(images), tf.constant(labels.astype(np.int32))
    torch_x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # the same numbers, NCHW
    torch_y = torch.from_numpy(labels.astype(np.int64))

    space = tf_space(resolution)
    method = build_method("deps", space, steps_per_epoch=DEPS_RUN_STEPS, epochs=1,
                          unused_parameters=args.unused_parameters)
    model = tf_model(space, method, args.num_classes)
    net = torch_net(args.num_classes, args.seed)
    result: dict = {"batch": batch, "params": {
        "torch": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "tf": int(sum(np.prod(v.shape) for v in model.supernet_trainable_variables))}}

    # the subnets: OFA's settings for torch, encoded archs for ofa_tf, checked to be one arch
    min_setting = uniform_setting(net, min)
    check_same(space, "max", uniform_setting(net, max), space.max_arch())
    check_same(space, "min", min_setting, space.min_arch())
    random.seed(args.seed)  # OFA's sampler draws from Python's `random`, as its train loop seeds it
    random_setting = net.sample_active_subnet()
    random_arch = space.validate({**random_setting, "r": [resolution]})
    result["random_arch"] = space.to_ofa_arch(random_arch)
    subnets = {"full": ("max", model.arch_tensor("max")), "min": (min_setting, model.arch_tensor("min")),
               "random": (random_setting, model.arch_tensor(random_arch))}

    tf_step = common.make_step(model, tf_optimizer(method), loss_fn=lambda y, logits: label_loss(
        y, logits, LABEL_SMOOTHING))
    torch_opt = torch_optimizer(net, method.weight_decay)
    runs = {}
    for kind in kinds:
        if kind == "deps":
            continue
        setting, vector = subnets[kind]
        runs[kind, "torch"] = lambda s=setting: common.timed(torch_subnet_step, net, torch_opt, torch_x, torch_y, s)
        runs[kind, "tf"] = lambda v=vector: common.timed(tf_step, tf_x, tf_y, v)
    result["tf_trace_s"] = {}
    if runs:
        result["tf_trace_s"]["subnet_step"] = common.timed(tf_step, tf_x, tf_y, model.arch_tensor("max"))

    deps_settings: list[dict] = []
    before_round = None
    if "deps" in kinds:
        controller = PhaseController(method, DEPS_RUN_STEPS, seed=args.seed)
        controller.set_model(model)
        shrink_start, shrink_end = method.phase_bounds(DEPS_RUN_STEPS)[-1]
        first_step = (shrink_start + shrink_end) // 2
        deps_fn = common.train_step_function(model)

        def before_round(r: int) -> None:
            """This round's DεpS subnets: the controller's for ofa_tf, the same archs for torch."""
            step = first_step + r
            controller.prepare_step(step)
            _, phase, _ = method.phase_at(step, DEPS_RUN_STEPS)
            drawn = phase.sampler.sample(space, step_rng(args.seed, step))  # what the controller drew
            if controller.current_epsilon != 1.0 or not np.array_equal(
                    model.step_archs.numpy()[:len(drawn)], np.stack([model.layout.to_vector(a) for _, a in drawn])):
                raise RuntimeError(f"step {step}: not the subnets or ε the controller set")
            deps_settings[:] = [space.to_ofa_arch(arch) for _, arch in drawn]

        runs["deps", "torch"] = lambda: common.timed(torch_deps_step, net, torch_opt, torch_x, torch_y,
                                                     deps_settings, method.subnet_dropout)
        runs["deps", "tf"] = lambda: common.timed(deps_fn, tf_x, tf_y)
        before_round(-1)
        result["tf_trace_s"]["deps_step"] = common.timed(deps_fn, tf_x, tf_y)

    samples = common.interleaved(runs, args.rounds, warmup=args.warmup, alternate=True, before_round=before_round)
    for kind in kinds:
        torch_s, tf_s = statistics.median(samples[kind, "torch"]), statistics.median(samples[kind, "tf"])
        result[kind] = {"torch_s": torch_s, "tf_s": tf_s, "torch_over_tf": torch_s / tf_s}
        if args.profile_steps:
            result[kind]["op_ms"] = {"torch": torch_op_ms(runs[kind, "torch"], args.profile_steps),
                                     "tf": tf_op_ms(runs[kind, "tf"], args.profile_steps)}
    return result


# -------------------------------------------------------------------------------- profiles
OP_CATEGORIES = ("convolution", "batch_norm", "slicing", "optimizer", "other")
TF_SLICING_OPS = ("StridedSlice", "StridedSliceGrad", "Slice", "Pad", "PadV2", "GatherV2", "ConcatV2", "Pack")
TF_OP_EVENT = re.compile(r"^(?P<name>[^:\s]+):(?P<type>[A-Za-z_][A-Za-z0-9_]*)$")  # "scope/op:OpType"
TORCH_CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::mm", "aten::addmm",
                         "aten::_convolution", "aten::convolution")
TORCH_SLICING_OPS = ("aten::slice", "aten::slice_backward", "aten::narrow", "aten::contiguous", "aten::clone",
                     "aten::index_select", "aten::constant_pad_nd", "aten::pad", "aten::cat", "aten::stack")


def tf_op_category(name: str, op_type: str) -> str:
    if op_type.startswith("ResourceApply") or "reference_sgd/" in name:
        return "optimizer"
    if "MatMul" in op_type or "Conv2D" in op_type or "DepthwiseConv2d" in op_type:
        return "convolution"  # every 1x1 elastic convolution is a MatMul
    if op_type in TF_SLICING_OPS:
        return "slicing"
    return "batch_norm" if "BatchNorm" in op_type else "other"


def torch_op_category(event) -> str:
    parent = event
    while parent is not None:
        if parent.name.startswith("Optimizer.step"):
            return "optimizer"
        parent = parent.cpu_parent
    if event.name in TORCH_CONVOLUTION_OPS:
        return "convolution"
    if event.name in TORCH_SLICING_OPS:
        return "slicing"
    return "batch_norm" if "batch_norm" in event.name else "other"


def per_step(totals: dict[str, float], steps: int) -> dict[str, float]:
    result = {category: totals.get(category, 0.0) / steps for category in OP_CATEGORIES}
    result["total"] = sum(result.values())
    return result


def tf_op_ms(run: Callable[[], float], steps: int) -> dict[str, float]:
    """Milliseconds per step of TensorFlow's ops by category: the sum of each op kernel's
    duration as the profiler records it on the thread that runs it (two inter-op threads run
    ops side by side, so the sum can exceed the step's wall time)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(steps):
            run()
        tf.profiler.experimental.stop()
        paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not paths:
            raise OfaError(f"TensorFlow's profiler wrote no trace into {logdir}")
        space = xplane_pb2.XSpace()
        with open(paths[0], "rb") as f:
            space.ParseFromString(f.read())
    for plane in space.planes:
        if "host" not in plane.name.lower():
            continue
        for line in plane.lines:
            for event in line.events:
                match = TF_OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
                if match:
                    category = tf_op_category(match["name"], match["type"])
                    totals[category] = totals.get(category, 0.0) + event.duration_ps / 1e9
    return per_step(totals, steps)


def torch_op_ms(run: Callable[[], float], steps: int) -> dict[str, float]:
    """Milliseconds per step of PyTorch's ops by category: each op's self CPU time (its
    OpenMP workers' share inside it), the optimizer step's ops as `optimizer`."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            run()
    totals: dict[str, float] = {}
    for event in profiler.events():
        category = torch_op_category(event)
        totals[category] = totals.get(category, 0.0) + event.self_cpu_time_total / 1e3
    return per_step(totals, steps)


def main(argv: list[str]) -> None:
    args = FLAGS
    resolutions = [int(r) for r in args.resolutions]
    batches = [int(b) for b in args.batch_sizes]
    if len(batches) == 1:
        batches *= len(resolutions)
    if len(batches) != len(resolutions):
        raise OfaError(f"--batch_sizes has {len(batches)} entries for {len(resolutions)} resolutions")
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown or not args.kinds:
        raise OfaError(f"--kinds={','.join(args.kinds)}: expected some of {','.join(KINDS)}")
    if args.rounds < 1 or args.warmup < 0 or args.threads < 1 or args.profile_steps < 0 or args.tf_inter_op_threads < 0:
        raise OfaError("--rounds and --threads must be >= 1, --warmup, --profile_steps and --tf_inter_op_threads >= 0")
    kinds = [k for k in KINDS if k in args.kinds]

    result = {"net_id": NET_ID, "ofa_layout": args.ofa_layout, "num_classes": args.num_classes,
              "unused_parameters": args.unused_parameters, "threads": args.threads,
              "tf_inter_op_threads": args.tf_inter_op_threads or args.threads, "cpus": os.cpu_count(),
              "rounds": args.rounds, "warmup": args.warmup,
              "seed": args.seed, "torch": torch.__version__, "tensorflow": tf.__version__,
              "optimizer": {"lr": LEARNING_RATE, "momentum": MOMENTUM, "nesterov": NESTEROV,
                            "weight_decay": build_method("deps").weight_decay, "no_decay": "BN, biases"},
              "label_smoothing": LABEL_SMOOTHING, "dropout": DROPOUT, "results": {}}
    for resolution, batch in zip(resolutions, batches):
        result["results"][str(resolution)] = measure(resolution, batch, kinds)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/vs_pytorch_ofa.py", doc=__doc__, before_first_op=set_threads)
