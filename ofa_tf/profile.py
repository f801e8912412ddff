"""Weight-free cost of an arch: multiply-adds and parameters, from the layer plan alone.

The public entry of `ofa_tf.spaces.costs` (which says what is counted): it takes any arch
form and checks it, where the searchers' `ArchCostTable` takes valid archs only.
"""

from __future__ import annotations

from typing import Any

from ofa_tf.errors import OfaError
from ofa_tf.spaces import Arch, SearchSpace, get_space
from ofa_tf.spaces.costs import plan_cost
from ofa_tf.spaces.walk import plan


def profile(space: SearchSpace | str, arch: Arch | Any, num_classes: int,
            resolution: int | None = None) -> dict[str, Any]:
    """MACs and params of `arch` (any form `SearchSpace.parse_arch` takes).

    Returns:
      {"macs": int, "params": int, "resolution": int}.
    Raises:
      OfaError: unknown space, bad arch, resolution outside the space, num_classes <= 0.
    """
    space = get_space(space)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise OfaError(f"num_classes={num_classes!r}: expected a positive integer")
    arch = space.parse_arch(arch, resolution=resolution)
    macs, params = plan_cost(plan(space, arch), num_classes)
    return {"macs": int(macs), "params": int(params), "resolution": arch.resolution}
