"""TFLite export: conversion accuracy per mode, the export tool's files, and bad input."""

import json
import os

import keras
import numpy as np
import pytest

from helpers import assert_one_line_error, make_run_dir, randomize_weights, run_tool, tiny_space
from ofa_tf.data import load_dataset, make_pipeline
from ofa_tf.errors import OfaError
from ofa_tf.export import ExportOptions, TFLiteClassifier, export_subnet
from ofa_tf.export.tflite import export_saved_model, saved_model_to_tflite
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


def test_tflite_matches_keras_on_real_images(subnet_and_images, tmp_path):
    subnet, images = subnet_and_images
    expected = subnet(images, training=False).numpy()
    export_saved_model(subnet, str(tmp_path / "saved"))  # one export, converted twice
    for mode, tolerance in (("none", 1e-4), ("float16", 1e-2)):
        got = TFLiteClassifier(saved_model_to_tflite(str(tmp_path / "saved"), mode))(images)
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= tolerance, mode


def test_tf_keras_rebuild_for_qat_matches(subnet_and_images):
    from ofa_tf.export.qat import max_rebuild_error
    subnet, images = subnet_and_images
    assert max_rebuild_error(subnet, [images[:16]]) < 1e-4


def test_export_tool_int8_writes_every_file_and_metadata(tmp_path):
    run_dir = make_run_dir(tmp_path / "run")
    out = tmp_path / "out"
    out.mkdir()
    done = run_tool("export_tflite", f"--model_dir={run_dir}", "--arch=min", f"--output={out}/min.tflite",
                    "--quantize=int8", "--formats=tflite,keras", "--representative_images=32",
                    "--bn_calibration_images=64", "--max_eval_images=128")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip() == "" or "%" in done.stderr  # only the progress bar, no TF chatter
    assert sorted(os.listdir(out)) == ["min.json", "min.keras", "min.tflite"]  # no temporary leftovers
    meta = json.loads((out / "min.json").read_text())
    assert meta == json.loads(done.stdout.strip().splitlines()[-1])
    space = tiny_space()
    assert meta["arch"] == space.min_arch().to_dict() and meta["quantize"] == "int8"
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
        (dict(model_dir=run_dir, arch_spec="max", options=ExportOptions(quantize="int4")), "--quantize='int4'"),
    ]
    for kwargs, message in cases:
        kwargs.setdefault("output", str(out / "m.tflite"))
        with pytest.raises(OfaError, match=message.replace("(", r"\(").replace("[", r"\[")):
            export_subnet(**kwargs)
        assert os.listdir(out) == []
    done = run_tool("export_tflite", f"--model_dir={run_dir}", "--quantize=qat", "--dataset=none",
                    f"--output={out}/m.tflite")
    assert_one_line_error(done, "--quantize=qat needs training images")
    assert os.listdir(out) == []


def test_a_failed_write_leaves_no_partial_export(tmp_path, subnet_and_images):
    subnet, _ = subnet_and_images
    paths = {"tflite": str(tmp_path / "m.tflite"), "keras": str(tmp_path / "m.keras"),
             "metadata": str(tmp_path / "m.json")}
    with pytest.raises(TypeError):  # the metadata cannot be written after the model files were staged
        _write_all(paths, b"TFL3", subnet, {"not json": object()}, 0.0)
    assert os.listdir(tmp_path) == []
