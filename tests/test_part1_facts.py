"""Course part I: the closed-form facts behind notebooks 02 and 03, and the helpers they use.

- restricted estimator classes: risk = Bayes risk + distance to the posterior mean (eq. (3));
- the Bayes estimator of a classification task is P(z | x) (eqs. (5)-(6)), and with
  z ⊥ y | x, P(z | y) = E[P(z | x) | y] (section 4.3, eq. (24) of the paper);
- which estimator each loss asks for, on priors where mean, median and mode differ.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from test_bayes import one_thread  # noqa: E402, F401  (autouse: one thread for these tiny problems)

from tarlib import bayes, decisions, metrics, nets, physics, plotting, pretrained  # noqa: E402

F64 = torch.float64


@pytest.fixture(scope="module")
def problem() -> bayes.LinearGaussian:
    return bayes.deblurring_problem()


# ----------------------------------------------------------------------------- restricted classes


def test_risk_is_bayes_risk_plus_distance_to_posterior_mean(problem: bayes.LinearGaussian) -> None:
    g = torch.Generator().manual_seed(0)
    bayes_risk = problem.risk(problem.K)
    assert bayes_risk == pytest.approx(float(torch.trace(problem.posterior_covariance())), rel=1e-8)
    for B in (0.1 * torch.randn(problem.n, problem.k, generator=g, dtype=F64), problem.best_low_rank(3),
              torch.linalg.pinv(problem.A)):
        assert problem.risk(B) == pytest.approx(bayes_risk + problem.excess_risk(B), rel=1e-9)
        assert problem.excess_risk(B) > 0
    assert problem.excess_risk(problem.K) == pytest.approx(0.0, abs=1e-10)
    # the same split on samples: the cross term vanishes up to Monte-Carlo noise
    x, y = problem.sample(200_000, g)
    B = problem.best_low_rank(3)
    total = (x - y @ B.T).pow(2).sum(1).mean()
    split = (x - problem.posterior_mean(y)).pow(2).sum(1).mean() + (problem.posterior_mean(y) - y @ B.T).pow(2).sum(1).mean()
    assert float(total) == pytest.approx(float(split), rel=0.01)
    assert float(total) == pytest.approx(problem.risk(B), rel=0.02)


def test_best_low_rank_is_the_closest_member_of_its_class(problem: bayes.LinearGaussian) -> None:
    excess = [problem.excess_risk(problem.best_low_rank(r)) for r in (1, 2, 4, 8, problem.k)]
    assert all(a > b for a, b in zip(excess, excess[1:]))
    assert excess[-1] == pytest.approx(0.0, abs=1e-8)
    assert torch.linalg.matrix_rank(problem.best_low_rank(2)) == 2
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # any other rank-2 matrix, even the rank-2 truncation of K itself, is farther
        other = torch.randn(problem.n, 2, generator=g, dtype=F64) @ torch.randn(2, problem.k, generator=g, dtype=F64)
        assert problem.excess_risk(0.05 * other) > excess[1]
    U, S, Vh = torch.linalg.svd(problem.K)
    assert problem.excess_risk(U[:, :2] * S[:2] @ Vh[:2]) >= excess[1]
    with pytest.raises(ValueError, match="rank r"):
        problem.best_low_rank(0)


def test_erm_over_low_rank_maps_approaches_the_best_member(problem: bayes.LinearGaussian) -> None:
    x, y = problem.sample(20_000, torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    R, _ = bayes.train_estimator(bayes.LowRank(problem.k, problem.n, 2), x, y, "l2", steps=600, lr=0.05)
    best = problem.excess_risk(problem.best_low_rank(2))
    assert R.matrix.shape == (problem.n, problem.k)
    assert problem.excess_risk(R.matrix) < 1.3 * best


# ----------------------------------------------------------------------------- P(z | x) and z ⊥ y | x


@pytest.fixture(scope="module")
def classes() -> bayes.GaussianClasses:
    return bayes.GaussianClasses(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), std=0.8, prior=(0.6, 0.4))


def test_class_posterior_is_bayes_formula(classes: bayes.GaussianClasses) -> None:
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    dens = torch.stack([torch.distributions.MultivariateNormal(m, classes.std**2 * torch.eye(2, dtype=F64))
                        .log_prob(x).exp() for m in classes.means], dim=1)
    joint = classes.prior * dens
    assert torch.allclose(classes.posterior(x), joint / joint.sum(1, keepdim=True), atol=1e-12)


def test_trained_classifier_approaches_the_posterior(classes: bayes.GaussianClasses) -> None:
    z, x = classes.sample(20_000, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    T, _ = bayes.train_estimator(torch.nn.Linear(2, 2, dtype=F64), decisions.tau(z, 2).to(F64), x,
                                 "cross_entropy", steps=800, lr=0.05)
    _, x_new = classes.sample(5000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        gap = (torch.softmax(T(x_new), 1) - classes.posterior(x_new)).abs()[:, 1]
    assert float(gap.mean()) < 0.02


def test_task_posterior_from_data_integrates_over_x(classes: bayes.GaussianClasses) -> None:
    """P(z | y) = ∫ P(z | x) P(x | y) dx when y depends on z only through x (eq. (24))."""
    sigma = 0.7
    y = torch.tensor([[-1.0, 0.2], [0.1, 0.3], [1.5, 0.0]], dtype=F64)
    g = torch.Generator().manual_seed(3)
    draws = torch.stack([classes.posterior(classes.sample_x_given_y(y, sigma, g)) for _ in range(20_000)])
    assert torch.allclose(draws.mean(0), classes.data_posterior(y, sigma), atol=0.01)
    assert not torch.allclose(classes.posterior(y), classes.data_posterior(y, sigma), atol=0.01)


# ----------------------------------------------------------------------------- losses and estimators


def test_spike_and_slab_median_condition_is_exact() -> None:
    sparse = bayes.SpikeAndSlab(p=0.2, tau=1.0, sigma=0.5)
    y = torch.linspace(-4, 4, 4001, dtype=F64)
    zero = sparse.posterior_median(y) == 0
    assert torch.equal(sparse.median_is_zero(y), zero)
    w = sparse.slab_probability(y)
    assert bool(zero[w <= 0.5].all())  # the atom holding half the mass is sufficient ...
    assert bool((zero & (w > 0.5)).any())  # ... but not necessary


def test_spike_and_slab_map_is_not_the_limit_of_zero_one_rules() -> None:
    sparse = bayes.SpikeAndSlab(p=0.2, tau=1.0, sigma=0.5)
    y = torch.tensor([-2.0, 1.5, 2.5], dtype=F64)
    map_estimate = sparse.posterior_mode(y)
    assert bool((map_estimate != 0).all())
    estimates = [sparse.zero_one_estimate(y, eps) for eps in (0.1, 1e-3, 1e-6, 1e-9)]
    assert float(estimates[0][2]) == pytest.approx(float(map_estimate[2]))  # for large y a wide ball sits on the slab
    assert float(estimates[-1].abs().max()) < 1e-8  # the atom wins as ε → 0, for every y
    with pytest.raises(ValueError, match="eps"):
        sparse.zero_one_estimate(y, 0.0)


def test_mixture_estimators_match_a_numerical_posterior() -> None:
    prior = bayes.GaussianMixturePrior()
    t = torch.linspace(-6, 6, 120_001, dtype=F64)
    dt = float(t[1] - t[0])
    for y0 in (-1.0, 0.6, 1.0, 2.5):
        dens = sum(w * torch.exp(-0.5 * ((t - m) / s) ** 2) / s
                   for w, m, s in zip(prior.weights, prior.means, prior.stds))
        post = dens * torch.exp(-0.5 * ((y0 - t) / prior.sigma) ** 2)
        post = post / (post.sum() * dt)
        y = torch.tensor([y0], dtype=F64)
        assert float(prior.posterior_mean(y)) == pytest.approx(float((t * post).sum() * dt), abs=1e-6)
        median = float(t[torch.searchsorted(torch.cumsum(post, 0) * dt, torch.tensor([0.5], dtype=F64))])
        assert float(prior.posterior_median(y)) == pytest.approx(median, abs=1e-3)
        assert float(prior.posterior_mode(y)) == pytest.approx(float(t[post.argmax()]), abs=1e-3)
        width = 0.1
        kernel = torch.exp(-0.5 * (torch.arange(-600, 601, dtype=F64) * dt / width) ** 2)
        smooth = torch.nn.functional.conv1d(post[None, None], kernel[None, None], padding=600)[0, 0]
        assert float(prior.posterior_mode(y, width)) == pytest.approx(float(t[smooth.argmax()]), abs=1e-3)


def test_mixture_mean_median_and_mode_differ() -> None:
    prior = bayes.GaussianMixturePrior()
    y = torch.tensor([1.0], dtype=F64)
    mean, median, mode = prior.posterior_mean(y), prior.posterior_median(y), prior.posterior_mode(y)
    assert float(median) < float(mean) < float(mode)


def test_zero_one_surrogate_and_cross_entropy_loss() -> None:
    loss = bayes.zero_one_surrogate(0.1)
    x = torch.zeros(4, 1, dtype=F64)
    assert float(loss(x, x)) == 0.0
    assert float(loss(x + 10, x)) == pytest.approx(1.0)
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    z = torch.tensor([0, 1, 2, 1, 0])
    assert torch.allclose(bayes.cross_entropy_loss(logits, decisions.tau(z, 3)), metrics.cross_entropy(logits, z).mean())
    with pytest.raises(ValueError, match="width"):
        bayes.zero_one_surrogate(0)
    with pytest.raises(ValueError, match="loss must be one of"):
        bayes.train_estimator(bayes.mlp(1, 1), x, x, "hinge")


# ----------------------------------------------------------------------------- networks, weights, FBP


def test_learned_gradient_descent_iterates_end_in_its_output() -> None:
    M = physics.mnist_data_model()
    R = nets.LearnedGradientDescent(M, n_iter=3)
    y = M(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    xs = R.iterates(y)
    assert len(xs) == 4 and float(xs[0].abs().max()) == 0.0
    assert torch.equal(xs[-1], R(y))


def test_load_reconstruction_returns_r_only() -> None:
    R = pretrained.load_reconstruction("mnist_pretrain_T")
    assert isinstance(R, nets.LearnedGradientDescent) and not R.training
    assert torch.equal(next(R.parameters()), next(pretrained.load("mnist_pretrain_T").R.parameters()))
    with pytest.raises(ValueError, match="no reconstruction network"):
        pretrained.load_reconstruction("mnist_fbp_classifier")


def test_lambda_tomography_is_large_at_edges() -> None:
    A = physics.RayTransform(*physics.brain_geometry())
    r = torch.cdist(torch.stack(torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij"), -1).view(-1, 2),
                    torch.tensor([[63.5, 63.5]])).view(1, 1, 128, 128)
    disc = (r < 30).float()
    lam = physics.fbp(A, A(disc), filter="lambda")
    edge = lam[(r - 30).abs() < 1.5].abs().mean()
    assert float(lam[r < 15].abs().mean()) < 0.25 * float(edge)  # 30 angles leave streaks inside
    assert float(lam[r > 40].abs().mean()) < 0.25 * float(edge)
    assert torch.allclose(physics.fbp(A, 2 * A(disc), filter="lambda"), 2 * lam, atol=1e-4)


# ----------------------------------------------------------------------------- figures and widgets


def test_widgets_and_their_default_figures() -> None:
    g = torch.Generator().manual_seed(0)
    logits, z = 3 * torch.randn(200, 10, generator=g), torch.randint(0, 10, (200,), generator=g)
    x = torch.rand(3, 1, 16, 16, generator=g)
    masks = (torch.rand(3, 16, 16, generator=g) > 0.5).long()
    d = decisions.probabilities(torch.randn(3, 2, 16, 16, generator=g))
    for fig in (decisions.temperature_figure(logits, z, 2.0), decisions.dice_threshold_figure(x, masks, d, 0.3),
                bayes.spike_and_slab_figure(0.3, 0.4), plotting.task_diagram()):
        assert fig.axes
        plt.close(fig)
    assert torch.allclose(decisions.dice_by_threshold(d, masks, torch.tensor([0.5]))[0],
                          metrics.dice(torch.log(d), masks).mean())
    for widget in (decisions.temperature_explorer(logits, z), decisions.dice_threshold_explorer(x, masks, d),
                   bayes.spike_and_slab_explorer()):
        assert widget.children
    plt.close("all")
    with pytest.raises(ValueError, match="temperature"):
        decisions.temperature_figure(logits, z, 0.0)
