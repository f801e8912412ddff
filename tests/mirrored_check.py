"""Run as a script (by tests/test_distribute.py): MirroredStrategy over 2 logical CPU devices
vs one device, same model, same batches, same subnets; prints JSON.

Logical devices must be configured before TensorFlow starts, hence a separate process.
Each global batch is two copies of the same half batch, so every replica's slice has the
statistics of the whole batch and batch norm (per replica, see ofa_tf/distribute.py)
computes exactly what one device computes: what remains to compare is the distributed
plumbing itself (slicing, gradient averaging, identical subnets, optimizer state).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from helpers import randomize_weights, tiny_space  # noqa: E402
from ofa_tf.distribute import replica_batches  # noqa: E402
from ofa_tf.training import OnceForAllModel, PhaseController, build_method  # noqa: E402
from ofa_tf.training.loop import train_steps  # noqa: E402

STEPS, BATCH = int(os.environ.get("MC_STEPS", 4)), 8


def batches():
    rng = np.random.default_rng(0)
    half = rng.normal(size=(STEPS, BATCH // 2, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 10, size=(STEPS, BATCH // 2)).astype("int32")
    images = np.concatenate([half, half], axis=1)
    return tf.data.Dataset.from_tensor_slices((images, np.concatenate([labels, labels], axis=1)))


def train(strategy, initial):
    space = tiny_space(resolutions=(16,))
    method = build_method("bignas", space, steps_per_epoch=STEPS, num_subnets=2)
    with strategy.scope():
        model = OnceForAllModel(space, num_classes=10, dropout=0.0, max_subnets=2)
        model.build()
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), metrics=["accuracy"])
        model.optimizer.build(model.supernet_trainable_variables)
    if initial is None:
        randomize_weights(model, 0)
    else:
        model.set_weights(initial)
    start = [w.copy() for w in model.get_weights()]
    start_trainable = [v.numpy().copy() for v in model.supernet_trainable_variables]  # .numpy() may alias
    controller = PhaseController(method, STEPS, seed=3)
    train_steps(model, replica_batches(strategy, batches, BATCH), strategy=strategy, epochs=1,
                steps_per_epoch=STEPS, callbacks=[controller], verbose=0)
    return start, start_trainable, [v.numpy().copy() for v in model.supernet_trainable_variables], model


def main():
    # Fixed initial weights: four steps of SGD at lr 0.1 amplify the last-bit differences of
    # reductions split over two replicas, and some random initialisations amplify them past
    # the tolerance (seen once: 3.5e-3). The plumbing is what is compared, on weights that
    # are known not to do that.
    keras.utils.set_random_seed(0)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    start, initial, distributed, model = train(mirrored, None)
    _, _, single, _ = train(tf.distribute.get_strategy(), start)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single, distributed))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single, initial))
    if os.environ.get("MC_DEBUG"):
        names = [v.path for v in model.supernet_trainable_variables]
        diffs = sorted(((float(np.max(np.abs(a - b))), float(np.max(np.abs(a - c))), n)
                        for a, b, c, n in zip(single, distributed, initial, names)), reverse=True)
        for d in diffs[:12]:
            print(d)
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "max_abs_diff": diff, "max_update": moved,
                      "traces": model.train_step_traces}))


if __name__ == "__main__":
    main()
