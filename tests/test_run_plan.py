"""A run's settings are resolved once (`RunPlan.resolve`) and passed on: one `ofa-train`
process checks its config once, builds its space once and its method once."""

import json
import os
import subprocess
import sys

import pytest

from helpers import tiny_space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs `ofa-train` (its console-script entry, in this process) with the config check, the
# space factory and the method presets instrumented; prints the counts as JSON at exit.
DRIVER = r"""
import atexit, json, sys
import ofa_tf.spaces as spaces
import ofa_tf.spaces.registry as registry
from ofa_tf.runs.config import RunConfig
from ofa_tf.training import methods

counts = {"config_checks": 0, "get_space": 0, "build_method": 0}

def counted(key, function):
    def wrapper(*args, **kwargs):
        counts[key] += 1
        return function(*args, **kwargs)
    return wrapper

RunConfig.check = counted("config_checks", RunConfig.check)
spaces.get_space = registry.get_space = counted("get_space", registry.get_space)
for name in list(methods.PRESETS):
    methods.PRESETS[name] = counted("build_method", methods.PRESETS[name])
atexit.register(lambda: print("COUNTS " + json.dumps(counts), file=sys.stderr))
from ofa_tf.cli.train import main
sys.argv = ["ofa-train", *sys.argv[1:]]
main()
"""


@pytest.mark.integration
def test_one_training_run_checks_its_config_once_and_builds_its_space_and_method_once(tmp_path):
    space = tmp_path / "tiny_space.json"
    space.write_text(json.dumps(tiny_space(resolutions=(16,)).to_config()))
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, "--method=deps", f"--space={space}", "--image_size=16", "--epochs=2",
         "--steps_per_epoch=2", "--epsilon_ramp_epochs=1", "--batch_size=8", "--bn_calibration_images=16",
         "--dataset=npz:data/fashion_mnist_small.npz", f"--model_dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stderr.split("COUNTS ")[-1].splitlines()[0])
    assert counts == {"config_checks": 1, "get_space": 1, "build_method": 1}, counts
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and (tmp_path / "run" / "checkpoints").is_dir()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["method"]["name"] == "deps" and saved["method"]["phases"][1]["epsilon"]["ramp_steps"] == 2
