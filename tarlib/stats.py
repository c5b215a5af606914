"""Paired comparisons of models on the same test images.

The unit is the test image: two models evaluated on the same images (and the same
noise draws) give paired outcomes, and pairing removes the variance that the
images share.  One set of image resamples can serve many comparisons at once
(:func:`bootstrap_means`), so that contrasts between comparisons stay paired too;
:func:`holm` corrects a family of such tests.  The study uses them for its protocols'
tests (``results/PROTOCOL.md``) and for the robustness of section 7 (differences of
accuracy drops, image by image).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

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


def bootstrap_means(samples: Mapping[str, np.ndarray], n_resamples: int = 10_000, seed: int = 0) -> dict[str, np.ndarray]:
    """The means of several per-image vectors over one set of image resamples.

    Every vector in ``samples`` (one value per test image, all of one length) is
    averaged over the *same* ``n_resamples`` resamples of the image indices (with
    replacement, ``numpy.random.default_rng(seed)``), so that differences between
    the vectors' resampled means are paired, image by image.
    """
    arrays = {k: _paired(v, v, "bootstrap_means")[0] for k, v in samples.items()}
    sizes = {a.size for a in arrays.values()}
    if len(sizes) != 1 or n_resamples < 100:
        raise ValueError(f"need vectors of one length and n_resamples ≥ 100, got lengths {sorted(sizes)}, {n_resamples}")
    n, rng = sizes.pop(), np.random.default_rng(seed)
    means = {k: np.empty(n_resamples) for k in arrays}
    for start in range(0, n_resamples, 500):  # blocks of 500 resamples keep memory small
        stop = min(n_resamples, start + 500)
        index = rng.integers(0, n, size=(stop - start, n))
        for k, a in arrays.items():
            means[k][start:stop] = a[index].mean(axis=1)
    return means


def interval(resampled: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The two-sided percentile interval of bootstrap resamples at ``level``."""
    if not 0 < level < 1:
        raise ValueError(f"need 0 < level < 1, got {level}")
    low, high = np.quantile(np.asarray(resampled, dtype=float), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_p(resampled: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the mean is 0": 2·min(share ≤ 0, share ≥ 0), at least 1/n, at most 1."""
    r = np.asarray(resampled, dtype=float)
    return float(min(1.0, max(1.0 / r.size, 2 * min((r <= 0).mean(), (r >= 0).mean()))))


def holm(p_values: Mapping[str, float], alpha: float = 0.05) -> dict[str, dict[str, float | bool]]:
    """Holm's step-down correction of several tests at family level ``alpha``.

    The i-th smallest p-value (i = 0, 1, …) is tested at ``alpha / (m − i)`` and
    only while every smaller one was rejected.  Each hypothesis gets its adjusted
    p-value, its ``level`` (the confidence level of its corrected interval,
    1 − alpha / (m − i)) and whether it is ``rejected``.
    """
    if not p_values or not 0 < alpha < 1:
        raise ValueError(f"need at least one p-value and 0 < alpha < 1, got {dict(p_values)}, {alpha}")
    order = sorted(p_values, key=lambda k: p_values[k])
    m, running, rejecting, out = len(order), 0.0, True, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        rejecting = rejecting and p_values[key] <= alpha / (m - i)
        out[key] = {"p": p_values[key], "adjusted_p": running, "level": 1 - alpha / (m - i), "rejected": rejecting}
    return out


def paired_bootstrap(diff: np.ndarray, n_resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of per-image differences and its two-sided percentile bootstrap interval.

    ``diff[i]`` is model A's minus model B's score on image i (e.g. correctness
    averaged over noise draws and seeds).  Images are resampled with replacement
    ``n_resamples`` times with ``numpy.random.default_rng(seed)`` (:func:`bootstrap_means`).
    """
    d, _ = _paired(diff, diff, "paired_bootstrap")
    low, high = interval(bootstrap_means({"d": d}, n_resamples, seed)["d"], level)
    return {"mean": float(d.mean()), "low": low, "high": high, "n": int(d.size),
            "n_resamples": n_resamples, "level": level}


def paired_t(differences: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Two-sided t-test and interval for the mean of paired differences (e.g. one per seed), n − 1 df."""
    d, _ = _paired(differences, differences, "paired_t")
    if d.size < 2:
        raise ValueError(f"paired_t needs at least 2 differences, got {d.size}")
    se, df = float(d.std(ddof=1) / math.sqrt(d.size)), d.size - 1
    if se > 0:
        t = float(d.mean()) / se
    else:  # identical differences: infinitely sure of their sign, unless they are all 0
        t = math.copysign(math.inf, d.mean()) if d.mean() else 0.0
    half = float(_stats.t.ppf((1 + level) / 2, df)) * se
    return {"mean": float(d.mean()), "se": se, "t": t, "df": df, "p_value": float(2 * _stats.t.sf(abs(t), df)),
            "low": float(d.mean()) - half, "high": float(d.mean()) + half}


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
