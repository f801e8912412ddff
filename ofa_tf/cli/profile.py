"""ofa-profile: prints the MACs and parameter count of one subnet as a JSON object (no weights needed).

  ofa-profile --space=ofa_mbv3 --arch=max --resolution=224 --num_classes=10
"""

from __future__ import annotations

from ofa_tf.cli import startup  # first (no TensorFlow here: the answer takes a fraction of a second)

import json  # noqa: E402

from absl import flags  # noqa: E402

from ofa_tf.cli.space_flags import define_arch_flags, define_space_flags, space_from_flags  # noqa: E402
from ofa_tf.profile import profile  # noqa: E402

PROGRAM = "ofa-profile"
FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    define_space_flags(flag_values)
    define_arch_flags(flag_values)


def _main(argv: list[str]) -> None:
    space = space_from_flags()
    arch = space.parse_arch(FLAGS.arch, rng=FLAGS.seed, resolution=FLAGS.resolution)
    result = profile(space, arch, FLAGS.num_classes)
    print(json.dumps({"space": space.name, "width_mult": space.width_mult, **result, "arch": arch.to_dict()}))


def main() -> None:
    """The `ofa-profile` console script."""
    define_flags()
    startup.run(_main, program=PROGRAM, doc=__doc__, tensorflow=False)


if __name__ == "__main__":
    main()
