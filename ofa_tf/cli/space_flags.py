"""Flags that pick a search space and a subnet in it: a run's (--model_dir) or one named
by the flags (ofa-profile, ofa-build-lut).

No TensorFlow here: `ofa-profile` answers in a fraction of a second. Reading a run
(--model_dir) imports the run's modules, TensorFlow with them.
"""

from __future__ import annotations

from absl import flags

from ofa_tf.cli import flag_checks, startup
from ofa_tf.cli.config_flags import FLAGS, define
from ofa_tf.errors import OfaError
from ofa_tf.spaces import SPACES, SearchSpace, get_space

SPACE, SUBNET = "space", "subnet"
SPACE_FLAGS = ("space", "width_mult", "num_classes")  # a run's own with --model_dir


def define_space_flags(flag_values: flags.FlagValues = FLAGS, image_size_help: str = "") -> None:
    """--model_dir, --space, --width_mult, --num_classes, --image_size (`image_size_help`
    says what the program does with the sizes)."""
    define("string", "model_dir", None, "Take the space and class count from this run directory (written by "
           "ofa-train or ofa-import-ofa) instead of --space, --width_mult and --num_classes.", group=SPACE,
           flag_values=flag_values, path="input")
    define("string", "space", "ofa_mbv3", f"Search space: one of {sorted(SPACES)}, or a space JSON file.",
           group=SPACE, flag_values=flag_values)
    define("float", "width_mult", 1.0, "Channel width multiplier of the space (OFA uses 1.0 and 1.2).",
           group=SPACE, flag_values=flag_values)
    define("integer", "num_classes", 1000, "Number of classifier outputs.", group=SPACE, flag_values=flag_values)
    define("list", "image_size", None, "Input sizes: the space's instead of its own (e.g. 32 for 28x28 datasets), "
           "or with --model_dir some of the run's (default: all of them). " + image_size_help,
           group=SPACE, flag_values=flag_values, item_type=int)


def define_arch_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--arch, --seed."""
    define("string", "arch", "max", "Subnet: max, min, random, a JSON object, or a JSON file path (a search "
           "result works).", group=SUBNET, flag_values=flag_values)
    define("integer", "seed", 0, "Seed for --arch=random.", group=SUBNET, flag_values=flag_values)


def check_space_flags(flag_values: flags.FlagValues = FLAGS) -> tuple[SearchSpace, int]:
    """The space flags checked; returns (space, class count) at the --image_size sizes: the
    run's with --model_dir (the space flags are then an error), else the flags' (the
    space, width and sizes checked by `get_space`)."""
    sizes = list(flag_values.image_size or [])
    if flag_values.model_dir:
        flag_checks.only_with(flag_values, SPACE_FLAGS, False, "no --model_dir (the run's space and classes are used)")
        saved = read_run(flag_values.model_dir)
        space = flag_checks.sizes_of(saved.space, "image_size", sizes) if sizes else saved.space
        return space, saved.num_classes
    flag_checks.positive("num_classes", flag_values.num_classes)
    try:
        return get_space(flag_values.space, flag_values.width_mult, sizes or None), flag_values.num_classes
    except OfaError as e:
        if str(e).startswith("resolutions="):  # the sizes' check (`SearchSpace.with_resolutions`)
            raise OfaError(f"--image_size={','.join(map(str, sizes))}: {str(e).partition(': ')[2]}") from None
        raise


def read_run(model_dir: str):
    """The run's saved settings (`RunDirectory.read`: its space, classes, ...); TensorFlow
    loads (silenced) with the run's modules."""
    startup.load_tensorflow()
    from ofa_tf.runs import RunDirectory

    return RunDirectory(model_dir).read()


def check_arch_flags(space: SearchSpace, flag_values: flags.FlagValues = FLAGS):
    """The subnet flags checked against `space`; returns the subnet (`space.parse_arch`),
    at the one --image_size size when one is given, else at the arch's own (max: the
    space's largest, min: its smallest, a file's: its own)."""
    flag_checks.seed("seed", flag_values.seed)
    flag_checks.only_with(flag_values, ["seed"], flag_values.arch.strip() == "random", "--arch=random")
    sizes = set(flag_values.image_size or [])
    resolution = sizes.pop() if len(sizes) == 1 else None
    return space.parse_arch(flag_values.arch, rng=flag_values.seed, resolution=resolution)
