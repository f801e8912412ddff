"""Flags that choose a searcher and its settings (OFA's evolution defaults)."""

from __future__ import annotations

from absl import flags


def define_search_flags() -> None:
    """--searcher, --seed, --population, --generations, --parent_ratio, --mutation_ratio,
    --mutation_prob, --num_samples, --resolution."""
    if "searcher" in flags.FLAGS:
        return
    flags.DEFINE_string("searcher", "evolution", "evolution, random, exhaustive (finite spaces) or zero_cost "
                        "(TOFA: the most recently trained subnet within budget).")
    flags.DEFINE_integer("seed", 0, "Seed of the searcher (results are deterministic for a seed).")
    flags.DEFINE_integer("population", 100, "Evolution: population size.")
    flags.DEFINE_integer("generations", 500, "Evolution: generations.")
    flags.DEFINE_float("parent_ratio", 0.25, "Evolution: share of the population kept as parents.")
    flags.DEFINE_float("mutation_ratio", 0.5, "Evolution: share of children made by mutation (the rest: crossover).")
    flags.DEFINE_float("mutation_prob", 0.1, "Evolution: per-choice mutation probability.")
    flags.DEFINE_integer("num_samples", None, "Random search: archs evaluated (default: as many as evolution).")
    flags.DEFINE_integer("resolution", None, "Search at this input size only (default: every size of the run).")


def searcher_from_flags(space):
    """The searcher the flags describe, for `space` (None for zero_cost, which needs none).

    Raises:
      OfaError: unknown searcher, bad numbers, a resolution the run does not have.
    """
    from ofa_tf.errors import OfaError
    from ofa_tf.search import SEARCHERS, EvolutionSearch, ExhaustiveSearch, RandomSearch

    f = flags.FLAGS
    if f.searcher not in SEARCHERS:
        raise OfaError(f"--searcher={f.searcher!r}: expected one of {list(SEARCHERS)}")
    if f.resolution is not None:
        if f.resolution not in space.resolutions:
            raise OfaError(f"--resolution={f.resolution}: the run trained {list(space.resolutions)}")
        space = space.with_resolutions([f.resolution])
    if f.searcher == "zero_cost":
        return None
    if f.searcher == "exhaustive":
        space.enumerate().__next__()  # raises OfaError for a space too large to list
        return ExhaustiveSearch(space)
    if f.searcher == "random":
        samples = f.num_samples if f.num_samples is not None else f.population * (f.generations + 1)
        return RandomSearch(space, num_samples=samples, seed=f.seed)
    return EvolutionSearch(space, population_size=f.population, generations=f.generations,
                           parent_ratio=f.parent_ratio, mutation_ratio=f.mutation_ratio,
                           mutation_prob=f.mutation_prob, seed=f.seed, progress=True)
