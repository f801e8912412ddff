"""Subnet searchers under budget constraints: evolution, random, exhaustive, zero-cost.

Every searcher is seeded and deterministic (its own `random.Random`), takes a batched
fitness `archs -> np.ndarray` (the accuracy predictor, measured accuracy, or anything
else) and a list of `Constraint`s, and returns a `SearchResult` whose arch satisfies every
constraint. Constraints are enforced by rejection sampling as OFA does; where rejection
keeps failing (a budget close to the smallest subnet), a searcher falls back to archs it
knows are feasible (the min subnet, the parents), so it always ends, and never returns an
infeasible arch. Callers check that a budget is achievable at all first
(`CostModels.constraints`). Each searcher checks for Ctrl-C / SIGTERM
(`ofa_tf.interrupts.raise_if_interrupted`) before each batch it hands to the fitness, so a
stopped search ends within one batch, also when the fitness is a fast predictor that never
checks.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, Sequence

import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.interrupts import raise_if_interrupted
from ofa_tf.search.costs import Constraint, satisfies
from ofa_tf.spaces import Arch, SearchSpace

Fitness = Callable[[Sequence[Arch]], np.ndarray]
SEARCHERS = ("evolution", "random", "exhaustive", "zero_cost")


@dataclasses.dataclass
class SearchResult:
    """The best arch found, its fitness, and how much the search evaluated."""

    arch: Arch
    fitness: float | None
    evaluations: int  # archs passed to the fitness function
    searcher: str
    history: list[float] = dataclasses.field(default_factory=list)  # best fitness after each round
    extra: dict = dataclasses.field(default_factory=dict)


def _check_feasible_min(space: SearchSpace, constraints: Sequence[Constraint]) -> Arch:
    """The min subnet at the smallest resolution: the cheapest arch, so the fallback that
    keeps every searcher feasible. Raises OfaError when even it breaks a constraint."""
    smallest = space.min_arch(min(space.resolutions))
    for c in constraints:
        if not c.satisfied(smallest):
            raise OfaError(f"{c.describe()}: impossible budget; the smallest subnet needs "
                           f"{c.cost(smallest):.6g}")
    return smallest


def _sample_feasible(space: SearchSpace, rng: random.Random, constraints: Sequence[Constraint],
                     max_tries: int) -> Arch | None:
    for _ in range(max_tries):
        arch = space.sample(rng)
        if satisfies(arch, constraints):
            return arch
    return None


class EvolutionSearch:
    """OFA's evolutionary search, with its reference code's defaults.

    Each generation keeps the best `parent_ratio` of the population as parents and adds
    `population_size` children: `mutation_ratio` of them mutants of a random parent
    (per-block probability `mutation_prob`, per-stage depth `mutation_prob`, resolution
    0.5), the rest crossovers of two random parents; a child breaking a constraint is
    redrawn (rejection sampling, at most `max_tries` times, then the parent is kept).
    Evaluations = population_size * (generations + 1).
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, population_size: int = 100, generations: int = 500,
                 parent_ratio: float = 0.25, mutation_ratio: float = 0.5, mutation_prob: float = 0.1,
                 resolution_prob: float = 0.5, max_tries: int = 100, seed: int = 0, progress: bool = False):
        self.check_settings(population_size, generations, parent_ratio, mutation_ratio, mutation_prob)
        self.space, self.population_size, self.generations = space, population_size, generations
        self.num_parents = max(1, int(round(parent_ratio * population_size)))
        self.num_mutants = int(round(mutation_ratio * population_size))
        self.mutation_prob, self.resolution_prob = mutation_prob, resolution_prob
        self.max_tries, self.seed, self.progress = max_tries, seed, progress

    @staticmethod
    def check_settings(population_size: int, generations: int, parent_ratio: float, mutation_ratio: float,
                       mutation_prob: float) -> None:
        """One-line errors for settings out of range (NaN fails every range)."""
        checks = [(population_size >= 2, f"population_size={population_size}: expected an integer >= 2"),
                  (generations >= 0, f"generations={generations}: expected an integer >= 0"),
                  (0 < parent_ratio <= 1, f"parent_ratio={parent_ratio}: expected a fraction in (0, 1]"),
                  (0 <= mutation_ratio <= 1, f"mutation_ratio={mutation_ratio}: expected a fraction in [0, 1]"),
                  (0 <= mutation_prob <= 1, f"mutation_prob={mutation_prob}: expected a probability in [0, 1]")]
        for ok, message in checks:
            if not ok:
                raise OfaError(message)

    def _mutant(self, parent: Arch, rng: random.Random, constraints) -> Arch:
        for _ in range(self.max_tries):
            child = self.space.mutate(parent, rng, prob=self.mutation_prob, depth_prob=self.mutation_prob,
                                      resolution_prob=self.resolution_prob)
            if satisfies(child, constraints):
                return child
        return parent

    def _crossover(self, a: Arch, b: Arch, rng: random.Random, constraints) -> Arch:
        for _ in range(self.max_tries):
            child = self.space.crossover(a, b, rng)
            if satisfies(child, constraints):
                return child
        return a

    def search(self, fitness: Fitness, constraints: Sequence[Constraint] = ()) -> SearchResult:
        smallest = _check_feasible_min(self.space, constraints)
        rng = random.Random(self.seed)
        population = []
        for _ in range(self.population_size):
            arch = _sample_feasible(self.space, rng, constraints, self.max_tries)
            if arch is None:  # budget near the minimum: grow from the (feasible) min subnet
                arch = self._mutant(population[rng.randrange(len(population))] if population else smallest,
                                    rng, constraints)
            population.append(arch)
        scores = list(np.asarray(fitness(population), np.float64))
        evaluations = len(population)
        best_arch, best_score = _best(population, scores)
        history = [best_score]
        bar = _progbar(self.generations, self.progress)
        for _ in range(self.generations):
            raise_if_interrupted()
            order = sorted(range(len(population)), key=lambda i: -scores[i])[:self.num_parents]
            parents = [population[i] for i in order]
            parent_scores = [scores[i] for i in order]
            children = [self._mutant(parents[rng.randrange(len(parents))], rng, constraints)
                        for _ in range(self.num_mutants)]
            children += [self._crossover(parents[rng.randrange(len(parents))], parents[rng.randrange(len(parents))],
                                         rng, constraints)
                         for _ in range(self.population_size - self.num_mutants)]
            child_scores = list(np.asarray(fitness(children), np.float64))
            evaluations += len(children)
            population, scores = parents + children, parent_scores + child_scores
            arch, score = _best(children, child_scores)
            if score > best_score:
                best_arch, best_score = arch, score
            history.append(best_score)
            if bar is not None:
                bar.add(1, values=[("best", best_score)])
        return SearchResult(best_arch, best_score, evaluations, self.name, history)


class RandomSearch:
    """Best of `num_samples` uniformly sampled archs that meet the constraints."""

    name = "random"

    def __init__(self, space: SearchSpace, num_samples: int = 1000, batch_size: int = 100,
                 max_tries: int = 100, seed: int = 0):
        if num_samples < 1:
            raise OfaError(f"num_samples={num_samples}: expected >= 1")
        self.space, self.num_samples, self.batch_size = space, num_samples, batch_size
        self.max_tries, self.seed = max_tries, seed

    def search(self, fitness: Fitness, constraints: Sequence[Constraint] = ()) -> SearchResult:
        smallest = _check_feasible_min(self.space, constraints)
        rng = random.Random(self.seed)
        best_arch, best_score, evaluations, history = smallest, None, 0, []
        while evaluations < self.num_samples:
            raise_if_interrupted()
            batch = []
            for _ in range(min(self.batch_size, self.num_samples - evaluations)):
                arch = _sample_feasible(self.space, rng, constraints, self.max_tries)
                batch.append(arch if arch is not None else smallest)
            scores = list(np.asarray(fitness(batch), np.float64))
            evaluations += len(batch)
            arch, score = _best(batch, scores)
            if best_score is None or score > best_score:
                best_arch, best_score = arch, score
            history.append(best_score)
        return SearchResult(best_arch, best_score, evaluations, self.name, history)


class ExhaustiveSearch:
    """Every arch of a finite space (CompOFA's 243 per resolution), in batches."""

    name = "exhaustive"

    def __init__(self, space: SearchSpace, batch_size: int = 1000):
        self.space, self.batch_size = space, batch_size

    def search(self, fitness: Fitness, constraints: Sequence[Constraint] = ()) -> SearchResult:
        smallest = _check_feasible_min(self.space, constraints)
        best_arch, best_score, evaluations, batch = smallest, None, 0, []

        def flush():
            nonlocal best_arch, best_score, evaluations
            raise_if_interrupted()
            scores = list(np.asarray(fitness(batch), np.float64))
            evaluations += len(batch)
            arch, score = _best(batch, scores)
            if best_score is None or score > best_score:
                best_arch, best_score = arch, score
            batch.clear()

        for arch in self.space.enumerate():
            if satisfies(arch, constraints):
                batch.append(arch)
                if len(batch) >= self.batch_size:
                    flush()
        if batch:
            flush()
        return SearchResult(best_arch, best_score, evaluations, self.name)


def zero_cost_select(record: Sequence[tuple[int, Arch]], constraints: Sequence[Constraint],
                     space: SearchSpace | None = None) -> SearchResult:
    """TOFA's zero-cost rule (arXiv:2303.15485): the most recently trained subnet within budget.

    `record` is (last step trained, arch), as `ofa_tf.training.record.load_sampled_record`
    returns it. No fitness is evaluated. A step trains several subnets (max + min + random
    under the sandwich rule), so the paper's argmax over steps ties; the tie goes to the
    subnet costing the most under the first constraint, the one that uses the budget.

    Raises:
      OfaError: when no recorded subnet meets the constraints.
    """
    archs = [(step, space.validate(arch) if space is not None else arch) for step, arch in record]
    feasible = [(step, arch) for step, arch in archs if satisfies(arch, constraints)]
    if feasible:
        first = constraints[0].cost if constraints else (lambda arch: 0.0)
        step, arch = max(feasible, key=lambda pair: (pair[0], first(pair[1])))
        return SearchResult(arch, None, 0, "zero_cost", extra={"last_trained_step": int(step)})
    budgets = ", ".join(c.describe() for c in constraints)
    raise OfaError(f"zero-cost selection: none of the {len(record)} recorded subnets meets {budgets}")


def _best(archs: Sequence[Arch], scores: Sequence[float]) -> tuple[Arch, float]:
    """The first arch with the highest score (first: ties resolve deterministically)."""
    i = int(np.argmax(scores))
    return archs[i], float(scores[i])


def _progbar(total: int, enabled: bool):
    if not enabled or not total:
        return None
    import keras  # progress bars only in tools, which load Keras anyway

    return keras.utils.Progbar(total, unit_name="generation")
