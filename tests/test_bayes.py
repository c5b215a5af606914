"""Bayes estimators on problems with closed-form answers (tarlib.bayes, section 2, eqs. (3)-(4))."""

from __future__ import annotations

import pytest
import torch

from tarlib import bayes


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: extra intra-op threads only add synchronisation, which gets very
    slow when other processes share the cores (tests run in parallel).  Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problem() -> bayes.LinearGaussian:
    return bayes.deblurring_problem()


@pytest.fixture(scope="module")
def samples(problem: bayes.LinearGaussian) -> tuple[torch.Tensor, torch.Tensor]:
    return problem.sample(100_000, torch.Generator().manual_seed(1))


def test_blur_is_ill_conditioned_and_mle_overfits(problem: bayes.LinearGaussian) -> None:
    assert torch.linalg.cond(problem.A) > 100
    # MLE = A⁺ reproduces y exactly, noise included, and pays for it in the risk
    _, y = problem.sample(5, torch.Generator().manual_seed(0))
    assert torch.allclose(problem.mle(y) @ problem.A.T, y, atol=1e-8)
    prior_risk = float(torch.trace(problem.Sigma_x))  # risk of the estimator x̂ = 0
    assert problem.risk(torch.linalg.pinv(problem.A)) > 5 * prior_risk
    assert problem.risk(problem.K) < 0.01 * prior_risk


def test_posterior_mean_is_orthogonal_to_the_data(problem, samples) -> None:
    """E[(x − E[x|y]) yᵀ] = 0 characterises the posterior mean among functions of y."""
    x, y = samples
    m = x.shape[0]
    residual = x - problem.posterior_mean(y)
    cross = residual.T @ y / m
    mc_scale = (residual.std(0)[:, None] * y.std(0)[None, :]) / m**0.5  # std of each entry's estimate
    assert (cross.abs() / mc_scale).max() < 5
    mle_cross = (x - problem.mle(y)).T @ y / m
    assert (mle_cross.abs() / mc_scale).max() > 100  # a poor estimator is clearly not orthogonal


def test_posterior_covariance_is_the_covariance_of_the_error(problem, samples) -> None:
    x, y = samples
    residual = x - problem.posterior_mean(y)
    empirical = residual.T @ residual / x.shape[0]
    assert bayes.relative_distance(empirical, problem.posterior_covariance()) < 0.03
    assert torch.allclose(problem.posterior_covariance(), problem.posterior_covariance().T)


def test_risk_formula_matches_monte_carlo_and_is_minimal_at_posterior_mean(problem, samples) -> None:
    x, y = samples
    mc_risk = float(((x - problem.posterior_mean(y)) ** 2).sum(1).mean())
    assert abs(mc_risk - problem.risk(problem.K)) < 0.02 * problem.risk(problem.K)
    for B in (0.9 * problem.K, 1.1 * problem.K, problem.K + 1e-3 * torch.randn_like(problem.K)):
        assert problem.risk(B) > problem.risk(problem.K)


def test_map_equals_posterior_mean_for_gaussians(problem, samples) -> None:
    _, y = samples
    y = y[:100]
    assert bayes.relative_distance(problem.map_estimate(y), problem.posterior_mean(y)) < 1e-8
    assert bayes.relative_distance(problem.mle(y), problem.posterior_mean(y)) > 1.0


def test_linear_estimator_trained_with_l2_approaches_posterior_mean(problem) -> None:
    generator = torch.Generator().manual_seed(2)
    x, y = problem.sample(10_000, generator)
    _, y_eval = problem.sample(1_000, generator)
    torch.manual_seed(0)
    R = torch.nn.Linear(problem.k, problem.n, bias=False, dtype=torch.float64)
    R, curve = bayes.train_estimator(
        R, x, y, "l2", steps=600, batch_size=256, lr=0.1, y_eval=y_eval, reference_eval=problem.posterior_mean(y_eval)
    )
    assert curve.distance[0] > 0.3  # it starts far away
    assert curve.distance[-1] < 0.03
    W = R.weight.detach()
    assert problem.risk(W) < 1.05 * problem.risk(problem.K)
    assert len(curve.step) == len(curve.distance) == len(curve.empirical_risk)


def test_spike_and_slab_closed_forms_match_monte_carlo() -> None:
    S = bayes.SpikeAndSlab()
    x, y = S.sample(1_000_000, torch.Generator().manual_seed(3))
    for y0 in (-1.6, -1.0, 0.3, 0.8, 1.3, 1.6):
        near = (y - y0).abs() < 0.025
        xs = x[near]
        assert xs.numel() > 1000
        t = torch.tensor([[y0]], dtype=torch.float64)
        assert abs(float(xs.mean()) - float(S.posterior_mean(t))) < 0.03
        assert abs(float(xs.median()) - float(S.posterior_median(t))) < 0.03
    # the median is a thresholding rule, the mean only shrinks
    t = torch.tensor([[0.8]], dtype=torch.float64)
    assert float(S.posterior_median(t)) == 0.0 and float(S.posterior_mean(t)) > 0.1


def test_l1_loss_learns_the_median_and_l2_the_mean() -> None:
    S = bayes.SpikeAndSlab()
    generator = torch.Generator().manual_seed(4)
    x, y = S.sample(20_000, generator)
    _, y_eval = S.sample(2_000, generator)  # distances in L²(P_y): where the data are
    mean, median = S.posterior_mean(y_eval), S.posterior_median(y_eval)
    assert bayes.relative_distance(mean, median) > 0.2  # the two Bayes estimators differ
    fitted = {}
    for loss in ("l2", "l1"):
        torch.manual_seed(0)
        R, _ = bayes.train_estimator(bayes.mlp(1, 1, width=32), x, y, loss, steps=1200, batch_size=256, lr=1e-2)
        with torch.no_grad():
            fitted[loss] = R(y_eval)
    assert bayes.relative_distance(fitted["l2"], mean) < 0.5 * bayes.relative_distance(fitted["l2"], median)
    assert bayes.relative_distance(fitted["l1"], median) < 0.7 * bayes.relative_distance(fitted["l1"], mean)


def test_bad_input_raises(problem) -> None:
    with pytest.raises(ValueError, match="y must be a batch"):
        problem.posterior_mean(torch.zeros(3, problem.k + 1))
    with pytest.raises(ValueError, match="Sigma_x must be"):
        bayes.LinearGaussian(torch.eye(4), torch.eye(5), 0.1)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        bayes.LinearGaussian(torch.eye(4), torch.eye(4), 0.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        bayes.LinearGaussian([[1.0]], torch.eye(1), 0.1)
    with pytest.raises(ValueError, match="loss must be one of"):
        bayes.train_estimator(bayes.mlp(1, 1), torch.zeros(4, 1), torch.zeros(4, 1), loss="huber")
    with pytest.raises(ValueError, match="both y_eval and reference_eval"):
        bayes.train_estimator(bayes.mlp(1, 1), torch.zeros(4, 1), torch.zeros(4, 1), y_eval=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="p must lie in"):
        bayes.SpikeAndSlab(p=1.5)
