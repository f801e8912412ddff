"""`SubnetAccuracy`: the accuracy a once-for-all run is judged by, as a Keras callback.

`fit`'s own `val_accuracy` is the max net in inference mode with the supernet's moving BN
statistics. Those statistics are shared by every subnet a step trained, so they fit none of
them: after shrinking starts, `val_accuracy` says little about any subnet. What ofa-train's
metrics.csv reports, and what OFA reports, is each subnet's accuracy after BN recalibration
(`recalibrate_bn`). This callback measures that for the subnets you name (the max and min nets
by default) after every epoch and adds it to the logs as `val_accuracy_<name>`, where
EarlyStopping, ModelCheckpoint, ReduceLROnPlateau, CSVLogger and TensorBoard read it
(`OnceForAllModel.fit` runs it before them: `LOGS_FIRST`).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import keras
import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.evaluation.subnet_accuracy import ArchEvaluator


def _batches(data: Any, batch_size: int, what: str) -> Iterable:
    """Arrays (`x`, or `(x, y)`) cut into batches; a `tf.data.Dataset` or a list of batches
    as it is (iterated again every epoch)."""
    if isinstance(data, np.ndarray):
        return [data[i:i + batch_size] for i in range(0, len(data), batch_size)]
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(a, np.ndarray) for a in data):
        x, y = data
        if len(x) != len(y):
            raise OfaError(f"{what}: {len(x)} images but {len(y)} labels")
        return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    if hasattr(data, "element_spec") or isinstance(data, list):
        return data
    raise OfaError(f"{what}: expected arrays, a tf.data.Dataset of batches or a list of batches, got "
                   f"{type(data).__name__}")


class SubnetAccuracy(keras.callbacks.Callback):
    """After every epoch, the BN-recalibrated top-1 accuracy of subnets of the supernet being
    trained, added to the logs as `val_accuracy_<name>`.

    Each subnet is extracted as a static Keras model, its BN statistics re-estimated on
    `calibration` images (training mode, the images as the model takes them), then measured
    on `validation_data`; the extracted models are kept and refreshed each epoch
    (`ArchEvaluator`), so later epochs trace nothing. The supernet itself is not changed.

    Args:
      calibration: training images for BN recalibration: an array `(n, size, size, 3)`, or a
        `tf.data.Dataset` / list of batches (of images, or of `(images, labels)`).
      validation_data: `(images, labels)` arrays, or a dataset / list of `(images, labels)`
        batches.
      archs: the subnets: names of `"max"` / `"min"`, or a mapping of log names to archs
        (anything `Supernet.parse_arch` takes: a dict, an `Arch`, a JSON file).
      num_calibration_images: how many calibration images to use (default: all of an array,
        else 2000).
      resolution: the input size of `"max"` / `"min"` (default: the validation images' size
        for arrays, else the space's largest).
      batch_size: the batch size arrays are cut into.
    """

    LOGS_FIRST = True  # `OnceForAllModel.fit` runs it before the callbacks that read its logs

    def __init__(self, calibration: Any, validation_data: Any,
                 archs: Sequence[str] | Mapping[str, Any] = ("max", "min"), num_calibration_images: int | None = None,
                 resolution: int | None = None, batch_size: int = 256):
        super().__init__()
        self.calibration = _batches(calibration, batch_size, "calibration")
        self.validation = _batches(validation_data, batch_size, "validation_data")
        self.archs = dict(archs) if isinstance(archs, Mapping) else {name: name for name in archs}
        if not self.archs:
            raise OfaError("archs: expected at least one subnet")
        if num_calibration_images is None:
            num_calibration_images = len(calibration) if isinstance(calibration, np.ndarray) else 2000
        if num_calibration_images <= 0:
            raise OfaError(f"num_calibration_images={num_calibration_images}: expected a positive number")
        self.num_calibration_images = int(num_calibration_images)
        if resolution is None and isinstance(validation_data, tuple) and isinstance(validation_data[0], np.ndarray):
            resolution = int(validation_data[0].shape[1])
        self.resolution = resolution
        self._evaluators: dict[str, ArchEvaluator] = {}
        self.results: dict[str, list[dict[str, Any]]] = {}  # every epoch's result per subnet (accuracy, MACs, ...)

    def on_epoch_end(self, epoch, logs=None):
        for name, result in self.measure().items():
            self.results.setdefault(name, []).append(result)
            if logs is not None:
                logs[f"val_accuracy_{name}"] = result["accuracy"]

    def measure(self) -> dict[str, dict[str, Any]]:
        """{name: `evaluate_arch`'s result} of every subnet now."""
        if not self._evaluators:
            space = self.model.space
            resolution = self.resolution if self.resolution in space.resolutions else max(space.resolutions)
            for name, spec in self.archs.items():
                at = resolution if isinstance(spec, str) and spec in ("max", "min") else None
                self._evaluators[name] = ArchEvaluator(self.model, self.model.parse_arch(spec, resolution=at))
        return {name: evaluator(self.calibration, self.validation, self.num_calibration_images)
                for name, evaluator in self._evaluators.items()}


__all__ = ["SubnetAccuracy"]
