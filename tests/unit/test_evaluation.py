"""pass@k against brute force and the Vendi score on known geometries, raw and bootstrap-
standardised (the sentence embeddings, which load a model, are in
tests/integration/test_embeddings.py)."""

import itertools
import math

import numpy as np
import pytest

from soar.evaluation import mean_pass_at_k, pass_at_k, standardised_vendi, vendi_score


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_pass_at_k_equals_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    assert pass_at_k(1024, 0, 32) == 0.0
    assert pass_at_k(1024, 1, 1) == pytest.approx(1 / 1024)
    assert pass_at_k(1024, 1, 32) == pytest.approx(32 / 1024)
    assert pass_at_k(1024, 1000, 32) == 1.0


def test_pass_at_k_rejects_impossible_arguments():
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)


def test_mean_pass_at_k_averages_problems():
    result = mean_pass_at_k([0, 1, 4], n=4, ks=[1, 2, 4])
    assert result[1] == pytest.approx((0 + 0.25 + 1) / 3)
    assert result[2] == pytest.approx((0 + 0.5 + 1) / 3)
    assert result[4] == pytest.approx((0 + 1 + 1) / 3)


def test_mean_pass_at_k_refuses_k_above_samples():
    with pytest.raises(ValueError, match=r"k=\[8\] needs at least that many samples, got n=4"):
        mean_pass_at_k([1, 2], n=4, ks=[1, 8])
    with pytest.raises(ValueError, match="at least one problem"):
        mean_pass_at_k([], n=4, ks=[1])


def test_vendi_is_one_for_identical_items():
    assert vendi_score(np.tile([[0.3, -1.2, 2.0]], (5, 1))) == pytest.approx(1.0)


def test_vendi_counts_orthogonal_items():
    # Scaled and in a higher dimension than m: only directions matter.
    embeddings = np.zeros((4, 10))
    embeddings[np.arange(4), [0, 3, 5, 9]] = [1.0, 2.0, 0.5, 7.0]
    assert vendi_score(embeddings) == pytest.approx(4.0)
    assert vendi_score(np.eye(3)[[0, 0, 1, 1, 2, 2]]) == pytest.approx(3.0)  # pairs of duplicates


def test_vendi_lies_between_for_partly_similar_items():
    score = vendi_score([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    assert 1.0 < score < 3.0


def test_vendi_rejects_zero_or_missing_embeddings():
    with pytest.raises(ValueError, match="all zeros"):
        vendi_score([[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="non-empty"):
        vendi_score(np.zeros((0, 3)))


def expected_resampled_vendi(m: int, size: int) -> float:
    """Mean Vendi of every ordered draw of `size` rows, with replacement, from m orthogonal items:
    a draw with counts c_i has K/size = diag(c_i/size) on its distinct items, so its score is
    exp(entropy of the c_i/size)."""
    scores = []
    for draw in itertools.product(range(m), repeat=size):
        shares = [draw.count(i) / size for i in set(draw)]
        scores.append(math.exp(-sum(p * math.log(p) for p in shares)))
    return sum(scores) / len(scores)


def test_standardised_vendi_is_one_for_identical_items():
    identical = np.tile([[0.3, -1.2, 2.0]], (5, 1))
    assert standardised_vendi(identical, 128, seed=7) == pytest.approx(1.0)


@pytest.mark.parametrize(("m", "size"), [(3, 3), (2, 5), (4, 2)])
def test_standardised_vendi_of_orthogonal_items_is_the_expected_resampled_score(m, size):
    # 3 of 3: (3 x 1 + 18 x exp(H(2/3, 1/3)) + 6 x 3) / 27 = 2.0377...; many resamples bring
    # the seeded mean close to that expectation.
    embeddings = np.eye(m) * np.arange(1, m + 1)[:, None]  # scaled: only directions count
    score = standardised_vendi(embeddings, size, seed=1, resamples=20_000)
    assert score == pytest.approx(expected_resampled_vendi(m, size), abs=0.02)


def test_standardised_vendi_brute_force_is_hand_checkable():
    two_thirds = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert expected_resampled_vendi(3, 3) == pytest.approx(
        (3 + 18 * math.exp(two_thirds) + 18) / 27
    )


def test_standardised_vendi_is_a_function_of_its_seed():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(40, 16))
    first = standardised_vendi(embeddings, 128, seed=3)
    assert standardised_vendi(embeddings, 128, seed=3) == first
    assert standardised_vendi(embeddings, 128, seed=4) != first
    assert 1.0 < first < 16.0  # at most the dimension: 16 directions


def test_standardised_vendi_rejects_an_empty_resample():
    with pytest.raises(ValueError, match="size >= 1"):
        standardised_vendi(np.eye(3), 0)
