"""Speed of OFA's evolutionary search with the accuracy predictor and a FLOPs constraint.

  python benchmarks/search_speed.py [--generations=500] [--population=100] [--space=ofa_mbv3]

(or `python -m benchmarks.search_speed ...`, from a checkout with ofa_tf installed.)

Runs the full default search (100 x 500 = 50,100 predictor evaluations) on the ofa_mbv3
space at 32x32 with a randomly initialised 3 x 400 predictor (speed does not depend on
its weights) under a mid-range MACs budget, and prints JSON: wall and CPU seconds (on a
shared machine the wall time mostly measures the other processes; the load average is
printed too), seconds per generation, and, measured in the same process, how much the fast paths save: the
per-block cost table vs `ofa_tf.spaces.profile`, and the batched encoder vs
one arch at a time, as ratios (the machine is shared and noisy; ratios hold better).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as ofa-search does (small matrices)

from ofa_tf.cli import startup  # noqa: E402 (no TensorFlow here: search and costs run without it)

import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from ofa_tf.spaces import profile  # noqa: E402
from ofa_tf.search import AccuracyPredictor, ArchCostTable, ArchEncoder, CostModels, EvolutionSearch  # noqa: E402
from ofa_tf.spaces import get_space  # noqa: E402

flags.DEFINE_string("space", "ofa_mbv3", "Search space.")
flags.DEFINE_integer("resolution", 32, "Input resolution.")
flags.DEFINE_integer("population", 100, "Evolution: population size.")
flags.DEFINE_integer("generations", 500, "Evolution: generations.")
flags.DEFINE_float("budget_fraction", 0.5, "MACs budget as a fraction of the way from the min to the max subnet.")
FLAGS = flags.FLAGS


def _per_call(fn, items) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - started) / len(items)


def main(argv: list[str]) -> None:
    args = FLAGS

    space = get_space(args.space, resolutions=[args.resolution])
    encoder = ArchEncoder(space)
    rng = np.random.default_rng(0)
    sizes = [encoder.size, 400, 400, 400, 1]
    layers = [(rng.normal(0, np.sqrt(2 / a), (a, b)).astype(np.float32), np.zeros(b, np.float32))
              for a, b in zip(sizes[:-1], sizes[1:])]
    predictor = AccuracyPredictor(space, layers, base=0.8, scale=0.05)
    costs = CostModels(space, 10)
    low, high = costs.costs(space.min_arch())["macs"], costs.costs(space.max_arch())["macs"]
    budget = low + args.budget_fraction * (high - low)
    constraints = costs.constraints({"flops": budget})

    calls = {"archs": 0, "seconds": 0.0}

    def fitness(archs):
        started = time.perf_counter()
        calls["archs"] += len(archs)
        scores = predictor.predict(archs)
        calls["seconds"] += time.perf_counter() - started
        return scores

    search = EvolutionSearch(space, population_size=args.population, generations=args.generations, seed=0)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = search.search(fitness, constraints)
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started

    sample = [space.sample(random.Random(i)) for i in range(300)]
    fresh = ArchCostTable(space, 10)
    table_s = _per_call(fresh, sample)
    profile_s = _per_call(lambda a: profile(space, a, 10), sample)
    batched_s = _per_call(lambda chunk: encoder.encode(chunk), [sample[i:i + 100] for i in range(0, 300, 100)]) / 100
    encode_s = _per_call(lambda arch: encoder.encode([space.validate(arch)]), sample)
    print(json.dumps({
        "space": args.space, "resolution": args.resolution, "population": args.population,
        "generations": args.generations, "budget_macs": budget, "min_macs": low, "max_macs": high,
        "seconds": round(total, 2), "cpu_seconds": round(cpu, 2), "seconds_per_generation": round(total / max(1, args.generations), 4),
        "evaluations": result.evaluations, "predictor_seconds": round(calls["seconds"], 2),
        "best_predicted": result.fitness, "best_macs": costs.costs(result.arch)["macs"],
        "within_budget": costs.costs(result.arch)["macs"] <= budget,
        "cost_table_us_per_arch_uncached": round(table_s * 1e6, 1), "profile_us_per_arch": round(profile_s * 1e6, 1),
        "profile_over_cost_table": round(profile_s / table_s, 1),
        "batched_encode_us_per_arch": round(batched_s * 1e6, 1), "space_encode_us_per_arch": round(encode_s * 1e6, 1),
        "space_encode_over_batched": round(encode_s / batched_s, 1),
        "load_average_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    startup.run(main, program="benchmarks/search_speed.py", doc=__doc__, tensorflow=False)
