"""Accuracy of subnets, always after BN recalibration (as OFA does).

`evaluate_archs` extracts each subnet as a static Keras model, re-estimates its BN
statistics on training images (with training augmentation), and measures top-1 accuracy
on the evaluation batches. Calls are eager per batch, so evaluating many different
subnets never pays a trace per subnet.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import keras
import tensorflow as tf

from ofa_tf.models import Supernet
from ofa_tf.profile import profile
from ofa_tf.spaces import Arch
from ofa_tf.training.bn_recalibration import recalibrate_bn


def accuracy(model: keras.Model, batches: Iterable) -> float:
    """Top-1 accuracy of `model` (logits) over (images, labels) batches."""
    correct = total = 0
    for images, labels in batches:
        logits = model(images, training=False)
        correct += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                      tf.cast(labels, tf.int32)), tf.int32)))
        total += int(labels.shape[0])
    return correct / max(total, 1)


def evaluate_arch(supernet: Supernet, arch: Arch, calibration: Iterable, evaluation: Iterable,
                  num_calibration_images: int = 2000) -> dict[str, Any]:
    """{"accuracy", "macs", "params", "arch", "bn_calibration_images"} of one subnet,
    BN-recalibrated first (`bn_calibration_images`: how many images that actually used, fewer
    than asked for when the training split is smaller)."""
    subnet = supernet.get_subnet(arch)
    used = recalibrate_bn(subnet, calibration, num_calibration_images)
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
