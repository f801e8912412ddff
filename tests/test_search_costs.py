"""Cost models: the fast per-block table equals the profiler; budgets parse or fail in one line."""

import random

import pytest

from helpers import tiny_space
from ofa_tf.errors import OfaError
from ofa_tf.spaces import profile
from ofa_tf.search import ArchCostTable, CostModels, LatencyCost
from ofa_tf.search.costs import parse_budget, parse_target, zip_targets
from ofa_tf.spaces import SPACES, get_space

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("space", [get_space(n) for n in sorted(SPACES)] + [tiny_space(),
                                                                         get_space("ofa_mbv3", 1.2, [32, 40])],
                         ids=lambda s: f"{s.name}-{s.width_mult}")
def test_cost_table_equals_profile(space):
    table = ArchCostTable(space, 7)
    rng = random.Random(0)
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(60)]:
        expected = profile(space, arch, 7)
        assert table(arch) == (expected["macs"], expected["params"])


def test_parse_budget():
    assert parse_budget("flops", "150M") == 150e6
    assert parse_budget("flops", "1.5e8") == 150e6
    assert parse_budget("params", "2.5k") == 2500
    assert parse_budget("latency_ms", " 20 ") == 20
    for bad in ("abc", "", "12X", "-5M", "1,5M"):
        with pytest.raises(OfaError, match=r"^flops=.*: expected a (number like 150M|positive number)$"):
            parse_budget("flops", bad)
    with pytest.raises(OfaError, match="expected a positive number"):
        parse_budget("flops", "0")


def test_constraints_reject_unknown_and_impossible_budgets():
    space = get_space("ofa_mbv3", resolutions=[32, 40])
    costs = CostModels(space, 10)
    smallest = costs.costs(space.min_arch(32))
    with pytest.raises(OfaError, match=r"^unknown constraint 'energy': expected one of"):
        costs.constraints({"energy": "5"})
    with pytest.raises(OfaError, match=r"needs a latency look-up table"):
        costs.constraints({"latency_ms": "5"})
    with pytest.raises(OfaError) as error:
        costs.constraints({"flops": "1M"})
    message = str(error.value)
    assert "impossible budget" in message and f"{smallest['macs']:.6g}" in message and "\n" not in message
    constraint, = costs.constraints({"flops": smallest["macs"]})  # exactly the minimum is achievable
    assert constraint.satisfied(space.min_arch(32)) and not constraint.satisfied(space.min_arch(40))


def test_latency_cost_accepts_any_predict_ms_object_and_caches():
    space = tiny_space()

    class Table:  # duck-typed like ofa_tf.latency.lut.LatencyTable
        calls = 0

        def predict_ms(self, arch):
            Table.calls += 1
            return 0.01 * arch.resolution + sum(arch.depths)

    costs = CostModels(space, 10, Table())
    arch = space.max_arch()
    assert costs.costs(arch)["latency_ms"] == pytest.approx(0.24 + sum(arch.depths))
    costs.costs(arch)
    assert Table.calls == 1
    limit, = costs.constraints({"latency_ms": "4"})
    assert limit.satisfied(space.min_arch(16)) and not limit.satisfied(arch)
    with pytest.raises(OfaError, match="has no predict_ms"):
        LatencyCost(object())


def test_targets_zip_and_parse():
    assert zip_targets({"flops": ["50M", "100M"], "params": ["3M"], "latency_ms": []}) == [
        {"flops": "50M", "params": "3M"}, {"flops": "100M", "params": "3M"}]
    with pytest.raises(OfaError, match="has 2 budgets; the other constraint lists have 3"):
        zip_targets({"flops": ["1", "2", "3"], "params": ["1", "2"]})
    assert parse_target("flops=150M,latency_ms=20") == {"flops": "150M", "latency_ms": "20"}
    with pytest.raises(OfaError, match="unknown constraint 'watts'"):
        parse_target("watts=3")
    with pytest.raises(OfaError, match="expected NAME=BUDGET"):
        parse_target("flops")
