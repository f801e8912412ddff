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
  NAME.tflite          the converted model (float32 input and output in every mode; raw uint8
                       input with include_preprocessing), its tensors named `image` / `logits`,
                       the labels and input contract inside (`ofa_tf.export.tflite_metadata`)
  NAME.json            metadata: arch, input contract, normalisation, classes, MACs,
                       params, accuracy before / after conversion on the validation split
                       (`accuracy_checked` false, `accuracy` null when there were no images:
                       dataset=none, or a run imported from OFA with no dataset given),
                       and for float16 which layers kept float32 weights (`float16`)
  NAME.keras           (formats=keras) the static Keras 3 subnet, BN recalibrated
  NAME_saved_model/    (formats=saved_model) its inference SavedModel
  NAME.onnx            (formats=onnx, the `onnx` extra) float32 ONNX, checked in onnxruntime
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import keras
import numpy as np
from absl import logging
from tqdm import tqdm

from ofa_tf.choices import IMAGENET_CROPS
from ofa_tf.data import make_pipeline
from ofa_tf.data.decode import PIXELS
from ofa_tf.data.sources import check_dataset_spec
from ofa_tf.errors import OfaError
from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.io import (SPACE_ERRNOS, absolute, is_url, publish_tree, read_bytes, space_problem, unwritable_reason,
                       write_bytes)
from ofa_tf.export.calibration import check_int8_calibration
from ofa_tf.export.float16 import keras_to_float16
from ofa_tf.export import qat
from ofa_tf.export.onnx_format import ONNXClassifier, check_onnx_installed, keras_to_onnx
from ofa_tf.export.options import FORMATS, ExportOptions
from ofa_tf.export.preprocessing import raw_batches, with_preprocessing
from ofa_tf.export.tflite import (MODES_NEEDING_DATA, TFLiteClassifier, check_quantize, compare_on,
                                  export_saved_model, keras_to_tflite, representative_dataset)
from ofa_tf.export.tflite_metadata import DESCRIPTION_ENTRY, INPUT_NAME, LABELS_ENTRY, OUTPUT_NAME, describe
from ofa_tf.latency.host import time_interleaved
from ofa_tf.spaces import profile
from ofa_tf.runs.tool_dataset import NO_DATASET, check_dataset, require_dataset, resolve_dataset
from ofa_tf.runs.directory import RunDirectory, check_split
from ofa_tf.spaces import Arch
from ofa_tf.evaluation import recalibrate_bn

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
    if "onnx" in formats:
        paths["onnx"] = stem + ".onnx"
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
    if "onnx" in options.formats:
        check_onnx_installed()
    if options.include_preprocessing and options.quantize == "qat":
        raise OfaError("include_preprocessing: not with quantize=qat (its model is rebuilt in tf_keras, without "
                       "the preprocessing layer)")
    if not 0 <= options.warn_agreement_below <= 1:
        raise OfaError(f"warn_agreement_below={options.warn_agreement_below}: expected a fraction in [0, 1]")
    if not 0 <= options.warn_accuracy_drop_above <= 1:
        raise OfaError(f"warn_accuracy_drop_above={options.warn_accuracy_drop_above}: expected a fraction in [0, 1]")
    if options.labels:
        read_labels(options.labels)
    if options.dataset not in (None, "none"):
        check_dataset_spec(options.dataset, "dataset")
    if options.quantize in MODES_NEEDING_DATA and options.dataset == "none":
        need = "a representative dataset" if options.quantize == "int8" else "fine-tuning data"
        raise OfaError(f"quantize={options.quantize} needs training images ({need}) but dataset=none")
    check_split(options.split)


def check_data(directory: RunDirectory, options: ExportOptions) -> str | None:
    """The data spec the export uses (None: none; `tool_dataset.resolve_dataset`), checked
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
    export_labels(options.labels, saved.class_names, saved.num_classes)
    return spec


def export_subnet(model_dir: str, arch_spec: Any, output: str, options: ExportOptions = ExportOptions()
                  ) -> dict[str, Any]:
    """Exports one subnet of the run in `model_dir`; returns the metadata it wrote.

    With `options.verbose`, a progress bar on stderr goes through the stages (BN
    recalibration, calibration, conversion, comparison, ...), and each warning (a
    converted model that agrees too little with Keras or loses too much accuracy, an int8
    model no faster than float32 here) is one `warning: ...` line on stderr; the metadata's
    `warnings` lists them either way."""
    check_request(output, options)
    directory = RunDirectory(model_dir)
    arch: Arch = directory.read_trained().space.parse_arch(arch_spec, rng=options.seed)  # before the model loads
    spec = check_data(directory, options)
    supernet, saved = directory.load_supernet()
    started = time.time()
    class_names = export_labels(options.labels, saved.class_names, supernet.num_classes)

    subnet = supernet.get_subnet(arch)
    res = arch.resolution
    data = evaluation = train_split = None
    n_calibration = (saved.config.bn_calibration_images if options.bn_calibration_images is None
                     else options.bn_calibration_images)
    with Stages(export_stages(options, spec is not None, bool(n_calibration)), options.verbose) as stages:
        if spec is not None:
            data = directory.evaluation_data(saved, res, split=options.split, eval_images=options.eval_images,
                                             bn_calibration_images=n_calibration,
                                             dataset=options.dataset)  # given: checked for its classes
            if n_calibration:
                stages.start("BN recalibration")
                recalibrate_bn(subnet, data.calibration, n_calibration)
            evaluation, train_split = data.evaluation, data.train_split
        else:
            why = "dataset=none" if options.dataset == NO_DATASET else (
                f"model_dir={model_dir} is imported with no training data here and no dataset was given")
            logging.warning("no accuracy was checked (%s): the export keeps the checkpoint's BN statistics", why)
        seed = saved.config.seed
        encoding = data.source.encoding if data else PIXELS
        image_options = dict(augmentation=saved.config.augmentation, encoding=encoding)
        raw = options.include_preprocessing
        centre_crop = saved.config.augmentation in IMAGENET_CROPS  # evaluation keeps the centre (ofa_tf.data)
        # the model the deployment formats hold: the subnet, or the subnet behind the preprocessing
        deployed = with_preprocessing(subnet, res, saved.normalization, centre_crop) if raw else subnet
        if raw and data is not None:  # raw images, read afresh for each model checked
            evaluation = Reiterable(lambda: raw_batches(data.evaluation_split, encoding))

        def train_images(count: int):  # the first `count` training images, as the deployed model takes them
            if raw:
                return raw_batches(train_split.take(count), encoding)
            return (images.numpy() for images, _ in make_pipeline(train_split.take(count), 100, [res], training=False,
                                                                   **image_options))

        qat_history: dict[str, float] = {}
        qat_steps = 0
        float16_report: dict[str, Any] | None = None
        if options.quantize == "qat":
            stages.start("QAT fine-tuning")
            qat_model = qat.quantize_model(subnet)
            qat_steps = options.qat_steps_per_epoch or max(1, (data.source.num_train or 10_000)
                                                           // options.qat_batch_size)
            batches = make_pipeline(train_split, options.qat_batch_size, [res], training=True, seed=seed + 2,
                                    repeat=True, **image_options)
            qat_history = qat.fine_tune(qat_model, batches, options.qat_epochs, qat_steps, options.qat_learning_rate,
                                        verbose=options.verbose, teacher=subnet, distillation=options.qat_distillation)
            stages.start("conversion")
            tflite_bytes = qat.qat_to_tflite(qat_model)
        else:
            checks_float16 = options.quantize == "float16" and bool(options.float16_max_diff)
            if checks_float16 and train_split is not None:
                stages.start("calibration + conversion")
                tflite_bytes, float16_report = keras_to_float16(
                    deployed, lambda: (batch[0] if isinstance(batch, tuple) else batch
                                       for batch in train_images(options.float16_check_images)),
                    options.float16_max_diff, options.verbose, xnnpack=options.rewrite_for_xnnpack)
            else:
                if checks_float16:
                    logging.warning("quantize=float16 with no dataset: no images to check float16_max_diff "
                                    "on; every weight is float16")
                representative = None
                if options.quantize == "int8" and train_split is not None:
                    stages.start("calibration")
                    representative = representative_dataset(train_images(options.representative_images),
                                                            options.representative_images)
                stages.start("conversion")
                tflite_bytes = keras_to_tflite(deployed, options.quantize, representative, options.int8_calibration,
                                               xnnpack=options.rewrite_for_xnnpack)

        cost = profile(supernet.space, arch, supernet.num_classes)
        input_contract = {
            "name": INPUT_NAME, "layout": "NHWC, RGB", "normalization": saved.normalization,
            **({"shape": [None, None, None, 3], "dtype": "uint8", "preprocessing_included": True,
                "preprocessing": "inside the model: pixels / 255, " + (
                    "the centre square of side shorter x R / ceil(R / 0.875), " if centre_crop else "") +
                f"bilinear resize to R x R (R = {res}), then (x - mean) / std per channel; feed raw uint8 RGB "
                "of any size (grayscale repeated to RGB)"}
               if raw else
               {"shape": [None, res, res, 3], "dtype": "float32", "preprocessing_included": False,
                "preprocessing": "pixels / 255 (grayscale repeated to RGB), resized to the input size, then "
                                 "(x - mean) / std per channel"}),
        }
        output_contract = {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None, supernet.num_classes],
                           "meaning": "logits"}
        description = {"format_version": METADATA_VERSION, "space": supernet.space.name, "arch": arch.to_dict(),
                       "quantize": options.quantize, "num_classes": supernet.num_classes, "input": input_contract,
                       "output": output_contract}
        tflite_bytes = describe(tflite_bytes, description, class_names)

        warnings: list[str] = []
        comparison = None
        if evaluation is not None:
            stages.start("comparison")
            comparison = compare_on(deployed, TFLiteClassifier(tflite_bytes), evaluation)
            warnings += conversion_warnings("the .tflite model", comparison, "tflite", options)
        onnx_bytes, onnx_check = None, None
        if "onnx" in options.formats:
            stages.start("ONNX export")
            onnx_bytes = onnx_export_bytes(deployed)
            if evaluation is not None:
                stages.start("ONNX comparison")
                onnx_check = compare_onnx(deployed, onnx_bytes, evaluation)
                warnings += conversion_warnings("the ONNX model", onnx_check, "onnx", options)
        latency = None
        if options.check_int8_latency and options.quantize in ("int8", "qat"):
            stages.start("latency check")
            latency = int8_latency(tflite_bytes, keras_to_tflite(deployed, "none", xnnpack=options.rewrite_for_xnnpack))
            if not latency["int8_over_float32"] < 1.0:
                warnings.append(
                    f"the {options.quantize} model is not faster than float32 on this machine "
                    f"({latency['int8_median_ms']:.3g} vs {latency['float32_median_ms']:.3g} ms median, LiteRT "
                    f"{latency['op_resolver']}, {latency['threads']} thread): time both with ofa-benchmark-latency, "
                    "also with --op_resolver=builtin, and on the target device")
        checkpoint = directory.latest_checkpoint()
        paths = output_paths(output, options.formats)
        metadata = {
            "format_version": METADATA_VERSION,
            "space": supernet.space.name,
            "arch": arch.to_dict(),
            "quantize": options.quantize,
            "int8_calibration": options.int8_calibration if options.quantize == "int8" else None,
            "rewritten_for_xnnpack": options.rewrite_for_xnnpack and options.quantize != "qat",
            "float16": float16_report,
            "input": input_contract,
            "output": output_contract,
            "class_names": class_names,
            "num_classes": supernet.num_classes,
            "macs": cost["macs"], "params": cost["params"],
            "tflite_bytes": len(tflite_bytes),
            "tflite_metadata": [DESCRIPTION_ENTRY, LABELS_ENTRY],
            "bn_calibration_images": n_calibration if data is not None else 0,
            "accuracy_checked": comparison is not None,
            "accuracy": None if comparison is None else {"split": options.split, **comparison},
            "onnx": None if onnx_bytes is None else {"onnx_bytes": len(onnx_bytes), "accuracy": onnx_check},
            "latency": latency,
            "warnings": warnings,
            "qat": {"epochs": options.qat_epochs, "steps_per_epoch": qat_steps,
                    "learning_rate": options.qat_learning_rate,
                    "distillation": options.qat_distillation, **qat_history} if options.quantize == "qat" else None,
            "source": {"model_dir": absolute(model_dir),
                       "checkpoint": os.path.basename(checkpoint) + ".weights.h5" if checkpoint else None,
                       "dataset": None if data is None else data.source.name},
            "files": {k: os.path.basename(v) for k, v in paths.items()},
            "export_seconds": None,
        }
        stages.start("writing")
        _write_all(paths, tflite_bytes, subnet, metadata, started, deployed=deployed, onnx_bytes=onnx_bytes)
    if options.verbose:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    return metadata


def export_labels(labels_file: str | None, run_class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    """The class names an export writes: `labels_file`'s lines, else the run's dataset's
    names, else `class_0` .. `class_{N-1}`; checked against the model's class count."""
    if labels_file:
        names = read_labels(labels_file)
    elif run_class_names:
        names = [str(name) for name in run_class_names]
    else:
        names = [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        where = f"labels={labels_file}" if labels_file else "the run's class names"
        raise OfaError(f"{where}: {len(names)} names, but the model has {num_classes} classes")
    return names


def read_labels(path: str) -> list[str]:
    """The class names of a labels file: one per line (UTF-8; a last empty line is ignored)."""
    try:
        text = read_bytes(path).decode("utf-8")
    except OSError as e:
        raise OfaError(f"labels={path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise OfaError(f"labels={path}: not UTF-8 text") from None
    names = text.splitlines()
    if not names or any(not name.strip() for name in names):
        raise OfaError(f"labels={path}: expected one class name per line, no empty lines")
    return names


def export_stages(options: ExportOptions, has_data: bool, recalibrates: bool) -> list[str]:
    """The stage names `export_subnet` goes through for `options` (its progress bar's length)."""
    bn = ["BN recalibration"] if has_data and recalibrates else []
    if options.quantize == "qat":
        convert = ["QAT fine-tuning", "conversion"]
    elif options.quantize == "float16" and options.float16_max_diff and has_data:
        convert = ["calibration + conversion"]
    elif options.quantize == "int8" and has_data:
        convert = ["calibration", "conversion"]
    else:
        convert = ["conversion"]
    onnx = ["ONNX export"] + (["ONNX comparison"] if has_data else []) if "onnx" in options.formats else []
    latency = ["latency check"] if options.check_int8_latency and options.quantize in ("int8", "qat") else []
    return bn + convert + (["comparison"] if has_data else []) + onnx + latency + ["writing"]


class Reiterable:
    """An iterable that calls `make` for each pass (batches streamed afresh each time)."""

    def __init__(self, make: Callable[[], Iterable]):
        self.make = make

    def __iter__(self):
        return iter(self.make())


# set to 1: the stage bar is drawn on a stderr that is not a terminal too (a log file, a test)
PROGRESS_ENV = "OFA_TF_PROGRESS"


class Stages:
    """A tqdm progress bar over named stages, on stderr (stdout keeps the tool's JSON). Drawn
    on a terminal only (or with OFA_TF_PROGRESS=1), so a log or a pipe gets the tool's result
    and its one-line errors without the bar's redraws."""

    def __init__(self, names: Sequence[str], verbose: int):
        self.names = list(names)
        shown = bool(verbose) and (sys.stderr.isatty() or os.environ.get(PROGRESS_ENV) == "1")
        self.bar = tqdm(total=len(self.names), file=sys.stderr, disable=not shown, unit="stage", leave=False,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} stages [{elapsed}]")
        self.current: str | None = None

    def start(self, name: str) -> None:
        """Marks the stage before it done and shows `name`."""
        raise_if_interrupted()
        if self.current is not None:
            self.bar.update(1)
        self.current = name
        self.bar.set_description_str(f"ofa-export: {name}")

    def __enter__(self) -> "Stages":
        return self

    def __exit__(self, *error) -> None:
        """Closes the bar (cleared from the terminal), also when the export fails: an error
        line then stands alone."""
        if self.current is not None and error[0] is None:
            self.bar.update(1)
        self.bar.close()


def conversion_warnings(what: str, comparison: dict[str, float], name: str, options: ExportOptions) -> list[str]:
    """The warnings a comparison of a converted model with Keras raises under the options'
    thresholds: top-1 agreement below `warn_agreement_below`, accuracy drop above
    `warn_accuracy_drop_above`."""
    found = []
    agreement = comparison["top1_agreement"]
    if agreement < options.warn_agreement_below:
        found.append(f"{what} agrees with the Keras subnet on {agreement:.2%} of {comparison['num_images']} images "
                     f"(top-1), below warn_agreement_below={options.warn_agreement_below:g}")
    drop = comparison["keras_accuracy"] - comparison[f"{name}_accuracy"]
    if drop > options.warn_accuracy_drop_above:
        found.append(f"{what} loses {drop:.2%} accuracy ({comparison['keras_accuracy']:.2%} -> "
                     f"{comparison[f'{name}_accuracy']:.2%}), above warn_accuracy_drop_above="
                     f"{options.warn_accuracy_drop_above:g}")
    return found


def onnx_export_bytes(model: keras.Model) -> bytes:
    """`model` as ONNX file bytes (written to a scratch folder, read back)."""
    scratch = tempfile.mkdtemp(prefix="ofa_tf_onnx_")
    try:
        path = os.path.join(scratch, "model.onnx")
        keras_to_onnx(model, path)
        with open(path, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compare_onnx(model: keras.Model, onnx_bytes: bytes, batches) -> dict[str, float]:
    """`compare_on` for an ONNX model in onnxruntime."""
    scratch = tempfile.mkdtemp(prefix="ofa_tf_onnx_")
    try:
        path = os.path.join(scratch, "model.onnx")
        write_bytes(path, onnx_bytes)
        return compare_on(model, ONNXClassifier(path), batches, name="onnx")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


LATENCY_ROUNDS, LATENCY_RUNS_PER_ROUND = 5, 5  # interleaved: a slow spell of a shared machine hits both models


def int8_latency(int8_bytes: bytes, float32_bytes: bytes, threads: int = 1, op_resolver: str = "xnnpack"
                 ) -> dict[str, Any]:
    """Median latency of an integer model and of its float32 twin on this machine, timed in
    interleaved rounds (`ofa_tf.latency.time_interleaved`), and their ratio."""
    int8_ms, float32_ms = (float(np.median(times)) for times in time_interleaved(
        [int8_bytes, float32_bytes], threads, op_resolver, LATENCY_ROUNDS, LATENCY_RUNS_PER_ROUND, warmup=2))
    return {"op_resolver": op_resolver, "threads": threads, "runs": LATENCY_ROUNDS * LATENCY_RUNS_PER_ROUND,
            "int8_median_ms": int8_ms, "float32_median_ms": float32_ms, "int8_over_float32": int8_ms / float32_ms}


def _write_all(paths: dict[str, str], tflite_bytes: bytes, subnet: keras.Model, metadata: dict[str, Any],
               started: float, deployed: keras.Model | None = None, onnx_bytes: bytes | None = None) -> None:
    """Writes every file to a temporary name first, then renames them all (for a URL output,
    the files are made in a local scratch folder, then staged and renamed there one by one).
    The `.keras` file holds `subnet`; the SavedModel `deployed` (default: `subnet`), which
    with `include_preprocessing` has the preprocessing in front.

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
            stage("saved_model", lambda p: export_saved_model(subnet if deployed is None else deployed, p))
        if "onnx" in paths:
            stage("onnx", lambda p: write_bytes(p, onnx_bytes))
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
