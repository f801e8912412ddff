"""Accuracy of subnets, always after BN recalibration (as OFA does).

`evaluate_archs` extracts each subnet as a static Keras model, re-estimates its BN
statistics on training images (with training augmentation), and measures top-1 accuracy
on the evaluation batches. Calls are eager, so evaluating many different subnets at
small image sizes never pays a trace per subnet; large batches are split (inference) or
run as a tf.function (BN recalibration), so memory stays bounded at ImageNet sizes
(`EAGER_PIXELS`).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import keras
import tensorflow as tf

from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.models import Supernet
from ofa_tf.profile import profile
from ofa_tf.spaces import Arch
from ofa_tf.training.bn_recalibration import EAGER_PIXELS, large_batch, recalibrate_bn


def accuracy(model: keras.Model, batches: Iterable) -> float:
    """Top-1 accuracy of `model` (logits) over (images, labels) batches."""
    correct = total = 0
    for images, labels in batches:
        raise_if_interrupted()
        logits = inference_logits(model, tf.convert_to_tensor(images))
        correct += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                      tf.cast(labels, tf.int32)), tf.int32)))
        total += int(labels.shape[0])
    return correct / max(total, 1)


def inference_logits(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """`model(images)` in inference mode, eagerly, in chunks small enough that an eager
    call's intermediate tensors stay within `EAGER_PIXELS` (see bn_recalibration.py)."""
    if not large_batch(images):
        return model(images, training=False)
    per_call = max(1, EAGER_PIXELS // (int(images.shape[1]) * int(images.shape[2])))
    return tf.concat([model(images[i:i + per_call], training=False)
                      for i in range(0, int(images.shape[0]), per_call)], axis=0)


def evaluate_arch(supernet: Supernet, arch: Arch, calibration: Iterable, evaluation: Iterable,
                  num_calibration_images: int = 2000) -> dict[str, Any]:
    """{"accuracy", "macs", "params", "arch", "bn_calibration_images"} of one subnet,
    BN-recalibrated first (`bn_calibration_images`: how many images that actually used, fewer
    than asked for when the training split is smaller; 0: none asked for, the subnet keeps the
    supernet's BN statistics)."""
    raise_if_interrupted()  # before building the subnet's layers, never in the middle
    subnet = supernet.get_subnet(arch)
    used = recalibrate_bn(subnet, calibration, num_calibration_images) if num_calibration_images else 0
    cost = profile(supernet.space, arch, supernet.num_classes)
    return {"accuracy": accuracy(subnet, evaluation), "macs": cost["macs"], "params": cost["params"],
            "arch": arch.to_dict(), "bn_calibration_images": used}


def evaluate_archs(supernet: Supernet, archs: Sequence[Arch], calibration: Iterable, evaluation: Iterable,
                   num_calibration_images: int = 2000, progress: bool = False) -> list[dict[str, Any]]:
    """`evaluate_arch` for several archs (with a Keras progress bar when `progress`)."""
    bar = keras.utils.Progbar(len(archs), unit_name="subnet") if progress else None
    results = []
    for arch in archs:
        results.append(evaluate_arch(supernet, arch, calibration, evaluation, num_calibration_images))
        if bar is not None:
            bar.add(1, values=[("accuracy", results[-1]["accuracy"])])
    return results
