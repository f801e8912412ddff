"""Flags that pick a search space and a subnet in it without a run (ofa-profile, ofa-build-lut).

No TensorFlow here: `ofa-profile` answers in a fraction of a second.
"""

from __future__ import annotations

from absl import flags

from ofa_tf.cli import flag_checks
from ofa_tf.cli.config_flags import FLAGS, define
from ofa_tf.spaces import SPACES, SearchSpace, get_space

SPACE, SUBNET = "space", "subnet"
SPACE_FLAGS = ("space", "width_mult", "resolutions", "num_classes")


def define_space_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--space, --width_mult, --resolutions, --num_classes."""
    define("string", "space", "ofa_mbv3", f"Search space: one of {sorted(SPACES)}, or a space JSON file.",
           group=SPACE, flag_values=flag_values)
    define("float", "width_mult", 1.0, "Channel width multiplier of the space (OFA uses 1.0 and 1.2).",
           group=SPACE, flag_values=flag_values)
    define("list", "resolutions", None, "Input sizes of the space instead of its own (e.g. 32 for 28x28 datasets).",
           group=SPACE, flag_values=flag_values, item_type=int)
    define("integer", "num_classes", 1000, "Number of classifier outputs.", group=SPACE, flag_values=flag_values)


def define_arch_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """--arch, --resolution, --seed."""
    define("string", "arch", "max", "Subnet: max, min, random, a JSON object, or a JSON file path (a search "
           "result works).", group=SUBNET, flag_values=flag_values)
    define("integer", "resolution", None, "Input image size; default: the arch's own (max / min of the space).",
           group=SUBNET, flag_values=flag_values)
    define("integer", "seed", 0, "Seed for --arch=random.", group=SUBNET, flag_values=flag_values)


def check_space_flags(flag_values: flags.FlagValues = FLAGS) -> SearchSpace:
    """The space flags checked (the space, width and sizes by `get_space`); returns the space."""
    flag_checks.positive("num_classes", flag_values.num_classes)
    return space_from_flags(flag_values)


def check_arch_flags(space: SearchSpace, flag_values: flags.FlagValues = FLAGS):
    """The subnet flags checked against `space`; returns the subnet (`space.parse_arch`)."""
    flag_checks.seed("seed", flag_values.seed)
    flag_checks.only_with(flag_values, ["seed"], flag_values.arch.strip() == "random", "--arch=random")
    return space.parse_arch(flag_values.arch, rng=flag_values.seed, resolution=flag_values.resolution)


def space_from_flags(flag_values: flags.FlagValues = FLAGS) -> SearchSpace:
    """The `SearchSpace` the space flags describe."""
    return get_space(flag_values.space, flag_values.width_mult, flag_values.resolutions or None)
