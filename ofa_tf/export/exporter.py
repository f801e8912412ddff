"""Exporting one subnet of a trained run: recalibrate BN, extract, convert, measure, write.

`export_subnet` is what `ofa-export` (ofa_tf/cli/export.py) runs. Every input is checked before
anything heavy starts (output path writable, quantisation mode and data), and every file
is written to a temporary name and renamed only once all conversions and measurements
have succeeded, so a failure never leaves a half-written `.tflite` (or `.keras`,
SavedModel, metadata) behind. Ctrl-C / SIGTERM (`ofa_tf.interrupts`) stop it between steps,
after a conversion returns, or just before the files are put in place, never half-way
through putting them there: an interrupted export leaves the output folder as it was, and
its staging folder is removed.

Outputs, for `--output=DIR/NAME.tflite`:
  NAME.tflite          the converted model (float32 input and output in every mode)
  NAME.json            metadata: arch, input contract, normalisation, classes, MACs,
                       params, accuracy before / after conversion on the validation split
                       (`accuracy_checked` false, `accuracy` null when there were no images:
                       dataset=none, or a run imported from OFA with no dataset given),
                       and for float16 which layers kept float32 weights (`float16`)
  NAME.keras           (formats=keras) the static Keras 3 subnet, BN recalibrated
  NAME_saved_model/    (formats=saved_model) its inference SavedModel
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Iterator, Sequence

import keras
from absl import logging

from ofa_tf.data import PIXELS, check_dataset_spec, make_pipeline
from ofa_tf.errors import OfaError
from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.io import SPACE_ERRNOS, absolute, is_url, publish_tree, space_problem, unwritable_reason, write_bytes
from ofa_tf.export.calibration import check_int8_calibration
from ofa_tf.export.float16 import keras_to_float16
from ofa_tf.export import qat
from ofa_tf.export.options import FORMATS, ExportOptions
from ofa_tf.export.tflite import (MODES_NEEDING_DATA, TFLiteClassifier, check_quantize, compare_on,
                                  export_saved_model, keras_to_tflite, representative_dataset)
from ofa_tf.profile import profile
from ofa_tf.runs.data_free import NO_DATASET, check_dataset, require_dataset, resolve_dataset
from ofa_tf.runs.directory import RunDirectory, check_split
from ofa_tf.spaces import Arch
from ofa_tf.training.bn_recalibration import recalibrate_bn

METADATA_VERSION = 2  # 2: bn_calibration_images (was bn_recalibration_images), as the flag is named
# counts that must be positive when given (None: the default)
POSITIVE_COUNTS = ("representative_images", "float16_check_images", "eval_images",
                   "qat_steps_per_epoch", "qat_batch_size")


def output_paths(output: str, formats: Sequence[str]) -> dict[str, str]:
    """Where each file of an export goes (see the module docstring)."""
    stem = output[: -len(".tflite")]
    paths = {"metadata": stem + ".json", "tflite": output}
    if "keras" in formats:
        paths["keras"] = stem + ".keras"
    if "saved_model" in formats:
        paths["saved_model"] = stem + "_saved_model"
    return paths


def check_request(output: str, options: ExportOptions) -> None:
    """The checks that need no model: every option's value, the output path (its directory
    exists and is writable; every file goes beside it), the dataset spec, mode and its data."""
    if not output:
        raise OfaError("output is required: the .tflite file to write")
    reason = unwritable_reason(output)
    if reason:
        raise OfaError(f"output={output}: {reason}")
    if not output.endswith(".tflite"):
        raise OfaError(f"output={output!r}: expected a path ending in .tflite")
    check_quantize(options.quantize)
    check_int8_calibration(options.int8_calibration)
    if not 0 <= options.float16_max_diff < float("inf"):
        raise OfaError(f"float16_max_diff={options.float16_max_diff}: expected a bound >= 0 (0: no bound)")
    for name in POSITIVE_COUNTS:
        value = getattr(options, name)
        if value is not None and not value > 0:
            raise OfaError(f"{name}={value}: expected a positive number")
    if options.bn_calibration_images is not None and not options.bn_calibration_images >= 0:
        raise OfaError(f"bn_calibration_images={options.bn_calibration_images}: expected an integer >= 0 (0: keep "
                       "the checkpoint's BN statistics)")
    if not options.seed >= 0:
        raise OfaError(f"seed={options.seed}: expected an integer >= 0")
    qat.check_fine_tuning(options.qat_epochs, options.qat_steps_per_epoch, options.qat_learning_rate,
                          options.qat_distillation)
    for fmt in options.formats:
        if fmt not in FORMATS:
            raise OfaError(f"formats={','.join(options.formats)}: {fmt!r} is not one of {list(FORMATS)}")
    if options.dataset not in (None, "none"):
        check_dataset_spec(options.dataset, "dataset")
    if options.quantize in MODES_NEEDING_DATA and options.dataset == "none":
        need = "a representative dataset" if options.quantize == "int8" else "fine-tuning data"
        raise OfaError(f"quantize={options.quantize} needs training images ({need}) but dataset=none")
    check_split(options.split)


def check_data(directory: RunDirectory, options: ExportOptions) -> str | None:
    """The data spec the export uses (None: none; `data_free.resolve_dataset`), checked
    against the run before the model loads: a given dataset's class count, and a mode that
    needs training images when there are none."""
    saved = directory.read()
    spec = resolve_dataset(saved, options.dataset)
    if spec is None and options.quantize in MODES_NEEDING_DATA:
        if options.dataset == NO_DATASET:
            need = "a representative dataset" if options.quantize == "int8" else "fine-tuning data"
            raise OfaError(f"quantize={options.quantize} needs training images ({need}) but dataset=none")
        require_dataset(saved, options.dataset, directory.path, f"quantize={options.quantize}")
    check_dataset(options.dataset, saved)
    return spec


def export_subnet(model_dir: str, arch_spec: Any, output: str, options: ExportOptions = ExportOptions()
                  ) -> dict[str, Any]:
    """Exports one subnet of the run in `model_dir`; returns the metadata it wrote."""
    check_request(output, options)
    directory = RunDirectory(model_dir)
    arch: Arch = directory.read_trained().space.parse_arch(arch_spec, rng=options.seed)  # before the model loads
    spec = check_data(directory, options)
    supernet, saved = directory.load_supernet()
    started = time.time()

    subnet = supernet.get_subnet(arch)
    res = arch.resolution
    data = evaluation = train_split = None
    n_calibration = (saved.config.bn_calibration_images if options.bn_calibration_images is None
                     else options.bn_calibration_images)
    if spec is not None:
        data = directory.evaluation_data(saved, res, split=options.split, eval_images=options.eval_images,
                                         bn_calibration_images=n_calibration,
                                         dataset=options.dataset)  # given: checked for its classes
        if n_calibration:
            recalibrate_bn(subnet, data.calibration, n_calibration)
        evaluation, train_split = data.evaluation, data.train_split
    else:
        why = "dataset=none" if options.dataset == NO_DATASET else (
            f"model_dir={model_dir} is imported with no training data here and no dataset was given")
        logging.warning("no accuracy was checked (%s): the export keeps the checkpoint's BN statistics", why)
    seed = saved.config.seed
    image_options = dict(augmentation=saved.config.augmentation, encoding=data.source.encoding if data else PIXELS)

    qat_history: dict[str, float] = {}
    qat_steps = 0
    float16_report: dict[str, Any] | None = None
    if options.quantize == "qat":
        qat_model = qat.quantize_model(subnet)
        qat_steps = options.qat_steps_per_epoch or max(1, (data.source.num_train or 10_000) // options.qat_batch_size)
        batches = make_pipeline(train_split, options.qat_batch_size, [res], training=True, seed=seed + 2,
                                repeat=True, **image_options)
        qat_history = qat.fine_tune(qat_model, batches, options.qat_epochs, qat_steps, options.qat_learning_rate,
                                    verbose=options.verbose, teacher=subnet, distillation=options.qat_distillation)
        tflite_bytes = qat.qat_to_tflite(qat_model)
    else:
        checks_float16 = options.quantize == "float16" and bool(options.float16_max_diff)
        if checks_float16 and train_split is not None:
            check_split = train_split.take(options.float16_check_images)

            def check_images():  # streamed afresh, in order, for each candidate model
                return (images.numpy() for images, _ in make_pipeline(check_split, 100, [res], training=False,
                                                                                   **image_options))
            tflite_bytes, float16_report = keras_to_float16(subnet, check_images, options.float16_max_diff,
                                                            options.verbose)
        else:
            if checks_float16:
                logging.warning("quantize=float16 with no dataset: no images to check float16_max_diff "
                                "on; every weight is float16")
            representative = None
            if options.quantize == "int8" and train_split is not None:
                representative = representative_dataset(
                    make_pipeline(train_split, 100, [res], training=False, **image_options),
                    options.representative_images)
            tflite_bytes = keras_to_tflite(subnet, options.quantize, representative, options.int8_calibration)

    comparison = compare_on(subnet, TFLiteClassifier(tflite_bytes), evaluation) if evaluation else None
    cost = profile(supernet.space, arch, supernet.num_classes)
    checkpoint = directory.latest_checkpoint()
    paths = output_paths(output, options.formats)
    metadata = {
        "format_version": METADATA_VERSION,
        "space": supernet.space.name,
        "arch": arch.to_dict(),
        "quantize": options.quantize,
        "int8_calibration": options.int8_calibration if options.quantize == "int8" else None,
        "float16": float16_report,
        "input": {
            "name": "image", "shape": [None, res, res, 3], "dtype": "float32", "layout": "NHWC, RGB",
            "preprocessing": "pixels / 255 (grayscale repeated to RGB), resized to the input size, then "
                             "(x - mean) / std per channel",
            "normalization": saved.normalization,
        },
        "output": {"dtype": "float32", "shape": [None, supernet.num_classes], "meaning": "logits"},
        "class_names": saved.class_names,
        "num_classes": supernet.num_classes,
        "macs": cost["macs"], "params": cost["params"],
        "tflite_bytes": len(tflite_bytes),
        "bn_calibration_images": n_calibration if data is not None else 0,
        "accuracy_checked": comparison is not None,
        "accuracy": None if comparison is None else {"split": options.split, **comparison},
        "qat": {"epochs": options.qat_epochs, "steps_per_epoch": qat_steps, "learning_rate": options.qat_learning_rate,
                "distillation": options.qat_distillation, **qat_history} if options.quantize == "qat" else None,
        "source": {"model_dir": absolute(model_dir),
                   "checkpoint": os.path.basename(checkpoint) + ".weights.h5" if checkpoint else None,
                   "dataset": None if data is None else data.source.name},
        "files": {k: os.path.basename(v) for k, v in paths.items()},
        "export_seconds": None,
    }
    _write_all(paths, tflite_bytes, subnet, metadata, started)
    return metadata


def _write_all(paths: dict[str, str], tflite_bytes: bytes, subnet: keras.Model, metadata: dict[str, Any],
               started: float) -> None:
    """Writes every file to a temporary name first, then renames them all (for a URL output,
    the files are made in a local scratch folder, then staged and renamed there one by one).

    Running out of room while writing one (`ofa_tf.io.space_problem`: from Python, from
    Keras's zip writer, which names no file, or from TensorFlow's SavedModel writer) is an
    OSError naming the file the user asked for, `paths[key]`, not the scratch folder's copy
    they never see."""
    staged: list[tuple[str, str]] = []
    directory = None if is_url(paths["tflite"]) else os.path.dirname(os.path.abspath(paths["tflite"]))
    with _named_by(paths["tflite"]):
        scratch = tempfile.mkdtemp(prefix=".tmp-export-", dir=directory)
    try:
        def stage(key: str, write) -> None:
            tmp = os.path.join(scratch, os.path.basename(paths[key]))
            with _named_by(paths[key]):
                write(tmp)
            staged.append((tmp, paths[key]))

        stage("tflite", lambda p: write_bytes(p, tflite_bytes))
        if "keras" in paths:
            stage("keras", subnet.save)
        if "saved_model" in paths:
            stage("saved_model", lambda p: export_saved_model(subnet, p))
        metadata["export_seconds"] = round(time.time() - started, 1)
        stage("metadata", lambda p: write_bytes(p, json.dumps(metadata, indent=1).encode()))
        raise_if_interrupted()  # the last point to stop: from here every file is put in place
        for tmp, final in staged:
            publish_tree(tmp, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _named_by(path: str) -> Iterator[None]:
    """Within the block, a write that runs out of room is re-raised as the OSError of
    writing `path`; any other error passes through."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - only the out-of-room ones are re-worded
        problem = space_problem(error)
        if problem is None:
            raise
        number = error.errno if isinstance(error, OSError) else next(  # (TensorFlow's: by its reason)
            n for n in SPACE_ERRNOS if space_problem(OSError(n, "", None))[0] == problem[0])
        raise OSError(number, os.strerror(number), path) from None


__all__ = ["ExportOptions", "FORMATS", "check_request", "export_subnet", "output_paths"]
