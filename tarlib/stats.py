"""Paired comparisons of two models on the same test images.

The unit is the test image: two models evaluated on the same images (and the same
noise draws) give paired outcomes, and pairing removes the variance that the
images share.  The study uses them for its protocol's tests (``results/PROTOCOL.md``)
and for the robustness of section 7 (differences of accuracy drops, image by image).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _stats


def _paired(a: np.ndarray, b: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"{what} needs two 1-D arrays of equal, non-zero length, got {a.shape} and {b.shape}")
    return a, b


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """McNemar's exact test of two classifiers' per-image correctness (booleans), two-sided.

    Only the discordant images count: n_ab (A right, B wrong) and n_ba.  Under the
    null hypothesis of equal accuracy, n_ab ~ Binomial(n_ab + n_ba, 1/2).
    """
    a, b = _paired(correct_a, correct_b, "mcnemar_exact")
    if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
        raise ValueError("mcnemar_exact expects per-image correctness as booleans (0/1)")
    n_ab, n_ba = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    n = n_ab + n_ba
    p = 1.0 if n == 0 else float(_stats.binomtest(n_ab, n, 0.5).pvalue)
    return {"n_a_only": n_ab, "n_b_only": n_ba, "p_value": p}


def paired_bootstrap(diff: np.ndarray, n_resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of per-image differences and its two-sided percentile bootstrap interval.

    ``diff[i]`` is model A's minus model B's score on image i (e.g. correctness
    averaged over noise draws and seeds).  Images are resampled with replacement
    ``n_resamples`` times with ``numpy.random.default_rng(seed)``.
    """
    d, _ = _paired(diff, diff, "paired_bootstrap")
    if n_resamples < 100 or not 0 < level < 1:
        raise ValueError(f"need n_resamples ≥ 100 and 0 < level < 1, got {n_resamples}, {level}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 500):  # blocks of 500 resamples keep memory small
        stop = min(n_resamples, start + 500)
        means[start:stop] = d[rng.integers(0, d.size, size=(stop - start, d.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high), "n": int(d.size),
            "n_resamples": n_resamples, "level": level}


def one_sided_t(differences: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """One-sided t-test that the mean of paired differences (e.g. per seed) is > 0.

    Returns the mean, its standard error, t = mean / SE, the critical value of
    Student's t with n − 1 degrees of freedom and whether t exceeds it.
    """
    d, _ = _paired(differences, differences, "one_sided_t")
    if d.size < 2:
        raise ValueError(f"one_sided_t needs at least 2 differences, got {d.size}")
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    critical = float(_stats.t.ppf(level, d.size - 1))
    t = math.inf if se == 0 and d.mean() > 0 else (float(d.mean()) / se if se > 0 else 0.0)
    return {"mean": float(d.mean()), "se": se, "t": t, "critical": critical, "significant": t > critical}
