"""The command line (ofa_tf/cli): flags generated from the config dataclasses, their checks run
in-process through the code path the commands use, the wording of errors as flags, the grouped
--help, and what `pip install .` installs."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from absl import flags

from ofa_tf.cli import config_flags, startup
from ofa_tf.cli import export as export_cli
from ofa_tf.cli import train as train_cli
from ofa_tf.errors import OfaError
from ofa_tf.export import ExportOptions
from ofa_tf.runs import RunConfig, RunPlan
from ofa_tf.spaces import get_space
from ofa_tf.training import build_method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
TRAIN_TOOL_FLAGS = {"model_dir", "max_worker_restarts", "download", "cpu_devices"}


def _train_flags(*args: str) -> flags.FlagValues:
    """ofa-train's flags, parsed from `args` into a fresh FlagValues (not absl's global FLAGS)."""
    flag_values = flags.FlagValues()
    train_cli.define_flags(flag_values)
    flag_values(["ofa-train", *args])
    return flag_values


def _check_run(flag_values: flags.FlagValues) -> None:
    """What ofa-train checks before it writes anything, but the data: the config from the flags
    resolved (`RunPlan.resolve`: run settings, space, method, strategy), then the model's own
    settings (`RunPlan.build_model`, as `train` calls it)."""
    RunPlan.resolve(train_cli.config_from_flags(flag_values)).build_model(10)
    raise AssertionError("no error")


# ----------------------------------------------------------------- flags from RunConfig
@pytest.mark.unit
def test_train_flags_are_the_run_config_fields_and_the_tool_flags():
    flag_values = _train_flags()
    names = {flag.name for flag in config_flags.own_flags(flag_values)}
    fields = {name for name in RunConfig.__dataclass_fields__}
    assert names == fields | TRAIN_TOOL_FLAGS
    assert not {"resolutions", "num_classes", "resolution"} & names  # defined but ignored before


@pytest.mark.unit
def test_default_flags_give_the_default_config():
    assert train_cli.config_from_flags(_train_flags()) == RunConfig()


@pytest.mark.unit
def test_flags_build_the_config():
    config = train_cli.config_from_flags(_train_flags(
        "--method=bignas", "--image_size=40,32,32", "--grad_clip=2", "--unlabelled_dataset=rest",
        "--labelled_per_class=5", "--steps_per_epoch=7", "--width_mult=1.2"))
    assert config.method == "bignas" and config.image_size == (32, 40)  # sorted, once each
    assert config.grad_clip == 2.0 and config.unlabelled_dataset == "rest" and config.labelled_per_class == 5
    assert config.steps_per_epoch == 7 and config.width_mult == 1.2 and config.epochs == RunConfig().epochs


OFA_SIZES = tuple(range(128, 225, 4))
# what each recipe trains on: DεpS's ImageNet code at a fixed 224 px with AutoAugment, colour jitter and
# random erasing; the rivals' ImageNet recipes at OFA's 25 sizes; the CIFAR-10 recipes at 32 px with
# DεpS's CIFAR crop and flip
RECIPE_INPUTS = {
    "deps_imagenet.flags": ((224,), "imagenet_autoaugment", 2048),
    **{f"{m}_imagenet.flags": (OFA_SIZES, "imagenet", 2048) for m in ("ofa", "compofa", "bignas", "fofa")},
    **{f"{m}_cifar10.flags": ((32,), "cifar", 256) for m in ("deps", "ofa", "compofa", "bignas", "fofa")},
}


@pytest.mark.unit
def test_every_recipe_is_in_the_table():
    assert sorted(os.listdir(os.path.join(ROOT, "flags"))) == sorted(RECIPE_INPUTS)


@pytest.mark.unit
@pytest.mark.parametrize("recipe", sorted(os.listdir(os.path.join(ROOT, "flags"))))
def test_every_recipe_parses_validates_and_builds_its_model(recipe):
    """flags/*.flags (BUILD.md#recipes): every flag exists and every value passes the checks
    a run makes before it starts; only the dataset is swapped for the shipped one."""
    path = os.path.join(ROOT, "flags", recipe)
    text = open(path).read()
    assert text.startswith("# ") and ("arXiv:" in text or "§" in text)  # cites its source
    shipped = os.path.join(ROOT, "data", "fashion_mnist_small.npz")
    flag_values = _train_flags(f"--flagfile={path}", f"--dataset=npz:{shipped}",
                               "--label_offset=0")
    config = train_cli.config_from_flags(flag_values)
    sizes, augment, batch = RECIPE_INPUTS[recipe]
    assert (config.image_size, config.augment, config.batch_size) == (sizes, augment, batch)
    assert config.epochs >= (185 if "imagenet" in recipe else 137)
    method = build_method(config.method, get_space(config.space, config.width_mult, config.image_size),
                          steps_per_epoch=625, epochs=config.epochs, num_subnets=config.num_subnets)
    assert method.name == config.method


@pytest.mark.unit
@pytest.mark.parametrize("arg,message", [
    ("--epochs=0", "--epochs=0: expected a positive number"),
    ("--steps_per_epoch=0", "--steps_per_epoch=0: expected a positive number"),
    ("--batch_size=-4", "--batch_size=-4: expected a positive number"),
    ("--learning_rate=0", "--learning_rate=0.0: expected a positive number"),
    ("--checkpoint_every_steps=0", "--checkpoint_every_steps=0: expected a positive number"),
    ("--bn_calibration_images=0", "--bn_calibration_images=0: expected a positive number"),
    ("--kd_temperature=-1", "--kd_temperature=-1.0: expected a positive number"),
    ("--num_subnets=-1", "--num_subnets=-1: expected a non-negative integer"),
    ("--grad_clip=0", "--grad_clip=0.0: expected a positive number"),
    ("--validation_fraction=1", "--validation_fraction=1.0: expected a fraction in [0, 1)"),
    ("--lr_warmup_epochs=-1", "--lr_warmup_epochs=-1.0: expected >= 0"),
    ("--momentum=1", "--momentum=1.0: expected a value in [0, 1)"),
    ("--weight_decay=-0.1", "--weight_decay=-0.1: expected >= 0"),
    ("--label_smoothing=1", "--label_smoothing=1.0: expected a value in [0, 1)"),
    ("--dropout=1.5", "--dropout=1.5: expected a rate in [0, 1)"),
    ("--warmup_fraction=1.5", "--warmup_fraction=1.5: expected a fraction in [0, 1)"),
    ("--epsilon_start=0", "--epsilon_start=0.0: expected a value in (0, 1]"),
    ("--epsilon_ramp_epochs=-2", "--epsilon_ramp_epochs=-2.0: expected >= 0"),
    ("--labelled_per_class=-1", "--labelled_per_class=-1: expected >= 0"),
    ("--unlabelled_ratio=0", "--unlabelled_ratio=0: expected a positive integer"),
    ("--unlabelled_weight=-1", "--unlabelled_weight=-1.0: expected a number >= 0"),
    ("--fixmatch_threshold=0", "--fixmatch_threshold=0.0: expected a value in (0, 1]"),
    ("--method=alphanet", "--method='alphanet': expected one of"),
    ("--space=resnet", "--space='resnet': expected one of"),
    ("--width_mult=0", "--width_mult=0.0: expected a positive number"),
    ("--strategy=tpu_pod", "--strategy='tpu_pod': expected one of"),
    ("--kernel_mode=warp", "--kernel_mode='warp': expected one of"),
    ("--lr_schedule=cyclic", "--lr_schedule='cyclic': expected one of ['run', 'phase', 'exponential']"),
    ("--epsilon_mode=cosine", "--epsilon_mode='cosine': expected one of"),
    ("--image_size=4", "--image_size=4: expected sizes >= 8"),
    ("--seed=-1", "--seed=-1: expected an integer >= 0"),
    ("--momentum=nan", "--momentum=nan: expected a value in [0, 1)"),
    ("--width_mult=nan", "--width_mult=nan: expected a positive number"),
    ("--epsilon_ramp_epochs=nan", "--epsilon_ramp_epochs=nan: expected >= 0"),
    ("--dataset=npz:/does/not/exist.npz", "--dataset=npz:/does/not/exist.npz: no such file"),
    ("--unlabelled_dataset=csv:x", "--unlabelled_dataset='csv:x': expected KIND:WHERE"),
    ("--data_dir=/tmp", "--data_dir=/tmp: only used by tfds: datasets"),
    ("--init_checkpoint=/no/such/run", "--init_checkpoint=/no/such/run: expected a training run directory"),
])
def test_a_bad_setting_is_one_line_naming_the_flag(arg, message):
    flag_values = _train_flags(arg)
    with pytest.raises(OfaError) as raised:
        _check_run(flag_values)
    line = startup.error_line(str(raised.value), flag_values)
    assert line.startswith(message) and "\n" not in line, line


@pytest.mark.unit
@pytest.mark.parametrize("arg", ["--epochs=abc", "--learning_rate=fast", "--download=maybe", "--image_size=32,a"])
def test_a_flag_of_the_wrong_type_does_not_parse(arg):
    with pytest.raises(flags.IllegalFlagValueError, match=arg.split("=")[0]):
        _train_flags(arg)


@pytest.mark.unit
def test_export_flags_are_the_export_options():
    flag_values = flags.FlagValues()
    export_cli.define_flags(flag_values)
    flag_values(["ofa-export", "--quantize=int8", "--formats=tflite,keras", "--eval_images=100"])
    assert export_cli.options_from_flags(flag_values) == ExportOptions(
        quantize="int8", formats=("tflite", "keras"), eval_images=100)
    names = {flag.name for flag in config_flags.own_flags(flag_values)}
    assert names == (set(ExportOptions.__dataclass_fields__) - {"verbose"}) | {"model_dir", "arch", "output"}
    flag_values = flags.FlagValues()
    export_cli.define_flags(flag_values)
    flag_values(["ofa-export", "--qat_batch_size=0", f"--output={ROOT}/m.tflite"])
    with pytest.raises(OfaError) as raised:
        export_cli.check_flags(flag_values)  # export.check_request: before the run is read
    assert startup.error_line(str(raised.value), flag_values) == "--qat_batch_size=0: expected a positive number"


@pytest.mark.unit
def test_config_flags_map_field_types():
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Settings:
        name: str = dataclasses.field(default="a", metadata={"help": "A name; see count=.", "group": "g"})
        count: int | None = None
        ratio: float = 0.5
        sizes: tuple[int, ...] = (1, 2)
        fast: bool = False

    flag_values = flags.FlagValues()
    assert config_flags.define_config_flags(Settings, flag_values) == ["name", "count", "ratio", "sizes", "fast"]
    assert flag_values["name"].help == "A name; see --count=."
    assert config_flags.group_of(flag_values["name"]) == "g"
    assert config_flags.group_of(flag_values["count"]) == config_flags.DEFAULT_GROUP
    flag_values(["prog", "--count=3", "--sizes=4,5", "--fast", "--ratio=2"])
    assert config_flags.config_from_flags(Settings, flag_values) == Settings("a", 3, 2.0, (4, 5), True)


# --------------------------------------------------------------------- error wording
def _wording_flags(**values) -> flags.FlagValues:
    flag_values = flags.FlagValues()
    config_flags.define("integer", "epochs", 4, "", group="g", flag_values=flag_values)
    config_flags.define("float", "epsilon_ramp_epochs", None, "", group="g", flag_values=flag_values)
    config_flags.define("string", "model_dir", None, "", group="g", flag_values=flag_values)
    config_flags.define("string", "strategy", "default", "", group="g", flag_values=flag_values)
    config_flags.define("list", "image_size", ["32"], "", group="g", flag_values=flag_values)
    flag_values(["prog", *[f"--{k}={v}" for k, v in values.items()]])
    return flag_values


@pytest.mark.unit
@pytest.mark.parametrize("values,message,worded", [
    ({"epochs": 0}, "epochs=0: expected a positive number", "--epochs=0: expected a positive number"),
    ({}, "model_dir is required: the run directory", "--model_dir is required: the run directory"),
    ({"model_dir": "/r"}, "model_dir=/r: exists and is not an ofa_tf run directory",
     "--model_dir=/r: exists and is not an ofa_tf run directory"),
    ({}, "strategy: unknown", "--strategy: unknown"),
    # elsewhere: only a NAME=VALUE showing the flag's value is the user's argument
    ({"model_dir": "/r", "epsilon_ramp_epochs": 1.0},
     "model_dir=/r holds a run with a different config: epsilon_ramp_epochs=0.5 there, 1.0 now",
     "--model_dir=/r holds a run with a different config: epsilon_ramp_epochs=0.5 there, 1.0 now"),
    ({"strategy": "mirrored"}, "batch_size=64: must be divisible by the 2 replicas of strategy=mirrored",
     "batch_size=64: must be divisible by the 2 replicas of --strategy=mirrored"),
    ({"image_size": "16,24"}, "bad sizes image_size=16,24.", "bad sizes --image_size=16,24."),
    ({"epochs": 1}, "saved with epochs=10", "saved with epochs=10"),  # 10 is not the flag's 1
    # already dashed, a name inside a longer word, not a flag of this command: unchanged
    ({"epochs": 0}, "--epochs=0: expected a positive number", "--epochs=0: expected a positive number"),
    ({"epochs": 4}, "max_epochs=4: too many", "max_epochs=4: too many"),
    ({}, "batch_size=0: expected a positive number", "batch_size=0: expected a positive number"),
    ({}, "TF_CONFIG: cluster['worker'][0]='x' is not host:port",
     "TF_CONFIG: cluster['worker'][0]='x' is not host:port"),
    ({}, "npz:/no/such.npz: no such file", "npz:/no/such.npz: no such file"),
])
def test_word_as_flags(values, message, worded):
    assert startup.word_as_flags(message, _wording_flags(**values)) == worded


@pytest.mark.unit
def test_error_line_is_one_line():
    assert startup.error_line("epochs=0: expected\na positive number\n", _wording_flags(epochs=0)) == \
        "--epochs=0: expected a positive number"


@pytest.mark.unit
def test_absl_flags_are_not_the_commands_own():
    flag_values = flags.FlagValues()
    flags.DEFINE_integer("v", 0, "absl's verbosity, say", flag_values=flag_values, module_name="absl.logging")
    config_flags.define("integer", "epochs", 4, "", group="g", flag_values=flag_values)
    flag_values(["prog"])
    assert [flag.name for flag in config_flags.own_flags(flag_values)] == ["epochs"]
    assert startup.word_as_flags("v=0: bad", flag_values) == "v=0: bad"


# --------------------------------------------------------------------- the commands
def _command(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    path = os.path.join(BIN, name)
    assert os.path.isfile(path), f"{path}: no console script (pip install -e . installs it)"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.integration
def test_train_help_lists_its_own_flags_by_group():
    done = _command("ofa-train", "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for group in ("run:", "method:", "space:", "data:", "schedule:", "optimizer:", "transfer (TOFA):"):
        assert f"\n{group}\n" in out, group
    for flag in ("--method:", "--epsilon_start:", "--labelled_per_class:", "--model_dir:", "--image_size:",
                 "--[no]download:", "--cpu_devices:", "--max_worker_restarts:"):
        assert flag in out, flag
    assert out.index("\nmethod:\n") < out.index("--epsilon_start:") < out.index("\nspace:\n")
    assert "--resolutions" not in out and "--num_classes" not in out
    assert "--logtostderr" not in out and "--helpfull" in out  # absl's own flags stay under --helpfull


@pytest.mark.integration
def test_profile_prints_json_and_words_errors_as_flags():
    done = _command("ofa-profile", "--space=ofa_mbv3", "--arch=max", "--num_classes=10", "--image_size=32")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["resolution"] == 32 and abs(result["macs"] - 15.2e6) / 15.2e6 < 0.01
    for args, message in [(["--num_classes=-3"], "error: --num_classes=-3"),
                          (["--num_classes=x"], "error: flag --num_classes=x"),
                          (["--no_such_flag=1"], "error: Unknown command line flag 'no_such_flag'"),
                          (["extra"], "error: unexpected positional arguments ['extra']")]:
        done = _command("ofa-profile", *args)
        assert done.returncode == 2 and done.stderr.startswith(message), (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_tools_aliases_run_the_commands():
    done = subprocess.run([sys.executable, "-m", "tools.profile", "--space=compofa", "--num_classes=10"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["space"] == "compofa"


@pytest.mark.integration
def test_pip_install_gives_the_console_scripts(tmp_path):
    """`pip install .` (no dependencies: they are this venv's) of a copy of the sources: the
    commands are installed, `tools` / `flags` are not, and the installed commands run."""
    source, target = tmp_path / "src", tmp_path / "target"
    os.makedirs(source)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), source)
    shutil.copytree(os.path.join(ROOT, "ofa_tf"), source / "ofa_tf",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p for p in os.listdir(target) if not p.endswith(".dist-info")) == ["bin", "ofa_tf"]
    assert os.path.isfile(target / "ofa_tf" / "cli" / "startup.py")
    [dist_info] = [p for p in os.listdir(target) if p.endswith(".dist-info")]
    entry_points = (target / dist_info / "entry_points.txt").read_text()
    commands = ["ofa-train", "ofa-evaluate", "ofa-search", "ofa-train-predictor", "ofa-export",
                "ofa-benchmark-latency", "ofa-build-lut", "ofa-profile", "ofa-plot-pareto", "ofa-import-ofa",
                "ofa-export-ofa", "ofa-report", "ofa-finetune"]
    for command in commands:
        assert f"\n{command} = ofa_tf.cli." in entry_points, command
        assert os.path.isfile(target / "bin" / command), command
    # the installed copy runs outside the checkout (no tools/ or flags/ to lean on)
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, str(target / "bin" / "ofa-profile"), "--num_classes=10"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["space"] == "ofa_mbv3"
    done = subprocess.run([sys.executable, "-c", "import ofa_tf, sys; print(ofa_tf.__file__)"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.stdout.strip().startswith(str(target)), done.stdout
    done = subprocess.run([sys.executable, str(target / "bin" / "ofa-train"), "--help"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0 and "--epsilon_start:" in done.stdout, done.stderr[-2000:]
