"""benchmarks/common.py, the helpers the benchmark scripts share, and that the scripts start."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import common
from helpers import tiny_space
from ofa_tf.models import Supernet
from ofa_tf.training.optimizer import ReferenceSGD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("step_time", "startup", "input_throughput", "method_step_time", "vs_pytorch_ofa")  # those importing common


@pytest.mark.unit
def test_interleaved_rounds_alternate_and_drop_the_warmup():
    calls, rounds_seen = [], []

    def run(key):
        def call():
            calls.append(key)
            return float(len(calls))
        return call

    samples = common.interleaved({k: run(k) for k in "abc"}, rounds=3, warmup=1, alternate=True,
                                 before_round=rounds_seen.append)
    assert calls == list("abc" "cba" "abc" "cba")  # every other round reversed, the warm-up round included
    assert rounds_seen == [0, 1, 2, 3]
    assert samples == {"a": [6.0, 7.0, 12.0], "b": [5.0, 8.0, 11.0], "c": [4.0, 9.0, 10.0]}  # warm-up calls dropped
    assert common.interleaved({k: run(k) for k in "ab"}, rounds=2)["a"] == [13.0, 15.0]  # no alternation: in order


@pytest.mark.unit
def test_timed_reads_back_every_result():
    read = []

    class Result:
        def numpy(self):
            read.append(1)

    seconds = common.timed(lambda a, b: {"x": Result(), "y": [Result(), 3.0]}, 1, 2)
    assert read == [1, 1] and seconds >= 0
    assert common.timed(lambda: 1.5) >= 0  # a plain number (a PyTorch step's `loss.item()`)


@pytest.mark.unit
def test_make_step_trains_a_static_model_with_any_optimizer():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    traces = []
    step = common.make_step(model, keras.optimizers.SGD(0.1), traces=traces)
    x, y = tf.random.normal((8, 4)), tf.constant([0, 1, 2, 0, 1, 2, 0, 1])
    before = model.get_weights()
    losses = [float(step(x, y).numpy()) for _ in range(3)]
    assert losses[-1] < losses[0] and len(traces) == 1
    assert not np.allclose(before[0], model.get_weights()[0])


@pytest.mark.unit
def test_make_step_one_trace_for_every_arch_and_skipped_blocks_stay():
    """The arch as an input: one trace; with ReferenceSGD(unused_parameters="freeze") the blocks
    a subnet's depth skips get no update (momentum and decay included), as PyTorch's SGD leaves
    a parameter without gradient."""
    model = Supernet(tiny_space(), num_classes=3, resolutions=[16])
    model.build()
    traces = []
    step = common.make_step(model, ReferenceSGD(0.1, momentum=0.9, weight_decay=0.1, unused_parameters="freeze"),
                            traces=traces)
    x, y = tf.random.normal((2, 16, 16, 3)), tf.constant([0, 2])
    step(x, y, model.arch_tensor("max")).numpy()
    skipped = [v for v in model.trainable_variables if "stage1_block2" in v.path]
    used = [v for v in model.trainable_variables if "stage1_block0_project_conv" in v.path]
    assert skipped and used
    before = [v.numpy().copy() for v in skipped + used]
    step(x, y, model.arch_tensor("min")).numpy()  # depth 1 in stage 1: its blocks 1 and 2 skipped
    assert len(traces) == 1
    after = [v.numpy() for v in skipped + used]
    assert all(np.array_equal(b, a) for b, a in zip(before[:len(skipped)], after[:len(skipped)]))
    assert not any(np.array_equal(b, a) for b, a in zip(before[len(skipped):], after[len(skipped):]))


@pytest.mark.integration
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_starts_from_the_repository_root(script):
    """`python benchmarks/NAME.py --help` (benchmarks/ on the path, not the root) imports
    `benchmarks.common` and prints the script's doc and flags."""
    if script == "vs_pytorch_ofa":
        pytest.importorskip("torch")
        pytest.importorskip("ofa")
    done = subprocess.run([sys.executable, os.path.join("benchmarks", f"{script}.py"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"benchmarks/{script}.py" in done.stdout and "--" in done.stdout


@pytest.mark.unit
def test_vs_pytorch_profiles_put_each_librarys_op_time_in_its_category():
    """`--profile_steps`: the real profilers of both libraries on a tiny step each; the matrix
    products land in `convolution`, the update in `optimizer`, and the categories add up."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("ofa")
    from benchmarks import vs_pytorch_ofa as vs

    weights = tf.Variable(tf.random.normal((256, 256)))

    @tf.function
    def tf_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.matmul(tf.matmul(x, weights), weights))
        weights.assign_sub(0.01 * tape.gradient(loss, weights))
        return loss

    x = tf.random.normal((256, 256))
    tf_step(x)
    tf_ms = vs.tf_op_ms(lambda: common.timed(tf_step, x), steps=3)
    assert set(tf_ms) == {*vs.OP_CATEGORIES, "total"}
    assert tf_ms["convolution"] > 0 and tf_ms["batch_norm"] == 0
    assert tf_ms["total"] == pytest.approx(sum(tf_ms[c] for c in vs.OP_CATEGORIES))

    layer = torch.nn.Conv2d(8, 8, 3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(4, 8, 32, 32)

    def torch_step():
        optimizer.zero_grad()
        loss = layer(images).sum()
        loss.backward()
        optimizer.step()
        return loss.item()

    torch_ms = vs.torch_op_ms(torch_step, steps=3)
    assert torch_ms["convolution"] > 0 and torch_ms["optimizer"] > 0 and torch_ms["batch_norm"] == 0
    assert torch_ms["total"] == pytest.approx(sum(torch_ms[c] for c in vs.OP_CATEGORIES))
    assert vs.tf_op_category("model/conv/MatMul", "_MklMatMul") == "convolution"
    assert vs.tf_op_category("reference_sgd/mul_3", "Mul") == "optimizer"
    assert vs.tf_op_category("model/bn/FusedBatchNormV3", "_MklNativeFusedBatchNormV3") == "batch_norm"
    assert vs.tf_op_category("model/dw/StridedSliceGrad", "StridedSliceGrad") == "slicing"
