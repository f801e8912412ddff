"""Keras users subclass the elastic block (other activation; an extra elastic part) and train;
docs/extending.md's example runs as it stands in the Markdown (its block through `fit` and
every program); `OnceForAllModel`'s `compile` / `fit` refuse what would train the wrong thing."""

import csv
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import randomize_weights, tiny_space
from layer_harness import run_elastic_layer_test
from ofa_tf.errors import OfaError
from ofa_tf.export.tflite import TFLiteClassifier
from ofa_tf.layers import ElasticInvertedResidual
from ofa_tf.layers.block_import import import_block_class
from ofa_tf.models import Supernet
from ofa_tf.runs import RunDirectory
from ofa_tf.runs.plan import build_model
from ofa_tf.training import OnceForAllModel, PhaseController

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "extending.md")


@keras.saving.register_keras_serializable(package="ofa_tf_tests")
class SwishBlock(ElasticInvertedResidual):
    """Inverted residual with swish everywhere."""

    def activation_function(self):
        return keras.activations.silu

    def static_activation(self, name):
        return keras.layers.Activation("silu", name=name)


@keras.saving.register_keras_serializable(package="ofa_tf_tests")
class ScaledBlock(ElasticInvertedResidual):
    """Adds a learnable per-channel output scale, elastic with the block's width."""

    def build_sublayers(self, input_shape):
        super().build_sublayers(input_shape)
        self.out_scale = self.add_weight(name="out_scale", shape=(self.out_channels,), initializer="ones")

    def call(self, inputs, out_channels=None, training=None, **choice):
        body = super().call(inputs, out_channels=out_channels, training=training, **choice)
        if self.residual:
            body = body - inputs
        channels = tf.shape(body)[-1]
        body = body * self.out_scale.value[:channels]
        return body + inputs if self.residual else body

    def apply_static(self, x, out_channels=None, **choice):
        inputs = x
        residual, self.residual = self.residual, False
        try:
            body = super().apply_static(x, out_channels=out_channels, **choice)
        finally:
            self.residual = residual
        channels = int(body.shape[-1])
        dw = keras.layers.DepthwiseConv2D(1, use_bias=False, name=f"{self.name}_out_scale")
        dw.build(body.shape)
        dw.set_weights([self.out_scale.numpy()[:channels].reshape(1, 1, channels, 1)])
        body = dw(body)
        return keras.layers.Add(name=f"{self.name}_add")([body, inputs]) if self.residual else body


def _train(model, steps=30):
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16, 16, 3)).astype("float32")
    y = (x[:, :8].mean(axis=(1, 2, 3)) > 0).astype("int32")  # learnable: brightness of the top half
    history = model.fit(x, y, batch_size=16, epochs=steps // 4, verbose=0)
    return history.history["loss"], x


@pytest.mark.integration
def test_subclassed_activation_block_trains_and_extracts():
    model = Supernet(tiny_space(), num_classes=2, block_class=SwishBlock)
    losses, x = _train(model)
    assert losses[-1] < losses[0] * 0.8
    assert all(isinstance(b, SwishBlock) for stage in model.stages for b in stage.blocks)
    for seed in range(3):
        arch = model.space.sample(seed, resolution=16)
        subnet = model.get_subnet(arch)
        assert any(getattr(l, "activation", None) is keras.activations.silu for l in subnet.layers)
        np.testing.assert_allclose(model(x[:4], arch=arch).numpy(), subnet(x[:4]).numpy(), atol=1e-4)
    clone = Supernet.from_config(model.get_config())
    assert clone.block_class is SwishBlock


@pytest.mark.integration
def test_subclass_with_extra_elastic_weight_passes_the_layer_harness_and_trains():
    run_elastic_layer_test(
        lambda: ScaledBlock(16, (3, 5), (2.0, 3.0), 1, "relu", True, name="scaled"), (8, 8, 16),
        [{}, {"kernel_size": 3, "mid_channels": 32, "se_channels": 8}], training_modes=(False, True))
    model = Supernet(tiny_space(), num_classes=2, block_class=ScaledBlock)
    losses, x = _train(model)
    assert losses[-1] < losses[0] * 0.8
    scales = [b.out_scale.numpy() for stage in model.stages for b in stage.blocks]
    assert any(not np.allclose(s, 1.0) for s in scales)  # the new weight was trained
    randomize_weights(model, seed=1)
    arch = model.space.sample(2, resolution=16)
    np.testing.assert_allclose(model(x[:4], arch=arch).numpy(), model.get_subnet(arch)(x[:4]).numpy(), atol=1e-4)


# ------------------------------------------------------------------ compile / fit that cannot train the wrong thing
@pytest.mark.unit
def test_compile_refuses_a_loss_and_fit_without_a_method_says_what_to_add():
    model = OnceForAllModel(tiny_space(resolutions=(16,)), num_classes=4)  # not built: fit would build it
    with pytest.raises(OfaError, match=r"compile\(loss=.*method's losses"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(OfaError, match="method='bogus'"):
        model.compile(optimizer="sgd", method="bogus")
    model.compile(optimizer="sgd")
    x, y = np.zeros((8, 16, 16, 3), np.float32), np.zeros((8,), np.int32)
    with pytest.raises(OfaError, match="no method to train.*compile it with method='deps'.*PhaseController"):
        model.fit(x, y, epochs=1, verbose=0)
    model.compile(optimizer="sgd", method="deps")
    with pytest.raises(OfaError, match="both set the method"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[PhaseController("deps")])
    assert not model.optimizer.iterations.numpy()  # nothing trained


@pytest.mark.unit
def test_a_block_named_by_its_import_path_is_imported_checked_or_refused_in_one_line():
    from custom_blocks import GeluBlock

    assert import_block_class(None) is ElasticInvertedResidual
    assert import_block_class("custom_blocks:GeluBlock") is GeluBlock
    for spec, message in [("custom_blocks.GeluBlock", "expected MODULE:CLASS"),
                          ("no_such_blocks_module:GeluBlock", "module no_such_blocks_module does not import "
                                                              "(ModuleNotFoundError"),
                          ("custom_blocks:Missing", "has no class Missing"),
                          ("custom_blocks:NotABlock", "not a subclass of ofa_tf.layers.ElasticInvertedResidual"),
                          ("custom_blocks:UnregisteredBlock", "not registered with Keras serialization")]:
        with pytest.raises(OfaError, match=re.escape(f"block_class={spec}: ") + ".*" + re.escape(message)):
            import_block_class(spec)


# ------------------------------------------------------------------ docs/extending.md, run as it stands
def _code_blocks(path: str) -> list[tuple[str, str]]:
    return re.findall(r"```(python|bash)\n(.*?)```", open(path, encoding="utf-8").read(), flags=re.S)


def _program_wrappers(folder: str) -> str:
    """A folder of the console scripts pyproject.toml declares, each running its module with
    this interpreter (what `pip install` makes), for the page's shell commands."""
    os.makedirs(folder)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    for name, target in scripts.items():
        path = os.path.join(folder, name)
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\nexec {sys.executable} -m {target.split(':')[0]} \"$@\"\n")
        os.chmod(path, 0o755)
    return folder


def _events(folder: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the TensorBoard event files in `folder`."""
    found: dict[str, dict[int, float]] = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _kill_after_first_checkpoint(command: str, env: dict, folder: str) -> None:
    """Starts `command`, kills it (SIGKILL) once its first checkpoint's manifest is in `folder`."""
    process = subprocess.Popen(["bash", "-c", command], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not glob.glob(os.path.join(folder, "ckpt-*.json")):
            assert process.poll() is None, "the fine-tune ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the fine-tune had finished: nothing was killed mid-run"


@pytest.mark.integration
def test_the_pages_block_trains_with_fit_and_goes_through_every_program(tmp_path, monkeypatch):
    """docs/extending.md's code blocks, in order, in an empty folder (the shipped data beside it):
    a `# my_blocks.py` block is written as that module, the other Python blocks run here, the
    shell blocks run with the console scripts. Then: `fit` on an unbuilt model with the method
    from `compile` trained its phases (subnet losses only after the warm-up; ε and the phase in
    TensorBoard); ofa-train recorded the block and every program used it: the exported TFLite is
    the GELU subnet (<= 1e-4) and not the default block's on the same weights; ofa-finetune,
    killed (-9) after its first checkpoint and run again, resumed and raised the accuracy."""
    blocks = _code_blocks(PAGE)
    assert [kind for kind, _ in blocks] == ["python", "python", "bash", "bash"]
    os.symlink(os.path.join(ROOT, "data"), tmp_path / "data")
    bin_dir = _program_wrappers(str(tmp_path / "bin"))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": ROOT}
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {"__name__": "extending_md"}
    printed = []
    try:
        for kind, code in blocks:
            first_line = code.splitlines()[0]
            if kind == "python" and re.fullmatch(r"# \w+\.py", first_line):
                (tmp_path / first_line[2:]).write_text(code)
            elif kind == "python":
                exec(compile(code, PAGE, "exec"), namespace)  # noqa: S102 - the page's own example
            else:
                if "ofa-finetune" in code:
                    command = code.replace("\\\n", " ")
                    folder = re.search(r"--output_dir=(\S+)", command).group(1)
                    _kill_after_first_checkpoint(command, env, os.path.join(folder, "checkpoints"))
                done = subprocess.run(["bash", "-e", "-c", code], env=env, capture_output=True, text=True,
                                      timeout=1800)
                assert done.returncode == 0, done.stderr[-3000:]
                printed += _json_lines(done.stdout)
        _check_fit(namespace["history"].history, tmp_path)
        _check_programs(printed, tmp_path)
    finally:
        sys.modules.pop("my_blocks", None)


def _check_fit(history: dict, tmp_path) -> None:
    assert history["phase"] == [0.0, 1.0]  # FM-Warmup, then shrinking: the controller ran, from compile
    assert len(history["loss_min"]) == len(history["loss_random"]) == 1 and history["loss_min"][0] > 0
    assert len(history["epsilon"]) == 1  # ε only where it means something
    assert history["loss"][1] < 1.5 * history["loss"][0]  # the mean over networks: no jump at the switch
    assert all(0 <= a <= 1 for a in history["val_accuracy_max"] + history["val_accuracy_min"])
    train = _events(str(tmp_path / "logs" / "fit" / "train"))
    assert train["epoch_phase"] == {0: 0.0, 1: 1.0}
    assert set(train["epoch_epsilon"]) == set(train["epoch_loss_min"]) == {1}
    assert 0 < train["epoch_epsilon"][1] <= 1
    assert set(_events(str(tmp_path / "logs" / "fit" / "validation"))["epoch_accuracy_max"]) == {0, 1}


def _check_programs(printed: list[dict], tmp_path) -> None:
    run = RunDirectory(str(tmp_path / "runs" / "gelu"))
    saved = run.read()
    assert saved.config.block_class == "my_blocks:GeluBlock"
    rows = list(csv.DictReader(open(run.metrics_path)))
    assert rows[0]["epsilon"] == rows[0]["loss_min"] == "" and float(rows[1]["loss_min"]) > 0
    steps = _events(os.path.join(run.logs_dir, "train"))  # --tensorboard_update_freq=1: every step
    assert len(steps["batch_phase"]) == 6 and sorted(set(steps["batch_phase"].values())) == [0.0, 1.0]
    assert steps["batch_epsilon"] and set(steps["epoch_epsilon"]) == {1}
    evaluated = next(p for p in printed if "results" in p)["results"]
    assert [r["macs"] > 0 for r in evaluated] == [True, True]

    supernet, _ = run.load_supernet()  # the run's own block, imported from config.json
    assert all(type(b).__name__ == "GeluBlock" for stage in supernet.stages for b in stage.blocks)
    arch = saved.space.parse_arch(str(tmp_path / "runs" / "gelu" / "search" / "flops-150k.json"))
    exported = keras.models.load_model(tmp_path / "exports" / "gelu_150k.keras")  # BN recalibrated
    gelu = supernet.get_subnet(arch)
    gelu.set_weights(exported.get_weights())
    default_model = build_model(dataclasses.replace(saved.config, block_class=None), saved.space,
                                saved.num_classes, saved.method)
    default_model.set_weights(supernet.get_weights())  # the same weights, the default block
    default = default_model.get_subnet(arch)
    default.set_weights(exported.get_weights())
    images = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype(np.float32)
    tflite = TFLiteClassifier((tmp_path / "exports" / "gelu_150k.tflite").read_bytes())(images)
    assert np.abs(tflite - gelu(images).numpy()).max() <= 1e-4
    assert np.abs(tflite - default(images).numpy()).max() > 1e-2  # a fall-back to the default block would show

    finetuned = next(p for p in printed if "accuracy_after" in p)
    assert finetuned["resumed_from_step"] > 0  # the killed fine-tune resumed from its checkpoint
    assert finetuned["accuracy_after"] > finetuned["accuracy_before"]
    assert finetuned["distill_from_supernet"] and finetuned["split"] == "test"
