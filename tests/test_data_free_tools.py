"""A run imported from OFA's PyTorch checkpoints has no training data: the tools that need
images take --dataset, --bn_calibration_images=0 keeps the checkpoint's BN statistics, and
export without data writes the model and says that no accuracy was checked.

The imported run is OFA's real MobileNetV3 supernet (the `ofa` package, randomised as in
test_ofa_interop.py); the data is a small npz of 1000 classes whose test labels are the
imported min subnet's own predictions at 128 px, so an evaluation that keeps the imported BN
statistics scores exactly 1.0 and one that recalibrates them does not. Tools run as
subprocesses, side by side where one does not need another's output.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import assert_one_line_error
from ofa_reference import NET_IDS, random_ofa, random_ofa_mbv3, state_numpy

from ofa_tf.errors import OfaError
from ofa_tf.evaluation import accuracy
from ofa_tf.export.exporter import ExportOptions, check_data
from ofa_tf.interop import get_net, import_run
from ofa_tf.runs import RunDirectory
from ofa_tf.search.measure import SubnetMeter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "data", "fashion_mnist_small.npz")  # 10 classes
RESOLUTION = 128
MIN_ARCH = {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": [RESOLUTION]}  # OFA's format


_STARTED: list[subprocess.Popen] = []


def _start(*args: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    _STARTED.append(process)
    return process


@pytest.fixture(autouse=True)
def _no_tool_left_running():
    """A failed assertion leaves no tool of the test running."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def _finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(run directory, npz spec, direct accuracy of the min subnet with the imported BN)."""
    tmp = tmp_path_factory.mktemp("data_free")
    run = str(tmp / "imported")
    reference = random_ofa_mbv3(1.0, seed=3)
    # BN statistics of its min subnet from images, as training leaves them: the random ones
    # make every input give the same class, and an accuracy of 1.0 would prove nothing
    reference.set_active_subnet(ks=3, e=3, d=2)
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    reference.train()
    with torch.no_grad():
        reference(torch.randn(32, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(0)))
    reference.eval()
    import_run(state_numpy(reference), get_net(NET_IDS[1.0]), run, "checkpoint=x.pth")
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y_train = rng.integers(0, 1000, 40)
    y_train[0] = 999  # 1000 classes, as the supernet's classifier
    x_test = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    placeholder = str(tmp / "placeholder.npz")
    np.savez(placeholder, x_train=x_train, y_train=y_train, x_test=x_test, y_test=np.zeros(16, np.int64))
    directory = RunDirectory(run)
    model, saved = directory.load_supernet()
    data = directory.evaluation_data(saved, RESOLUTION, split="test", bn_calibration_images=0,
                                     dataset=f"npz:{placeholder}")
    assert data.calibration == [] and data.num_calibration_images == 0
    subnet = model.get_subnet(MIN_ARCH)  # the imported BN statistics
    images = np.concatenate([x for x, _ in data.evaluation])
    labels = np.argmax(subnet(images, training=False).numpy(), -1)
    path = str(tmp / "data.npz")
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=labels)
    direct = accuracy(subnet, [(x, labels[i * 256:(i + 1) * 256]) for i, (x, _) in enumerate(data.evaluation)])
    assert direct == 1.0 and len(set(labels)) >= 4  # labels the inputs tell apart
    arch_file = tmp / "min_ofa.json"
    arch_file.write_text(json.dumps(MIN_ARCH))
    return run, f"npz:{path}", str(arch_file), tmp, model


@pytest.mark.integration
def test_imported_run_is_searched_evaluated_and_exported_without_its_own_data(imported):
    run, dataset, min_file, tmp, model = imported
    search_dir, out = tmp / "search", tmp / "export" / "min.tflite"
    out.parent.mkdir()
    search = _start("tools.search", f"--model_dir={run}", f"--dataset={dataset}", "--arch_format=ofa",
                    "--searcher=random", "--num_samples=2", "--fitness=measured", f"--image_size={RESOLUTION}",
                    "--eval_images=8", "--bn_calibration_images=0", "--flops=1G", f"--output_dir={search_dir}")
    export = _start("tools.export_tflite", f"--model_dir={run}", f"--arch={min_file}", f"--output={out}",
                    "--formats=tflite,keras")
    recalibrated = _start("tools.evaluate", f"--model_dir={run}", f"--dataset={dataset}", "--split=test",
                          "--bn_calibration_images=16", f"--archs={min_file}")
    done = _finish(export)
    assert done.returncode == 0, done.stderr[-2000:]
    metadata = json.loads(done.stdout.strip().splitlines()[-1])
    assert metadata["accuracy_checked"] is False and metadata["accuracy"] is None
    assert metadata["bn_calibration_images"] == 0 and metadata["source"]["dataset"] is None
    assert [line for line in done.stderr.splitlines() if "no accuracy was checked" in line], done.stderr[-2000:]
    assert out.is_file() and (tmp / "export" / "min.keras").is_file() and (tmp / "export" / "min.json").is_file()

    done = _finish(search)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((search_dir / "flops-1G.json").read_text())
    ofa_arch = result["arch"]
    assert set(ofa_arch) == {"ks", "e", "d", "r"} and ofa_arch["r"] == [RESOLUTION] and len(ofa_arch["ks"]) == 20
    assert result["measured_on"]["bn_calibration_images"] == 0 and result["measured_on"]["dataset"] == dataset
    assert model.get_subnet(ofa_arch).input_shape[1:3] == (RESOLUTION, RESOLUTION)  # the dict, as written

    # kept BN statistics: the min subnet scores what it scores in Python with the imported ones
    # (1.0: the labels are its own predictions); the search result file is accepted as an arch
    kept = _start("tools.evaluate", f"--model_dir={run}", f"--dataset={dataset}", "--split=test",
                  "--bn_calibration_images=0", f"--archs={min_file},{search_dir / 'flops-1G.json'}")
    done = _finish(kept)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dataset"] == dataset
    first, searched = report["results"]
    assert (first["accuracy"], first["bn_calibration_images"]) == (1.0, 0)
    assert searched["bn_calibration_images"] == 0 and searched["arch"]["resolution"] == RESOLUTION
    data = RunDirectory(run).evaluation_data(RunDirectory(run).read(), RESOLUTION, split="test",
                                             bn_calibration_images=0, dataset=dataset)
    assert searched["accuracy"] == accuracy(model.get_subnet(ofa_arch), data.evaluation)
    done = _finish(recalibrated)
    assert done.returncode == 0, done.stderr[-2000:]
    (again,) = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    assert again["bn_calibration_images"] == 16
    assert again["accuracy"] < 1.0  # recalibrated on 16 other images: not the imported statistics


@pytest.mark.integration
def test_tools_that_need_images_say_so_for_an_imported_run(imported, tmp_path):
    run, dataset, min_file, _, _ = imported
    no_data = _start("tools.evaluate", f"--model_dir={run}", f"--output={tmp_path / 'r.json'}")
    wrong_classes = _start("tools.evaluate", f"--model_dir={run}", f"--dataset=npz:{DEMO}",
                           f"--output={tmp_path / 'r.json'}")
    done = _finish(no_data)
    assert_one_line_error(done, "error: --dataset is required")
    assert "imported" in done.stderr and "measuring accuracy" in done.stderr
    done = _finish(wrong_classes)
    assert_one_line_error(done, f"error: --dataset=npz:{DEMO}: 10 classes, but the supernet's classifier has 1000")
    assert not os.listdir(tmp_path)
    # the library the other tools share: the same check before the supernet loads
    with pytest.raises(OfaError, match="dataset is required.*measuring accuracy"):
        SubnetMeter(run, 8, 0)
    with pytest.raises(OfaError, match="dataset is required.*quantize=int8"):
        check_data(RunDirectory(run), ExportOptions(quantize="int8"))
    with pytest.raises(OfaError, match="10 classes"):
        check_data(RunDirectory(run), ExportOptions(dataset=f"npz:{DEMO}"))
    assert check_data(RunDirectory(run), ExportOptions()) is None  # float32 export: no data needed
    assert check_data(RunDirectory(run), ExportOptions(dataset=dataset)) == dataset


@pytest.mark.integration
def test_proxyless_checkpoint_imports_through_the_tool(tmp_path):
    reference = random_ofa(1.3, seed=9)
    torch.save(reference.state_dict(), tmp_path / "ofa.pth")
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "tools.import_ofa", f"--checkpoint={tmp_path / 'ofa.pth'}",
                           f"--net_id={NET_IDS[1.3]}", f"--model_dir={run}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["tensors"] == len(reference.state_dict())
    model, saved = RunDirectory(str(run)).load_supernet()
    assert saved.raw["imported_from"] == {"net_id": NET_IDS[1.3]} and saved.space.padding == "symmetric"
    arch = saved.space.sample(random.Random(2), resolution=RESOLUTION)
    images = np.random.default_rng(2).normal(size=(2, RESOLUTION, RESOLUTION, 3)).astype(np.float32)
    ofa = saved.space.to_ofa_arch(arch)
    reference.set_active_subnet(ks=ofa["ks"], e=ofa["e"], d=ofa["d"])
    with torch.no_grad():
        expected = reference(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    assert np.abs(model(images, arch=arch, training=False).numpy() - expected).max() < 1e-4
