"""OFA's PyTorch supernets in ofa_tf: equivalence with OFA's own code, round trips, bad input.

The references are OFA's real networks (the `ofa` package, unmodified; `ofa_reference.py`),
randomly initialised with random BN statistics and kernel-transform matrices away from the
identity, and saved with `torch.save`. Few subnets per test keep the file fast on 2 cores;
a wider sweep (20 subnets per width) is the command in docs/pretrained.md.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from layer_harness import run_elastic_layer_test

from ofa_reference import NET_IDS, count_net_flops, count_parameters, random_ofa, random_ofa_mbv3, state_numpy

from ofa_tf.errors import OfaError
from ofa_tf.export.tflite import TFLiteClassifier, keras_to_tflite
from ofa_tf.interop import export_state_dict, get_net, import_run, import_state_dict
from ofa_tf.interop.nets import ofa_space
from ofa_tf.interop.specialized import import_specialized
from ofa_tf.interop.torch_files import read_state_dict
from ofa_tf.layers import ElasticConv2D, ElasticDepthwiseConv2D
from ofa_tf.models import Supernet
from ofa_tf.spaces import profile
from ofa_tf.runs import RunConfig, RunDirectory, load_init_checkpoint
from ofa_tf.runs.init_checkpoint import check_init_checkpoint
from ofa_tf.runs.plan import build_model
from ofa_tf.spaces import get_space
from ofa_tf.training import build_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
TOLERANCE = 1e-4
# random subnets per width in the equivalence test (the sweep: OFA_TF_INTEROP_SUBNETS=20)
SUBNETS = int(os.environ.get("OFA_TF_INTEROP_SUBNETS", "1"))


def _imported(width: float, tmp_path) -> tuple[torch.nn.Module, Supernet]:
    """OFA's network of `width`, saved with torch.save, read back and imported."""
    reference = random_ofa(width)
    path = tmp_path / "ofa.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    net = get_net(NET_IDS[width])
    supernet = Supernet(ofa_space(net), num_classes=1000, kernel_mode="transform")
    import_state_dict(supernet, read_state_dict(str(path)), net, "checkpoint")
    return reference, supernet


def _reference_logits(reference, space, arch, images: np.ndarray) -> np.ndarray:
    ofa = space.to_ofa_arch(arch)
    reference.set_active_subnet(ks=ofa["ks"], e=ofa["e"], d=ofa["d"])
    with torch.no_grad():
        return reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()


def _images(resolution: int, seed: int, count: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, resolution, resolution, 3)).astype(np.float32)


@pytest.mark.integration
@pytest.mark.parametrize("width", [1.0, 1.2, 1.3])
def test_imported_supernet_gives_ofas_logits_macs_and_params(width, tmp_path, record_property):
    """SUBNETS random subnets at random sizes in 128..224; for w1.0 also the max subnet at 224,
    and the min subnet at 128 as a float32 TFLite model (in a sweep, SUBNETS > 1, also the
    first two random subnets, for every width)."""
    reference, supernet = _imported(width, tmp_path)
    space = supernet.space
    rng = random.Random(int(width * 10))
    archs = [space.sample(rng, resolution=rng.choice(space.resolutions)) for _ in range(SUBNETS)]
    worst = 0.0
    converted = ([space.min_arch(128)] if width == 1.0 else []) + (archs[:2] if SUBNETS > 1 else [])
    if width == 1.0:
        archs.append(space.max_arch(224))
    for i, arch in enumerate(converted):
        images = _images(arch.resolution, 7 + i)
        expected = _reference_logits(reference, space, arch, images)
        tflite = TFLiteClassifier(keras_to_tflite(supernet.get_subnet(arch)))
        worst = max(worst, float(np.abs(tflite(images) - expected).max()))
        assert worst < TOLERANCE, arch
    for i, arch in enumerate(archs):
        images = _images(arch.resolution, i)
        expected = _reference_logits(reference, space, arch, images)
        assert np.abs(expected).max() > 1.0  # logits of a size where a wrong tensor shows
        elastic = supernet(images, arch=arch, training=False).numpy()
        static = supernet.get_subnet(arch)(images, training=False).numpy()
        worst = max(worst, float(np.abs(elastic - expected).max()), float(np.abs(static - expected).max()))
        assert np.abs(elastic - expected).max() < TOLERANCE, arch
        assert np.abs(static - expected).max() < TOLERANCE, arch
        extracted = reference.get_active_subnet(preserve_weight=True)
        cost = profile(space, arch, 1000)
        assert cost["params"] == count_parameters(extracted), arch
        # OFA's counter adds float32 buffers (`torch.zeros(1)`): equal up to float32 rounding
        theirs = count_net_flops(extracted, (1, 3, arch.resolution, arch.resolution))
        assert abs(cost["macs"] - theirs) <= 1e-6 * theirs, (cost["macs"], theirs)
    record_property("summary", f"OFA w{width}: {len(archs)} subnets + {len(converted)} TFLite, "
                               f"max |logit difference| {worst:.2e}")


@pytest.mark.unit
@pytest.mark.parametrize("size", [8, 7])
def test_symmetric_padding_is_pytorchs_and_passes_the_layer_harness(size):
    """k//2 zeros on every side at stride 2, on an even and an odd input, elastic (Python and
    tensor kernel sizes) and static twins alike."""
    run_elastic_layer_test(lambda: ElasticDepthwiseConv2D((3, 5, 7), strides=2, kernel_mode="transform",
                                                          padding="symmetric"),
                           (size, size, 6), [{"kernel_size": 3}, {"kernel_size": 5}, {"kernel_size": 7}])
    run_elastic_layer_test(lambda: ElasticConv2D(5, 3, strides=2, padding="symmetric"), (size, size, 4),
                           [{"out_channels": 3}, {}])
    conv = ElasticConv2D(5, 5, strides=2, padding="symmetric")
    x = tf.random.normal((1, size, size, 4), seed=1)
    conv.build(x.shape)
    explicit = tf.nn.conv2d(tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]]), conv.kernel, 2, "VALID")
    np.testing.assert_allclose(conv(x).numpy(), explicit.numpy(), atol=1e-5)


@pytest.mark.unit
def test_ofa_spaces_pad_symmetrically_and_have_no_head_bias():
    # the issue's figures: ofa_mbv3's max subnet at 10 classes, with and without the head bias
    ours = get_space("ofa_mbv3")
    ofa = ofa_space(get_net(NET_IDS[1.0]))
    assert (ours.padding, ours.head_bias) == ("same", True)
    assert (ofa.padding, ofa.head_bias) == ("symmetric", False)
    assert profile(ours, ours.max_arch(224), 10)["params"] == 6_397_850
    assert profile(ofa, ofa.max_arch(224), 10)["params"] == 6_396_570


@pytest.mark.unit
def test_ofa_arch_dicts_are_accepted_and_written():
    space = ofa_space(get_net(NET_IDS[1.0]))
    rng = random.Random(0)
    for _ in range(5):
        arch = space.sample(rng, resolution=rng.choice(space.resolutions))
        ofa = space.to_ofa_arch(arch)
        assert set(ofa) == {"ks", "e", "d", "r"} and len(ofa["ks"]) == len(ofa["e"]) == 20 and len(ofa["d"]) == 5
        assert space.parse_arch(ofa) == arch
        assert space.parse_arch(json.dumps(ofa)) == arch
        assert get_space("ofa_mbv3").parse_arch(ofa).depths == arch.depths
    proxyless = ofa_space(get_net(NET_IDS[1.3]))  # 5 stages of 4 slots and one of 1: 21 slots, 6 depths
    ofa = proxyless.to_ofa_arch(proxyless.max_arch(224))
    assert (len(ofa["ks"]), len(ofa["d"])) == (21, 6)
    assert proxyless.parse_arch(dict(ofa, d=[4] * 6)) == proxyless.max_arch(224)  # OFA clips a 1-block stage's d
    max_ofa = {"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5, "r": [224]}
    assert space.parse_arch(max_ofa) == space.max_arch(224)
    assert space.parse_arch({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5}, resolution=160) == space.min_arch(160)
    for bad, word in (({"ks": [3] * 19, "e": [3] * 20, "d": [2] * 5}, "arch.ks has 19"),
                      ({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 4}, "arch.d has 4"),
                      ({"ks": [4] * 20, "e": [3] * 20, "d": [2] * 5}, "kernels"),
                      ({"ks": [3] * 20, "e": [3] * 20, "d": [5] * 5}, "arch.d[0]=5")):
        with pytest.raises(OfaError, match=word.replace("[", r"\[").replace("]", r"\]")):
            space.parse_arch(bad)


@pytest.mark.integration
def test_bad_checkpoints_are_one_line_errors_and_write_nothing(tmp_path):
    reference = random_ofa_mbv3(1.0)
    state = state_numpy(reference)
    net = get_net(NET_IDS[1.0])
    supernet = Supernet(ofa_space(net), num_classes=1000, kernel_mode="transform")
    supernet.build()
    missing = dict(state)
    del missing["blocks.3.conv.depth_conv.conv.7to5_matrix"]
    extra = dict(state, **{"blocks.99.conv.point_linear.conv.conv.weight": np.zeros((1, 1, 1, 1), np.float32)})
    other = state_numpy(random_ofa_mbv3(1.2))
    cases = [(missing, "tensor blocks.3.conv.depth_conv.conv.7to5_matrix is missing"),
             (extra, "tensor blocks.99.conv.point_linear.conv.conv.weight has no place"),
             (other, "tensor first_conv.conv.weight has shape (24, 3, 3, 3)")]
    before = [v.numpy().copy() for v in supernet.weights]
    for bad, message in cases:
        with pytest.raises(OfaError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
            import_state_dict(supernet, bad, net, "checkpoint=x.pth")
        assert "\n" not in str(error.value)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, supernet.weights))  # nothing assigned
    with pytest.raises(OfaError, match="net_id='ofa_mbv3_w9'"):
        get_net("ofa_mbv3_w9")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    full = tmp_path / "full.pth"
    torch.save(reference.state_dict(), full)
    (tmp_path / "truncated.pth").write_bytes(full.read_bytes()[:1000])
    for name in ("junk.pth", "truncated.pth"):
        with pytest.raises(OfaError, match=f"checkpoint=.*{name}: not a readable PyTorch checkpoint"):
            read_state_dict(str(tmp_path / name))
    run = tmp_path / "runs" / "imported"
    with pytest.raises(OfaError, match="has no place"):
        import_run(extra, net, str(run), "checkpoint=x.pth")
    assert not (tmp_path / "runs").exists()  # checked before anything is written


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_import_tool_writes_a_run_that_loads_and_export_tool_gives_the_same_tensors(tmp_path):
    reference = random_ofa_mbv3(1.0, seed=5)
    original = state_numpy(reference)
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "ofa.pth")
    run, out = tmp_path / "run", tmp_path / "back.pth"
    done = _tool("tools.import_ofa", f"--checkpoint={tmp_path / 'ofa.pth'}", f"--net_id={NET_IDS[1.0]}",
                 f"--model_dir={run}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tensors"] == len(original)

    # the run is an ordinary trained run directory: its supernet gives OFA's logits
    model, saved = RunDirectory(str(run)).load_supernet()
    assert (saved.num_classes, saved.config.kernel_mode, saved.space.padding) == (1000, "transform", "symmetric")
    arch = saved.space.sample(random.Random(1), resolution=160)
    images = _images(160, 1)
    expected = _reference_logits(reference, saved.space, arch, images)
    assert np.abs(model(images, arch=arch, training=False).numpy() - expected).max() < TOLERANCE

    # the exporter, and a bad import through the tool, side by side
    bad = subprocess.Popen([sys.executable, "-m", "tools.import_ofa", f"--checkpoint={tmp_path / 'ofa.pth'}",
                            f"--net_id={NET_IDS[1.2]}", f"--model_dir={tmp_path / 'x'}"], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = _tool("tools.export_ofa", f"--model_dir={run}", f"--output={out}")
    assert done.returncode == 0, done.stderr
    back = torch.load(out, weights_only=True)
    fresh = random_ofa_mbv3(1.0, seed=6)
    fresh.load_state_dict(back, strict=True)
    assert list(back) == list(original)
    for name, value in original.items():
        if not name.endswith("num_batches_tracked"):
            assert np.array_equal(back[name].numpy(), value), name

    # the bad import (a w1.0 checkpoint named as w1.2): one line, exit 2, nothing written
    _, stderr = bad.communicate(timeout=300)
    lines = stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --checkpoint="), stderr
    assert "first_conv.conv.weight" in lines[0] and not (tmp_path / "x").exists()


@pytest.mark.integration
def test_import_ofa_tf_does_not_import_torch():
    code = ("import sys, ofa_tf, ofa_tf.models, ofa_tf.runs, ofa_tf.interop, ofa_tf.spaces; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.integration
def test_an_imported_supernet_initialises_a_ten_class_tofa_run_but_its_classifier(tmp_path):
    net = get_net(NET_IDS[1.0])
    run = tmp_path / "imported"
    import_run(state_numpy(random_ofa_mbv3(1.0, seed=2)), net, str(run), "checkpoint=x.pth")
    config = RunConfig(method="tofa", space=str(run / "config.json"), image_size=(32,), kernel_mode="transform",
                       dataset=f"npz:{DEMO}", init_checkpoint=str(run), epochs=1)
    space = get_space(config.space, config.width_mult, config.image_size)
    method = build_method(config.method, space, steps_per_epoch=1, epochs=1)
    model = build_model(config, space, 10, method)
    fresh = [v.numpy().copy() for v in model.classifier.weights]
    load_init_checkpoint(model, check_init_checkpoint(str(run), space, 10, config.width_mult))
    imported, _ = RunDirectory(str(run)).load_supernet()
    classifier = {id(v) for v in model.classifier.weights}
    pairs = list(zip(model.supernet_weights, imported.supernet_weights))
    assert len(pairs) == len(imported.supernet_weights)
    for mine, theirs in pairs:
        if id(mine) in classifier:
            assert mine.shape[-1] == 10 and theirs.shape[-1] == 1000
        else:
            assert np.array_equal(mine.numpy(), theirs.numpy()), mine.path
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(fresh, model.classifier.weights))


@pytest.mark.integration
def test_a_specialised_net_imports_to_a_keras_model_with_the_same_logits(tmp_path):
    """A specialised net as OFA ships one: net.config + init (+ run.config), here a random
    subnet of OFA's own supernet; the tool writes a .keras model that loads without ofa_tf."""
    reference = random_ofa(1.0, seed=4)
    reference.sample_active_subnet()
    subnet = reference.get_active_subnet(preserve_weight=True).eval()
    folder = tmp_path / "specialized"
    folder.mkdir()
    (folder / "net.config").write_text(json.dumps(subnet.config))
    (folder / "run.config").write_text(json.dumps({"image_size": 160}))
    torch.save({"state_dict": subnet.state_dict()}, folder / "init")
    out = tmp_path / "specialized.keras"
    done = _tool("tools.import_ofa", f"--specialized={folder}", f"--net_id={NET_IDS[1.0]}", f"--output={out}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["image_size"] == 160
    model = keras.saving.load_model(out)  # plain Keras layers only
    images = _images(160, 3)
    with torch.no_grad():
        expected = subnet(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    assert np.abs(model(images, training=False).numpy() - expected).max() < TOLERANCE
    state = state_numpy(subnet)
    del state["blocks.1.conv.point_linear.bn.running_var"]
    with pytest.raises(OfaError, match=r"tensor blocks\.1\.conv\.point_linear\.bn\.running_var is missing"):
        import_specialized(get_net(NET_IDS[1.0]), subnet.config, state, 160, "specialized=x")


@pytest.mark.integration
def test_proxyless_round_trip_keeps_its_bn_epsilon_in_the_variances():
    """OFA's ProxylessNAS net normalises with epsilon 1e-3, ours with 1e-5: the import adds the
    difference to each running variance and the export takes it off again."""
    net = get_net(NET_IDS[1.3])
    state = state_numpy(random_ofa(1.3, seed=8))
    supernet = Supernet(ofa_space(net), num_classes=1000, kernel_mode="transform")
    import_state_dict(supernet, state, net, "checkpoint=x.pth")
    assert np.allclose(supernet.stem_bn.moving_variance.numpy(), state["first_conv.bn.running_var"] + 1e-3 - 1e-5)
    back = export_state_dict(supernet, net)
    assert list(back) == list(state)
    for name, value in state.items():
        if name.endswith("running_var"):
            np.testing.assert_allclose(back[name], value, rtol=1e-6, err_msg=name)
        elif not name.endswith("num_batches_tracked"):
            assert np.array_equal(back[name], value), name
