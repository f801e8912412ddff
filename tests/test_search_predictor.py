"""Accuracy predictor: encoding, rank statistics, training on a known function, save / load."""

import itertools
import random

import numpy as np
import pytest

from helpers import tiny_space
from ofa_tf.errors import OfaError
from ofa_tf.search import AccuracyPredictor, ArchEncoder, fit_predictor
from ofa_tf.search.encoding import arch_encoder
from ofa_tf.search.predictor import cross_validated_spearman, kendall_tau, spearman
from ofa_tf.search.predictor import L2_GRID, MIN_HELDOUT_ARCHS, quality_warnings
from ofa_tf.spaces import SPACES, get_space


@pytest.mark.unit
@pytest.mark.parametrize("space", [get_space(n) for n in sorted(SPACES)] + [tiny_space()], ids=lambda s: s.name)
def test_batched_encoding_equals_space_encode(space):
    encoder = ArchEncoder(space)
    rng = random.Random(0)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(30)]
    assert encoder.size == arch_encoder(space).size
    np.testing.assert_array_equal(encoder.encode(archs), np.stack([arch_encoder(space).encode([a])[0] for a in archs]))


def _brute_kendall(a, b):
    num = pa = pb = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        x, y = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
        num += x * y
        pa += x != 0
        pb += y != 0
    return num / np.sqrt(pa * pb)


def _brute_spearman(a, b):
    def ranks(v):  # average rank of ties, by counting
        return np.array([np.sum(v < x) + (np.sum(v == x) + 1) / 2 for x in v])
    return np.corrcoef(ranks(np.asarray(a)), ranks(np.asarray(b)))[0, 1]


@pytest.mark.unit
def test_rank_statistics():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 6, 25).astype(float), rng.integers(0, 6, 25).astype(float)  # many ties
        assert kendall_tau(a, b) == pytest.approx(_brute_kendall(a, b))
        assert spearman(a, b) == pytest.approx(_brute_spearman(a, b))
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


@pytest.mark.unit
def test_rank_statistics_are_scipys():
    """The figures are scipy.stats' own (ties included), not a re-implementation's."""
    import scipy.stats
    rng = np.random.default_rng(7)
    for _ in range(4):
        a, b = rng.normal(size=40), rng.integers(0, 5, 40).astype(float)  # b: many ties
        assert spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-12)
        assert kendall_tau(a, b) == pytest.approx(scipy.stats.kendalltau(a, b).statistic, abs=1e-12)
    assert kendall_tau([1, 1, 1], [3, 1, 2]) == 0.0  # scipy gives NaN for a constant input


@pytest.mark.unit
def test_a_near_chance_predictor_is_warned_about():
    """Accuracies unrelated to the archs: the cross-validated Spearman is near 0, and
    `quality_warnings` says the predictor ranks poorly; a few held-out subnets are warned about too."""
    space = tiny_space()
    archs = space.sample_distinct(60, 0)
    noise = np.random.default_rng(0).uniform(0.09, 0.11, len(archs))  # near chance for 10 classes
    cv = cross_validated_spearman(space, archs, noise, folds=5, kind="linear")
    assert len(cv["predicted"]) == len(archs) and abs(cv["spearman"]) < 0.3
    info = {"spearman": cv["spearman"], "spearman_source": "cross-validated", "num_heldout": 5,
            "heldout_spearman": 0.87}
    warnings = quality_warnings(info)
    assert len(warnings) == 2
    assert "ranks subnets poorly (cross-validated Spearman" in warnings[0] and "--fitness=measured" in warnings[0]
    assert warnings[1].startswith("only 5 held-out subnets") and "0.870" in warnings[1]
    good = quality_warnings({"spearman": 0.7, "spearman_source": "cross-validated", "num_heldout": MIN_HELDOUT_ARCHS})
    assert good == []


@pytest.mark.integration
def test_predictor_learns_to_rank_held_out_archs():
    space = get_space("ofa_mbv3", resolutions=[32, 40])
    encoder = ArchEncoder(space)
    weights = np.random.default_rng(1).normal(0, 0.01, encoder.size)
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(400)))
    truth = 0.8 + encoder.encode(archs) @ weights  # an "accuracy" the encoding can express
    predictor = AccuracyPredictor.fit(space, archs[:300], truth[:300], seed=0, epochs=60, hidden=(128, 128))
    predicted = predictor.predict(archs[300:])
    assert spearman(predicted, truth[300:]) > 0.8
    assert kendall_tau(predicted, truth[300:]) > 0.6
    again = AccuracyPredictor.fit(space, archs[:300], truth[:300], seed=0, epochs=60, hidden=(128, 128))
    np.testing.assert_array_equal(again.predict(archs[300:]), predicted)  # deterministic
    cv = cross_validated_spearman(space, archs, truth, folds=3, epochs=60, hidden=(128, 128))
    assert cv["folds"] == 3 and len(cv["fold_spearman"]) == 3 and cv["spearman"] > 0.8
    shuffled = cross_validated_spearman(space, archs, np.random.default_rng(2).permutation(truth), folds=3,
                                        epochs=60, hidden=(128, 128))
    assert abs(shuffled["spearman"]) < 0.3  # labels unrelated to the archs: nothing to learn
    with pytest.raises(OfaError, match="needs folds >= 2"):
        cross_validated_spearman(space, archs[:5], truth[:5], folds=3)


@pytest.mark.integration
def test_linear_predictor_is_ridge_with_the_leave_one_out_strength(tmp_path):
    space = get_space("ofa_mbv3", resolutions=[32, 40])
    encoder = ArchEncoder(space)
    rng = np.random.default_rng(3)
    sampler = random.Random(1)
    archs = list(dict.fromkeys(space.sample(sampler) for _ in range(260)))
    x = encoder.encode(archs).astype(np.float64)
    truth = 0.8 + x @ rng.normal(0, 0.01, encoder.size) + rng.normal(0, 0.002, len(archs))  # linear + noise
    predictor = AccuracyPredictor.fit_linear(space, archs[:200], truth[:200])
    assert predictor.info["kind"] == "linear" and len(predictor.layers) == 1
    assert spearman(predictor.predict(archs[200:]), truth[200:]) > 0.9

    # the shortcut's leave-one-out error is the refit one, and the chosen strength has the least
    def loo_error(l2, n=120):
        errors = []
        for i in range(n):
            rest = [j for j in range(n) if j != i]
            one = AccuracyPredictor.fit_linear(space, [archs[j] for j in rest], truth[rest], l2_grid=[l2])
            errors.append((one.predict([archs[i]])[0] - truth[i]) ** 2)
        return float(np.mean(errors))
    small = AccuracyPredictor.fit_linear(space, archs[:120], truth[:120])
    refit = {l2: loo_error(l2) for l2 in L2_GRID}
    assert refit[small.info["l2"]] == pytest.approx(small.info["loo_mse"], rel=1e-4)
    assert small.info["l2"] == min(refit, key=refit.get)

    predictor.save(str(tmp_path))  # same file format as the MLP
    loaded = AccuracyPredictor.load(str(tmp_path), space)
    np.testing.assert_allclose(loaded.predict(archs[200:]), predictor.predict(archs[200:]), rtol=0, atol=1e-6)

    # auto picks the kind with the higher CV Spearman on the archs it is given, and says so
    auto = fit_predictor(space, archs[:200], truth[:200], "auto", seed=0, epochs=20, hidden=(32,))
    selection = auto.info["selection"]
    assert selection["chosen"] == auto.info["kind"] == max(selection["cv_spearman"], key=selection["cv_spearman"].get)
    assert selection["chosen"] == "linear"  # the truth is linear
    with pytest.raises(OfaError, match="kind='ridge'"):
        fit_predictor(space, archs[:20], truth[:20], "ridge")


@pytest.mark.unit
def test_save_load_round_trip_and_space_check(tmp_path):
    space = tiny_space()
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(40)]
    predictor = AccuracyPredictor.fit(space, archs, [sum(a.depths) / 10 for a in archs], epochs=5, hidden=(16, 16))
    predictor.info["spearman"] = 0.5
    predictor.save(str(tmp_path))
    loaded = AccuracyPredictor.load(str(tmp_path), space)
    np.testing.assert_allclose(loaded.predict(archs), predictor.predict(archs))
    assert loaded.info["spearman"] == 0.5 and (tmp_path / "predictor.json").exists()
    other = tiny_space(resolutions=(16, 32))  # same name, another space
    with pytest.raises(OfaError, match=r"trained for another space") as error:
        AccuracyPredictor.load(str(tmp_path), other)
    assert "\n" not in str(error.value)
    with pytest.raises(OfaError, match="no trained accuracy predictor"):
        AccuracyPredictor.load(str(tmp_path / "missing"), space)
