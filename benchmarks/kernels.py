"""The two kernel choices of the elastic layers, timed both ways, as one JSON object.

  python benchmarks/kernels.py [--repeats=15] [--threads=2]

(or `python -m benchmarks.kernels ...`.)

TensorFlow's x86 builds rewrite convolutions to oneDNN's kernels. Two of those are slower
than another way to the same numbers, and the elastic layers take the other way:

  depthwise_filter_gradient: the gradient of a depthwise kernel
    (`DepthwiseConv2dNativeBackpropFilter`). "onednn": the op as the gradient of
    `tf.nn.depthwise_conv2d` builds it ("SAME" padding, rewritten to oneDNN); "tensorflow":
    the same op with the "SAME" padding written out as explicit paddings, which the rewrite
    leaves to TensorFlow's own kernel (`ofa_tf.layers.depthwise.depthwise_filter_gradient`
    takes it from 5x5 on). Shapes: the blocks of ofa_mbv3 at 32 px (batch 64) and at 224 px
    (batch 16), kernel 3, 5 and 7.
  pointwise_conv: a 1x1, stride-1 convolution, forward and both gradients. "conv2d":
    `tf.nn.conv2d`; "matmul": the matrix product `(N*H*W, C) @ (C, O)`
    (`ofa_tf.layers.conv.pointwise_conv`, every 1x1 elastic convolution). Shapes: expand /
    project / final-expand / head convolutions of ofa_mbv3 at both sizes.

Each entry: median milliseconds of each way over --repeats calls (interleaved, after two
untimed calls), their ratio (above 1: the elastic layers' way is faster) and the largest
difference between the two results relative to the largest value (float rounding).
"""

from __future__ import annotations

from ofa_tf.cli import startup

tf = startup.load_tensorflow()  # first: TensorFlow loads silently; its runtime starts after the thread settings

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.errors import OfaError  # noqa: E402
from ofa_tf.layers.conv import pointwise_conv  # noqa: E402
from ofa_tf.layers.depthwise import depthwise_filter_gradient  # noqa: E402
from ofa_tf.spaces.arch_plan import same_padding  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python benchmarks/kernels.py` puts benchmarks/, not the root, on the path
    sys.path.insert(0, ROOT)
from benchmarks import common  # noqa: E402

flags.DEFINE_integer("repeats", 15, "Timed calls of each way per shape.")
flags.DEFINE_integer("threads", 2, "TensorFlow intra- and inter-op threads.")
FLAGS = flags.FLAGS

# (batch, size, channels, stride): depthwise inputs of ofa_mbv3's blocks at 32 px / batch 64
# and 224 px / batch 16
DEPTHWISE_SHAPES = [(64, 16, 96, 1), (64, 8, 144, 1), (64, 2, 672, 1), (16, 112, 48, 1), (16, 56, 144, 1),
                    (16, 28, 240, 1), (16, 14, 480, 1), (16, 7, 960, 1), (16, 112, 96, 2), (16, 56, 144, 2)]
# (batch, size, in channels, out channels): 1x1 convolutions of ofa_mbv3 at both sizes
POINTWISE_SHAPES = [(64, 1, 960, 1280), (64, 2, 160, 960), (64, 4, 80, 240), (64, 8, 40, 120), (64, 16, 16, 64),
                    (16, 1, 960, 1280), (16, 7, 160, 960), (16, 28, 40, 240), (16, 56, 24, 72), (16, 112, 16, 48)]


def compare(ways: dict, repeats: int) -> dict:
    """Median ms of each of two zero-argument traced functions, their ratio, and how far apart
    their results are (relative to the largest value)."""
    (base_name, base), (ours_name, ours) = ways.items()
    first, second = base(), ours()
    scale = max(float(tf.reduce_max(tf.abs(t))) for t in tf.nest.flatten(first))
    difference = max(float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(tf.nest.flatten(first),
                                                                          tf.nest.flatten(second)))
    samples = common.interleaved({base_name: lambda: common.timed(base), ours_name: lambda: common.timed(ours)},
                                 repeats, warmup=2, alternate=True)
    result = {f"{name}_ms": 1000 * statistics.median(samples[name]) for name in ways}
    result["ratio"] = result[f"{base_name}_ms"] / result[f"{ours_name}_ms"]
    result["relative_difference"] = difference / scale
    return result


def depthwise_entries(repeats: int) -> list[dict]:
    entries = []
    for batch, size, channels, stride in DEPTHWISE_SHAPES:
        out = -(-size // stride)
        x = tf.random.stateless_normal((batch, size, size, channels), seed=(0, 1))
        dy = tf.random.stateless_normal((batch, out, out, channels), seed=(0, 2))
        for k in (3, 5, 7):
            onednn = tf.function(lambda x=x, dy=dy, k=k: tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                input=x, filter_sizes=[k, k, channels, 1], out_backprop=dy, strides=[1, stride, stride, 1],
                padding="SAME"))
            own = tf.function(lambda x=x, dy=dy, k=k: tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                input=x, filter_sizes=[k, k, channels, 1], out_backprop=dy, strides=[1, stride, stride, 1],
                padding="EXPLICIT", explicit_paddings=explicit_same(size, k, stride)))
            entry = {"batch": batch, "size": size, "channels": channels, "stride": stride, "kernel": k}
            entry.update(compare({"onednn": onednn, "tensorflow": own}, repeats))
            entry["layers_use"] = "tensorflow" if traced_op_is_explicit(x, dy, k, stride) else "onednn"
            entries.append(entry)
    return entries


def explicit_same(size: int, kernel_size: int, stride: int) -> list[int]:
    before_after = list(same_padding(size, kernel_size, stride))
    return [0, 0, *before_after, *before_after, 0, 0]


def traced_op_is_explicit(x, dy, kernel_size: int, stride: int) -> bool:
    """Whether `depthwise_filter_gradient` writes the padding out for this kernel size."""
    graph = tf.function(lambda: depthwise_filter_gradient(x, dy, kernel_size, stride)).get_concrete_function().graph
    ops = [op for op in graph.get_operations() if op.type == "DepthwiseConv2dNativeBackpropFilter"]
    return ops[0].get_attr("padding") == b"EXPLICIT"


def pointwise_entries(repeats: int) -> list[dict]:
    entries = []
    for batch, size, inputs, outputs in POINTWISE_SHAPES:
        x = tf.random.stateless_normal((batch, size, size, inputs), seed=(1, 1))
        kernel = tf.random.stateless_normal((1, 1, inputs, outputs), seed=(1, 2))

        def forward_backward(op, x=x, kernel=kernel):
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = op(x, kernel)
                loss = tf.reduce_sum(y * y)
            return [y, *tape.gradient(loss, [x, kernel])]

        conv = tf.function(lambda: forward_backward(lambda a, w: tf.nn.conv2d(a, w, 1, "SAME")))
        matmul = tf.function(lambda: forward_backward(pointwise_conv))
        entry = {"batch": batch, "size": size, "in_channels": inputs, "out_channels": outputs}
        entry.update(compare({"conv2d": conv, "matmul": matmul}, repeats))
        entries.append(entry)
    return entries


def main(argv: list[str]) -> None:
    if FLAGS.repeats < 1 or FLAGS.threads < 1:
        raise OfaError(f"--repeats={FLAGS.repeats}, --threads={FLAGS.threads}: expected >= 1")
    result = {"threads": FLAGS.threads, "cpus": os.cpu_count(), "repeats": FLAGS.repeats,
              "tensorflow": tf.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
              "depthwise_filter_gradient": depthwise_entries(FLAGS.repeats),
              "pointwise_conv": pointwise_entries(FLAGS.repeats)}
    for key in ("depthwise_filter_gradient", "pointwise_conv"):
        ratios = [e["ratio"] for e in result[key] if key != "depthwise_filter_gradient" or e["layers_use"] ==
                  "tensorflow"]
        result[f"{key}_median_ratio"] = statistics.median(ratios)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/kernels.py", doc=__doc__,
                before_first_op=lambda: common.set_threads(FLAGS.threads))
