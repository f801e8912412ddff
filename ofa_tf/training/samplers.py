"""Which subnets a training step trains, besides (or instead of) the full model.

A sampler is pure Python and seeded by the global step, so every replica and worker
draws the same subnets at a step (OFA's rule) and a resumed run draws what the
uninterrupted one would have. It returns `(kind, arch)` pairs; the kind ("min",
"random", ...) labels the per-kind losses in logs.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

from ofa_tf.errors import OfaError
from ofa_tf.spaces import Arch, SearchSpace


def step_rng(seed: int, step: int) -> random.Random:
    """The random generator of one step: the same on every worker, for every resume."""
    return random.Random(seed * 1_000_003 + step)


class Sampler:
    """Base class: `sample(space, rng, resolution)` -> [(kind, arch), ...]."""

    #: how many subnets (besides the full model) a step trains.
    num_subnets: int = 0

    def kinds(self) -> list[str]:
        """The kind of each subnet slot, in order (fixed for a sampler)."""
        return []

    def sample(self, space: SearchSpace, rng: random.Random, resolution: int | None = None) -> list[tuple[str, Arch]]:
        return []

    def to_config(self) -> dict:
        return {"name": type(self).__name__, **dataclasses.asdict(self)}  # type: ignore[call-overload]


@dataclasses.dataclass
class FullOnlySampler(Sampler):
    """No subnets: only the full model trains (FM-Warmup, fOFA warmup, the `full` baseline)."""

    num_subnets: int = 0


@dataclasses.dataclass
class UniformSampler(Sampler):
    """`num_subnets` uniformly random subnets (OFA-style, within whatever space it is given)."""

    num_subnets: int = 1

    def kinds(self) -> list[str]:
        return ["random"] * self.num_subnets

    def sample(self, space, rng, resolution=None):
        return [("random", space.sample(rng, resolution)) for _ in range(self.num_subnets)]


@dataclasses.dataclass
class SandwichSampler(Sampler):
    """BigNAS's sandwich rule: the min subnet plus `num_subnets - 1` random ones (the max
    net is trained by the step itself)."""

    num_subnets: int = 3

    def kinds(self) -> list[str]:
        return ["min"] + ["random"] * (self.num_subnets - 1)

    def sample(self, space, rng, resolution=None):
        return [("min", space.min_arch(resolution))] + [
            ("random", space.sample(rng, resolution)) for _ in range(self.num_subnets - 1)]


@dataclasses.dataclass
class UpperAttentiveSampler(UniformSampler):
    """fOFA's upper-attentive sampling (fOFA paper §3.4): the full net plus n-1 random
    subnets, no forced min. The step always trains the full net, so this is uniform
    sampling of `num_subnets` = n - 1 subnets; the name records the method's rule."""

    num_subnets: int = 2


@dataclasses.dataclass
class RestrictedSampler(Sampler):
    """Uniform subnets from a restricted space: OFA progressive shrinking's phases
    (elastic kernel, then depth, then expand) and CompOFA's compound phases.

    Any of `kernels`, `depths`, `expands` left None keeps the stage's largest value
    (so the kernel phase trains all kernel sizes at full depth and expand)."""

    num_subnets: int = 1
    kernels: Sequence[int] | None = None
    depths: Sequence[int] | None = None
    expands: Sequence[float] | None = None

    def kinds(self) -> list[str]:
        return ["random"] * self.num_subnets

    def restrict(self, space: SearchSpace) -> SearchSpace:
        def pick(allowed, own):
            if allowed is None:
                return (max(own),)
            chosen = tuple(v for v in own if v in allowed)
            return chosen or (max(own),)

        stages = tuple(dataclasses.replace(
            stage, kernels=pick(self.kernels, stage.kernels), depths=pick(self.depths, stage.depths),
            expands=stage.expands if stage.expand_for_depth else pick(self.expands, stage.expands))
            for stage in space.stages)
        return dataclasses.replace(space, stages=stages)

    def sample(self, space, rng, resolution=None):
        restricted = self.restrict(space)
        return [("random", restricted.sample(rng, resolution)) for _ in range(self.num_subnets)]

    def to_config(self) -> dict:
        config = super().to_config()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


SAMPLERS = {cls.__name__: cls for cls in (FullOnlySampler, UniformSampler, SandwichSampler,
                                          UpperAttentiveSampler, RestrictedSampler)}


def sampler_from_config(config: dict) -> Sampler:
    config = dict(config)
    name = config.pop("name", None)
    if name not in SAMPLERS:
        raise OfaError(f"sampler={name!r}: expected one of {sorted(SAMPLERS)}")
    return SAMPLERS[name](**config)


def check_subnet_count(num_subnets: int) -> int:
    if isinstance(num_subnets, bool) or not isinstance(num_subnets, int) or num_subnets < 0:
        raise OfaError(f"num_subnets={num_subnets!r}: expected a non-negative integer")
    return num_subnets


__all__ = ["FullOnlySampler", "RestrictedSampler", "SAMPLERS", "Sampler", "SandwichSampler",
           "UniformSampler", "UpperAttentiveSampler", "check_subnet_count", "sampler_from_config", "step_rng"]
