"""Shapes, dtypes, gradients and input checks of the networks in tarlib.nets."""

from __future__ import annotations

import math

import pytest
import torch

from tarlib import nets, physics


@pytest.fixture(scope="module")
def mnist_M() -> physics.DataModel:
    return physics.mnist_data_model()


@pytest.fixture(scope="module")
def brain_A() -> physics.RayTransform:
    return physics.RayTransform(*physics.brain_geometry())


def _all_parameters_get_gradients(module: torch.nn.Module, out: torch.Tensor) -> None:
    module.zero_grad()
    out.float().square().mean().backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"


def test_learned_gradient_descent_shapes_and_gradients(mnist_M) -> None:
    torch.manual_seed(0)
    R = nets.LearnedGradientDescent(mnist_M, n_iter=3, n_memory=5, width=8)
    y = mnist_M(torch.rand(4, 1, 28, 28))
    x_hat = R(y)
    assert x_hat.shape == (4, 1, 28, 28) and x_hat.dtype == torch.float32
    assert torch.isfinite(x_hat).all()
    assert len(R.updates) == 3 and R.updates[0][0].in_channels == 2 + 5 and R.updates[0][-1].out_channels == 1 + 5
    _all_parameters_get_gradients(R, x_hat)


def test_learned_gradient_descent_works_for_gaussian_data() -> None:
    A = physics.RayTransform(*physics.mnist_geometry())
    M = physics.DataModel(A, physics.GaussianNoise(0.05, relative=False))
    R = nets.LearnedGradientDescent(M, n_iter=2, width=8)
    # Gaussian nll ‖Ax − y‖²/(2σ²) has Hessian AᵀA/σ²: the scale L is ‖A‖²/σ²
    assert math.isclose(1.0 / R.grad_scale, A.norm() ** 2 / 0.05**2, rel_tol=1e-6)
    assert R(M(torch.rand(2, 1, 28, 28))).shape == (2, 1, 28, 28)


def test_nll_curvature_of_poisson_data(mnist_M) -> None:
    # at x̄ = 0 the Poisson Hessian is μ²·I0·AᵀA: its top eigenvalue is μ²·I0·‖A‖²
    noise = mnist_M.noise
    expected = noise.mu**2 * noise.photons_per_line * mnist_M.A.norm() ** 2
    assert math.isclose(nets.nll_curvature(mnist_M, level=0.0, n_iter=50), expected, rel_tol=1e-4)
    assert nets.nll_curvature(mnist_M) < expected  # attenuation lowers the curvature at x̄ = 0.5


def test_learned_primal_dual_shapes_and_normalisation(brain_A) -> None:
    torch.manual_seed(0)
    R = nets.LearnedPrimalDual(brain_A, n_iter=2, n_primal=5, n_dual=5, width=8)
    assert math.isclose(R.scale, 1.0 / brain_A.norm())
    prelus = [m for m in R.modules() if isinstance(m, torch.nn.PReLU)]
    assert prelus and all(m.weight.numel() == 8 and torch.all(m.weight == 0) for m in prelus)
    assert not any("_A_" in key for key in R.state_dict()), "operator matrices must not be in the state dict"
    x_hat = R(brain_A(torch.rand(2, 1, 128, 128)))
    assert x_hat.shape == (2, 1, 128, 128) and x_hat.dtype == torch.float32
    _all_parameters_get_gradients(R, x_hat)


def test_backprojection_is_an_affine_function_of_the_adjoint(mnist_M) -> None:
    """Aᵀ((I0 − y)/(I0 μ))/‖A‖²: no parameters; it moves with Aᵀy only (⟨A x, y⟩ = ⟨x, Aᵀy⟩); bad input refused."""
    I0, mu = mnist_M.noise.photons_per_line, mnist_M.noise.mu
    R = nets.Backprojection(mnist_M.A, I0, mu)
    x, y = torch.rand(2, 1, 28, 28), 60 * torch.rand(2, 1, *mnist_M.A.range_shape)
    assert nets.n_parameters(R) == 0 and R(y).shape == x.shape
    moved = R(y + y) - R(y)  # the affine part cancels: −Aᵀy/(I0 μ ‖A‖²)
    inner = (mnist_M.A(x) * y).sum()
    assert torch.allclose(inner, -(x * moved).sum() * I0 * mu / R.scale, rtol=1e-4)
    with pytest.raises(ValueError, match="Backprojection"):
        R(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="must be > 0"):
        nets.Backprojection(mnist_M.A, 0, mu)


def test_fbp_and_fbp_unet(brain_A) -> None:
    x = torch.zeros(1, 1, 128, 128)
    x[..., 40:90, 30:100] = 1.0
    fbp = nets.FBP(brain_A)(brain_A(x))
    assert fbp.shape == x.shape and (fbp - x).norm() / x.norm() < 0.3
    R = nets.FBPUNet(brain_A, nets.UNet(1, 1, depth=2, width=4))
    out = R(brain_A(x))
    assert out.shape == x.shape
    _all_parameters_get_gradients(R, out)
    with pytest.raises(ValueError, match="out_ch=1"):
        nets.FBPUNet(brain_A, nets.UNet(1, 2, depth=1, width=4))


def test_classifier_is_the_papers_cnn() -> None:
    T = nets.Classifier()
    convs = [m for m in T.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in T.modules()) == 3
    logits = T(torch.rand(5, 1, 28, 28))
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        T(torch.rand(5, 1, 32, 32))


@pytest.mark.parametrize("depth, width", [(0, 4), (2, 4), (3, 8)])
def test_unet_shapes(depth: int, width: int) -> None:
    U = nets.UNet(in_ch=1, out_ch=2, depth=depth, width=width)
    out = U(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 2, 32, 32) and out.dtype == torch.float32
    _all_parameters_get_gradients(U, out)


def test_unet_rejects_sizes_it_cannot_pool() -> None:
    with pytest.raises(ValueError, match="divisible by 8"):
        nets.UNet(depth=3)(torch.rand(1, 1, 28, 28))


def test_sinogram_classifier_and_task_adapted_without_R(mnist_M) -> None:
    S = nets.SinogramClassifier(mnist_M.A.range_shape)
    y = mnist_M(torch.rand(3, 1, 28, 28))
    model = nets.TaskAdapted(None, S)
    x_hat, logits = model(y)
    assert x_hat is None and logits.shape == (3, 10)
    with pytest.raises(ValueError, match=r"\[B, 1, 5, 25\]"):
        S(torch.rand(3, 1, 28, 28))


def test_task_adapted_returns_reconstruction_and_decision(mnist_M) -> None:
    torch.manual_seed(0)
    model = nets.TaskAdapted(nets.LearnedGradientDescent(mnist_M, n_iter=2, width=8), nets.Classifier())
    y = mnist_M(torch.rand(2, 1, 28, 28))
    x_hat, logits = model(y)
    assert x_hat.shape == (2, 1, 28, 28) and logits.shape == (2, 10)
    assert torch.equal(logits, model.T(x_hat)), "eq. (10): the decision is T applied to R(y)"


def test_reconstructions_reject_wrong_data(mnist_M, brain_A) -> None:
    with pytest.raises(ValueError, match=r"\[B, 1, 5, 25\]"):
        nets.LearnedGradientDescent(mnist_M, n_iter=1, width=4)(torch.rand(2, 1, 30, 183))
    with pytest.raises(ValueError, match=r"\[B, 1, 30, 183\]"):
        nets.LearnedPrimalDual(brain_A, n_iter=1, width=4)(torch.rand(2, 1, 5, 25))
    with pytest.raises(ValueError, match="n_iter"):
        nets.LearnedGradientDescent(mnist_M, n_iter=0)


def test_networks_run_under_mixed_precision(mnist_M, brain_A) -> None:
    """Under autocast (as on a GPU) the physics stays in float32 and the outputs stay finite."""
    torch.manual_seed(0)
    lgd = nets.TaskAdapted(nets.LearnedGradientDescent(mnist_M, n_iter=2, width=8), nets.Classifier())
    lpd = nets.TaskAdapted(nets.LearnedPrimalDual(brain_A, n_iter=1, width=4), nets.UNet(1, 2, depth=1, width=4))
    y_mnist = mnist_M(torch.rand(2, 1, 28, 28))
    y_brain = brain_A(torch.rand(1, 1, 128, 128))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = [*lgd(y_mnist), *lpd(y_brain)]
    assert all(torch.isfinite(t.float()).all() for t in outputs)
    assert outputs[1].shape == (2, 10) and outputs[3].shape == (1, 2, 128, 128)


def test_shared_learned_gradient_descent_uses_one_update_network(mnist_M) -> None:
    shared = nets.LearnedGradientDescent(mnist_M, n_iter=3, width=16, shared=True)
    separate = nets.LearnedGradientDescent(mnist_M, n_iter=3, width=16)
    assert len(shared.updates) == 1 and len(separate.updates) == 3
    assert 3 * nets.n_parameters(shared) == nets.n_parameters(separate)
    y = mnist_M(torch.rand(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    assert len(shared.iterates(y)) == 4  # x₀ and three updates, all by the one network
    # the same weights in every slot of the separate network give the same reconstruction
    with torch.no_grad():
        for update in separate.updates:
            update.load_state_dict(shared.updates[0].state_dict())
    assert torch.allclose(shared(y), separate(y), atol=1e-6)
    _all_parameters_get_gradients(shared, shared(y))


def test_linear_classifier_is_logistic_regression() -> None:
    T = nets.LinearClassifier()
    assert nets.n_parameters(T) == 28 * 28 * 10 + 10
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(T(x), x.flatten(1) @ T.dense.weight.T + T.dense.bias)
    with pytest.raises(ValueError, match=r"expects images \[B, 1, 28, 28\]"):
        T(torch.rand(3, 28, 28))


def test_reduced_rank_regression_is_the_rank_k_optimum() -> None:
    """On a small case with a known answer: the closed form beats every rank-k map, and equals the
    ordinary least-squares fit once k reaches the full rank."""
    g = torch.Generator().manual_seed(0)
    Phi = torch.randn(200, 6, generator=g, dtype=torch.float64)
    X = Phi @ torch.randn(6, 5, generator=g, dtype=torch.float64) + 0.1 * torch.randn(200, 5, generator=g,
                                                                                   dtype=torch.float64) + 2.0

    def loss(W, c):
        return (X - Phi @ W.T - c).square().sum().item()

    W, c = nets.reduced_rank_regression(Phi, X, rank=2)
    assert torch.linalg.matrix_rank(W).item() == 2
    best = loss(W, c)
    for _ in range(200):  # random rank-2 perturbations of the optimum never do better
        D = torch.randn(5, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 6, generator=g, dtype=torch.float64)
        U, S, Vh = torch.linalg.svd(W + 0.05 * D)
        W2 = U[:, :2] @ torch.diag(S[:2]) @ Vh[:2]
        assert loss(W2, c + 0.01 * torch.randn(5, generator=g, dtype=torch.float64)) >= best
    full, c_full = nets.reduced_rank_regression(Phi, X, rank=5)
    ones = torch.cat([Phi, torch.ones(200, 1, dtype=torch.float64)], 1)
    ols = torch.linalg.lstsq(ones, X).solution
    assert torch.allclose(full, ols[:6].T, atol=1e-8) and torch.allclose(c_full, ols[6], atol=1e-8)
    with pytest.raises(ValueError, match="rank must lie"):
        nets.reduced_rank_regression(Phi, X, rank=6)


def test_low_rank_linear_reconstruction(mnist_M) -> None:
    R = nets.LowRankLinear(mnist_M, rank=16)
    assert nets.n_parameters(R) == 125 * 16 + 16 + 16 * 784 + 784
    x = torch.rand(4, 1, 28, 28)
    y = mnist_M(x, generator=torch.Generator().manual_seed(0))
    assert R(y).shape == (4, 1, 28, 28)
    _all_parameters_get_gradients(R, R(y))
    # set_affine loads a rank-16 map exactly
    g = torch.Generator().manual_seed(1)
    W = torch.randn(784, 16, generator=g, dtype=torch.float64) @ torch.randn(16, 125, generator=g, dtype=torch.float64)
    c = torch.randn(784, generator=g, dtype=torch.float64)
    R.set_affine(W, c)
    phi = mnist_M.noise.log_transform(y).flatten(1).double()
    assert torch.allclose(R(y).flatten(1).double(), phi @ W.T + c, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="rank must lie"):
        nets.LowRankLinear(mnist_M, rank=200)
    with pytest.raises(ValueError, match="Poisson"):
        nets.LowRankLinear(physics.brain_data_model(), rank=4)
