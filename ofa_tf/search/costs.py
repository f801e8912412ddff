"""Cost models and budget constraints for subnet search (issue: "one interface, any cost").

A search asks "does this arch fit the budget?" tens of thousands of times (OFA's evolution:
100 x 500 children, each drawn by rejection sampling), so a cost model must answer in
microseconds. `ofa_tf.spaces.profile` validates and walks the whole arch each call, so
`ArchCostTable` gives the same MACs / params from the same `ofa_tf.spaces.costs.block_cost`,
memoised by the few values a block depends on (the arguments of `block_plan`: stage, slot,
input side, in/out width, kernel, expand); `tests/test_search_costs.py` checks it equals
`profile()` on every registered space.

Every cost model is a callable `arch -> float` with a `name` (the key it fills in a result)
and a `unit`; latency comes from any object with `predict_ms(arch)` (the deployment
work's `LatencyTable`), so a constraint can use any of them, and a target several at once.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from ofa_tf.errors import OfaError
from ofa_tf.spaces import Arch, SearchSpace
from ofa_tf.spaces.costs import Cost, block_cost, head_cost, stem_cost
from ofa_tf.spaces.arch_plan import STEM_STRIDE, block_plan, conv_out_size


@runtime_checkable
class LatencyPredictor(Protocol):
    """What a latency cost model needs: the deployment work's `LatencyTable` fits."""

    def predict_ms(self, arch: Arch) -> float: ...


class ArchCostTable:
    """MACs and params of archs of one space, exactly as `ofa_tf.spaces.profile` counts
    them: each block's `block_cost` is memoised by the values it depends on.

    Archs are assumed valid for the space (searchers only make valid ones); results are
    cached per arch as well, since evolution revisits archs.
    """

    def __init__(self, space: SearchSpace, num_classes: int):
        self.space = space
        self.num_classes = int(num_classes)
        # block_plan arguments -> (block cost, output side); (input side, channels, head width) -> head cost
        self._blocks: dict[tuple, tuple[Cost, int]] = {}
        self._heads: dict[tuple[int, int, int], Cost] = {}
        self._arch: dict[Arch, tuple[int, int]] = {}

    def __call__(self, arch: Arch) -> tuple[int, int]:
        """(macs, params) of `arch`."""
        cached = self._arch.get(arch)
        if cached is None:
            cached = self._arch[arch] = self._compute(arch)
        return cached

    def macs(self, arch: Arch) -> int:
        return self(arch)[0]

    def params(self, arch: Arch) -> int:
        return self(arch)[1]

    def _compute(self, arch: Arch) -> tuple[int, int]:
        size = conv_out_size(arch.resolution, STEM_STRIDE)
        macs, params = stem_cost(size, arch.stem_width)
        in_ch = arch.stem_width
        for s, depth in enumerate(arch.depths):
            for b in range(depth):
                key = (s, b, size, in_ch, arch.widths[s], arch.kernels[s][b], arch.expands[s][b])
                entry = self._blocks.get(key)
                if entry is None:
                    block = block_plan(self.space, *key)
                    entry = self._blocks[key] = (block_cost(block), block.out_size)
                (block_macs, block_params), size = entry
                macs += block_macs
                params += block_params
                in_ch = arch.widths[s]
        key = (size, in_ch, arch.head_width)
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = head_cost(size, in_ch, self.space.final_expand_width(in_ch), arch.head_width,
                                                self.num_classes, self.space.head_bias)
        return int(macs + head[0]), int(params + head[1])


@dataclasses.dataclass
class _TableCost:
    """One column of an `ArchCostTable` as a cost model."""

    table: ArchCostTable
    name: str
    unit: str
    column: ClassVar[int]

    def __call__(self, arch: Arch) -> float:
        return float(self.table(arch)[self.column])


@dataclasses.dataclass
class MacsCost(_TableCost):
    """Multiply-adds ("FLOPs" in the papers)."""

    name: str = "macs"
    unit: str = "MACs"
    column: ClassVar[int] = 0


@dataclasses.dataclass
class ParamsCost(_TableCost):
    """Trainable parameters of the static subnet."""

    name: str = "params"
    unit: str = "params"
    column: ClassVar[int] = 1


class LatencyCost:
    """Latency in ms from a look-up table (any object with `predict_ms(arch)`), cached per arch."""

    name = "latency_ms"
    unit = "ms"

    def __init__(self, table: LatencyPredictor):
        if not callable(getattr(table, "predict_ms", None)):
            raise OfaError(f"latency table {type(table).__name__}: has no predict_ms(arch) method")
        self.table = table
        self._cache: dict[Arch, float] = {}

    def __call__(self, arch: Arch) -> float:
        value = self._cache.get(arch)
        if value is None:
            value = self._cache[arch] = float(self.table.predict_ms(arch))
        return value


# ------------------------------------------------------------------------------ budgets
_SUFFIXES = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "b": 1e9, "B": 1e9}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGbB]?)\s*$")

# Constraint names users may give, and the cost model each one uses.
CONSTRAINT_NAMES: dict[str, str] = {"flops": "macs", "macs": "macs", "params": "params",
                                    "latency_ms": "latency_ms", "latency": "latency_ms"}


def parse_budget(name: str, text: str | float) -> float:
    """`150M`, `1.5e8`, `2.5k`, `20` -> a positive float.

    Raises:
      OfaError: `--flops=abc: expected a number like 150M` (one line).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _NUMBER.match(str(text))
        if not match:
            example = "20" if CONSTRAINT_NAMES.get(name) == "latency_ms" else "150M"
            raise OfaError(f"{name}={text}: expected a number like {example}")
        value = float(match.group(1)) * _SUFFIXES[match.group(2)]
    if not value > 0 or math.isinf(value):
        raise OfaError(f"{name}={text}: expected a positive number")
    return value


def format_cost(name: str, value: float | None) -> str:
    """Human form of a cost: 150.3M MACs, 2.14M params, 12.5 ms."""
    if value is None:
        return "n/a"
    if CONSTRAINT_NAMES.get(name, name) == "latency_ms":
        return f"{value:.3g} ms"
    unit = "MACs" if CONSTRAINT_NAMES.get(name, name) == "macs" else "params"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.4g}{suffix} {unit}"
    return f"{value:g} {unit}"


@dataclasses.dataclass(frozen=True)
class Constraint:
    """cost(arch) <= budget. `label` is how the user named it (flops, macs, ...)."""

    cost: Callable[[Arch], float]
    budget: float
    label: str

    @property
    def name(self) -> str:
        return getattr(self.cost, "name", self.label)

    def satisfied(self, arch: Arch) -> bool:
        return self.cost(arch) <= self.budget

    def describe(self) -> str:
        return f"{self.label}<={format_cost(self.name, self.budget)}"


class CostModels:
    """The cost models available for one space and run: MACs, params, and latency when a
    table is given. Builds constraints by the names users type."""

    def __init__(self, space: SearchSpace, num_classes: int, latency_table: LatencyPredictor | None = None):
        self.space = space
        self.table = ArchCostTable(space, num_classes)
        self.models: dict[str, Callable[[Arch], float]] = {"macs": MacsCost(self.table),
                                                           "params": ParamsCost(self.table)}
        if latency_table is not None:
            self.models["latency_ms"] = LatencyCost(latency_table)

    def get(self, name: str) -> Callable[[Arch], float]:
        """The cost model for a user's constraint name (flops/macs, params, latency_ms)."""
        if name not in CONSTRAINT_NAMES:
            raise OfaError(f"unknown constraint {name!r}: expected one of {sorted(CONSTRAINT_NAMES)}")
        key = CONSTRAINT_NAMES[name]
        if key not in self.models:
            raise OfaError(f"constraint {name!r} needs a latency look-up table (pass latency_table)")
        return self.models[key]

    def costs(self, arch: Arch) -> dict[str, float | None]:
        """Every cost of `arch` (latency_ms None without a table)."""
        macs, params = self.table(arch)
        latency = self.models["latency_ms"](arch) if "latency_ms" in self.models else None
        return {"macs": macs, "params": params, "latency_ms": latency}

    def smallest(self) -> Arch:
        """The min subnet at the smallest resolution: every choice at its minimum, so (since
        each cost grows with every choice) the cheapest arch under any cost model here."""
        return self.space.min_arch(min(self.space.resolutions))

    def constraints(self, budgets: Mapping[str, Any]) -> list[Constraint]:
        """Constraints from {name: budget text or number}, each checked to be achievable.

        Raises:
          OfaError: unknown name, malformed number, or a budget below the smallest subnet
            (the message gives the minimum achievable value).
        """
        result = []
        smallest = self.smallest()
        for label, text in budgets.items():
            cost = self.get(label)
            budget = parse_budget(label, text)
            minimum = cost(smallest)
            if budget < minimum:
                raise OfaError(f"{label}={text}: impossible budget; the smallest subnet needs "
                               f"{format_cost(label, minimum)} ({minimum:.6g})")
            result.append(Constraint(cost, budget, label))
        return result


def satisfies(arch: Arch, constraints: Iterable[Constraint]) -> bool:
    return all(c.satisfied(arch) for c in constraints)


def parse_target(text: str) -> dict[str, str]:
    """`flops=150M,latency_ms=20` -> {"flops": "150M", "latency_ms": "20"} (names checked later)."""
    target = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise OfaError(f"targets={text}: expected NAME=BUDGET pairs like flops=150M,params=3M")
        if name not in CONSTRAINT_NAMES:
            raise OfaError(f"targets={text}: unknown constraint {name!r}; expected one of "
                           f"{sorted(CONSTRAINT_NAMES)}")
        target[name] = value.strip()
    return target


def zip_targets(lists: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Per-cost budget lists -> targets: list i of every cost forms target i; a single value
    applies to every target (`--flops=50M,100M --params=3M`: two targets, both under 3M)."""
    lists = {k: list(v) for k, v in lists.items() if v}
    if not lists:
        return []
    count = max(len(v) for v in lists.values())
    for name, values in lists.items():
        if len(values) not in (1, count):
            raise OfaError(f"{name}={','.join(values)}: has {len(values)} budgets; the other "
                           f"constraint lists have {count} (give one budget, or one per target)")
    return [{name: values[i if len(values) > 1 else 0] for name, values in lists.items()} for i in range(count)]
