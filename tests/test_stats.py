"""tarlib.stats: paired comparisons of two models on the same test images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from tarlib import stats


def test_mcnemar_and_bootstrap() -> None:
    a = np.array([1] * 30 + [0] * 10 + [1] * 60)
    b = np.array([0] * 30 + [1] * 10 + [1] * 60)
    result = stats.mcnemar_exact(a, b)
    assert (result["n_a_only"], result["n_b_only"]) == (30, 10)
    assert result["p_value"] == pytest.approx(binomtest(30, 40, 0.5).pvalue) and result["p_value"] < 0.01
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
