"""Weight-free MACs / params against the reference profiler, and the profile tool."""

import json

import pytest

from helpers import assert_one_line_error, make_run_dir, run_tool
from ofa_tf import OfaError
from ofa_tf.spaces import profile
from ofa_tf.spaces import get_space



@pytest.mark.unit
@pytest.mark.parametrize("arch,macs,params", [("max", 564.9e6, 6.40e6), ("min", 120.0e6, 2.14e6)])
def test_ofa_mbv3_matches_reference_profiler_at_224(arch, macs, params):
    result = profile("ofa_mbv3", arch, num_classes=10, resolution=224)
    assert abs(result["macs"] - macs) / macs < 0.01
    assert abs(result["params"] - params) / params < 0.01


@pytest.mark.unit
def test_ofa_mbv3_at_32_pixels():
    space = get_space("ofa_mbv3", resolutions=[32])
    assert abs(profile(space, "max", 10)["macs"] - 15.2e6) / 15.2e6 < 0.01
    assert abs(profile(space, "min", 10)["macs"] - 3.9e6) / 3.9e6 < 0.02


@pytest.mark.unit
@pytest.mark.parametrize("name", ["ofa_mbv3", "compofa", "proxyless", "tofa"])
def test_cost_grows_with_the_subnet(name):
    space = get_space(name)
    res = space.resolutions[0]
    small, big = profile(space, "min", 10, res), profile(space, "max", 10, res)
    assert small["macs"] < big["macs"] and small["params"] < big["params"]
    for seed in range(10):
        mid = profile(space, space.sample(seed, resolution=res), 10)
        assert small["macs"] <= mid["macs"] <= big["macs"]


@pytest.mark.unit
def test_params_match_the_extracted_keras_subnet():
    from helpers import tiny_space
    from ofa_tf.models import Supernet
    model = Supernet(tiny_space(), num_classes=5)
    model.build()
    for seed in range(3):
        arch = model.space.sample(seed)
        subnet = model.get_subnet(arch)
        trainable = sum(int(w.numpy().size) for w in subnet.trainable_weights)
        assert profile(model.space, arch, 5)["params"] == trainable


@pytest.mark.unit
def test_bad_num_classes():
    with pytest.raises(OfaError, match="num_classes=0: expected a positive integer"):
        profile("ofa_mbv3", "max", 0)


def _tool(*args):
    return run_tool("profile", *args, timeout=120)


@pytest.mark.integration
def test_profile_tool_prints_one_json_object():
    done = _tool("--space=ofa_mbv3", "--arch=max", "--image_size=224", "--num_classes=10")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert abs(result["macs"] - 564.9e6) / 564.9e6 < 0.01 and abs(result["params"] - 6.40e6) / 6.40e6 < 0.01


@pytest.mark.integration
def test_profile_tool_reads_arch_files(tmp_path):
    arch = get_space("compofa").sample(3)
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    done = _tool("--space=compofa", f"--arch={path}", "--num_classes=10")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["macs"] == profile("compofa", arch, 10)["macs"]


@pytest.mark.integration
def test_profile_tool_reads_the_space_from_a_run(tmp_path):
    """--model_dir: the run's space, width, input sizes and class count (as ofa-build-lut);
    --image_size then picks among the run's sizes, and the space flags are an error."""
    from ofa_tf.runs import RunDirectory
    run = make_run_dir(tmp_path / "run", num_classes=7)
    space = RunDirectory(run).read().space
    low, high = min(space.resolutions), max(space.resolutions)
    for args, arch in [([], space.min_arch(low)), ([f"--image_size={high}"], space.min_arch(high))]:
        done = _tool(f"--model_dir={run}", "--arch=min", *args)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["space"] == space.name and result["arch"] == arch.to_dict()
        assert result["macs"] == profile(space, arch, 7)["macs"]
    assert_one_line_error(_tool(f"--model_dir={run}", "--space=ofa_mbv3"),
                          "--space=ofa_mbv3: only used with no --model_dir")
    assert_one_line_error(_tool(f"--model_dir={run}", f"--image_size={high + 1}"),
                          f"--image_size={high + 1}: the run trained {list(space.resolutions)}")
    assert_one_line_error(_tool(f"--model_dir={tmp_path / 'none'}"), f"--model_dir={tmp_path / 'none'}")


@pytest.mark.integration
@pytest.mark.parametrize("args,message", [
    (["--space=resnet"], "space='resnet'"),
    (["--image_size=4"], "--image_size=4: expected one or more sizes >= 8"),
    (["--num_classes=-3"], "num_classes=-3"),
    (["--arch={\"resolution\": 224}"], "missing field 'depths'"),
    (["--arch=/no/such/file.json"], "arch='/no/such/file.json'"),
    (["--image_size=abc"], "--image_size=abc"),
])
def test_profile_tool_bad_input_is_one_line(args, message):
    assert_one_line_error(_tool(*args), message)
