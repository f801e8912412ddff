"""ofa-profile: prints the MACs and parameter count of one subnet as a JSON object (no weights needed).

  ofa-profile --space=ofa_mbv3 --arch=max --resolution=224 --num_classes=10
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first (no TensorFlow here: the answer takes a fraction of a second)

import json  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli.space_flags import (check_arch_flags, check_space_flags, define_arch_flags,  # noqa: E402
                                    define_space_flags)
from ofa_tf.profile import profile  # noqa: E402

PROGRAM = "ofa-profile"
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define_space_flags(flag_values)
    define_arch_flags(flag_values)


def check_flags():
    """Every flag checked before any work: the space (`get_space`), the class count, the
    subnet in the space (`parse_arch`) and its seed. Returns (space, arch)."""
    space = check_space_flags()
    return space, check_arch_flags(space)


def _main(argv: list[str]) -> None:
    space, arch = check_flags()
    result = profile(space, arch, FLAGS.num_classes)
    print(json.dumps({"space": space.name, "width_mult": space.width_mult, **result, "arch": arch.to_dict()}))


def main() -> None:
    """The `ofa-profile` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__, tensorflow=False)


if __name__ == "__main__":
    main()
