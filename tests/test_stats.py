"""tarlib.stats: McNemar, the paired bootstrap, shared resamples, percentile intervals, bootstrap p-values,
Holm, paired t."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tarlib import stats


def test_mcnemar_and_bootstrap() -> None:
    a = np.array([1] * 30 + [0] * 10 + [1] * 60)
    b = np.array([0] * 30 + [1] * 10 + [1] * 60)
    result = stats.mcnemar_exact(a, b)
    assert (result["n_a_only"], result["n_b_only"]) == (30, 10)
    assert result["p_value"] == pytest.approx(scipy_stats.binomtest(30, 40, 0.5).pvalue) and result["p_value"] < 0.01
    assert stats.mcnemar_exact(a, a)["p_value"] == 1.0
    rng = np.random.default_rng(1)
    diff = rng.normal(0.02, 0.3, size=5000)
    boot = stats.paired_bootstrap(diff, n_resamples=2000, seed=0)
    se = diff.std() / np.sqrt(diff.size)
    assert boot["low"] < boot["mean"] < boot["high"]
    assert boot["high"] - boot["low"] == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert stats.paired_bootstrap(diff, n_resamples=2000, seed=0) == boot
    t = stats.one_sided_t(np.array([0.01, 0.012, 0.011]))
    assert t["significant"] and t["critical"] == pytest.approx(2.92, abs=0.01)
    assert not stats.one_sided_t(np.array([0.01, -0.02, 0.011]))["significant"]
    with pytest.raises(ValueError, match="booleans"):
        stats.mcnemar_exact(np.array([0.5]), np.array([1]))
    with pytest.raises(ValueError, match="1-D"):
        stats.paired_bootstrap(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n_resamples"):
        stats.paired_bootstrap(diff, n_resamples=10)


def test_one_set_of_resamples_pairs_every_comparison() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(300), rng.random(300)
    means = stats.bootstrap_means({"a": a, "b": b, "a-b": a - b}, n_resamples=1000, seed=3)
    # the same images in every resample: the resampled difference is the difference of resampled means
    assert np.allclose(means["a"] - means["b"], means["a-b"])
    assert abs(means["a"].mean() - a.mean()) < 0.01
    again = stats.bootstrap_means({"a-b": a - b}, n_resamples=1000, seed=3)["a-b"]
    assert np.array_equal(again, means["a-b"]), "a vector's resamples do not depend on the other vectors"
    boot = stats.paired_bootstrap(a - b, n_resamples=1000, seed=3)
    assert (boot["low"], boot["high"]) == stats.interval(again)
    with pytest.raises(ValueError, match="one length"):
        stats.bootstrap_means({"a": a, "short": b[:10]})


def test_bootstrap_p_value() -> None:
    assert stats.bootstrap_p(np.full(1000, 0.2)) == 1 / 1000  # never 0: at least one resample's worth
    assert stats.bootstrap_p(np.linspace(-1, 1, 1001)) == 1.0
    assert stats.bootstrap_p(np.r_[np.full(10, -0.1), np.full(990, 0.1)]) == pytest.approx(0.02)


def test_holm_on_a_known_case() -> None:
    out = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03}, alpha=0.05)
    # sorted a (0.01 ≤ 0.05/3: rejected), c (0.03 > 0.05/2: kept), b (kept: the step-down has stopped)
    assert [out[k]["rejected"] for k in "abc"] == [True, False, False]
    assert [out[k]["adjusted_p"] for k in "acb"] == pytest.approx([0.03, 0.06, 0.06])
    assert [out[k]["level"] for k in "acb"] == pytest.approx([1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05])
    with pytest.raises(ValueError):
        stats.holm({})


def test_paired_t_matches_scipy() -> None:
    d = np.array([0.3, 0.5, 0.1])
    out = stats.paired_t(d)
    ref = scipy_stats.ttest_1samp(d, 0.0)
    assert out["t"] == pytest.approx(ref.statistic) and out["p_value"] == pytest.approx(ref.pvalue)
    assert out["df"] == 2 and out["low"] < d.mean() < out["high"]
    assert out["high"] - d.mean() == pytest.approx(scipy_stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3))
    assert stats.paired_t(np.array([0.2, 0.2]))["t"] == np.inf


def _pair(better: int, worse: int, n: int = 2000, seeds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness [seeds, images]: B right on every image but the last ``better`` (where A is right
    instead), A wrong on the first ``worse`` (where B is right), in every seed."""
    a, b = np.ones((seeds, n)), np.ones((seeds, n))
    b[:, n - better:] = 0
    a[:, :worse] = 0
    return a, b


def test_the_course_rule_resolves_a_clear_difference_and_labels_one_seed() -> None:
    clear = stats.compare(*_pair(120, 20))
    assert clear.resolved and clear.text == "resolved: A better" and clear.low > 0
    assert clear.mean == pytest.approx(0.05) and clear.per_seed == pytest.approx((0.05,) * 3)
    assert stats.compare(*_pair(20, 120)).text == "resolved: B better"
    one = stats.compare(*_pair(120, 20, seeds=1))
    assert one.resolved is None and one.text == stats.ONE_SEED and one.low > 0  # an interval, but no verdict
    assert stats.compare(*_pair(30, 30)).text == "not resolved"
    assert clear.points() == f"+5.00 pp [{100 * clear.low:+.2f}, {100 * clear.high:+.2f}]"


def test_the_course_rule_needs_every_seed_to_agree() -> None:
    a, b = _pair(150, 10)
    b[2] = a[2] + 0  # seed 2: no difference at all; seeds 0 and 1 carry a large one
    b[2, :40] = 1
    a[2, :40] = 0  # seed 2 now favours B
    verdict = stats.compare(a, b)
    assert verdict.low > 0 and min(verdict.per_seed) < 0 and verdict.resolved is False


def test_holm_in_a_table_of_claims_can_undo_a_verdict_that_stands_alone() -> None:
    borderline = _pair(45, 25)  # p ≈ 0.02: resolved at 95 %, not at Holm's 98.75 % among four
    alone = stats.compare(*borderline)
    assert alone.resolved and alone.level == 0.95
    family = stats.compare_family({"borderline": borderline, **{f"null {i}": _pair(30, 30) for i in range(3)}})
    assert family["borderline"].level == pytest.approx(1 - 0.05 / 4) and family["borderline"].resolved is False
    assert family["borderline"].mean == alone.mean and family["null 0"].text == "not resolved"


def test_the_course_rule_says_what_it_expected() -> None:
    with pytest.raises(ValueError, match="same seeds and images"):
        stats.compare(np.ones((3, 10)), np.ones((2, 10)))
    with pytest.raises(ValueError, match=r"expected scores shaped \[images\]"):
        stats.compare(np.ones((1, 1, 1, 4)), np.ones(4))
    draws = stats.compare(np.ones((3, 5, 100)), np.zeros((3, 5, 100)))  # [seeds, draws, images]
    assert draws.mean == 1 and draws.resolved


def test_the_detectable_effect_shrinks_with_the_square_root_of_the_images() -> None:
    rng = np.random.default_rng(0)
    diff = rng.choice([-1.0, 0.0, 1.0], p=[0.02, 0.96, 0.02], size=10_000)
    mde = stats.detectable_effect(diff)
    assert mde == pytest.approx((1.959964 + 0.841621) * diff.std(ddof=1) / 100, rel=1e-5)
    assert stats.detectable_effect(np.tile(diff, 4)) == pytest.approx(mde / 2, rel=1e-3)
    # simulated: a true effect of that size is found about 80 % of the time
    found = [stats.paired_t(rng.choice([-1.0, 0.0, 1.0], p=[0.02 - mde / 2, 0.96, 0.02 + mde / 2], size=10_000))
             ["p_value"] < 0.05 for _ in range(400)]
    assert 0.72 < np.mean(found) < 0.88


def test_effective_size_counts_correlated_neighbours_as_fewer() -> None:
    rng = np.random.default_rng(0)
    independent = rng.normal(size=4000)
    assert 3600 < stats.effective_size(independent) <= 4000
    smooth = np.convolve(rng.normal(size=4003), np.ones(4) / 4, mode="valid")  # lag-1 correlation 3/4
    assert abs(stats.effective_size(smooth) / 4000 - (1 - 0.75) / (1 + 0.75)) < 0.03
    alternating = np.tile([1.0, -1.0], 10)  # negative correlation: no fewer than n
    assert stats.effective_size(alternating) == 20
    with pytest.raises(ValueError, match="at least 3"):
        stats.effective_size(np.ones(2))
    with pytest.raises(ValueError, match="1-D"):
        stats.effective_size(np.ones((3, 4)))
    with pytest.raises(ValueError, match="all equal"):
        stats.effective_size(np.ones(5))
