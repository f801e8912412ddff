"""Mixed precision (`--mixed_precision`): 16-bit layers, float32 statistics, logits, losses,
checkpoints and exports."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_one_line_error, run_tool, tiny_space

from ofa_tf.export.interpreter import make_interpreter
from ofa_tf.layers.batch_norm import ElasticBatchNormalization
from ofa_tf.models import Supernet
from ofa_tf.runs import RunDirectory
from ofa_tf.training.precision import precision_policy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")


@pytest.mark.unit
def test_batch_norm_keeps_float32_statistics_under_bfloat16_layers():
    with precision_policy("bfloat16"):
        layer = ElasticBatchNormalization(momentum=0.5)
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # restored
    x = tf.random.stateless_normal((4, 3, 3, 6), seed=(1, 2)) * 30 + 100  # 16-bit moments would lose digits
    x16 = tf.cast(x, tf.bfloat16)
    y = layer(x16, training=True)
    assert y.dtype == tf.bfloat16
    assert all(v.dtype == "float32" for v in layer.weights)
    exact = tf.cast(x16, tf.float32)
    mean = tf.reduce_mean(exact, axis=(0, 1, 2))
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.5 * mean.numpy(), rtol=1e-6)
    variance = tf.math.reduce_variance(exact, axis=(0, 1, 2))
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.5 + 0.5 * variance.numpy(), rtol=1e-5)


@pytest.mark.unit
def test_a_bfloat16_supernet_has_float32_weights_and_logits_and_its_subnets_are_float32():
    with precision_policy("bfloat16"):
        model = Supernet(tiny_space(), num_classes=5)
        model.build()
    assert model.classifier.compute_dtype == "bfloat16"
    assert all(v.dtype in ("float32", "int32") for v in model.weights)
    x = tf.random.stateless_uniform((2, 24, 24, 3), seed=(3, 4))
    for arch in ("max", "min"):
        logits = model(x, arch=arch, training=False)
        assert logits.dtype == tf.float32
    subnet = model.get_subnet(model.space.max_arch(24))  # outside the policy: float32 layers
    assert all(layer.compute_dtype == "float32" for layer in subnet.layers if hasattr(layer, "compute_dtype"))
    reference = subnet(x, training=False).numpy()
    mixed = model(x, training=False).numpy()
    assert np.abs(reference - mixed).max() < 0.1 * (np.abs(reference).max() + 1)  # bfloat16 keeps ~3 digits


def _train_flags(tmp_path, precision, **extra):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    flags = {"method": "deps", "space": str(space), "dataset": f"npz:{DEMO}", "image_size": 16, "epochs": 3,
             "steps_per_epoch": 12, "batch_size": 32, "bn_calibration_images": 64, "learning_rate": 0.1,
             "mixed_precision": precision, "model_dir": str(tmp_path / f"run_{precision}"), **extra}
    return [f"--{k}={v}" for k, v in flags.items()]


@pytest.mark.integration
def test_a_bfloat16_deps_run_learns_and_gives_a_float32_checkpoint_and_export(tmp_path):
    done = run_tool("train", *_train_flags(tmp_path, "bfloat16"))
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "run_bfloat16"
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss_full"]) for r in rows]
    assert len(losses) == 3 and losses[-1] < 0.9 * losses[0], losses  # 36 steps: the full model learns
    assert rows[-1]["phase"] == "shrink" and float(rows[-1]["loss_min"]) > 0  # subnets trained too

    model, saved = RunDirectory(str(run_dir)).load_supernet()  # the checkpoint in a float32 supernet
    assert saved.config.mixed_precision == "bfloat16"
    assert model.classifier.compute_dtype == "float32"
    assert all(v.dtype in ("float32", "int32") for v in model.weights)

    output = tmp_path / "max.tflite"
    exported = run_tool("export_tflite", f"--model_dir={run_dir}", "--arch=max", f"--output={output}",
                        "--formats=tflite,keras", "--eval_images=64")
    assert exported.returncode == 0, exported.stderr[-3000:]
    keras_model = keras.models.load_model(str(output).replace(".tflite", ".keras"))
    assert all(layer.compute_dtype == "float32" for layer in keras_model.layers if hasattr(layer, "compute_dtype"))
    images = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    expected = keras_model(images, training=False).numpy()
    interpreter = make_interpreter(str(output))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.integration
def test_a_float16_run_scales_its_loss_and_its_checkpoint_restores(tmp_path):
    flags = _train_flags(tmp_path, "float16", epochs=2, steps_per_epoch=3, method="bignas", num_subnets=1)
    done = run_tool("train", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.isfinite(json.loads(done.stdout.strip().splitlines()[-1])["loss"])
    with np.load(sorted((tmp_path / "run_float16" / "checkpoints").glob("*.optimizer.npz"))[-1]) as state:
        values = [state[k] for k in sorted(state.files)]
    assert any(v.shape == () and v.dtype == np.float32 and v > 1 for v in values)  # the dynamic loss scale
    again = run_tool("train", *flags)  # restores weights and the loss-scaled optimizer's state
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1])["resumed_from_step"] == 6


@pytest.mark.unit
def test_an_unknown_precision_is_one_line():
    done = run_tool("train", "--mixed_precision=int8", "--model_dir=/tmp/never_written_mp")
    assert_one_line_error(done, "--mixed_precision=int8")
    assert not os.path.exists("/tmp/never_written_mp")
