"""Search spaces as data: sampling, validation, evolution operators, encodings, errors."""

import json
import random

import numpy as np
import pytest

from ofa_tf import OfaError
from ofa_tf.search.encoding import arch_encoder
from ofa_tf.spaces import SPACES, Arch, SearchSpace, StageSpec, get_space

pytestmark = pytest.mark.unit

ALL = sorted(SPACES)


@pytest.mark.parametrize("name", ALL)
def test_sampled_mutated_and_crossed_archs_are_valid(name):
    space = get_space(name)
    rng = random.Random(0)
    for _ in range(200):
        a, b = space.sample(rng), space.sample(rng)
        assert space.validate(a) == a
        assert space.validate(space.mutate(a, rng)) is not None
        child = space.crossover(a, b, rng)
        assert space.validate(child) == child
        for s in range(space.num_stages):  # each choice came from a parent
            assert child.depths[s] in (a.depths[s], b.depths[s])


@pytest.mark.parametrize("name", ALL)
def test_sampling_is_seeded(name):
    space = get_space(name)
    assert [space.sample(7) for _ in range(3)] == [space.sample(7) for _ in range(3)]
    assert len({space.sample(random.Random(i)) for i in range(20)}) > 10


@pytest.mark.parametrize("name", ALL)
def test_max_min_and_json_round_trip(name):
    space = get_space(name)
    mx, mn = space.max_arch(), space.min_arch()
    assert all(d == s.max_depth for d, s in zip(mx.depths, space.stages))
    assert all(d == s.min_depth for d, s in zip(mn.depths, space.stages))
    for arch in (mx, mn, space.sample(3)):
        assert Arch.from_json(arch.to_json()) == arch
        assert space.parse_arch(arch.to_json()) == arch


@pytest.mark.parametrize("name", ALL)
def test_encoding_is_fixed_length_and_distinguishes_archs(name):
    space = get_space(name)
    rng = random.Random(1)
    archs = [space.sample(rng) for _ in range(30)]
    codes = arch_encoder(space).encode(archs)
    assert codes.shape == (30, arch_encoder(space).size)
    assert set(np.unique(codes)) <= {0.0, 1.0}
    distinct_archs = len(set(archs))
    assert len({c.tobytes() for c in codes}) == distinct_archs


def test_mutation_changes_something_and_respects_probability():
    space = get_space("ofa_mbv3")
    rng = random.Random(2)
    arch = space.sample(rng)
    assert space.mutate(arch, rng, prob=0.0, depth_prob=0.0, resolution_prob=0.0) == arch
    assert sum(space.mutate(arch, rng, prob=1.0) != arch for _ in range(10)) >= 9


def test_compofa_has_243_coupled_subnets_per_resolution():
    space = get_space("compofa")
    archs = list(space.enumerate([224]))
    assert len(archs) == 243 == space.size() == len(set(archs))
    for arch in archs:
        space.validate(arch)
        for s, d in enumerate(arch.depths[1:], start=1):
            assert set(arch.expands[s]) == {{2: 3.0, 3: 4.0, 4: 6.0}[d]}
    assert len(list(space.enumerate())) == 243 * len(space.resolutions)


def test_ofa_mbv3_size_and_width_variants():
    assert get_space("ofa_mbv3").size() == (9 ** 2 + 9 ** 3 + 9 ** 4) ** 5
    wide = get_space("ofa_mbv3", width_mult=1.2)
    assert [s.widths[0] for s in wide.stages] == [24, 32, 48, 96, 136, 192]
    assert wide.head_widths == (1536,) and wide.final_expand_width(192) == 1152


def test_tofa_shares_kernel_and_expand_within_a_stage():
    space = get_space("tofa")
    for arch in (space.sample(i) for i in range(50)):
        for s in range(space.num_stages):
            assert len(set(arch.kernels[s])) == 1 and len(set(arch.expands[s])) == 1
    assert len({space.sample(i).widths for i in range(50)}) > 1  # elastic width


def test_enumerating_a_huge_space_is_refused():
    with pytest.raises(OfaError, match="enumerate needs at most"):
        next(get_space("ofa_mbv3").enumerate())


def test_space_config_round_trip():
    for name in ALL:
        space = get_space(name, resolutions=[32, 64])
        assert SearchSpace.from_config(json.loads(json.dumps(space.to_config()))) == space


def _modified(arch: Arch, **changes) -> dict:
    d = arch.to_dict()
    d.update(changes)
    return d


@pytest.mark.parametrize("change,match", [
    ({"resolution": 100}, r"resolution=100: space 'ofa_mbv3' allows 128..224 in steps of 4"),
    ({"depths": [1, 4, 4, 4, 4, 5]}, r"arch.depths\[5\]=5: expected one of \[2, 3, 4\]"),
    ({"depths": [1, 4, 4]}, r"arch.depths has 3 entries; space 'ofa_mbv3' has 6 stages"),
    ({"kernels": [[3], [7, 7, 7, 4], [7] * 4, [7] * 4, [7] * 4, [7] * 4]},
     r"arch.kernels\[1\]\[3\]=4: expected one of \[3, 5, 7\]"),
    ({"expands": [[1], [6, 6, 6], [6] * 4, [6] * 4, [6] * 4, [6] * 4]},
     r"arch.expands\[1\] has 3 entries; expected one per active block \(depths\[1\]=4\)"),
    ({"widths": [16, 24, 40, 80, 112, 999]}, r"arch.widths\[5\]=999"),
    ({"stem_width": "wide"}, r"arch.stem_width='wide': expected an integer"),
    ({"color": "red"}, r"arch: unknown field 'color'"),
])
def test_out_of_space_archs_name_the_bad_field(change, match):
    space = get_space("ofa_mbv3")
    with pytest.raises(OfaError, match=match):
        space.validate(_modified(space.max_arch(), **change))


def test_compofa_rejects_uncoupled_expand_and_tofa_mixed_kernels():
    compofa = get_space("compofa")
    arch = compofa.max_arch().to_dict()
    arch["expands"][1] = [6, 6, 6, 3]
    with pytest.raises(OfaError, match=r"couples depth 4 with expand ratio 6"):
        compofa.validate(arch)
    tofa = get_space("tofa")
    arch = tofa.max_arch().to_dict()
    arch["kernels"][2] = [3, 5, 5, 5, 5, 5]
    with pytest.raises(OfaError, match="one kernel size per stage"):
        tofa.validate(arch)


@pytest.mark.parametrize("spec,match", [
    ("nonsense", "expected max, min, random, a JSON object or a JSON file path"),
    ("{not json", "arch: not valid JSON"),
    ('["a", "list"]', "expected a JSON object"),
])
def test_malformed_arch_text(spec, match):
    with pytest.raises(OfaError, match=match):
        get_space("ofa_mbv3").parse_arch(spec)


def test_arch_from_json_file_and_search_result(tmp_path):
    space = get_space("proxyless")
    arch = space.sample(5)
    (tmp_path / "a.json").write_text(arch.to_json())
    (tmp_path / "result.json").write_text(json.dumps({"arch": arch.to_dict(), "macs": 1}))
    (tmp_path / "bad.json").write_text("{oops")
    assert space.parse_arch(str(tmp_path / "a.json")) == arch
    assert space.parse_arch(str(tmp_path / "result.json")) == arch
    with pytest.raises(OfaError, match="bad.json.*not valid JSON"):
        space.parse_arch(str(tmp_path / "bad.json"))


@pytest.mark.parametrize("call,match", [
    (lambda: get_space("mobilenet"),
     r"space='mobilenet': expected one of \['compofa', 'ofa_mbv3', 'ofa_mbv3_k7', 'proxyless', 'tofa'\]"),
    (lambda: get_space("ofa_mbv3", width_mult=0), r"width_mult=0: expected a positive number"),
    (lambda: get_space("ofa_mbv3", resolutions=[4]), r"resolutions=\[4\]"),
])
def test_bad_space_arguments(call, match):
    with pytest.raises(OfaError, match=match):
        call()


def test_sample_distinct_draws_distinct_archs_outside_exclude_as_a_prefix():
    space = get_space("ofa_mbv3", resolutions=[32, 40])
    excluded = [space.max_arch(32), space.min_arch(32)] + space.sample_distinct(3, 7, 32)
    archs = space.sample_distinct(40, 1, 32, exclude=excluded)
    assert len(archs) == 40 == len(set(archs)) and not set(archs) & set(excluded)
    assert all(a.resolution == 32 for a in archs)
    assert space.sample_distinct(10, 1, 32, exclude=excluded) == archs[:10]
    assert len({a.resolution for a in space.sample_distinct(30, 2)}) == 2  # resolution sampled when not given
    two_archs = SearchSpace(name="two", stem_widths=(8,), stem_activation="relu",
                            stages=(StageSpec((8,), (1,), (3, 5), (2.0,), 1, "relu", False),),
                            final_expand_ratio=2.0, head_widths=(16,), head_activation="relu", resolutions=(16,))
    assert sorted(a.kernels for a in two_archs.sample_distinct(8, 0)) == [((3,),), ((5,),)]  # the space runs out
