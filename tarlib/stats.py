"""Paired comparisons of models on the same test images.

The unit is the test image: two models evaluated on the same images (and the same
noise draws) give paired outcomes, and pairing removes the variance that the
images share.  One set of image resamples can serve many comparisons at once
(:func:`bootstrap_means`), so that contrasts between comparisons stay paired too;
:func:`holm` corrects a family of such tests.  The study uses them for its protocols'
tests (``results/PROTOCOL.md``) and for the robustness of section 7 (differences of
accuracy drops, image by image).

The course's one rule for "A is better than B" (notebook 04) is :func:`compare`, and
:func:`compare_family` for several claims in one table (:func:`decide` when a study draws its
resamples itself):

- a difference is *resolved* when the paired bootstrap interval over test images
  (seed-mean of per-image scores on shared draws, 10,000 resamples) excludes 0 at 95 %
  (at its Holm level in a family) and every seed's difference has the same sign;
- a comparison of single-seed rows gets no verdict: one seed does not include training variance;
- choices behind the compared rows must be made on validation data: that is the caller's part.

:func:`paired_scores` builds the rule's [seeds, draws, images] arrays from per-run scores
(:class:`RunScores`) and refuses runs that are not paired by seed, draw and image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

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


RULE = ("resolved: the paired bootstrap interval over test images (10,000 resamples) excludes 0 at 95 % "
        "(Holm-corrected in a table of several) and every seed agrees in sign")  # stated in tables that use it
ONE_SEED = "one seed: training variance not included"


@dataclass(frozen=True)
class Verdict:
    """The rule's answer for one comparison of A with B (differences A − B; scores such as correctness in [0, 1])."""

    mean: float  # per image: mean over seeds and draws of A − B; then over images
    low: float
    high: float
    level: float  # of the interval: 0.95, or the Holm level in a family
    per_seed: tuple[float, ...]
    resolved: bool | None  # None: one seed, no verdict

    @property
    def text(self) -> str:
        """``resolved: A better`` / ``resolved: B better`` / ``not resolved`` / the one-seed label."""
        return self.describe()

    def describe(self, a: str = "A", b: str = "B") -> str:
        """:attr:`text` with the two sides named, e.g. ``resolved: C = 0.01 better``."""
        if self.resolved is None:
            return ONE_SEED
        return (f"resolved: {a} better" if self.mean > 0 else f"resolved: {b} better") if self.resolved else "not resolved"

    def points(self) -> str:
        """The difference and its interval in percentage points, e.g. ``+0.04 pp [−0.01, +0.10]`` (its level
        added when it is not 95 %, as in a Holm-corrected family)."""
        level = "" if abs(self.level - 0.95) < 1e-12 else f" at {100 * self.level:.4g} %"
        return f"{100 * self.mean:+.2f} pp [{100 * self.low:+.2f}, {100 * self.high:+.2f}]{level}"


def _per_image(scores: np.ndarray, what: str) -> np.ndarray:
    """Scores as [seeds, draws, images]: [images] is one seed and one draw, [seeds, images] one draw per seed."""
    a = np.asarray(scores, dtype=float)
    if a.ndim not in (1, 2, 3) or a.size == 0:
        raise ValueError(f"{what}: expected scores shaped [images], [seeds, images] or [seeds, draws, images], got {a.shape}")
    return a.reshape({1: (1, 1, -1), 2: (a.shape[0], 1, -1), 3: a.shape}[a.ndim])


def compare_family(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], alpha: float = 0.05,
                   n_resamples: int = 10_000, seed: int = 0) -> dict[str, Verdict]:
    """The course's rule (module docstring) for several comparisons (A, B) on the same test images.

    Each A and B holds per-image scores as [seeds, draws, images] (or [seeds, images], or [images]
    for one seed), seeds paired.  One set of image resamples serves every comparison
    (:func:`bootstrap_means`); Holm's correction (:func:`holm`) over the comparisons that have more
    than one seed sets each one's interval level.
    """
    diffs, seeds = {}, {}
    for name, (a, b) in pairs.items():
        a, b = _per_image(a, f"{name}: A"), _per_image(b, f"{name}: B")
        if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
            raise ValueError(f"{name}: A and B need the same seeds and images, got {a.shape} and {b.shape}")
        diffs[name] = a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))
        seeds[name] = tuple(float(x) for x in a.mean(axis=(1, 2)) - b.mean(axis=(1, 2)))
    resampled = bootstrap_means(diffs, n_resamples, seed)
    return decide(resampled, {k: float(d.mean()) for k, d in diffs.items()}, seeds, alpha)


def decide(resampled: Mapping[str, np.ndarray], means: Mapping[str, float], per_seed: Mapping[str, tuple[float, ...]],
           alpha: float = 0.05) -> dict[str, Verdict]:
    """The rule's verdicts from resampled mean differences that the caller drew (:func:`bootstrap_means`, e.g. one
    set shared by a whole study), each comparison's mean difference and its per-seed differences: Holm over the
    comparisons with more than one seed sets each interval's level; one seed gets no verdict."""
    tested = [k for k in resampled if len(per_seed[k]) > 1]
    corrected = holm({k: bootstrap_p(resampled[k]) for k in tested}, alpha) if tested else {}
    out = {}
    for name in resampled:
        level = float(corrected[name]["level"]) if name in corrected else 1 - alpha
        low, high = interval(resampled[name], level)
        agree = all(d > 0 for d in per_seed[name]) or all(d < 0 for d in per_seed[name])
        resolved = None if name not in corrected else bool((low > 0 or high < 0) and agree)
        out[name] = Verdict(means[name], low, high, level, tuple(per_seed[name]), resolved)
    return out


def effective_size(values: np.ndarray) -> float:
    """How many independent values a sequence of correlated ones is worth (e.g. per-slice scores of neighbouring
    slices of one brain): n (1 − ρ₁) / (1 + ρ₁), with ρ₁ the lag-1 autocorrelation (an AR(1) approximation;
    n itself when ρ₁ ≤ 0)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size < 3:
        raise ValueError(f"effective_size needs a 1-D sequence of at least 3 values in order, got shape {x.shape}")
    x = x - x.mean()
    if not np.any(x):
        raise ValueError("effective_size: the values are all equal, so their correlation is undefined")
    rho = float((x[:-1] * x[1:]).sum() / (x * x).sum())
    return float(x.size) if rho <= 0 else x.size * (1 - rho) / (1 + rho)


def detectable_effect(diff: np.ndarray, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true mean difference that a paired test at ``level`` finds with probability ``power``,
    for per-image differences like ``diff`` (normal approximation: (z_{(1+level)/2} + z_power) · sd / √n)."""
    d, _ = _paired(diff, diff, "detectable_effect")
    z = float(_stats.norm.ppf((1 + level) / 2) + _stats.norm.ppf(power))
    return z * float(d.std(ddof=1)) / math.sqrt(d.size)


def compare(a: np.ndarray, b: np.ndarray, n_resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> Verdict:
    """The course's rule for one comparison of A with B (see :func:`compare_family` for the shapes)."""
    return compare_family({"A − B": (a, b)}, 1 - level, n_resamples, seed)["A − B"]


@dataclass(frozen=True)
class RunScores:
    """Per-image scores of one trained model, as one run records them: its ``strategy`` and ``seed``, the shared
    noise ``draws`` it was evaluated on, the test ``images`` (indices into the test set, in the order scored) and
    ``scores`` shaped [draws, images] (e.g. correctness)."""

    strategy: str
    seed: int
    draws: tuple[int, ...]
    images: tuple[int, ...]
    scores: np.ndarray


def _check_run(run: RunScores) -> None:
    shape = np.shape(run.scores)
    if shape != (len(run.draws), len(run.images)) or not run.images:
        raise ValueError(f"{run.strategy}, seed {run.seed}: scores must be shaped [draws, images] = "
                         f"[{len(run.draws)}, {len(run.images)}] (and not empty), got {shape}")
    if len(set(run.draws)) != len(run.draws) or len(set(run.images)) != len(run.images):
        raise ValueError(f"{run.strategy}, seed {run.seed}: a draw or an image index appears twice")


def paired_scores(runs: list[RunScores], a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """The scores of strategies ``a`` and ``b`` as [seeds, draws, images], paired for :func:`compare`.

    Pairing is what makes the rule's differences image by image: the two strategies must have the same seeds
    (each seed's A and B share their pre-trained networks), and every run the same shared noise draws and the
    same test images in the same order.  Anything else raises a ``ValueError`` that says what differs; the
    seeds come out in increasing order.
    """
    by_key: dict[tuple[str, int], RunScores] = {}
    for run in runs:
        _check_run(run)
        if (run.strategy, run.seed) in by_key:
            raise ValueError(f"two runs of {run.strategy} with seed {run.seed}")
        by_key[(run.strategy, run.seed)] = run
    seeds = {s: sorted(seed for strategy, seed in by_key if strategy == s) for s in (a, b)}
    for s in (a, b):
        if not seeds[s]:
            raise ValueError(f"no run of strategy {s!r}; the runs are of {sorted({k[0] for k in by_key})}")
    if seeds[a] != seeds[b]:
        raise ValueError(f"not paired: {a} has seeds {seeds[a]}, {b} has seeds {seeds[b]}; compare the seeds both have")
    first = by_key[(a, seeds[a][0])]
    for (strategy, seed), run in sorted(by_key.items()):
        if strategy not in (a, b):
            continue
        where = f"{strategy}, seed {seed} against {a}, seed {first.seed}"
        if tuple(run.draws) != tuple(first.draws):
            raise ValueError(f"not paired: {where}: draws {list(run.draws)} against {list(first.draws)} (the draws "
                             "must be the shared ones, in the same order)")
        if tuple(run.images) != tuple(first.images):
            same = sorted(run.images) == sorted(first.images)
            raise ValueError(f"not paired: {where}: " + ("the same images in another order; sort both runs by image "
                                                         "index first" if same else "different test images"))
    A, B = (np.stack([np.asarray(by_key[(s, seed)].scores, dtype=float) for seed in seeds[s]]) for s in (a, b))
    return A, B
