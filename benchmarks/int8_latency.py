"""Full-int8 vs float32 latency of one exported subnet on this machine, with and without the
XNNPACK rewrites of the export (ofa_tf/export/xnnpack.py), as JSON.

  python benchmarks/int8_latency.py [--space=ofa_mbv3] [--arch=max] [--image_size=224] \\
      [--threads=1] [--rounds=10] [--runs_per_round=5] [--op_resolvers=xnnpack,builtin]

(or `python -m benchmarks.int8_latency ...` from the repository root.)

No training: the subnet comes from a freshly initialised supernet, its BN statistics
recalibrated on the shipped Fashion-MNIST subset resized to --image_size, so that its
activations, and so the int8 scales XNNPACK checks before it takes an op, are those of a
real model's. Weights do not change latency. The subnet is converted the way `ofa-export`
converts (`keras_to_tflite`: float32, and full int8 with the default `mse` ranges on
--representative_images training images), once as exported (rewritten for XNNPACK) and
once as the graph is (`xnnpack=False`, what ofa-export wrote before). The four models are
timed in --rounds interleaved rounds of --runs_per_round runs each (LiteRT,
`ofa_tf.latency.time_interleaved`), per op resolver; the JSON gives each model's median
and min in ms, and int8 / float32 of the medians. With --op_models it first times the ops
behind the difference alone (a 56x56x144 depthwise conv at 5x5 and 7x7, the 7x7 one in strips,
a hard-swish on that tensor, each float32 and int8, as converted without and with the
rewrites; XNNPACK, interleaved). Do not run it beside other CPU work.
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from ofa_tf.data import load_dataset, make_pipeline  # noqa: E402
from ofa_tf.evaluation import recalibrate_bn  # noqa: E402
from ofa_tf.export.interpreter import make_interpreter  # noqa: E402
from ofa_tf.export.tflite import keras_to_tflite, representative_dataset  # noqa: E402
from ofa_tf.latency.host import time_interleaved  # noqa: E402
from ofa_tf.models import Supernet  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = "npz:" + os.path.join(ROOT, "data", "fashion_mnist_small.npz")

flags.DEFINE_string("space", "ofa_mbv3", "Search space.")
flags.DEFINE_string("arch", "max", "Subnet: max, min, random or a JSON object / file.")
flags.DEFINE_integer("image_size", 224, "Input resolution.")
flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.")
flags.DEFINE_integer("bn_calibration_images", 64, "Images the BN statistics are recalibrated on.")
flags.DEFINE_integer("representative_images", 32, "Images that calibrate the int8 ranges.")
flags.DEFINE_string("int8_calibration", "mse", "Full-int8 ranges: mse (ofa-export's default) or minmax.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_integer("rounds", 10, "Interleaved timing rounds.")
flags.DEFINE_integer("runs_per_round", 5, "Timed runs of each model per round.")
flags.DEFINE_list("op_resolvers", ["xnnpack", "builtin"], "LiteRT op resolvers to time with.")
flags.DEFINE_bool("op_models", True, "Also time the single ops behind the difference (docstring).")
flags.DEFINE_string("output", None, "Also write the JSON to this file.")
FLAGS = flags.FLAGS


def summarize(names, times) -> dict[str, dict[str, float]]:
    """{name: {"median_ms", "min_ms"}} of each model's timed runs."""
    return {name: {"median_ms": float(np.median(t)), "min_ms": float(np.min(t))} for name, t in zip(names, times)}


def delegated_partitions(model: bytes) -> int:
    """How many parts XNNPACK splits the model into (1: it runs the whole graph but the
    final reshape)."""
    interpreter = make_interpreter(model)
    interpreter.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


def op_model(kind: str, shape: tuple[int, int, int] = (56, 56, 144)) -> keras.Model:
    """One op on a `shape` tensor (batch 1): `dw5`, `dw7` (depthwise convs), `hard_swish`."""
    x = keras.Input(shape, batch_size=1)
    if kind == "hard_swish":
        y = keras.layers.Activation("hard_swish")(x)
    else:
        y = keras.layers.DepthwiseConv2D(int(kind[2:]), padding="same")(x)
    return keras.Model(x, y)


def time_op_models(threads: int, rounds: int, runs_per_round: int) -> dict[str, dict[str, float]]:
    """Median / min ms of each op model, float32 and int8, plain and rewritten (XNNPACK)."""
    rng = np.random.default_rng(0)
    images = [rng.normal(size=(1, 56, 56, 144)).astype("float32") * 3 for _ in range(8)]
    models = {}
    for kind in ("dw5", "dw7", "hard_swish"):
        model = op_model(kind)
        for mode in ("none", "int8"):
            for rewritten in (False, True):
                if rewritten and (kind == "dw5" or (kind == "hard_swish" and mode == "none")):
                    continue  # nothing to rewrite
                name = f"{kind}_{'float32' if mode == 'none' else 'int8'}{'_rewritten' if rewritten else ''}"
                models[name] = keras_to_tflite(model, mode, representative_dataset(images, 8) if mode == "int8"
                                               else None, "minmax", xnnpack=rewritten)
    times = time_interleaved(list(models.values()), threads, "xnnpack", rounds, runs_per_round, warmup=3)
    return summarize(models, times)


def main(argv: list[str]) -> None:
    started = time.time()
    ops = None
    if FLAGS.op_models:
        print("timing single ops", file=sys.stderr, flush=True)
        ops = time_op_models(FLAGS.threads, FLAGS.rounds, FLAGS.runs_per_round)
    supernet = Supernet(FLAGS.space, num_classes=FLAGS.num_classes, resolutions=[FLAGS.image_size])
    supernet.build()
    arch = supernet.space.parse_arch(FLAGS.arch, rng=0)
    subnet = supernet.get_subnet(arch)
    data = load_dataset(SHIPPED)
    size = arch.resolution
    batches = [images.numpy() for images, _ in make_pipeline(data.train.take(FLAGS.bn_calibration_images), 32,
                                                              [size], training=False)]
    recalibrate_bn(subnet, batches, FLAGS.bn_calibration_images)
    representative = representative_dataset(batches, FLAGS.representative_images)
    models = {}
    for rewritten in (True, False):
        tag = "exported" if rewritten else "unrewritten"
        for mode in ("none", "int8"):
            print(f"converting {tag} {mode}", file=sys.stderr, flush=True)
            models[f"{tag}_{'float32' if mode == 'none' else 'int8'}"] = keras_to_tflite(
                subnet, mode, representative if mode == "int8" else None, FLAGS.int8_calibration, xnnpack=rewritten)
    names = list(models)
    result = {"space": FLAGS.space, "arch": arch.to_dict(), "image_size": size, "threads": FLAGS.threads,
              "rounds": FLAGS.rounds, "runs_per_round": FLAGS.runs_per_round,
              "int8_calibration": FLAGS.int8_calibration, "cpu_count": os.cpu_count(),
              "load_average_before": os.getloadavg()[0],
              "xnnpack_partitions": {name: delegated_partitions(models[name]) for name in names},
              "op_models_xnnpack": ops, "timing": {}}
    for resolver in FLAGS.op_resolvers:
        print(f"timing with {resolver}", file=sys.stderr, flush=True)
        times = time_interleaved([models[name] for name in names], FLAGS.threads, resolver, FLAGS.rounds,
                                 FLAGS.runs_per_round, warmup=3)
        ms = summarize(names, times)
        result["timing"][resolver] = {
            **ms,
            "exported_int8_over_float32": ms["exported_int8"]["median_ms"] / ms["exported_float32"]["median_ms"],
            "unrewritten_int8_over_float32": (ms["unrewritten_int8"]["median_ms"]
                                              / ms["unrewritten_float32"]["median_ms"]),
        }
    result["load_average_after"] = os.getloadavg()[0]
    result["seconds"] = round(time.time() - started, 1)
    startup.print_json(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
