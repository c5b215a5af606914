"""Classical reconstruction: the operator as a matrix, and the estimators of section 2.

Before any learning, the course looks at what makes tomography an *ill-posed*
inverse problem and at the classical estimators that the learned ones improve on.

- :func:`ray_transform`: the course's ray transform for any number of angles
- :func:`dense_matrix`, :func:`svd`, :func:`numerical_rank`, :func:`null_space_images`,
  :func:`null_space_component`: a small A as a matrix, its singular values and null space
- :func:`landweber`, :func:`ml_gradient_descent`: gradient iterations towards the
  maximum-likelihood estimate, with the error of every iterate (:class:`History`)
- :func:`tikhonov`: the regularised least-squares estimate, solved by batched CG
- :func:`explorer_figure`, :func:`explorer`: angles and noise → sinogram and FBP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import odl
import odl.applications.tomo as tomo
import torch
from matplotlib.figure import Figure
from torch import Tensor

from tarlib import config, metrics, physics
from tarlib.plotting import interact, to_numpy_2d

ObjectiveAndGradient = Callable[[Tensor], tuple[Tensor, Tensor]]


# --------------------------------------------------------------------------
# The operator as a matrix
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def ray_transform(height: int, width: int, n_angles: int, det_shape: int | None = None) -> physics.RayTransform:
    """A for H × W images of unit pixels centred at 0, like both course geometries, with
    ``n_angles`` angles in [0, π) and ``det_shape`` lines per angle (``None``: ODL's default).

    ``ray_transform(28, 28, 5, 25)`` is the MNIST operator.  Cached: asking again is free.
    """
    space = odl.uniform_discr([-height / 2, -width / 2], [height / 2, width / 2], (height, width), dtype="float32")
    geometry = tomo.parallel_beam_geometry(space, num_angles=n_angles, det_shape=det_shape)
    return physics.RayTransform(space, geometry)


def dense_matrix(A: physics.RayTransform, dtype: torch.dtype = torch.float64, max_entries: int = 20_000_000) -> Tensor:
    """The matrix of A, shape [m, n] with m = n_angles · n_det and n = H · W.

    Column j is A applied to the j-th unit image (pixels in row-major order), so
    ``dense_matrix(A) @ x.flatten()`` equals ``A(x).flatten()``.  Only for small
    operators: more than ``max_entries`` entries raise a ValueError.
    """
    n = A.domain_shape[0] * A.domain_shape[1]
    m = A.range_shape[0] * A.range_shape[1]
    if n * m > max_entries:
        raise ValueError(f"A is {m} x {n}: {n * m:,} entries exceed max_entries={max_entries:,}")
    units = torch.eye(n, dtype=dtype, device=A.matrix.device).reshape(n, 1, *A.domain_shape)
    with torch.no_grad():
        columns = A(units)
    return columns.reshape(n, m).T.contiguous()


def svd(A: physics.RayTransform) -> tuple[Tensor, Tensor, Tensor]:
    """Full singular value decomposition A = U diag(S) Vᵀ of the dense matrix (float64).

    Returns U [m, m], S [min(m, n)] (descending) and Vh = Vᵀ [n, n]; the rows of Vh
    beyond the rank span the null space of A.
    """
    return torch.linalg.svd(dense_matrix(A), full_matrices=True)


def numerical_rank(S: Tensor, shape: tuple[int, int], rtol: float | None = None) -> int:
    """Number of singular values above ``rtol · S.max()``.

    The default ``rtol = max(m, n) · eps`` (the NumPy/LAPACK convention for the
    ``dtype`` of S) counts every singular value that is not round-off.
    """
    if rtol is None:
        rtol = max(shape) * torch.finfo(S.dtype).eps
    return int((S > rtol * S.max()).sum())


def null_space_images(A: physics.RayTransform, k: int, rtol: float | None = None) -> Tensor:
    """k orthonormal images x [k, 1, H, W] (float64) in the null space of A, i.e. A(x) = 0.

    They are the last right singular vectors (rows of Vᵀ beyond the numerical rank).
    """
    _, S, Vh = svd(A)
    n = Vh.shape[0]
    dim = n - numerical_rank(S, (A.range_shape[0] * A.range_shape[1], n), rtol)
    if not 1 <= k <= dim:
        raise ValueError(f"the null space of A has dimension {dim}; asked for k={k} images")
    return Vh[n - k :].reshape(k, 1, *A.domain_shape)


def null_space_component(A: physics.RayTransform, x: Tensor, rtol: float | None = None) -> Tensor:
    """The part of the images x [B, C, H, W] that A cannot see: x minus its projection onto
    the span of the first rank(A) right singular vectors, so A(result) = 0 and
    x − result = A⁺A x is the minimum-norm image with the same data."""
    _, S, Vh = svd(A)
    V_range = Vh[: numerical_rank(S, (A.range_shape[0] * A.range_shape[1], Vh.shape[0]), rtol)]
    flat = x.flatten(2).to(Vh.dtype)
    return (flat - (flat @ V_range.T) @ V_range).reshape(x.shape).to(x.dtype)


# --------------------------------------------------------------------------
# Maximum likelihood by gradient descent (section 2)
# --------------------------------------------------------------------------


@dataclass
class History:
    """What an iterative method did: the last iterate and one row per iterate k = 0, ..., n_iter.

    ``objective`` [n_iter + 1, B]: the objective (e.g. negative log-likelihood) of x_k;
    ``error`` [n_iter + 1, B]: the relative error ‖x_k − x‖ / ‖x‖ (empty without a true x).
    """

    x: Tensor
    objective: Tensor
    error: Tensor

    @property
    def best_iteration(self) -> int:
        """The iteration with the smallest mean relative error (needs the true x)."""
        if self.error.numel() == 0:
            raise ValueError("no error history: run the method with x_true=...")
        return int(self.error.mean(dim=1).argmin())


def relative_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """‖x̂ − x‖ / ‖x‖ per sample: [B]."""
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and {tuple(x.shape)}")
    return (x_hat - x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)


def gradient_descent(
    objective_and_gradient: ObjectiveAndGradient,
    x0: Tensor,
    step: float,
    n_iter: int,
    x_true: Tensor | None = None,
    progress: bool = True,
) -> History:
    """Iterate x_{k+1} = x_k − step · ∇f(x_k) for k < n_iter, recording a :class:`History`.

    ``objective_and_gradient(x)`` returns (f(x) per sample [B], ∇f(x)), so that both
    can share the work (e.g. one application of A).
    """
    if n_iter < 0 or step <= 0:
        raise ValueError(f"need n_iter >= 0 and step > 0, got n_iter={n_iter}, step={step}")
    if x_true is not None and x_true.shape != x0.shape:
        raise ValueError(f"x_true must have the shape of x0 {tuple(x0.shape)}, got {tuple(x_true.shape)}")
    x = x0.clone()
    objectives, errors = [], []
    iterations = range(n_iter + 1)
    with torch.no_grad():
        for k in config.progress(iterations, desc="gradient descent", leave=False, disable=not progress):
            value, gradient = objective_and_gradient(x)
            objectives.append(value)
            if x_true is not None:
                errors.append(relative_error(x, x_true))
            if k < n_iter:
                x = x - step * gradient
    error = torch.stack(errors) if errors else torch.empty(0)
    return History(x=x, objective=torch.stack(objectives), error=error)


def _zeros_like_image(shape: tuple[int, int], y: Tensor) -> Tensor:
    return torch.zeros(*y.shape[:2], *shape, dtype=y.dtype, device=y.device)


def landweber(
    A: physics.RayTransform,
    y: Tensor,
    n_iter: int,
    step: float | None = None,
    x0: Tensor | None = None,
    x_true: Tensor | None = None,
    progress: bool = True,
) -> History:
    """Landweber iteration x_{k+1} = x_k − step · Aᵀ(A x_k − y) for the least-squares fit.

    Least squares is the maximum-likelihood estimate for Gaussian white noise
    (section 2).  The default ``step = 1/‖A‖²`` converges; started at x0 = 0 the
    iterates tend to the minimum-norm least-squares solution A⁺y.  The objective is
    ½‖A x_k − y‖² per sample.
    """
    if step is None:
        step = 1.0 / A.norm() ** 2

    def objective_and_gradient(x: Tensor) -> tuple[Tensor, Tensor]:
        residual = A(x) - y
        return 0.5 * residual.flatten(1).pow(2).sum(dim=1), A.adjoint(residual)

    x0 = _zeros_like_image(A.domain_shape, y) if x0 is None else x0
    return gradient_descent(objective_and_gradient, x0, step, n_iter, x_true, progress)


def ml_gradient_descent(
    M: physics.DataModel,
    y: Tensor,
    n_iter: int,
    step: float,
    x0: Tensor | None = None,
    x_true: Tensor | None = None,
    progress: bool = True,
) -> History:
    """Gradient descent on x ↦ −log p(y | x) for any data model M (e.g. Poisson transmission).

    The objective is ``M.noise.nll(Ax, y)`` and its gradient Aᵀ ``M.noise.grad(Ax, y)``
    (the same as ``M.nll`` and ``M.grad_nll``).  The iterates head for the
    maximum-likelihood estimate, the estimator that section 2 warns overfits the noise.
    """

    def objective_and_gradient(x: Tensor) -> tuple[Tensor, Tensor]:
        ax = M.A(x)
        return M.noise.nll(ax, y), M.A.adjoint(M.noise.grad(ax, y))

    x0 = _zeros_like_image(M.A.domain_shape, y) if x0 is None else x0
    return gradient_descent(objective_and_gradient, x0, step, n_iter, x_true, progress)


# --------------------------------------------------------------------------
# Tikhonov regularisation
# --------------------------------------------------------------------------


def _batch_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(dim=1).view(-1, *([1] * (a.ndim - 1)))


def tikhonov(
    A: physics.RayTransform,
    y: Tensor,
    lam: float | Tensor,
    n_iter: int = 200,
    tol: float = 1e-6,
) -> Tensor:
    """The Tikhonov estimate argmin_x ½‖A x − y‖² + ½λ‖x‖², for a batch y [B, C, ...].

    Solves the normal equations (AᵀA + λI) x = Aᵀy for each sample by conjugate
    gradients, stopping when every relative residual is below ``tol`` (or after
    ``n_iter`` steps).  ``lam`` is one λ > 0 or one per sample, shape [B].
    """
    lam = torch.as_tensor(lam, dtype=y.dtype, device=y.device)
    if lam.ndim > 1 or (lam.ndim == 1 and lam.shape[0] != y.shape[0]) or bool((lam <= 0).any()):
        raise ValueError(f"lam must be a positive number or a positive tensor [B={y.shape[0]}], got {lam}")
    lam = lam.view(-1, *([1] * (y.ndim - 1))) if lam.ndim == 1 else lam
    with torch.no_grad():
        b = A.adjoint(y)
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = _batch_dot(r, r)
        stop = (tol * b.flatten(1).norm(dim=1)).view_as(rs) ** 2
        for _ in range(n_iter):
            if bool((rs <= stop).all()):
                break
            Ap = A.adjoint(A(p)) + lam * p
            pAp = _batch_dot(p, Ap)
            alpha = torch.where(pAp > 0, rs / pAp, torch.zeros_like(rs))
            x = x + alpha * p
            r = r - alpha * Ap
            rs_new = _batch_dot(r, r)
            p = r + torch.where(rs > 0, rs_new / rs, torch.zeros_like(rs)) * p
            rs = rs_new
    return x


# --------------------------------------------------------------------------
# The explorer: angles and noise → sinogram and FBP
# --------------------------------------------------------------------------

NOISE_MODELS = ("poisson", "gaussian")


def explorer_figure(
    x: Tensor,
    n_angles: int = 5,
    noise: str = "poisson",
    photons_per_line: float = 60.0,
    noise_level: float = 0.001,
    mu: float = physics.MNIST_MU,
    det_shape: int | None = 25,
    seed: int = 0,
) -> Figure:
    """Image x, its noiseless data A x, one sample y ~ M(x) and the FBP of y, side by side.

    ``x`` is one image [H, W] (or [1, 1, H, W]) on unit pixels; A has ``n_angles``
    angles in [0, π) and ``det_shape`` lines per angle (``None``: ODL's default).
    ``noise='poisson'``: transmission counts with ``photons_per_line`` (I0) and ``mu``,
    shown and reconstructed after the log transform; ``noise='gaussian'``: additive
    noise of relative ``noise_level``.  The FBP uses the Hann filter.
    """
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise must be one of {list(NOISE_MODELS)}, got {noise!r}")
    if not isinstance(n_angles, int) or n_angles < 1:
        raise ValueError(f"n_angles must be a positive int, got {n_angles!r}")
    image = torch.from_numpy(to_numpy_2d(x))[None, None]
    A = ray_transform(*image.shape[-2:], n_angles, det_shape)
    model = (
        physics.PoissonTransmission(photons_per_line, mu, log_data=True)
        if noise == "poisson"
        else physics.GaussianNoise(noise_level)
    )
    with torch.no_grad():
        ax = A(image)
        y = physics.DataModel(A, model)(image, generator=torch.Generator().manual_seed(seed))
        x_fbp = physics.fbp(A, y, filter="hann")
    psnr = float(metrics.psnr(x_fbp, image, data_range=float(image.max() - image.min()) or 1.0))
    label = f"I0 = {photons_per_line:.0f} photons" if noise == "poisson" else f"{100 * noise_level:.2g}% Gaussian"
    fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
    panels = [
        (image, "image x", {}),
        (ax, f"A x ({n_angles} angles)", {"aspect": "auto"}),
        (y, f"y ~ M(x), {label}", {"aspect": "auto"}),
        (x_fbp, f"FBP, PSNR {psnr:.1f} dB", {}),
    ]
    for axis, (t, title, kwargs) in zip(axes, panels):
        im = axis.imshow(to_numpy_2d(t), cmap="gray", interpolation="nearest", **kwargs)
        axis.set_title(title, fontsize=9)
        fig.colorbar(im, ax=axis, fraction=0.046, pad=0.04)
    for axis in (axes[0], axes[3]):
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in axes[1:3]:
        axis.set_xlabel("detector pixel")
        axis.set_ylabel("angle index")
    fig.tight_layout()
    return fig


def explorer(
    x: Tensor,
    n_angles: int = 5,
    photons_per_line: float = 60.0,
    noise_level: float = 0.001,
    mu: float = physics.MNIST_MU,
    det_shape: int | None = 25,
    seed: int = 0,
) -> widgets.VBox:
    """An ipywidgets explorer of :func:`explorer_figure`: sliders for the number of angles,
    photons per line and Gaussian noise level, and a choice of noise model.

    Returns the widget (display it in a notebook); every change redraws the figure.
    """
    style = {"description_width": "initial"}
    controls = {
        "n_angles": widgets.IntSlider(value=n_angles, min=1, max=90, description="angles", style=style),
        "noise": widgets.Dropdown(options=[("Poisson (transmission)", "poisson"), ("Gaussian", "gaussian")],
                                  value="poisson", description="noise", style=style),
        "photons_per_line": widgets.FloatLogSlider(value=photons_per_line, base=10, min=0.5, max=5, step=0.1,
                                                   description="photons per line", style=style),
        "noise_level": widgets.FloatLogSlider(value=noise_level, base=10, min=-4, max=-0.5, step=0.1,
                                              description="Gaussian level", style=style),
    }
    figure = functools.partial(explorer_figure, x, mu=mu, det_shape=det_shape, seed=seed)
    return interact(figure, controls, per_row=2)
