"""What ofa-export ships beyond a plain .tflite: ONNX checked in onnxruntime, labels and the input
contract inside the .tflite file, the preprocessing inside the graph, the XNNPACK rewrites that
make int8 fast, the progress bar and the warnings."""

import json
import os

import keras
import numpy as np
import pytest

from helpers import make_run_dir, randomize_weights, run_tool, tiny_space
from ofa_tf.data import load_dataset, make_pipeline
from ofa_tf.errors import OfaError
from ofa_tf.export import ExportOptions, TFLiteClassifier, export_subnet, keras_to_tflite
from ofa_tf.export.exporter import export_labels
from ofa_tf.export.interpreter import make_interpreter
from ofa_tf.export.onnx_format import ONNXClassifier, check_onnx_installed
from ofa_tf.export.tflite import representative_dataset
from ofa_tf.export.tflite_metadata import read_description
from ofa_tf.export.xnnpack import (MAX_DEPTHWISE_TAPS, StripDepthwiseConv2D, decompose_hard_swish,
                                   split_wide_depthwise, strip_columns)
from ofa_tf.models import Supernet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = "npz:" + os.path.join(ROOT, "data", "fashion_mnist_small.npz")
# the ops of the flatten before the classifier, which XNNPACK leaves to TFLite (dynamic batch)
FLATTEN_OPS = {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("run") / "run")


def test_image_batches(resolution: int, count: int = 32):
    """(raw uint8 RGB test images, the same images through the evaluation pipeline)."""
    data = load_dataset(SHIPPED)
    raw = np.stack([image for image, _ in data.test.take(count).as_numpy_iterator()])
    raw = np.repeat(raw, 3, axis=-1) if raw.shape[-1] == 1 else raw
    normalized = next(iter(make_pipeline(data.test.take(count), count, [resolution], training=False)))[0].numpy()
    return raw, normalized


test_image_batches.__test__ = False  # a helper, not a test


def undelegated_ops(model: bytes) -> set[str]:
    """The ops XNNPACK leaves to TFLite's own kernels: those feeding a delegated part."""
    interpreter = make_interpreter(model)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    produced_by = {int(t): op["op_name"] for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    delegated = {int(t) for d in delegates for t in d["outputs"]}
    return {produced_by[int(t)] for d in delegates for t in d["inputs"]
            if int(t) in produced_by and int(t) not in delegated}


@pytest.mark.integration
def test_xnnpack_rewrites_keep_the_function_and_leave_no_slow_op():
    assert strip_columns(7, 7) == [(0, 3), (3, 3), (6, 1)] and strip_columns(5, 5) == [(0, 5)]
    assert strip_columns(3, 9) == [(0, 8), (8, 1)] and strip_columns(6, 6) == [(0, 4), (4, 2)]
    rng = np.random.default_rng(0)
    for size, stride, padding, multiplier in ((15, 2, "same", 1), (16, 2, "same", 2), (16, 1, "same", 1),
                                              (17, 2, "valid", 1)):
        x = keras.Input((size, size, 6))
        conv = keras.layers.DepthwiseConv2D(7, strides=stride, padding=padding, depth_multiplier=multiplier)
        model = keras.Model(x, conv(x))
        conv.set_weights([rng.normal(size=w.shape).astype("float32") for w in conv.get_weights()])
        split = split_wide_depthwise(model)
        assert isinstance(split.layers[1], StripDepthwiseConv2D)
        images = rng.normal(size=(2, size, size, 6)).astype("float32")
        np.testing.assert_allclose(split(images), model(images), atol=1e-4, rtol=1e-4)

    keras.utils.set_random_seed(0)
    supernet = Supernet(tiny_space(), 10)
    supernet.build()
    randomize_weights(supernet)
    subnet = supernet.get_subnet("max")  # 7x7 depthwise kernels, hard-swish
    _, images = test_image_batches(24)
    rewritten = decompose_hard_swish(split_wide_depthwise(subnet))
    wide = [layer.name for layer in rewritten.layers if isinstance(layer, keras.layers.DepthwiseConv2D)
            and np.prod(layer.kernel_size) > MAX_DEPTHWISE_TAPS]
    assert not wide and any(isinstance(layer, StripDepthwiseConv2D) for layer in rewritten.layers)
    expected = subnet(images, training=False).numpy()
    np.testing.assert_allclose(rewritten(images, training=False), expected, atol=1e-4, rtol=1e-4)

    exported = keras_to_tflite(subnet, "int8", representative_dataset([images], 16), "minmax")
    assert undelegated_ops(exported) <= FLATTEN_OPS  # all but the flatten delegated
    assert "HARD_SWISH" not in {op["op_name"] for op in make_interpreter(exported)._get_ops_details()}
    int8_agreement = (TFLiteClassifier(exported)(images).argmax(-1) == expected.argmax(-1)).mean()
    assert int8_agreement >= 0.75, int8_agreement
    x = keras.Input((8, 8, 4))
    swish = keras.Model(x, keras.layers.Activation("hard_swish")(keras.layers.Conv2D(4, 1)(x)))
    representative = representative_dataset([rng.normal(size=(8, 8, 8, 4)).astype("float32")], 8)
    plain = keras_to_tflite(swish, "int8", representative, "minmax", xnnpack=False)
    assert "HARD_SWISH" in undelegated_ops(plain)  # XNNPACK has no int8 hard-swish: it cuts the graph
    assert not undelegated_ops(keras_to_tflite(swish, "int8", representative, "minmax"))


@pytest.mark.integration
def test_tflite_carries_labels_and_input_contract_and_onnx_matches_keras(run_dir, tmp_path):
    labels = [f"garment {i}" for i in range(10)]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    output = tmp_path / "max.tflite"
    meta = export_subnet(run_dir, "max", str(output), ExportOptions(
        formats=("tflite", "onnx"), labels=str(tmp_path / "labels.txt"), bn_calibration_images=64, eval_images=64,
        verbose=0))
    assert sorted(os.listdir(tmp_path)) == ["labels.txt", "max.json", "max.onnx", "max.tflite"]
    described = read_description(str(output))
    assert described["class_names"] == labels == meta["class_names"]
    assert described["input"] == meta["input"] and described["input"]["normalization"] == {
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert described["input"]["dtype"] == "float32" and described["input"]["preprocessing_included"] is False
    assert described["arch"] == meta["arch"] and described["quantize"] == "none"
    interpreter = make_interpreter(str(output))
    assert [d["name"] for d in interpreter.get_input_details()] == ["image"]
    assert [d["name"] for d in interpreter.get_output_details()] == ["logits"]
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["image"], "outputs": ["logits"]}}

    onnx_check = meta["onnx"]["accuracy"]
    assert onnx_check["num_images"] == 64 and onnx_check["top1_agreement"] == 1.0
    assert onnx_check["max_abs_logit_diff"] < 1e-4 and meta["warnings"] == []
    onnx_model = ONNXClassifier(str(tmp_path / "max.onnx"))
    assert onnx_model.input_name == "image" and onnx_model.session.get_outputs()[0].name == "logits"
    _, images = test_image_batches(24)
    np.testing.assert_allclose(onnx_model(images), TFLiteClassifier(str(output))(images), atol=1e-4)

    assert export_labels(None, None, 3) == ["class_0", "class_1", "class_2"]
    (tmp_path / "nine.txt").write_text("\n".join(labels[:9]))
    out = tmp_path / "out"
    out.mkdir()
    for options, message in (
            (ExportOptions(labels=str(tmp_path / "nine.txt")), "nine.txt: 9 names, but the model has 10 classes"),
            (ExportOptions(warn_agreement_below=2.0), "warn_agreement_below=2.0: expected a fraction in [0, 1]"),
            (ExportOptions(quantize="qat", include_preprocessing=True),
             "include_preprocessing: not with quantize=qat")):
        with pytest.raises(OfaError, match=message.replace("[", r"\[")):
            export_subnet(run_dir, "max", str(out / "m.tflite"), options)
    assert os.listdir(out) == []
    with pytest.raises(OfaError, match=r"formats=onnx needs ofa_tf_no_such_module, not installed: "
                                       r"pip install 'ofa_tf\[onnx\]'"):
        check_onnx_installed(("onnx", "ofa_tf_no_such_module"))


@pytest.mark.integration
def test_preprocessing_inside_takes_raw_uint8_and_predicts_as_the_pipeline(run_dir, tmp_path):
    output = tmp_path / "raw.tflite"
    meta = export_subnet(run_dir, "max", str(output), ExportOptions(
        include_preprocessing=True, formats=("tflite", "keras"), bn_calibration_images=64, eval_images=64, verbose=0))
    assert meta["input"]["dtype"] == "uint8" and meta["input"]["shape"] == [None, None, None, 3]
    assert read_description(str(output))["input"]["preprocessing_included"] is True
    assert meta["accuracy"]["top1_agreement"] == 1.0 and meta["accuracy"]["max_abs_logit_diff"] < 1e-4
    raw, normalized = test_image_batches(24)
    assert raw.dtype == np.uint8 and raw.shape[1:] == (28, 28, 3)  # stored size, not the subnet's 24
    subnet = keras.saving.load_model(tmp_path / "raw.keras")  # the plain, BN-recalibrated subnet
    expected = subnet(normalized, training=False).numpy()
    got = TFLiteClassifier(str(output))(raw)
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(-1) == expected.argmax(-1)).all()


@pytest.mark.integration
def test_export_tool_shows_its_stages_and_warns_on_low_int8_agreement(run_dir, tmp_path):
    output = tmp_path / "bad.tflite"
    # one representative image: ranges that clip most activations, a model that disagrees
    done = run_tool("export_tflite", f"--model_dir={run_dir}", "--arch=max", f"--output={output}",
                    "--quantize=int8", "--representative_images=1", "--int8_calibration=minmax",
                    "--include_preprocessing", "--warn_agreement_below=0.99", "--bn_calibration_images=64",
                    "--eval_images=64", env={"OFA_TF_PROGRESS": "1"})  # (a pipe: no bar unless asked)
    assert done.returncode == 0, done.stderr[-2000:]
    for stage in ("BN recalibration", "calibration", "conversion", "comparison", "latency check", "writing"):
        assert f"ofa-export: {stage}:" in done.stderr, stage
    meta = json.loads(done.stdout.strip().splitlines()[-1])
    agreement = meta["accuracy"]["top1_agreement"]
    assert agreement < 0.99
    warnings = [line.removeprefix("warning: ") for line in done.stderr.splitlines() if line.startswith("warning: ")]
    expected = (f"the .tflite model agrees with the Keras subnet on {agreement:.2%} of 64 images (top-1), below "
                "warn_agreement_below=0.99")
    assert expected in warnings and expected in meta["warnings"] and set(warnings) == set(meta["warnings"])
    latency = meta["latency"]
    assert latency["int8_median_ms"] > 0 and latency["float32_median_ms"] > 0
    slower = latency["int8_over_float32"] >= 1.0
    assert slower == any(w.startswith("the int8 model is not faster than float32") for w in warnings)
    raw, _ = test_image_batches(24, count=4)
    assert TFLiteClassifier(str(output))(raw).shape == (4, 10)
    ops = {op["op_name"] for op in make_interpreter(str(output))._get_ops_details()}
    assert {"CAST", "RESIZE_BILINEAR"} <= ops and "HARD_SWISH" not in ops  # preprocessing in, rewrites too
