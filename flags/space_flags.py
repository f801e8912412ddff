"""Flags that pick a search space and an arch in it."""

from __future__ import annotations

from absl import flags

from ofa_tf.spaces import SPACES


def define_space_flags() -> None:
    """--space, --width_mult, --resolutions, --resolution, --num_classes."""
    if "space" in flags.FLAGS:
        return
    flags.DEFINE_string("space", "ofa_mbv3", f"Search space: one of {sorted(SPACES)}.")
    flags.DEFINE_float("width_mult", 1.0, "Channel width multiplier of the space (OFA uses 1.0 and 1.2).")
    flags.DEFINE_list("resolutions", None, "Input sizes the supernet uses instead of the space's own "
                      "(e.g. 32 for 28x28 datasets).")
    flags.DEFINE_integer("resolution", None, "Input image size; default: the arch's own (max / min of the space).")
    flags.DEFINE_integer("num_classes", 1000, "Number of classifier outputs.")


def define_arch_flag(default: str = "max") -> None:
    """--arch: max, min, random, a JSON object or a JSON file (a search result works)."""
    if "arch" in flags.FLAGS:
        return
    flags.DEFINE_string("arch", default, "Subnet: max, min, random, a JSON object, or a JSON file path.")
    flags.DEFINE_integer("seed", 0, "Seed for --arch=random.")


def space_from_flags():
    """The `SearchSpace` the space flags describe."""
    from ofa_tf.errors import OfaError
    from ofa_tf.spaces import get_space
    resolutions = None
    if flags.FLAGS.resolutions:
        try:
            resolutions = [int(r) for r in flags.FLAGS.resolutions]
        except ValueError:
            raise OfaError(f"--resolutions={','.join(flags.FLAGS.resolutions)}: expected integers") from None
    return get_space(flags.FLAGS.space, flags.FLAGS.width_mult, resolutions)
