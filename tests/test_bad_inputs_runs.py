"""Issue 27's bad inputs around a run directory, each as the real command (`tests/bad_inputs.py`).

A damaged config.json, a dataset replaced since training, odd arch files, a torn accuracy
predictor, a lock file nobody ofa_tf wrote and a config.json deleted beside its checkpoints:
each is one line naming the file and the field, exit status 2, no traceback, nothing
written. Afterwards the next normal command still works: a row's own `then` on the folders
as left, or for the others on the run, the run with its damage undone (bad_inputs.py's
`RUN_STILL_WORKS`).
"""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest

from bad_inputs import DEMO, BadInput, check_bad_input, with_tiny_space
from helpers import tiny_space

pytestmark = pytest.mark.integration

# The tiny space at 16 px (its file written by `with_tiny_space`): rows that fail only once the
# supernet is built (a foreign lock, a deleted config.json) build a small one.
SMALL_TRAIN = ("--method=deps", "--space={tmp}/tiny.json", f"--dataset=npz:{DEMO}", "--image_size=16", "--epochs=1",
               "--steps_per_epoch=1", "--batch_size=16", "--bn_calibration_images=64")
EVALUATE_MAX = ("evaluate", "--model_dir={run}", "--archs=max", "--bn_calibration_images=0")


def _edit_config(edit):
    """A `prepare` that rewrites {run}/config.json with `edit(config)` (which may return a new one)."""
    def prepare(tmp):
        path = os.path.join(tmp, "run", "config.json")
        with open(path) as f:
            config = json.load(f)
        config = edit(config) or config
        with open(path, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config))
    return prepare


def _set(key, value, under=None):
    def edit(config):
        (config[under] if under else config)[key] = value
    return _edit_config(edit)


def _drop(key, under):
    def edit(config):
        del config[under][key]
    return _edit_config(edit)


def _changed_dataset(tmp):
    """The run trained on a copy of the demo data (its fingerprint recorded), since replaced
    by a file of the same images with labels 0..27."""
    from ofa_tf.data import load_dataset
    from ofa_tf.runs.fingerprint import FINGERPRINT_KEY, dataset_fingerprint

    data_file = os.path.join(tmp, "data.npz")
    shutil.copy(DEMO, data_file)
    spec = f"npz:{data_file}"

    def trained_on_copy(config):
        config["run"]["dataset"] = spec
        config[FINGERPRINT_KEY] = dataset_fingerprint(spec, load_dataset(spec))
    _edit_config(trained_on_copy)(tmp)
    with np.load(DEMO) as demo:
        arrays = {k: demo[k] for k in ("x_train", "x_test", "y_test")}
        labels = np.arange(len(demo["y_train"])) % 28
    np.savez(data_file, y_train=labels, **arrays)
    os.makedirs(os.path.join(tmp, "out"))


def _arch_file(text):
    def prepare(tmp):
        with open(os.path.join(tmp, "arch.json"), "w") as f:
            f.write(text)
        os.makedirs(os.path.join(tmp, "out"), exist_ok=True)
    return prepare


MAX_ARCH = tiny_space().max_arch(24).to_dict()


def _arch_text(**changes):
    """The max arch as JSON text, with fields replaced by raw JSON text (`1e400`, `NaN`)."""
    text = json.dumps({k: (f"@{k}@" if k in changes else v) for k, v in MAX_ARCH.items()})
    for key, raw in changes.items():
        text = text.replace(f'"@{key}@"', raw)
    return text


def _torn_predictor(tmp):
    from ofa_tf.search import AccuracyPredictor

    space = tiny_space()
    archs = [space.sample(random.Random(i)) for i in range(6)]
    folder = os.path.join(tmp, "run", "predictor")
    AccuracyPredictor.fit(space, archs, [0.1 * i for i in range(6)], epochs=1, hidden=(8,)).save(folder)
    path = os.path.join(folder, "predictor.npz")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])  # a copy cut short


def _foreign_lock(tmp):
    os.makedirs(os.path.join(tmp, "new"))
    with open(os.path.join(tmp, "new", ".lock"), "w") as f:
        json.dump({"pid": "abc", "host": "somewhere"}, f)


def _delete_config(tmp):
    os.remove(os.path.join(tmp, "run", "config.json"))


def _nothing(tmp):
    pass


def _run_of_small_train(tmp):
    """{run} as SMALL_TRAIN would have written it (its space file, one size): only the block differs."""
    def same_settings(config):
        config["run"].update(space=os.path.join(tmp, "tiny.json"), image_size=[16])
        config["space"] = tiny_space(resolutions=(16,)).to_config()
    _edit_config(same_settings)(tmp)


def _deep(depth=100_000):
    return "[" * depth + "]" * depth


CASES = [
    BadInput("config-run-list", "evaluate", ("--model_dir={run}",), "config.json: run=[]: expected an object",
             prepare=_set("run", [])),
    BadInput("config-run-empty", "evaluate", ("--model_dir={run}",),
             'config.json: method is missing from "run", and 26 more settings', prepare=_set("run", {})),
    BadInput("config-run-null", "evaluate", ("--model_dir={run}",), "config.json: run=null: expected an object",
             prepare=_set("run", None)),
    BadInput("config-run-string", "evaluate", ("--model_dir={run}",), 'config.json: run="x": expected an object',
             prepare=_set("run", "x")),
    BadInput("config-run-list-of-names", "search", ("--model_dir={run}", "--flops=1M", "--output_dir={tmp}/search"),
             'config.json: run=["dataset", "space"]: expected an object', prepare=_set("run", ["dataset", "space"]),
             watch=("{run}", "{tmp}/search")),
    BadInput("config-no-dataset", "evaluate", ("--model_dir={run}",), 'config.json: dataset is missing from "run"',
             prepare=_drop("dataset", under="run")),
    BadInput("config-image-size-empty", "export", ("--model_dir={run}", "--output={tmp}/out/m.tflite"),
             "config.json: image_size=[]: expected a non-empty list of positive integers",
             prepare=lambda tmp: (_set("image_size", [], under="run")(tmp), os.makedirs(os.path.join(tmp, "out"))),
             watch=("{run}", "{tmp}/out")),
    BadInput("config-deeply-nested", "evaluate", ("--model_dir={run}",), "unreadable config.json (nested too deeply)",
             prepare=_edit_config(lambda config: _deep())),
    BadInput("dataset-changed-evaluate", "evaluate", ("--model_dir={run}", "--bn_calibration_images=0"),
             "config.json: dataset=npz:", prepare=_changed_dataset,
             then=(*EVALUATE_MAX, "--dataset=npz:{demo}")),
    BadInput("dataset-changed-export", "export", ("--model_dir={run}", "--output={tmp}/out/m.tflite"),
             "changed since the run was trained (28 classes and 3000 training examples now, 10 and 3000 then); "
             "pass --dataset explicitly", prepare=_changed_dataset, watch=("{run}", "{tmp}/out")),
    BadInput("arch-1e400", "export", ("--model_dir={run}", "--arch={tmp}/arch.json", "--output={tmp}/out/m.tflite"),
             "arch.json': arch.resolution=inf: expected an integer", prepare=_arch_file(_arch_text(resolution="1e400")),
             watch=("{run}", "{tmp}/out"), then=EVALUATE_MAX),
    BadInput("arch-nan", "evaluate", ("--model_dir={run}", "--archs={tmp}/arch.json"),
             "arch.json': arch.expands[1][0]=nan: expected a finite number",
             prepare=_arch_file(_arch_text(expands="[[1.0], [NaN, 3.0, 3.0], [3.0, 3.0]]"))),
    BadInput("arch-400-digits", "evaluate", ("--model_dir={run}", "--archs={tmp}/arch.json"),
             "arch.json': arch.resolution=1000", prepare=_arch_file(_arch_text(resolution="1" + "0" * 399))),
    BadInput("arch-infinity-inline", "export", ("--model_dir={run}", "--arch={tmp}/arch.json",
             "--output={tmp}/out/m.tflite"), "arch.json': arch.kernels[1][0]=inf: expected an integer",
             prepare=_arch_file(_arch_text(kernels="[[3], [Infinity, 7, 7], [5, 5]]")), watch=("{run}", "{tmp}/out")),
    BadInput("arch-deeply-nested", "export",
             ("--model_dir={run}", "--arch={tmp}/arch.json", "--output={tmp}/out/m.tflite"),
             "arch.json': not valid JSON for an arch (nested too deeply)", prepare=_arch_file(_deep()),
             watch=("{run}", "{tmp}/out")),
    BadInput("predictor-torn", "search",
             ("--model_dir={run}", "--flops=1M", "--output_dir={tmp}/search", "--measure=false"),
             "predictor.npz: unreadable predictor (BadZipFile", prepare=_torn_predictor,
             watch=("{run}", "{tmp}/search")),
    BadInput("lock-pid-not-a-number", "train", (*SMALL_TRAIN, "--model_dir={tmp}/new"),
             "new/.lock: pid='abc': not a lock ofa_tf wrote", prepare=with_tiny_space(_foreign_lock),
             watch=("{tmp}/new",)),
    BadInput("config-deleted-evaluate", "evaluate", ("--model_dir={run}",),
             "config.json is missing, but checkpoints/ is there", prepare=_delete_config),
    BadInput("config-deleted-train", "train", (*SMALL_TRAIN, "--model_dir={run}"),
             "config.json is missing, but checkpoints/ is there", prepare=with_tiny_space(_delete_config)),
    # a user's elastic block (docs/extending.md): never the default block in its place
    BadInput("block-module-does-not-import", "train",
             (*SMALL_TRAIN, "--block_class=no_such_blocks_module:GeluBlock", "--model_dir={tmp}/new"),
             "--block_class=no_such_blocks_module:GeluBlock: module no_such_blocks_module does not import "
             "(ModuleNotFoundError", prepare=with_tiny_space(_nothing), watch=("{tmp}/new",)),
    BadInput("block-not-elastic", "train",
             (*SMALL_TRAIN, "--block_class=tests.custom_blocks:NotABlock", "--model_dir={tmp}/new"),
             "--block_class=tests.custom_blocks:NotABlock: NotABlock is not a subclass of "
             "ofa_tf.layers.ElasticInvertedResidual", prepare=with_tiny_space(_nothing), watch=("{tmp}/new",)),
    BadInput("block-unregistered", "train",
             (*SMALL_TRAIN, "--block_class=tests.custom_blocks:UnregisteredBlock", "--model_dir={tmp}/new"),
             "--block_class=tests.custom_blocks:UnregisteredBlock: UnregisteredBlock is not registered with Keras "
             "serialization", prepare=with_tiny_space(_nothing), watch=("{tmp}/new",)),
    BadInput("config-block-does-not-import", "export", ("--model_dir={run}", "--output={tmp}/out/m.tflite"),
             "config.json: block_class=gone_blocks_module:GeluBlock: module gone_blocks_module does not import",
             prepare=lambda tmp: (_set("block_class", "gone_blocks_module:GeluBlock", under="run")(tmp),
                                  os.makedirs(os.path.join(tmp, "out"))),
             watch=("{run}", "{tmp}/out")),
    BadInput("resume-with-another-block", "train",
             (*SMALL_TRAIN, "--block_class=tests.custom_blocks:GeluBlock", "--model_dir={run}"),
             "holds a run with a different config: block_class=None there, 'tests.custom_blocks:GeluBlock' now",
             prepare=with_tiny_space(_run_of_small_train)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_run_input_is_one_line_and_changes_nothing(case, tmp_path):
    problems = check_bad_input(case, str(tmp_path))
    assert not problems, problems
