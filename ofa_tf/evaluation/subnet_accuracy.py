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
from ofa_tf.spaces import profile
from ofa_tf.spaces import Arch
from ofa_tf.evaluation.bn_recalibration import recalibrate_bn
from ofa_tf.evaluation.traced_calls import EAGER_PIXELS, large_batch, traced_call


def accuracy(model: keras.Model, batches: Iterable, traced_calls: dict | None = None) -> float:
    """Top-1 accuracy of `model` (logits) over (images, labels) batches; eager, or with
    `traced_calls` a traced inference call kept there (per image shape) for the next time."""
    correct = total = 0
    for images, labels in batches:
        raise_if_interrupted()
        images = tf.convert_to_tensor(images)
        logits = (inference_logits(model, images) if traced_calls is None
                  else traced_call(traced_calls, model, images, training=False))
        correct += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                                      tf.cast(labels, tf.int32)), tf.int32)))
        total += int(labels.shape[0])
    return correct / max(total, 1)


def inference_logits(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """`model(images)` in inference mode, eagerly, in chunks small enough that an eager
    call's intermediate tensors stay within `EAGER_PIXELS` (see traced_calls.py)."""
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
    return _measure(supernet, arch, supernet.get_subnet(arch), calibration, evaluation, num_calibration_images)


def _measure(supernet: Supernet, arch: Arch, subnet: keras.Model, calibration: Iterable, evaluation: Iterable,
             num_calibration_images: int, traced_calls: dict | None = None) -> dict[str, Any]:
    used = recalibrate_bn(subnet, calibration, num_calibration_images, traced_calls) if num_calibration_images else 0
    cost = profile(supernet.space, arch, supernet.num_classes)
    return {"accuracy": accuracy(subnet, evaluation, traced_calls), "macs": cost["macs"], "params": cost["params"],
            "arch": arch.to_dict(), "bn_calibration_images": used}


class ArchEvaluator:
    """`evaluate_arch` of one arch, again and again as its supernet trains (a run's per-epoch
    evaluation of its max and min subnets).

    The subnet is extracted once and brought up to date at each call (`Supernet.refresh_subnet`),
    and its BN recalibration and inference run as traced calls kept from one call to the next:
    every call after the first builds no layer and traces nothing. (A supernet with an elastic
    layer that cannot refresh its twin is extracted afresh each time.)"""

    def __init__(self, supernet: Supernet, arch: Arch):
        self.supernet, self.arch = supernet, arch
        self.subnet: keras.Model | None = None
        self.traced_calls: dict = {}

    def __call__(self, calibration: Iterable, evaluation: Iterable, num_calibration_images: int = 2000
                 ) -> dict[str, Any]:
        raise_if_interrupted()  # before touching the subnet's layers, never in the middle
        if self.subnet is not None:
            try:
                self.supernet.refresh_subnet(self.subnet)
            except NotImplementedError:
                self.subnet = None
        if self.subnet is None:
            self.subnet, self.traced_calls = self.supernet.get_subnet(self.arch), {}
        return _measure(self.supernet, self.arch, self.subnet, calibration, evaluation, num_calibration_images,
                        self.traced_calls)


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
