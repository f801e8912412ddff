"""Searchers on a synthetic fitness with a known optimum, and constraint-safety properties.

The synthetic problem: ofa_mbv3 at one resolution, where a subnet's MACs are a constant
plus one term per stage (widths are fixed, so a block's cost depends only on its own
kernel / expand), and the fitness is a random additive score per (stage, block, kernel,
expand). The best fitness under a MACs budget is then an exact knapsack over the 5 stages'
7371 options each, solved by merging per-stage Pareto fronts.
"""

import itertools
import random

import numpy as np
import pytest

from helpers import tiny_space
from ofa_tf.errors import OfaError
from ofa_tf.search import CostModels, EvolutionSearch, ExhaustiveSearch, RandomSearch, zero_cost_select
from ofa_tf.search.costs import satisfies
from ofa_tf.spaces import Arch, get_space
from ofa_tf.training.record import SampledRecord, load_sampled_record


class AdditiveFitness:
    """Random positive score per (stage, block slot, kernel, expand); batched like a predictor."""

    def __init__(self, space, seed=0):
        rng = np.random.default_rng(seed)
        self.table = {(s, b, k, e): float(rng.uniform(0.2, 1.0))
                      for s, stage in enumerate(space.stages) for b in range(stage.max_depth)
                      for k in stage.kernels for e in stage.expands}
        self.calls = 0

    def score(self, arch):
        return sum(self.table[s, b, arch.kernels[s][b], arch.expands[s][b]]
                   for s, d in enumerate(arch.depths) for b in range(d))

    def __call__(self, archs):
        self.calls += len(archs)
        return np.array([self.score(a) for a in archs])


def _front(costs, scores):
    """Pareto front (increasing cost, strictly increasing score) of paired arrays."""
    order = np.lexsort((-scores, costs))
    keep, best = [], -np.inf
    for i in order:
        if scores[i] > best:
            keep.append(i)
            best = scores[i]
    return costs[keep], scores[keep]


def knapsack_optimum(space, macs, fitness, budget):
    """Exact best additive fitness with MACs <= budget (space at one resolution)."""
    base = space.min_arch()
    base_cost = macs(base)
    front_c, front_s = np.array([0.0]), np.array([0.0])
    for s, stage in enumerate(space.stages):
        costs, scores = [], []
        for d in stage.depths:
            for ks in itertools.product(stage.kernels, repeat=d):
                for es in itertools.product(stage.expands, repeat=d):
                    arch = Arch(base.resolution, base.stem_width, base.widths,
                                base.depths[:s] + (d,) + base.depths[s + 1:],
                                base.kernels[:s] + (ks,) + base.kernels[s + 1:],
                                base.expands[:s] + (es,) + base.expands[s + 1:], base.head_width)
                    costs.append(macs(arch) - base_cost)
                    scores.append(sum(fitness.table[s, b, ks[b], es[b]] for b in range(d)))
        stage_c, stage_s = _front(np.array(costs), np.array(scores))
        all_c = (front_c[:, None] + stage_c[None, :]).ravel()
        all_s = (front_s[:, None] + stage_s[None, :]).ravel()
        front_c, front_s = _front(all_c, all_s)
    inside = front_c + base_cost <= budget
    return float(front_s[inside].max())


@pytest.fixture(scope="module")
def synthetic():
    space = get_space("ofa_mbv3", resolutions=[32])
    costs = CostModels(space, 10)
    fitness = AdditiveFitness(space)
    macs = costs.get("macs")
    rng = random.Random(1)
    for arch in [space.sample(rng) for _ in range(20)]:  # the stage-additivity the optimum relies on
        per_stage = 0.0
        base = space.min_arch()
        for s in range(space.num_stages):
            swapped = Arch(base.resolution, base.stem_width, base.widths,
                           base.depths[:s] + (arch.depths[s],) + base.depths[s + 1:],
                           base.kernels[:s] + (arch.kernels[s],) + base.kernels[s + 1:],
                           base.expands[:s] + (arch.expands[s],) + base.expands[s + 1:], base.head_width)
            per_stage += macs(swapped) - macs(base)
        assert macs(arch) == pytest.approx(macs(base) + per_stage)
    return space, costs, fitness


@pytest.mark.unit
def test_knapsack_optimum_is_an_upper_bound_and_achieved(synthetic):
    """Sanity of the reference optimum itself: no sampled feasible arch beats it."""
    space, costs, fitness = synthetic
    budget = 8e6
    optimum = knapsack_optimum(space, costs.get("macs"), fitness, budget)
    limit = costs.constraints({"flops": budget})
    rng = random.Random(0)
    feasible = [a for a in (space.sample(rng) for _ in range(3000)) if satisfies(a, limit)]
    assert feasible and max(fitness.score(a) for a in feasible) <= optimum + 1e-9


@pytest.mark.integration
def test_evolution_near_optimum_and_beats_random_at_equal_evaluations(synthetic):
    """The fitness is shaped like an accuracy: 0.5 + 0.4 * score / (best unconstrained score),
    so "within 1%" means within ~0.009 of the best reachable accuracy; the raw additive score
    must be within 3% too."""
    space, costs, fitness = synthetic
    macs = costs.get("macs")
    budget = 10e6  # min subnet 3.9M, max 15.2M MACs
    raw_optimum = knapsack_optimum(space, macs, fitness, budget)
    raw_best = knapsack_optimum(space, macs, fitness, float("inf"))
    accuracy = lambda archs: 0.5 + 0.4 * fitness(archs) / raw_best  # noqa: E731
    optimum = 0.5 + 0.4 * raw_optimum / raw_best
    limit = costs.constraints({"flops": budget})
    evolution = EvolutionSearch(space, population_size=100, generations=150, seed=0).search(accuracy, limit)
    random_best = RandomSearch(space, num_samples=evolution.evaluations, seed=0).search(accuracy, limit)
    assert evolution.evaluations == random_best.evaluations == 100 * 151
    assert satisfies(evolution.arch, limit) and satisfies(random_best.arch, limit)
    assert evolution.fitness == pytest.approx(accuracy([evolution.arch])[0])
    assert evolution.fitness >= 0.99 * optimum, (evolution.fitness, optimum)
    assert fitness.score(evolution.arch) >= 0.97 * raw_optimum
    assert evolution.fitness > random_best.fitness
    assert evolution.history == sorted(evolution.history)  # best-so-far never decreases


@pytest.mark.unit
def test_searchers_are_deterministic_for_a_seed(synthetic):
    space, costs, fitness = synthetic
    limit = costs.constraints({"flops": "7M"})
    runs = [EvolutionSearch(space, population_size=20, generations=5, seed=s).search(fitness, limit)
            for s in (3, 3, 4)]
    assert runs[0].arch == runs[1].arch and runs[0].history == runs[1].history
    assert runs[0].history != runs[2].history or runs[0].arch != runs[2].arch
    a, b = (RandomSearch(space, num_samples=200, seed=5).search(fitness, limit) for _ in range(2))
    assert a.arch == b.arch


@pytest.mark.integration
def test_no_searcher_returns_an_arch_over_budget():
    """Property: for budgets from the minimum up to the max subnet, several seeds, single and
    joint (MACs + params) constraints, every searcher's result is feasible."""
    space = tiny_space()
    costs = CostModels(space, 10)
    macs, params = costs.get("macs"), costs.get("params")
    lo_m, hi_m = macs(space.min_arch(16)), macs(space.max_arch(24))
    lo_p, hi_p = params(space.min_arch(16)), params(space.max_arch(24))
    fitness = AdditiveFitness(space, seed=2)
    record = [(step, space.sample(random.Random(step))) for step in range(200, 0, -1)]
    record.append((0, space.min_arch(16)))  # a run trains the min subnet, so every achievable budget has one
    checked = 0
    for i, fraction in enumerate([0.0, 0.001, 0.01, 0.05, 0.2, 0.5, 0.9, 1.0]):
        budgets = [{"macs": lo_m + fraction * (hi_m - lo_m)},
                   {"macs": lo_m + fraction * (hi_m - lo_m), "params": lo_p + (1 - fraction) * (hi_p - lo_p)}]
        for budget in budgets:
            limit = costs.constraints(budget)
            for seed in range(2):
                results = [
                    EvolutionSearch(space, population_size=12, generations=4, seed=seed, max_tries=20).search(
                        fitness, limit),
                    RandomSearch(space, num_samples=30, seed=seed, max_tries=20).search(fitness, limit),
                    zero_cost_select(record, limit)]
                if seed == 0:
                    results.append(ExhaustiveSearch(space).search(fitness, limit))
                for result in results:
                    assert satisfies(result.arch, limit), (result.searcher, budget)
                    checked += 1
    assert checked == 8 * 2 * 7


@pytest.mark.unit
def test_exhaustive_on_compofa_matches_brute_force():
    space = get_space("compofa", resolutions=[32, 40])
    costs = CostModels(space, 10)
    limit = costs.constraints({"flops": "8M"})
    fitness = AdditiveFitness(space, seed=1)
    result = ExhaustiveSearch(space, batch_size=100).search(fitness, limit)
    feasible = [a for a in space.enumerate() if satisfies(a, limit)]
    assert 0 < result.evaluations == len(feasible) < 2 * 243
    assert result.fitness == pytest.approx(max(fitness.score(a) for a in feasible))
    with pytest.raises(OfaError, match="enumerate needs at most"):
        ExhaustiveSearch(get_space("ofa_mbv3")).search(fitness, [])


@pytest.mark.unit
def test_zero_cost_picks_most_recent_within_budget(tmp_path):
    space = tiny_space()
    costs = CostModels(space, 10)
    big, small, mid = space.max_arch(24), space.min_arch(16), space.sample(random.Random(7), 16)
    record = SampledRecord()
    record.update(5, [small])
    record.update(9, [mid])
    record.update(12, [big])
    record.save(str(tmp_path))
    pairs = load_sampled_record(str(tmp_path))
    macs = costs.get("macs")
    under_big = costs.constraints({"macs": macs(big)})
    assert zero_cost_select(pairs, under_big).arch == big
    assert zero_cost_select(pairs, under_big).extra == {"last_trained_step": 12}
    under_mid = costs.constraints({"macs": max(macs(mid), macs(small))})
    assert zero_cost_select(pairs, under_mid).arch == (mid if macs(mid) >= macs(small) else small)
    chosen = zero_cost_select(pairs, costs.constraints({"macs": macs(small)}))
    assert chosen.arch == small and chosen.evaluations == 0
    without_small = [(s, a) for s, a in pairs if a != small]
    if macs(mid) > macs(small):
        with pytest.raises(OfaError, match="none of the 2 recorded subnets meets"):
            zero_cost_select(without_small, costs.constraints({"macs": macs(small)}))


@pytest.mark.unit
def test_zero_cost_breaks_step_ties_by_the_largest_subnet_within_budget():
    space = tiny_space()
    costs = CostModels(space, 10)
    macs = costs.get("macs")
    archs = sorted({space.sample(random.Random(i), 16) for i in range(30)}, key=macs)
    small, middle, large = archs[0], archs[len(archs) // 2], archs[-1]
    record = [(7, small), (7, large), (7, middle), (3, archs[1])]  # one step trained several subnets
    assert zero_cost_select(record, costs.constraints({"macs": macs(large)})).arch == large
    assert zero_cost_select(record, costs.constraints({"macs": macs(large) - 1})).arch == middle
