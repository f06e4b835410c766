"""pass@k against brute force and the Vendi score on known geometries (the sentence embeddings,
which load a model, are in tests/integration/test_embeddings.py)."""

import itertools

import numpy as np
import pytest

from soar.evaluation import mean_pass_at_k, pass_at_k, vendi_score


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
