"""tarlib.classical: the operator as a matrix, ML iterations, Tikhonov, the explorer."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from tarlib import classical, physics  # noqa: E402


@pytest.fixture(scope="module")
def A() -> physics.RayTransform:
    return physics.RayTransform(*physics.mnist_geometry())


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    """Four smooth blob images [4, 1, 28, 28] in float64."""
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(-1, 1, 28, dtype=torch.float64)
    rows, cols = torch.meshgrid(t, t, indexing="ij")
    centres = 0.5 * (2 * torch.rand(4, 2, generator=g, dtype=torch.float64) - 1)
    blobs = torch.exp(-((rows - centres[:, :1, None]) ** 2 + (cols - centres[:, 1:, None]) ** 2) / 0.1)
    return blobs[:, None]


def test_dense_matrix_reproduces_A(A: physics.RayTransform, x: torch.Tensor) -> None:
    K = classical.dense_matrix(A)
    assert K.shape == (125, 784) and K.dtype == torch.float64
    torch.testing.assert_close((K @ x.flatten(1).T).T, A(x).flatten(1), rtol=1e-10, atol=1e-10)


def test_dense_matrix_refuses_large_operators(A: physics.RayTransform) -> None:
    with pytest.raises(ValueError, match="max_entries"):
        classical.dense_matrix(A, max_entries=125 * 784 - 1)


def test_singular_values_rank_and_null_space(A: physics.RayTransform) -> None:
    K = classical.dense_matrix(A)
    U, S, Vh = classical.svd(A)
    torch.testing.assert_close(S, torch.linalg.svdvals(K), rtol=1e-8, atol=1e-10)
    assert S[0].item() == pytest.approx(A.norm(), rel=1e-6)
    assert U.shape == (125, 125) and Vh.shape == (784, 784)
    rank = classical.numerical_rank(S, tuple(K.shape))
    # lines that miss the image give zero rows; the other 5 × 25 lines are independent
    assert rank == int((K.abs().sum(dim=1) > 0).sum()) == 115
    v = classical.null_space_images(A, k=3)
    assert v.shape == (3, 1, 28, 28)
    assert A(v).abs().max().item() < 1e-10
    torch.testing.assert_close(v.flatten(1) @ v.flatten(1).T, torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="null space"):
        classical.null_space_images(A, k=784)


def test_null_space_component_splits_x_into_invisible_and_minimum_norm_parts(
    A: physics.RayTransform, x: torch.Tensor
) -> None:
    v = classical.null_space_component(A, x)
    assert A(v).abs().max().item() < 1e-10  # invisible to A
    visible = x - v  # = A⁺A x, orthogonal to the null-space part
    assert (visible * v).flatten(1).sum(dim=1).abs().max().item() < 1e-10
    K = classical.dense_matrix(A)
    min_norm = torch.linalg.pinv(K) @ (K @ x[0].flatten())
    torch.testing.assert_close(visible[0].flatten(), min_norm, rtol=1e-7, atol=1e-9)
    assert classical.relative_error(x - v, x).min().item() > 0.1  # the blobs are far from visible


def test_tikhonov_solves_the_normal_equations(A: physics.RayTransform, x: torch.Tensor) -> None:
    y = A(x)
    lam = torch.tensor([0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
    x_lam = classical.tikhonov(A, y, lam, n_iter=500, tol=1e-12)
    residual = A.adjoint(A(x_lam)) + lam.view(-1, 1, 1, 1) * x_lam - A.adjoint(y)
    assert (residual.flatten(1).norm(dim=1) / A.adjoint(y).flatten(1).norm(dim=1)).max().item() < 1e-9
    K = classical.dense_matrix(A)
    direct = torch.linalg.solve(K.T @ K + 10.0 * torch.eye(784, dtype=torch.float64), K.T @ y[2].flatten())
    torch.testing.assert_close(x_lam[2].flatten(), direct, rtol=1e-8, atol=1e-8)
    # the same image with more regularisation gives a smaller solution
    assert classical.tikhonov(A, y[:1], 100.0).norm() < classical.tikhonov(A, y[:1], 0.1).norm()
    with pytest.raises(ValueError, match="lam"):
        classical.tikhonov(A, y, 0.0)


def test_landweber_converges_on_exact_data(A: physics.RayTransform, x: torch.Tensor) -> None:
    history = classical.landweber(A, A(x), n_iter=50, x_true=x, progress=False)
    assert history.objective.shape == history.error.shape == (51, 4)
    torch.testing.assert_close(history.error[0], torch.ones(4, dtype=torch.float64))  # x_0 = 0
    # step 1/‖A‖² makes ½‖Ax_k − y‖² non-increasing and the error decrease at first
    assert (history.objective.diff(dim=0) <= 1e-12).all()
    assert (history.error[1:6].diff(dim=0) < 0).all()
    assert (history.error[-1] < 0.9 * history.error[0]).all()


def test_landweber_semi_converges_on_noisy_data(A: physics.RayTransform, x: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(1)
    y = physics.GaussianNoise(0.3).sample(A(x), generator=g)
    history = classical.landweber(A, y, n_iter=300, x_true=x, progress=False)
    best = history.best_iteration
    mean_error = history.error.mean(dim=1)
    assert 0 < best < 300
    assert mean_error[-1] > 1.15 * mean_error[best]  # the ML estimate overfits the noise


def test_ml_gradient_descent_with_unit_gaussian_noise_is_landweber(A: physics.RayTransform, x: torch.Tensor) -> None:
    M = physics.DataModel(A, physics.GaussianNoise(1.0, relative=False))
    y = A(x)
    step = 1.0 / A.norm() ** 2
    ml = classical.ml_gradient_descent(M, y, n_iter=20, step=step, progress=False)
    lw = classical.landweber(A, y, n_iter=20, step=step, progress=False)
    torch.testing.assert_close(ml.x, lw.x)
    torch.testing.assert_close(ml.objective, lw.objective)
    with pytest.raises(ValueError, match="step"):
        classical.ml_gradient_descent(M, y, n_iter=5, step=-1.0)
    with pytest.raises(ValueError, match="x_true"):
        classical.landweber(A, y, n_iter=5, x_true=x[:2])


def test_explorer_builds_a_widget_and_a_figure(x: torch.Tensor) -> None:
    fig = classical.explorer_figure(x[0], n_angles=7, noise="gaussian", noise_level=0.01)
    assert isinstance(fig, Figure) and len(fig.axes) == 8  # 4 panels and their colour bars
    assert fig.axes[1].images[0].get_array().shape == (7, 25)
    plt.close(fig)
    with pytest.raises(ValueError, match="noise"):
        classical.explorer_figure(x[0], noise="speckle")
    widget = classical.explorer(x[0].float())
    assert isinstance(widget, widgets.VBox)
    sliders = [w for box in widget.children[:2] for w in box.children]
    assert [s.description for s in sliders] == ["angles", "noise", "photons per line", "Gaussian level"]
    plt.close("all")
