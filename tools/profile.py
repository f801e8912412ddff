"""Prints the MACs and parameter count of one subnet as a JSON object (no weights needed).

  python -m tools.profile --space=ofa_mbv3 --arch=max --resolution=224 --num_classes=10
"""

from __future__ import annotations

import json

from absl import flags

from flags.space_flags import define_arch_flag, define_space_flags, space_from_flags
from ofa_tf.profile import profile
from tools._runner import run

define_space_flags()
define_arch_flag()
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    space = space_from_flags()
    arch = space.parse_arch(FLAGS.arch, rng=FLAGS.seed, resolution=FLAGS.resolution)
    result = profile(space, arch, FLAGS.num_classes)
    print(json.dumps({"space": space.name, "width_mult": space.width_mult, **result, "arch": arch.to_dict()}))


if __name__ == "__main__":
    run(main)
