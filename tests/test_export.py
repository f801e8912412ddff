"""TFLite export: conversion accuracy per mode, the export tool's files, and bad input."""

import json
import os

import keras
import numpy as np
import pytest
from tensorflow.lite.tools import flatbuffer_utils

from helpers import assert_one_line_error, make_run_dir, randomize_weights, run_tool, tiny_space
from ofa_tf.data import load_dataset, make_pipeline
from ofa_tf.errors import OfaError
from ofa_tf.export import ExportOptions, TFLiteClassifier, export_subnet, keras_to_tflite
from ofa_tf.export.graph import fold_gate_scales
from ofa_tf.export.options import INT8_CALIBRATIONS
from ofa_tf.export.float16 import Float16Weights, _max_diff, fit_float16
from ofa_tf.export.calibration import HISTOGRAM_BINS, RANGE_FRACTIONS, mse_range, quantization_error
from ofa_tf.export.graph import batch_norm_producers, folded_batch_norm_weights, gate_producers
from ofa_tf.export.tflite import export_saved_model, make_interpreter, representative_dataset, saved_model_to_tflite
from ofa_tf.export.exporter import _write_all
from ofa_tf.models import Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = "npz:" + os.path.join(ROOT, "data", "fashion_mnist_small.npz")


@pytest.fixture(scope="module")
def subnet_and_images():
    keras.utils.set_random_seed(0)  # float16 drift grows with the logits' size: keep the weights fixed
    supernet = Supernet(tiny_space(), 10)
    supernet.build()
    randomize_weights(supernet)
    subnet = supernet.get_subnet("max")
    data = load_dataset(SHIPPED)
    images = next(iter(make_pipeline(data.test, 64, [24], training=False)))[0].numpy()  # real, normalised
    return subnet, images


@pytest.mark.integration
def test_tflite_matches_keras_on_real_images(subnet_and_images, tmp_path):
    subnet, images = subnet_and_images
    expected = subnet(images, training=False).numpy()
    export_saved_model(subnet, str(tmp_path / "saved"))  # one export, converted twice
    for mode, tolerance in (("none", 1e-4), ("float16", 1e-2)):
        got = TFLiteClassifier(saved_model_to_tflite(str(tmp_path / "saved"), mode))(images)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= tolerance, mode


@pytest.mark.integration
def test_gate_fold_keeps_the_function_and_leaves_float16_no_scalar_to_round(subnet_and_images):
    subnet, images = subnet_and_images
    producers = gate_producers(subnet)
    assert len(producers) == 5  # one gate per squeeze-excite block of the max subnet (stages of 3 and 2 blocks)
    folded = fold_gate_scales(subnet)
    assert not any(isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "hard_sigmoid"
                   for layer in folded.layers)
    for name in producers:  # the conv carries the 1/6 now
        kernel = subnet.get_layer(name).get_weights()[0]
        np.testing.assert_allclose(folded.get_layer(name).get_weights()[0], kernel / 6.0, rtol=1e-6)
    np.testing.assert_allclose(folded(images, training=False), subnet(images, training=False), atol=1e-5)
    # the float16 model keeps no float16 scalar multiplier (the 1/6 it used to round)
    interpreter = make_interpreter(keras_to_tflite(subnet, "float16"))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    dequantized_scalars = {op["outputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"
                           and not len(tensors[op["inputs"][0]]["shape"])}
    assert not [op for op in ops if op["op_name"] == "MUL" and dequantized_scalars & set(op["inputs"])]
    assert fold_gate_scales(folded) is folded  # nothing left to fold


@pytest.mark.integration
def test_tf_keras_rebuild_for_qat_matches(subnet_and_images):
    from ofa_tf.export.qat import max_rebuild_error, to_tf_keras
    subnet, images = subnet_and_images
    assert max_rebuild_error(subnet, [images[:16]]) < 1e-4
    folded = to_tf_keras(subnet, fold_batch_norm=True)  # what QAT fine-tunes
    batch_norms = [layer.name for layer in subnet.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norm_producers(subnet)) == len(batch_norms) > 0  # every BN of the subnet follows a conv
    assert not [layer for layer in folded.layers if "BatchNormalization" in type(layer).__name__]
    assert len(folded.layers) == len(subnet.layers) - len(batch_norms)
    np.testing.assert_allclose(folded(images[:16], training=False).numpy(), subnet(images[:16], training=False),
                               atol=1e-4)


@pytest.mark.integration
def test_qat_fine_tuning_weighs_distillation_against_labels(subnet_and_images):
    import tensorflow as tf
    from ofa_tf.export.qat import fine_tune, to_tf_keras
    from ofa_tf.training.distillation import distillation_loss, label_loss
    _, images = subnet_and_images
    supernet = Supernet(tiny_space(), 10, dropout=0.0)  # no dropout: the student computes what the teacher does
    supernet.build()
    randomize_weights(supernet)
    subnet = supernet.get_subnet("max")
    labels = np.arange(len(images)) % 10
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
    teacher_logits = subnet(images, training=False)
    soft, hard = float(distillation_loss(teacher_logits, teacher_logits)), float(label_loss(labels, teacher_logits))
    for weight in (1.0, 0.25):  # a student that starts as the teacher's folded copy, barely moved (lr 1e-9)
        history = fine_tune(to_tf_keras(subnet, fold_batch_norm=True), batches, 1, 1, learning_rate=1e-9, verbose=0,
                            teacher=subnet, distillation=weight)
        assert history["agreement"] == 1.0
        assert history["accuracy"] == pytest.approx(np.mean(np.argmax(teacher_logits, -1) == labels))
        assert history["distillation_loss"] == pytest.approx(soft, rel=1e-4)
        assert history["label_loss"] == pytest.approx(hard, rel=1e-4)
        assert history["loss"] == pytest.approx(weight * soft + (1 - weight) * hard, rel=1e-4)


@pytest.mark.integration
def test_a_qat_model_int8_kernels_cannot_run_is_one_line_worded_for_qat(subnet_and_images):
    """QAT's int8 model is checked as post-training int8's is (`check_int8_model`): a conv whose
    input x weight / output scale int8 cannot rescale (here its kernel and the range its
    weight quantizer keeps, `kernel_min` / `kernel_max`, blown up a million times, its output
    range left as it was) is one OfaError worded for quantize=qat, not a model that fails to
    load later. (The undamaged QAT model converting and loading:
    test_export_tool_qat_fine_tunes_and_writes_a_full_integer_model.)"""
    from ofa_tf.export.qat import qat_to_tflite, quantize_model

    subnet, _ = subnet_and_images
    qat_model = quantize_model(subnet)  # a tf_keras rebuild: the shared subnet is not changed
    conv = [layer for layer in qat_model.layers if type(getattr(layer, "layer", None)).__name__ == "Conv2D"][1]
    blown = [weight for weight in conv.weights if weight.name.split("/")[-1].split(":")[0] in
             ("kernel", "kernel_min", "kernel_max")]
    assert len(blown) == 3, [weight.name for weight in conv.weights]
    for weight in blown:
        weight.assign(weight * 1e6)
    with pytest.raises(OfaError, match=r"^quantize=qat: activations reach .* int8 kernels need < 256\)") as raised:
        qat_to_tflite(qat_model)
    assert conv.name in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.unit
@pytest.mark.parametrize("producer", [keras.layers.Conv2D(6, 3, use_bias=False),
                                      keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False),
                                      keras.layers.Dense(6, use_bias=True)], ids=lambda layer: type(layer).__name__)
@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_folded_batch_norm_weights_compute_conv_then_bn(producer, center, scale):
    rng = np.random.default_rng(0)
    producer = producer.__class__.from_config(producer.get_config())
    batch_norm = keras.layers.BatchNormalization(center=center, scale=scale, epsilon=1e-3)
    x = keras.Input((5, 5, 3))
    model = keras.Model(x, batch_norm(producer(x)))
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    batch_norm.moving_variance.assign(rng.uniform(0.1, 2.0, size=batch_norm.moving_variance.shape))  # > 0
    assert batch_norm_producers(model) == {producer.name: batch_norm.name}
    kernel, bias = folded_batch_norm_weights(producer, batch_norm)
    plain = producer.__class__.from_config({**producer.get_config(), "use_bias": True})
    images = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    plain(images)
    plain.set_weights([kernel, bias])
    expected = model(images, training=False)
    np.testing.assert_allclose(plain(images), expected, atol=1e-4, rtol=1e-4)
    from ofa_tf.export.qat import to_tf_keras  # the QAT rebuild, folded and not
    for fold in (True, False):
        rebuilt = to_tf_keras(model, fold_batch_norm=fold)
        assert len(rebuilt.layers) == len(model.layers) - fold
        np.testing.assert_allclose(rebuilt(images, training=False), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.integration
def test_export_tool_int8_writes_every_file_and_metadata(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    done = run_tool("export_tflite", f"--model_dir={run_dir}", "--arch=min", f"--output={out}/min.tflite",
                    "--quantize=int8", "--formats=tflite,keras", "--representative_images=32",
                    "--bn_calibration_images=64", "--eval_images=128")
    assert done.returncode == 0, done.stderr[-2000:]
    # no TF chatter: only the tool's own warnings (the int8 latency check may say int8 is not faster)
    assert all(line.startswith("warning: ") for line in done.stderr.splitlines() if line.strip()), done.stderr
    assert sorted(os.listdir(out)) == ["min.json", "min.keras", "min.tflite"]  # no temporary leftovers
    meta = json.loads((out / "min.json").read_text())
    assert meta == json.loads(done.stdout.strip().splitlines()[-1])
    space = tiny_space()
    assert meta["arch"] == space.min_arch().to_dict() and meta["quantize"] == "int8"
    assert meta["int8_calibration"] == "mse"
    assert meta["input"]["shape"] == [None, 16, 16, 3] and meta["input"]["dtype"] == "float32"
    assert meta["input"]["normalization"]["mean"] == [0.485, 0.456, 0.406]
    assert meta["class_names"] == [str(i) for i in range(10)] and meta["macs"] > 0 and meta["params"] > 0
    accuracy = meta["accuracy"]
    assert accuracy["num_images"] == 128 and 0 <= accuracy["tflite_accuracy"] <= 1
    assert 0 <= accuracy["top1_agreement"] <= 1 and accuracy["keras_accuracy"] >= 0
    model = TFLiteClassifier(str(out / "min.tflite"))
    assert model(np.zeros((2, 16, 16, 3), np.float32)).shape == (2, 10)
    ops = {d["op_name"] for d in model.interpreter._get_ops_details()}
    assert "QUANTIZE" in ops and "CONV_2D" in ops  # full-integer body behind float edges
    keras_model = keras.saving.load_model(out / "min.keras")
    assert keras_model.input_shape == (None, 16, 16, 3)


@pytest.mark.integration
def test_export_tool_qat_fine_tunes_and_writes_a_full_integer_model(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    output = tmp_path / "max.tflite"
    done = run_tool("export_tflite", f"--model_dir={run_dir}", "--arch=max", f"--output={output}", "--quantize=qat",
                    "--qat_epochs=1", "--qat_steps_per_epoch=3", "--bn_calibration_images=64",
                    "--eval_images=64", "--nocheck_int8_latency")  # (tests/test_export_formats.py times int8)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["max.json", "max.tflite", "run"]
    meta = json.loads((tmp_path / "max.json").read_text())
    assert meta["quantize"] == "qat" and np.isfinite(meta["qat"]["loss"])
    assert {k: meta["qat"][k] for k in ("epochs", "steps_per_epoch", "learning_rate", "distillation")} == {
        "epochs": 1, "steps_per_epoch": 3, "learning_rate": 1e-3, "distillation": 0.0}
    assert meta["qat"]["loss"] == pytest.approx(meta["qat"]["label_loss"])  # default: labels only
    assert meta["latency"] is None and meta["tflite_metadata"] == ["ofa_tf", "labels"]
    assert 0 <= meta["qat"]["agreement"] <= 1
    assert meta["accuracy"]["num_images"] == 64 and 0 <= meta["accuracy"]["top1_agreement"] <= 1
    model = TFLiteClassifier(str(output))
    tensors = {t["index"]: t for t in model.interpreter.get_tensor_details()}
    ops = model.interpreter._get_ops_details()
    assert {"HARD_SWISH", "CONV_2D", "DEPTHWISE_CONV_2D", "QUANTIZE", "DEQUANTIZE"} <= {op["op_name"] for op in ops}
    for op in ops:  # int8 kernels with int32 biases: the folded BN is in them, nothing runs in float
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert [tensors[i]["dtype"] for i in op["inputs"][:2]] == [np.int8, np.int8], op
    assert model(np.zeros((2, 24, 24, 3), np.float32)).shape == (2, 10)


@pytest.mark.integration
def test_bad_export_input_is_one_clear_error_and_writes_nothing(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    bad_arch = dict(tiny_space().max_arch().to_dict(), kernels=[[3], [9, 9, 9], [5, 5]])
    (tmp_path / "bad_arch.json").write_text(json.dumps({"arch": bad_arch}))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    cases = [
        (dict(model_dir=run_dir, arch_spec=str(tmp_path / "bad_arch.json")), "kernels"),
        (dict(model_dir=str(tmp_path / "missing"), arch_spec="max"), "no such directory"),
        (dict(model_dir=str(corrupt), arch_spec="max"), "unreadable config.json"),
        (dict(model_dir=run_dir, arch_spec="max", options=ExportOptions(quantize="int8", dataset="none")),
         "needs training images"),
        (dict(model_dir=run_dir, arch_spec="max", output=str(tmp_path / "no_dir" / "m.tflite")), "does not exist"),
        (dict(model_dir=run_dir, arch_spec="max", options=ExportOptions(quantize="int4")), "quantize='int4'"),
        (dict(model_dir=run_dir, arch_spec="max", options=ExportOptions(quantize="int8", int8_calibration="kl")),
         "int8_calibration='kl': expected one of ['mse', 'minmax']"),
        (dict(model_dir=run_dir, arch_spec="max", options=ExportOptions(quantize="qat", qat_distillation=1.5)),
         "qat_distillation=1.5: expected a weight in [0, 1]"),
        (dict(model_dir=run_dir, arch_spec="max", options=ExportOptions(quantize="qat", qat_learning_rate=0.0)),
         "qat_learning_rate=0.0: expected a positive number"),
    ]
    for kwargs, message in cases:
        kwargs.setdefault("output", str(out / "m.tflite"))
        with pytest.raises(OfaError, match=message.replace("(", r"\(").replace("[", r"\[")):
            export_subnet(**kwargs)
        assert os.listdir(out) == []
    done = run_tool("export_tflite", f"--model_dir={run_dir}", "--quantize=qat", "--dataset=none",
                    f"--output={out}/m.tflite")
    assert_one_line_error(done, "quantize=qat needs training images")
    assert os.listdir(out) == []


@pytest.mark.unit
def test_a_failed_write_leaves_no_partial_export(tmp_path, subnet_and_images):
    subnet, _ = subnet_and_images
    paths = {"tflite": str(tmp_path / "m.tflite"), "keras": str(tmp_path / "m.keras"),
             "metadata": str(tmp_path / "m.json")}
    with pytest.raises(TypeError):  # the metadata cannot be written after the model files were staged
        _write_all(paths, b"TFL3", subnet, {"not json": object()}, 0.0)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ int8 activation ranges
@pytest.mark.unit
def test_mse_range_clips_outliers_and_keeps_a_uniform_range():
    rng = np.random.default_rng(0)
    heavy = np.concatenate([rng.normal(0, 1, 1_000_000), [60.0, -40.0]])  # two outliers set min / max
    low, high = float(heavy.min()), float(heavy.max())
    counts = np.histogram(heavy, HISTOGRAM_BINS, (low, high))[0]
    fitted_low, fitted_high = mse_range(counts, low, high)
    assert low < fitted_low < -2 and 2 < fitted_high < high
    assert fitted_high - fitted_low < (high - low) / 2
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    errors = quantization_error(centers, counts.astype(float), np.array([low, fitted_low]),
                                np.array([high, fitted_high]))
    assert errors[1] < errors[0] / 2  # rounding saved on a million values outweighs clipping two
    # on uniform data every value matters: the full range stays (within one grid step)
    counts = np.histogram(rng.uniform(0, 6, 100_000), HISTOGRAM_BINS, (0.0, 6.0))[0]
    fitted_low, fitted_high = mse_range(counts, 0.0, 6.0)
    assert fitted_low == 0.0 and fitted_high >= 6.0 * RANGE_FRACTIONS[-2]
    # the error model is TFLite's: a step of range / 255, uniform rounding error step^2 / 12
    assert errors[0] == pytest.approx(((high - low) / 255) ** 2 / 12, rel=0.1)


@pytest.mark.integration
def test_int8_mse_calibration_narrows_ranges_inside_and_keeps_the_outputs(subnet_and_images):
    subnet, images = subnet_and_images
    representative = representative_dataset([images], 48)
    models = {name: keras_to_tflite(subnet, "int8", representative, name) for name in INT8_CALIBRATIONS}

    def int8_scales(model):
        """{tensor name: scale} of the int8 feature maps, and the scale of the logits."""
        interpreter = make_interpreter(model)
        tensors = interpreter.get_tensor_details()
        maps = {t["name"]: t["quantization"][0] for t in tensors
                if t["dtype"] == np.int8 and len(t["shape_signature"]) == 4 and t["quantization"][0] > 0}
        dequantize = [op for op in interpreter._get_ops_details() if op["op_name"] == "DEQUANTIZE"]
        assert len(dequantize) == 1  # full-integer body, float logits out
        logits = next(t for t in tensors if t["index"] == dequantize[0]["inputs"][0])
        return maps, logits["quantization"][0]

    fitted, fitted_logits = int8_scales(models["mse"])
    minmax, minmax_logits = int8_scales(models["minmax"])
    shared = sorted(set(fitted) & set(minmax))
    assert len(shared) > 10
    assert all(fitted[k] <= minmax[k] * (1 + 1e-6) for k in shared)  # ranges only shrink
    assert sum(fitted[k] < minmax[k] * 0.95 for k in shared) >= 3
    assert fitted_logits == pytest.approx(minmax_logits)  # a clipped top logit would tie: outputs keep theirs
    # per-tensor least error is not end-to-end least error on a random net (the trained
    # subnets' figures are in docs/deployment.md), but fitted ranges must not break the model
    expected = subnet(images, training=False).numpy()
    errors = {name: np.sqrt(np.mean((TFLiteClassifier(m)(images) - expected) ** 2)) for name, m in models.items()}
    assert errors["mse"] < 2 * errors["minmax"], errors


@pytest.mark.integration
def test_float16_fit_keeps_the_fewest_most_sensitive_layers_in_float32(subnet_and_images, tmp_path):
    subnet, images = subnet_and_images
    export_saved_model(fold_gate_scales(subnet), str(tmp_path / "saved"))
    float32_model = saved_model_to_tflite(str(tmp_path / "saved"), "none")
    float16_model = saved_model_to_tflite(str(tmp_path / "saved"), "float16")
    reference = TFLiteClassifier(float32_model)(images)
    plain = np.abs(TFLiteClassifier(float16_model)(images) - reference).max()
    assert plain > 1e-5  # there is float16 error to remove

    weights = Float16Weights(float16_model, float32_model)
    assert len(weights.layers) >= 20 and all(layer.num_weights > 0 for layer in weights.layers)
    # every layer back in float32 is the float32 model; none is the float16 one
    np.testing.assert_array_equal(TFLiteClassifier(weights.with_float32(weights.layers))(images), reference)
    np.testing.assert_array_equal(TFLiteClassifier(weights.with_float32([]))(images),
                                  TFLiteClassifier(float16_model)(images))

    bound = plain / 4
    model, report = fit_float16(float16_model, float32_model, images, bound, margin=1.0)
    got = np.abs(TFLiteClassifier(model)(images) - reference).max()
    assert got <= bound and report["max_abs_diff"] == pytest.approx(got) and report["fit_target"] == bound
    assert report["plain_float16_max_abs_diff"] == pytest.approx(plain) and report["check_images"] == len(images)
    kept = [layer for layer in weights.layers if layer.name in report["float32_layers"]]
    assert 1 <= len(kept) == len(report["float32_layers"]) < len(weights.layers)
    assert report["float32_weights"] == sum(layer.num_weights for layer in kept)
    # the weights' bytes grow by exactly 2 per weight kept float32; the file by no more than that
    def weight_bytes(tflite):
        return sum(len(b.data) for b in flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite)).buffers
                   if b.data is not None)
    assert weight_bytes(model) - weight_bytes(float16_model) == 2 * report["float32_weights"]
    assert len(model) - len(float16_model) <= 2 * report["float32_weights"]
    interpreter = make_interpreter(model)
    read = {t for op in interpreter._get_ops_details() for t in [*op["inputs"], *op["outputs"]]}
    assert {t["index"] for t in interpreter.get_tensor_details()} <= read  # no orphaned float16 copy
    runner = interpreter.get_signature_runner()  # the signature still names the right tensors
    np.testing.assert_array_equal(list(runner(**{list(runner.get_input_details())[0]: images[:1]}).values())[0],
                                  TFLiteClassifier(model)(images[:1]))
    dequantize = [op for op in make_interpreter(model)._get_ops_details() if op["op_name"] == "DEQUANTIZE"]
    assert len(dequantize) == sum(1 for op in make_interpreter(float16_model)._get_ops_details()
                                  if op["op_name"] == "DEQUANTIZE") - sum(len(k.dequantize_ops) for k in kept)
    # as few as needed: the same layers but the least sensitive one miss the bound
    ranked = [next(k for k in kept if k.name == name) for name in report["float32_layers"]]
    fewer = TFLiteClassifier(weights.with_float32(ranked[:-1]))(images)
    assert np.abs(fewer - reference).max() > bound

    # streamed batches (what the exporter passes) fit the same model as the array
    streamed, streamed_report = fit_float16(float16_model, float32_model,
                                            lambda: (images[i:i + 7] for i in range(0, len(images), 7)), bound,
                                            margin=1.0)
    assert streamed == model and streamed_report == report
    # by default it fits to half the bound (room for images it did not see), keeping more layers
    halved, halved_report = fit_float16(float16_model, float32_model, images, bound)
    assert halved_report["fit_target"] == bound / 2 and halved_report["max_abs_diff_bound"] == bound
    assert np.abs(TFLiteClassifier(halved)(images) - reference).max() <= bound / 2
    assert halved_report["float32_layers"][:len(kept)] == report["float32_layers"]
    batches_read = []  # a candidate that misses the bound is dropped at the first batch past it

    def counted():
        for i in range(0, len(images), 8):
            batches_read.append(i)
            yield images[i:i + 8]
    assert _max_diff(float16_model, counted, reference, stop_above=0.0) > 0 and batches_read == [0]

    same, report = fit_float16(float16_model, float32_model, images, plain * 2.5)  # already within: unchanged
    assert same == float16_model and report["float32_layers"] == []
    with pytest.raises(OfaError, match="float16_max_diff=0"):
        fit_float16(float16_model, float32_model, images, 0.0)


@pytest.mark.integration
def test_float16_export_records_its_check_in_the_metadata(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    meta = export_subnet(run_dir, "max", str(tmp_path / "max.tflite"),
                         ExportOptions(quantize="float16", float16_check_images=48, bn_calibration_images=64,
                                       eval_images=64, verbose=0))
    check = meta["float16"]
    assert check["check_images"] == 48 and check["max_abs_diff_bound"] == 1e-2
    assert check["max_abs_diff"] <= check["fit_target"] == 5e-3  # half the bound, on the check images
    assert check["plain_float16_max_abs_diff"] >= check["max_abs_diff"]
    assert meta["accuracy"]["max_abs_logit_diff"] < 1e-2
    without_data = export_subnet(run_dir, "max", str(tmp_path / "plain.tflite"),
                                 ExportOptions(quantize="float16", dataset="none", verbose=0))
    assert without_data["float16"] is None and without_data["accuracy"] is None  # no images: plain float16
    with pytest.raises(OfaError, match="float16_max_diff=-1"):
        export_subnet(run_dir, "max", str(tmp_path / "m.tflite"), ExportOptions(quantize="float16",
                                                                                float16_max_diff=-1))
    with pytest.raises(OfaError, match="float16_check_images=0"):
        export_subnet(run_dir, "max", str(tmp_path / "m.tflite"), ExportOptions(quantize="float16",
                                                                                float16_check_images=0))
    assert sorted(os.listdir(tmp_path)) == ["max.json", "max.tflite", "plain.json", "plain.tflite", "run"]
