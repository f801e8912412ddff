"""What the XNNPACK rewrites (ofa_tf/export/xnnpack.py) cost an int8 model in top-1 agreement with
Keras, on a small subnet and real images, as JSON.

  python benchmarks/int8_rewrite_agreement.py [--eval_images=1000]

(or `python -m benchmarks.int8_rewrite_agreement` from the repository root.)

No trained run is needed, and none is used: the tests' tiny space (7x7 depthwise kernels,
hard-swish) with trained-looking random weights (tests/helpers.py `randomize_weights`, seed 0),
its max subnet at 24 px, BN recalibrated on 512 images of the shipped Fashion-MNIST subset. Its
int8 models (200 representative images, `mse` and `minmax` ranges) are converted as the graph
is, with each rewrite alone, and with both (what `ofa-export` writes), and compared with the
Keras subnet on --eval_images test images. A random-weight net has small logit margins, so
agreement is lower than a trained net's; what compares is the difference between graphs.
"""

from __future__ import annotations

from ofa_tf.cli import startup

startup.load_tensorflow(start=True)  # first: silences TensorFlow's start-up output

import os  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the tiny space and random weights of the tests

from helpers import randomize_weights, tiny_space  # noqa: E402

from ofa_tf.data import load_dataset, make_pipeline  # noqa: E402
from ofa_tf.evaluation import recalibrate_bn  # noqa: E402
from ofa_tf.export.tflite import TFLiteClassifier, keras_to_tflite, representative_dataset  # noqa: E402
from ofa_tf.export.xnnpack import decompose_hard_swish, for_xnnpack, split_wide_depthwise  # noqa: E402
from ofa_tf.models import Supernet  # noqa: E402

SHIPPED = "npz:" + os.path.join(ROOT, "data", "fashion_mnist_small.npz")
flags.DEFINE_integer("eval_images", 1000, "Test images agreement is measured on.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    keras.utils.set_random_seed(0)
    supernet = Supernet(tiny_space(), 10)
    supernet.build()
    randomize_weights(supernet)
    subnet = supernet.get_subnet("max")
    data = load_dataset(SHIPPED)
    train = [images.numpy() for images, _ in make_pipeline(data.train.take(512), 128, [24], training=False)]
    recalibrate_bn(subnet, train, 512)
    test = np.concatenate([images.numpy() for images, _ in make_pipeline(data.test.take(FLAGS.eval_images), 250,
                                                                           [24], training=False)])
    expected = subnet(test, training=False).numpy().argmax(-1)
    graphs = {"as is": subnet, "depthwise in strips": split_wide_depthwise(subnet),
              "hard-swish decomposed": decompose_hard_swish(subnet), "both (exported)": for_xnnpack(subnet, "int8")}
    result = {"eval_images": int(len(test)), "top1_agreement": {}}
    for calibration in ("mse", "minmax"):
        for name, graph in graphs.items():
            model = keras_to_tflite(graph, "int8", representative_dataset(train, 200), calibration, xnnpack=False)
            agreement = float((TFLiteClassifier(model)(test).argmax(-1) == expected).mean())
            result["top1_agreement"][f"{calibration}, {name}"] = agreement
    startup.print_json(result)


if __name__ == "__main__":
    app.run(main)
