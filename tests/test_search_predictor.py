"""Accuracy predictor: encoding, rank statistics, training on a known function, save / load."""

import itertools
import random

import numpy as np
import pytest

from helpers import tiny_space
from ofa_tf.errors import OfaError
from ofa_tf.search import AccuracyPredictor, ArchEncoder, cross_validated_spearman, kendall_tau, spearman
from ofa_tf.spaces import SPACES, get_space


@pytest.mark.parametrize("space", [get_space(n) for n in sorted(SPACES)] + [tiny_space()], ids=lambda s: s.name)
def test_batched_encoding_equals_space_encode(space):
    encoder = ArchEncoder(space)
    rng = random.Random(0)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(30)]
    assert encoder.size == space.encoding_size
    np.testing.assert_array_equal(encoder.encode(archs), np.stack([space.encode(a) for a in archs]))


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
