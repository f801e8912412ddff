"""ofa-profile: prints the MACs and parameter count of one subnet as a JSON object (no weights needed).

  ofa-profile --space=ofa_mbv3 --arch=max --image_size=224 --num_classes=10
  ofa-profile --model_dir=runs/demo --arch=min

With --model_dir the run's space, width, input sizes and class count are used (its
config.json is read; the checkpoint is not).
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first (no TensorFlow here: the answer takes a fraction of a second)

import json  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli.space_flags import (check_arch_flags, check_space_flags, define_arch_flags,  # noqa: E402
                                    define_space_flags)
from ofa_tf.spaces import profile  # noqa: E402

PROGRAM = "ofa-profile"
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define_space_flags(flag_values, "One size is the subnet's; otherwise the subnet is at its own size (max: the "
                       "largest, min: the smallest).")
    define_arch_flags(flag_values)


def check_flags():
    """Every flag checked before any work: the space (the run's with --model_dir, else
    `get_space`), the class count, the subnet in the space (`parse_arch`) and its seed.
    Returns (space, class count, arch)."""
    space, num_classes = check_space_flags()
    return space, num_classes, check_arch_flags(space)


def _main(argv: list[str]) -> None:
    space, num_classes, arch = check_flags()
    result = profile(space, arch, num_classes)
    print(json.dumps({"space": space.name, "width_mult": space.width_mult, **result, "arch": arch.to_dict()}))


def main() -> None:
    """The `ofa-profile` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__, tensorflow=False)


if __name__ == "__main__":
    main()
