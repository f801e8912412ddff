"""Search spaces as data: a table of stages and their choices, plus the arch vocabulary.

A `SearchSpace` is a frozen description (stem, stages, head, resolutions) that every
other piece reads: the supernet builds its layers from it, samplers and searchers draw
archs from it, the profiler walks it. Spaces differ only in their tables
(`definitions.py`); there is no code per space.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random as _random
from typing import Any, Iterable, Iterator, Mapping, Sequence


from ofa_tf.errors import OfaError
from ofa_tf.io import isfile
from ofa_tf.spaces.arch import Arch, parse_json, read_arch_json
from ofa_tf.spaces.divisible import expanded_channels, make_divisible, squeeze_channels
from ofa_tf.spaces.ofa_format import arch_from_ofa, arch_to_ofa, is_ofa_arch

ACTIVATIONS = ("relu", "relu6", "hard_swish")
# How convolutions pad (`SearchSpace.padding`).
PADDINGS = ("same", "symmetric")
# How many archs `enumerate` will list before it refuses (the space is "not finite").
MAX_ENUMERATE = 1_000_000


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage: a run of inverted-residual blocks sharing width, stride and activation.

    Attributes:
      widths: output channel choices (one value = fixed width).
      depths: how many blocks may run; the first block always runs and takes the stride.
      kernels: depthwise kernel size choices.
      expands: expand ratio choices (1 means the block has no expansion convolution).
      stride: stride of the first block.
      activation: one of `ACTIVATIONS`.
      use_se: whether blocks have squeeze-excite.
      kernel_per_stage: all blocks of a stage share one kernel size (TOFA / FBNetV3).
      expand_per_stage: all blocks of a stage share one expand ratio (TOFA / FBNetV3).
      expand_for_depth: CompOFA's coupling, depth -> the expand ratio all blocks use.
    """

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[float, ...]
    stride: int
    activation: str
    use_se: bool
    kernel_per_stage: bool = False
    expand_per_stage: bool = False
    expand_for_depth: tuple[tuple[int, float], ...] = ()

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def min_depth(self) -> int:
        return min(self.depths)

    def coupled_expand(self, depth: int) -> float | None:
        return dict(self.expand_for_depth).get(depth)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A MobileNet-style once-for-all space: stem, elastic stages, head, resolutions.

    Attributes:
      name: registry name (`ofa_mbv3`, `compofa`, `proxyless`, `tofa`).
      stem_widths: channel choices of the 3x3 stride-2 stem convolution.
      stem_activation: activation after the stem.
      stages: the stage table.
      final_expand_ratio: a 1x1 conv + BN + activation before pooling with
        `ratio * last stage width` channels (None: no such layer).
      head_widths: channel choices of the 1x1 conv (bias, no BN) after pooling (empty: none).
      head_activation: activation of the two head convolutions.
      resolutions: allowed input sizes.
      width_mult: the multiplier the widths were made with (kept for configs/reports).
      padding: how convolutions pad: `same` (TensorFlow's "same": at stride 2 on an even
        input, the extra zero row/column goes after the image) or `symmetric` (PyTorch's
        k//2 zeros on each side, which OFA's published supernets were trained with). Both
        give the same output sizes; only the alignment of stride-2 windows differs.
      head_bias: whether the post-pool 1x1 conv has a bias (OFA's feature-mix layer has none).
    """

    name: str
    stem_widths: tuple[int, ...]
    stem_activation: str
    stages: tuple[StageSpec, ...]
    final_expand_ratio: float | None
    head_widths: tuple[int, ...]
    head_activation: str
    resolutions: tuple[int, ...]
    width_mult: float = 1.0
    padding: str = "same"
    head_bias: bool = True

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise OfaError(f"space.padding={self.padding!r}: expected one of {list(PADDINGS)}")

    # ----------------------------------------------------------------- structure
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def with_resolutions(self, resolutions: Sequence[int]) -> "SearchSpace":
        """The same space trained at other input sizes (e.g. 32 for small datasets)."""
        resolutions = tuple(sorted({int(r) for r in resolutions}))
        if not resolutions or any(r < 8 for r in resolutions):
            raise OfaError(f"resolutions={list(resolutions)}: expected one or more sizes >= 8")
        return dataclasses.replace(self, resolutions=resolutions)

    def final_expand_width(self, last_width: int) -> int:
        return make_divisible(last_width * self.final_expand_ratio) if self.final_expand_ratio else 0

    def block_residual(self, stage_index: int, block_index: int) -> bool:
        """Identity skip: stride 1 and in == out for *every* arch (static decision)."""
        stage = self.stages[stage_index]
        if block_index > 0:
            return True
        prev_widths = self.stem_widths if stage_index == 0 else self.stages[stage_index - 1].widths
        return stage.stride == 1 and len(stage.widths) == 1 and tuple(prev_widths) == tuple(stage.widths)

    # ---------------------------------------------------------------- canonical archs
    def max_arch(self, resolution: int | None = None) -> Arch:
        return self._extreme(max, resolution)

    def min_arch(self, resolution: int | None = None) -> Arch:
        return self._extreme(min, resolution)

    def _extreme(self, pick, resolution: int | None) -> Arch:
        depths = tuple(pick(s.depths) for s in self.stages)
        return self._fix(Arch(
            resolution=resolution if resolution is not None else pick(self.resolutions),
            stem_width=pick(self.stem_widths),
            widths=tuple(pick(s.widths) for s in self.stages),
            depths=depths,
            kernels=tuple((pick(s.kernels),) * d for s, d in zip(self.stages, depths)),
            expands=tuple((pick(s.expands),) * d for s, d in zip(self.stages, depths)),
            head_width=pick(self.head_widths) if self.head_widths else 0,
        ))

    def sample(self, rng: _random.Random | int | None = None, resolution: int | None = None) -> Arch:
        """A uniformly random arch (each choice independently). Seeded when `rng` is an int."""
        rng = _as_rng(rng)
        depths = tuple(rng.choice(s.depths) for s in self.stages)
        return self._fix(Arch(
            resolution=resolution if resolution is not None else rng.choice(self.resolutions),
            stem_width=rng.choice(self.stem_widths),
            widths=tuple(rng.choice(s.widths) for s in self.stages),
            depths=depths,
            kernels=tuple(tuple(rng.choice(s.kernels) for _ in range(d)) for s, d in zip(self.stages, depths)),
            expands=tuple(tuple(rng.choice(s.expands) for _ in range(d)) for s, d in zip(self.stages, depths)),
            head_width=rng.choice(self.head_widths) if self.head_widths else 0,
        ))

    def sample_distinct(self, count: int, rng: _random.Random | int | None = None, resolution: int | None = None,
                        exclude: Iterable[Arch] = ()) -> list[Arch]:
        """`count` distinct random archs, none in `exclude`, in the order drawn (so a smaller
        `count` with the same seed gives a prefix). Fewer only when the space runs out: it
        stops after 20 draws per arch asked for."""
        rng, excluded, archs = _as_rng(rng), set(exclude), {}
        for _ in range(count * 20):
            if len(archs) >= count:
                break
            arch = self.sample(rng, resolution)
            if arch not in excluded:
                archs.setdefault(arch, None)
        return list(archs)

    def _fix(self, arch: Arch) -> Arch:
        """Applies the space's sharing / coupling rules (first block decides for a stage)."""
        kernels, expands = [], []
        for stage, d, ks, es in zip(self.stages, arch.depths, arch.kernels, arch.expands):
            ks, es = list(ks), list(es)
            if stage.kernel_per_stage:
                ks = [ks[0]] * d
            coupled = stage.coupled_expand(d)
            if coupled is not None:
                es = [coupled] * d
            elif stage.expand_per_stage:
                es = [es[0]] * d
            kernels.append(tuple(ks))
            expands.append(tuple(es))
        return dataclasses.replace(arch, kernels=tuple(kernels), expands=tuple(expands))

    # ---------------------------------------------------------------- evolution vocabulary
    def mutate(self, arch: Arch, rng: _random.Random | int | None = None, prob: float = 0.1,
               depth_prob: float = 0.1, resolution_prob: float = 0.5) -> Arch:
        """OFA's mutation: resample each block choice with `prob`, each depth / width with
        `depth_prob`, the resolution with `resolution_prob`."""
        rng = _as_rng(rng)
        arch = self.validate(arch)
        fresh = self.sample(rng)
        resolution = fresh.resolution if rng.random() < resolution_prob else arch.resolution
        stem = fresh.stem_width if rng.random() < depth_prob else arch.stem_width
        head = fresh.head_width if rng.random() < depth_prob else arch.head_width
        widths, depths, kernels, expands = [], [], [], []
        for s, stage in enumerate(self.stages):
            widths.append(rng.choice(stage.widths) if rng.random() < depth_prob else arch.widths[s])
            d = rng.choice(stage.depths) if rng.random() < depth_prob else arch.depths[s]
            depths.append(d)
            ks, es = [], []
            for b in range(d):
                old_k = arch.kernels[s][b] if b < arch.depths[s] else rng.choice(stage.kernels)
                old_e = arch.expands[s][b] if b < arch.depths[s] else rng.choice(stage.expands)
                ks.append(rng.choice(stage.kernels) if rng.random() < prob else old_k)
                es.append(rng.choice(stage.expands) if rng.random() < prob else old_e)
            kernels.append(tuple(ks))
            expands.append(tuple(es))
        return self._fix(Arch(resolution, stem, tuple(widths), tuple(depths), tuple(kernels),
                              tuple(expands), head))

    def crossover(self, a: Arch, b: Arch, rng: _random.Random | int | None = None) -> Arch:
        """Each choice from either parent with equal probability (OFA's crossover)."""
        rng = _as_rng(rng)
        a, b = self.validate(a), self.validate(b)
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        depths = tuple(pick(x, y) for x, y in zip(a.depths, b.depths))
        kernels, expands = [], []
        for s, d in enumerate(depths):
            ks, es = [], []
            for i in range(d):
                sources = [p for p in (a, b) if i < p.depths[s]]
                ks.append(rng.choice(sources).kernels[s][i])
                es.append(rng.choice(sources).expands[s][i])
            kernels.append(tuple(ks))
            expands.append(tuple(es))
        return self._fix(Arch(
            resolution=pick(a.resolution, b.resolution), stem_width=pick(a.stem_width, b.stem_width),
            widths=tuple(pick(x, y) for x, y in zip(a.widths, b.widths)), depths=depths,
            kernels=tuple(kernels), expands=tuple(expands), head_width=pick(a.head_width, b.head_width)))

    # ---------------------------------------------------------------- finite spaces
    def size(self, per_resolution: bool = True) -> int:
        """Number of distinct archs (at one resolution, or over all of them)."""
        total = len(self.stem_widths) * max(1, len(self.head_widths))
        for stage in self.stages:
            per_depth = 0
            for d in stage.depths:
                kernel_ways = len(stage.kernels) if stage.kernel_per_stage else len(stage.kernels) ** d
                if stage.coupled_expand(d) is not None:
                    expand_ways = 1
                elif stage.expand_per_stage:
                    expand_ways = len(stage.expands)
                else:
                    expand_ways = len(stage.expands) ** d
                per_depth += kernel_ways * expand_ways
            total *= per_depth * len(stage.widths)
        return total if per_resolution else total * len(self.resolutions)

    def enumerate(self, resolutions: Sequence[int] | None = None) -> Iterator[Arch]:
        """Every arch of a finite space (e.g. CompOFA's 243 per resolution), in a fixed order.

        Raises:
          OfaError: when the space holds more than `MAX_ENUMERATE` archs per resolution.
        """
        n = self.size()
        if n > MAX_ENUMERATE:
            raise OfaError(f"space {self.name!r} has {n:.3g} archs per resolution; "
                           f"enumerate needs at most {MAX_ENUMERATE} (sample or search instead)")
        resolutions = self.resolutions if resolutions is None else tuple(resolutions)
        per_stage = [list(self._stage_options(stage)) for stage in self.stages]
        heads = self.head_widths or (0,)
        for res in resolutions:
            self._check_resolution(res)
            for stem in self.stem_widths:
                for head in heads:
                    for combo in itertools.product(*per_stage):
                        yield Arch(res, stem, tuple(c[0] for c in combo), tuple(c[1] for c in combo),
                                   tuple(c[2] for c in combo), tuple(c[3] for c in combo), head)

    @staticmethod
    def _stage_options(stage: StageSpec) -> Iterator[tuple]:
        for w in stage.widths:
            for d in stage.depths:
                if stage.kernel_per_stage:
                    kernel_sets = [(k,) * d for k in stage.kernels]
                else:
                    kernel_sets = list(itertools.product(stage.kernels, repeat=d))
                coupled = stage.coupled_expand(d)
                if coupled is not None:
                    expand_sets = [(coupled,) * d]
                elif stage.expand_per_stage:
                    expand_sets = [(e,) * d for e in stage.expands]
                else:
                    expand_sets = list(itertools.product(stage.expands, repeat=d))
                for ks in kernel_sets:
                    for es in expand_sets:
                        yield w, d, ks, es

    # ---------------------------------------------------------------- validation / parsing
    def validate(self, arch: Arch | Mapping[str, Any]) -> Arch:
        """Returns `arch` as a checked `Arch` of this space, filling fixed-choice fields.

        Raises:
          OfaError: naming the first field whose value the space does not allow.

        `arch` may also be OFA's subnet dict `{"ks", "e", "d", "r"}` (`ofa_format`).
        """
        if is_ofa_arch(arch):
            arch = arch_from_ofa(self, arch)
        if not isinstance(arch, Arch):
            arch = Arch.from_dict(arch)
        stem = arch.stem_width or _only(self.stem_widths, "stem_width")
        head = arch.head_width or (_only(self.head_widths, "head_width") if self.head_widths else 0)
        widths = arch.widths or tuple(_only(s.widths, f"widths[{i}]") for i, s in enumerate(self.stages))
        arch = dataclasses.replace(arch, stem_width=stem, head_width=head, widths=widths)

        self._check_resolution(arch.resolution)
        _check_choice("stem_width", arch.stem_width, self.stem_widths)
        if self.head_widths:
            _check_choice("head_width", arch.head_width, self.head_widths)
        elif arch.head_width:
            raise OfaError(f"arch.head_width={arch.head_width}: space {self.name!r} has no head convolution")
        for field in ("widths", "depths", "kernels", "expands"):
            if len(getattr(arch, field)) != self.num_stages:
                raise OfaError(f"arch.{field} has {len(getattr(arch, field))} entries; "
                               f"space {self.name!r} has {self.num_stages} stages")
        for s, stage in enumerate(self.stages):
            _check_choice(f"widths[{s}]", arch.widths[s], stage.widths)
            d = arch.depths[s]
            _check_choice(f"depths[{s}]", d, stage.depths)
            for field in ("kernels", "expands"):
                if len(getattr(arch, field)[s]) != d:
                    raise OfaError(f"arch.{field}[{s}] has {len(getattr(arch, field)[s])} entries; "
                                   f"expected one per active block (depths[{s}]={d})")
            for b in range(d):
                _check_choice(f"kernels[{s}][{b}]", arch.kernels[s][b], stage.kernels)
                _check_choice(f"expands[{s}][{b}]", arch.expands[s][b], stage.expands)
            if stage.kernel_per_stage and len(set(arch.kernels[s])) > 1:
                raise OfaError(f"arch.kernels[{s}]={list(arch.kernels[s])}: space {self.name!r} "
                               "uses one kernel size per stage")
            coupled = stage.coupled_expand(d)
            if coupled is not None and any(e != coupled for e in arch.expands[s]):
                raise OfaError(f"arch.expands[{s}]={list(arch.expands[s])}: space {self.name!r} "
                               f"couples depth {d} with expand ratio {coupled:g}")
            if stage.expand_per_stage and len(set(arch.expands[s])) > 1:
                raise OfaError(f"arch.expands[{s}]={list(arch.expands[s])}: space {self.name!r} "
                               "uses one expand ratio per stage")
        return arch

    def _check_resolution(self, resolution: int) -> None:
        if resolution not in self.resolutions:
            raise OfaError(f"resolution={resolution}: space {self.name!r} allows "
                           f"{_describe(self.resolutions)}")

    def parse_arch(self, spec: Any, rng: _random.Random | int | None = None,
                   resolution: int | None = None) -> Arch:
        """Any user form of an arch: `max`, `min`, `random`, an `Arch`, a dict, a JSON
        string or the path of a JSON file (a search result with an `arch` key works too)."""
        if isinstance(spec, Arch):
            return self.validate(spec)
        source = None  # a file's errors name it (`arch file 'F': arch.kernels[1][0]=...`)
        if isinstance(spec, str):
            word = spec.strip()
            if word in ("max", "min", "random"):
                if resolution is not None:
                    self._check_resolution(resolution)
                return {"max": lambda: self.max_arch(resolution), "min": lambda: self.min_arch(resolution),
                        "random": lambda: self.sample(rng, resolution)}[word]()
            if word.startswith(("{", "[")):
                data = parse_json(word, "arch")  # any failure: one line (arch.py)
                spec = data if is_ofa_arch(data) else Arch.from_dict(data)
            elif isfile(word):  # a local path or a URL (gs://...: ofa_tf.io)
                source, spec = f"arch file {word!r}", read_arch_json(word)
            else:
                raise OfaError(f"arch={spec!r}: expected max, min, random, a JSON object or a JSON file path")
        try:
            arch = self.validate(spec)
            if resolution is not None and arch.resolution != resolution:
                arch = self.validate(dataclasses.replace(arch, resolution=resolution))
        except OfaError as e:
            if source is None:
                raise
            raise OfaError(f"{source}: {e}") from None
        return arch

    def to_ofa_arch(self, arch: Arch) -> dict[str, list]:
        """OFA's subnet dict `{"ks", "e", "d", "r"}` of `arch` (`ofa_format.arch_to_ofa`)."""
        return arch_to_ofa(self, self.validate(arch))

    # ---------------------------------------------------------------- config
    def to_config(self) -> dict[str, Any]:
        config = dataclasses.asdict(self)
        config["stages"] = [dataclasses.asdict(s) for s in self.stages]
        return json.loads(json.dumps(config))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SearchSpace":
        config = dict(config)
        stages = []
        for s in config.pop("stages"):
            s = dict(s)
            s["expand_for_depth"] = tuple(tuple(p) for p in s.get("expand_for_depth", ()))
            stages.append(StageSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}))
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        return cls(stages=tuple(stages), **fields)


def _as_rng(rng: _random.Random | int | None) -> _random.Random:
    return rng if isinstance(rng, _random.Random) else _random.Random(rng)


def _only(choices: Sequence, field: str):
    if len(choices) != 1:
        raise OfaError(f"arch.{field} is missing; expected one of {list(choices)}")
    return choices[0]


def _check_choice(field: str, value, choices: Sequence) -> None:
    if not any(math.isclose(value, c) for c in choices):
        raise OfaError(f"arch.{field}={value!r}: expected one of {list(choices)}")


def _describe(values: Sequence[int]) -> str:
    values = list(values)
    if len(values) > 6:
        step = values[1] - values[0]
        if all(b - a == step for a, b in zip(values, values[1:])):
            return f"{values[0]}..{values[-1]} in steps of {step}"
    return str(values)


__all__ = ["ACTIVATIONS", "SearchSpace", "StageSpec", "expanded_channels", "squeeze_channels"]
