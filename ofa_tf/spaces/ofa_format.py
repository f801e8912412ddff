"""OFA's subnet dict `{"ks": [...], "e": [...], "d": [...], "r": [224]}` and our `Arch`.

OFA ("Once-for-All", arXiv:1908.09791, its public code) names a subnet by a kernel size and
an expand ratio for every block slot of its elastic stages (`ks`, `e`: max depth entries per
stage, the slots of skipped blocks included), a depth per elastic stage (`d`) and the input
size (`r`). Its first block, fixed, is not in the dict: our spaces have it as stage 0 with
one choice of everything, and such leading fixed stages are left out the same way.
"""

from __future__ import annotations

from typing import Any, Mapping

from ofa_tf.errors import OfaError
from ofa_tf.spaces.arch import Arch
from ofa_tf.values import shown

OFA_KEYS = ("ks", "e", "d", "r")


def is_ofa_arch(data: Any) -> bool:
    """Whether `data` is in OFA's format (a mapping with `ks`, `e`, `d` and nothing of ours)."""
    return isinstance(data, Mapping) and {"ks", "e", "d"} <= set(data) and set(data) <= set(OFA_KEYS)


def elastic_stages(space) -> list[int]:
    """Indices of the stages OFA's dict lists: all but the leading ones with a single
    choice of depth, kernel and expand ratio (OFA's fixed first block)."""
    stages = list(range(space.num_stages))
    while stages and all(len(getattr(space.stages[stages[0]], f)) == 1 for f in ("depths", "kernels", "expands")):
        stages.pop(0)
    return stages


def arch_from_ofa(space, data: Mapping[str, Any], resolution: int | None = None) -> Arch:
    """The `Arch` (unchecked: `SearchSpace.validate` checks it) of OFA's dict `data`.

    `r` may hold one size or be absent (then `resolution`, else the space's largest)."""
    stages = elastic_stages(space)
    ks, es, ds = (_as_list(data, key) for key in ("ks", "e", "d"))
    slots = sum(space.stages[s].max_depth for s in stages)
    if len(ds) != len(stages):
        raise OfaError(f"arch.d has {len(ds)} entries; space {space.name!r} has {len(stages)} elastic stages")
    for key, values in (("ks", ks), ("e", es)):
        if len(values) != slots:
            raise OfaError(f"arch.{key} has {len(values)} entries; space {space.name!r} has {slots} block slots")
    sizes = _as_list(data, "r") if "r" in data else [resolution or max(space.resolutions)]
    if len(sizes) != 1:
        raise OfaError(f"arch.r={shown(sizes)}: expected one input size")
    depths, kernels, expands = [], [], []
    start = 0
    for s in range(space.num_stages):
        stage = space.stages[s]
        if s not in stages:
            depths.append(stage.depths[0])
            kernels.append((stage.kernels[0],) * stage.depths[0])
            expands.append((stage.expands[0],) * stage.depths[0])
            continue
        d = ds[stages.index(s)]
        if not isinstance(d, int) or isinstance(d, bool) or d < 1 or (d > stage.max_depth and stage.max_depth > 1):
            raise OfaError(f"arch.d[{stages.index(s)}]={shown(d)}: expected one of {list(stage.depths)}")
        d = min(d, stage.max_depth)  # OFA keeps a depth for one-block stages too, and clips it
        kernels.append(tuple(ks[start:start + d]))
        expands.append(tuple(es[start:start + d]))
        depths.append(d)
        start += stage.max_depth
    return Arch.from_dict({"resolution": sizes[0], "depths": depths, "kernels": kernels, "expands": expands})


def arch_to_ofa(space, arch: Arch) -> dict[str, list]:
    """OFA's dict of a (validated) arch; a skipped block's slot repeats the stage's last
    active block's choices (OFA ignores them)."""
    ks, es, ds = [], [], []
    for s in elastic_stages(space):
        d = arch.depths[s]
        pad = space.stages[s].max_depth - d
        ks += list(arch.kernels[s]) + [arch.kernels[s][-1]] * pad
        es += [_number(e) for e in arch.expands[s]] + [_number(arch.expands[s][-1])] * pad
        ds.append(d)
    return {"ks": ks, "e": es, "d": ds, "r": [arch.resolution]}


def _as_list(data: Mapping[str, Any], key: str) -> list:
    value = data[key]
    if not isinstance(value, (list, tuple)):
        raise OfaError(f"arch.{key}={shown(value)}: expected a list")
    return list(value)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
