"""Run-directory files are written atomically: a failed write leaves nothing behind."""

import json
import os

import numpy as np
import pytest

from ofa_tf.io import atomic_write
from ofa_tf.runs import RunConfig

pytestmark = pytest.mark.unit


def test_atomic_write_renames_complete_files_only(tmp_path):
    target = tmp_path / "ckpt-0001.optimizer.npz"
    atomic_write(str(target), lambda tmp: np.savez(tmp, a=np.arange(4)))
    assert os.listdir(tmp_path) == [target.name]
    np.testing.assert_array_equal(np.load(target)["a"], np.arange(4))

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt  # e.g. the user stops the run mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(tmp_path / "config.json"), crash)
    assert os.listdir(tmp_path) == [target.name]


def test_run_config_is_plain_json():
    config = RunConfig(image_size=(24, 32), num_subnets=2)
    data = json.loads(json.dumps(config.to_dict()))
    assert data["image_size"] == [24, 32] and data["method"] == "deps" and data["num_subnets"] == 2
