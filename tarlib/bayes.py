"""Reconstruction as statistical estimation, on problems small enough to solve exactly (section 2).

A reconstruction method R : Y → X is an estimator (a non-randomised decision rule).  The
Bayes estimator of eq. (3) minimises the expected loss E[ℓ_X(x, R(y))]; empirical risk
minimisation, eq. (4), approximates it from training pairs (x_i, y_i).  Which estimator
comes out depends on the loss: the squared L2 loss gives the posterior mean E[x | y], the
L1 loss the posterior median, and the 0-1 loss (in the limit) the MAP estimate.

Two toy problems where these estimators are known in closed form:

- :class:`LinearGaussian`: x ~ N(0, Σ_x), y = A x + e with e ~ N(0, σ² I).  The posterior
  is Gaussian, so posterior mean = posterior median = MAP; the maximum likelihood estimate
  A⁺ y is there for comparison.  :func:`deblurring_problem` builds a 1D example.
- :class:`SpikeAndSlab`: a scalar sparse prior (x = 0 with probability 1 − p, else
  N(0, τ²)) observed as y = x + e.  Its posterior mean and median differ.

:func:`train_estimator` minimises the empirical risk (4) over a network R_θ with the
squared L2 or the L1 loss and records how far R_θ is from a reference estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tarlib import config, losses

DTYPE = torch.float64


def _as_matrix(name: str, value: Tensor) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2D tensor), got shape {tuple(value.shape)}")
    return value.to(DTYPE)


def _grid(n: int) -> Tensor:
    """Cell midpoints t_i = (i + ½)/n of n cells on [0, 1]."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int ≥ 2, got {n!r}")
    return (torch.arange(n, dtype=DTYPE) + 0.5) / n


def squared_exponential_covariance(
    n: int, length_scale: float = 0.1, variance: float = 1.0, jitter: float = 1e-6
) -> Tensor:
    """Prior covariance Σ_x[i, j] = variance · exp(−(t_i − t_j)² / (2 ℓ²)) on n points of [0, 1].

    Samples of N(0, Σ_x) are smooth curves that vary on the scale ℓ = ``length_scale``.
    ``jitter`` · variance is added to the diagonal so that Σ_x is safely invertible.
    """
    if length_scale <= 0 or variance <= 0 or jitter < 0:
        raise ValueError(
            f"need length_scale > 0, variance > 0, jitter ≥ 0; got {length_scale}, {variance}, {jitter}"
        )
    t = _grid(n)
    cov = variance * torch.exp(-((t[:, None] - t[None, :]) ** 2) / (2 * length_scale**2))
    return cov + jitter * variance * torch.eye(n, dtype=DTYPE)


def blur_operator(n: int, width: float = 0.035) -> Tensor:
    """Forward operator A [n, n]: convolution with a Gaussian of standard deviation ``width`` on [0, 1].

    (A x)_i ≈ ∫ g(t_i − s) x(s) ds with g a normalised Gaussian and zero outside [0, 1].
    Blurring damps high frequencies, so A is invertible but ill-conditioned.
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    t = _grid(n)
    kernel = torch.exp(-((t[:, None] - t[None, :]) ** 2) / (2 * width**2))
    return kernel / (n * width * (2 * torch.pi) ** 0.5)


class LinearGaussian:
    """The linear-Gaussian inverse problem x ~ N(0, Σ_x), y = A x + e, e ~ N(0, σ² I).

    Everything is in float64.  With C_y = A Σ_x Aᵀ + σ² I the covariance of y,

    - posterior mean  E[x | y] = K y,  K = Σ_x Aᵀ C_y⁻¹  (the Bayes estimator for squared L2)
    - posterior covariance  Σ_x − K A Σ_x  (the same for every y)
    - MAP  argmin_x ‖A x − y‖² / (2σ²) + xᵀ Σ_x⁻¹ x / 2  (Tikhonov), equal to K y
    - MLE  argmin_x ‖A x − y‖², i.e. A⁺ y: no prior, so it fits the noise.
    """

    def __init__(self, A: Tensor, Sigma_x: Tensor, sigma: float):
        self.A = _as_matrix("A", A)
        self.Sigma_x = _as_matrix("Sigma_x", Sigma_x)
        n = self.A.shape[1]
        if self.Sigma_x.shape != (n, n):
            raise ValueError(
                f"Sigma_x must be [{n}, {n}] to match A {tuple(self.A.shape)}, got {tuple(self.Sigma_x.shape)}"
            )
        if not sigma > 0:
            raise ValueError(f"noise level sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        self._chol_x = torch.linalg.cholesky(self.Sigma_x)
        self.C_y = self.A @ self.Sigma_x @ self.A.T + self.sigma**2 * torch.eye(self.A.shape[0], dtype=DTYPE)
        self.K = torch.linalg.solve(self.C_y, self.A @ self.Sigma_x).T

    @property
    def n(self) -> int:
        """Dimension of x."""
        return self.A.shape[1]

    @property
    def k(self) -> int:
        """Dimension of y."""
        return self.A.shape[0]

    def _check_y(self, y: Tensor) -> Tensor:
        if not isinstance(y, Tensor) or y.ndim != 2 or y.shape[1] != self.k:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"y must be a batch [B, {self.k}], got {got}")
        return y.to(DTYPE)

    def sample(self, m: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """m independent pairs (x_i, y_i) ~ P_X ⊗ M, as [m, n] and [m, k]."""
        if not isinstance(m, int) or m < 1:
            raise ValueError(f"m must be a positive int, got {m!r}")
        x = torch.randn(m, self.n, dtype=DTYPE, generator=generator) @ self._chol_x.T
        e = self.sigma * torch.randn(m, self.k, dtype=DTYPE, generator=generator)
        return x, x @ self.A.T + e

    def posterior_mean(self, y: Tensor) -> Tensor:
        """E[x | y] = Σ_x Aᵀ (A Σ_x Aᵀ + σ² I)⁻¹ y for a batch y [B, k]."""
        return self._check_y(y) @ self.K.T

    def posterior_covariance(self) -> Tensor:
        """Cov[x | y] = Σ_x − K A Σ_x (independent of y)."""
        post = self.Sigma_x - self.K @ self.A @ self.Sigma_x
        return (post + post.T) / 2

    def map_estimate(self, y: Tensor) -> Tensor:
        """MAP = argmin_x ‖A x − y‖²/(2σ²) + xᵀΣ_x⁻¹x/2, via (AᵀA + σ² Σ_x⁻¹) x = Aᵀ y."""
        Sigma_inv = torch.cholesky_inverse(self._chol_x)
        H = self.A.T @ self.A + self.sigma**2 * Sigma_inv
        return torch.linalg.solve(H, self.A.T @ self._check_y(y).T).T

    def mle(self, y: Tensor) -> Tensor:
        """Maximum likelihood estimate argmin_x ‖A x − y‖², i.e. the pseudo-inverse A⁺ y."""
        return self._check_y(y) @ torch.linalg.pinv(self.A).T

    def risk(self, B: Tensor) -> float:
        """Exact risk E‖x − B y‖² of the linear estimator y ↦ B y: the objective of eq. (3), squared L2.

        E‖x − B y‖² = tr Σ_x − 2 tr(B A Σ_x) + tr(B C_y Bᵀ); it is smallest for B = K.
        """
        B = _as_matrix("B", B)
        if B.shape != (self.n, self.k):
            raise ValueError(f"B must be [{self.n}, {self.k}], got {tuple(B.shape)}")
        value = torch.trace(self.Sigma_x) - 2 * torch.trace(B @ self.A @ self.Sigma_x) + torch.trace(B @ self.C_y @ B.T)
        return float(value)


def deblurring_problem(
    n: int = 32, length_scale: float = 0.1, blur_width: float = 0.035, sigma: float = 0.05
) -> LinearGaussian:
    """A 1D deblurring problem: smooth Gaussian-process prior, Gaussian blur, white noise."""
    return LinearGaussian(blur_operator(n, blur_width), squared_exponential_covariance(n, length_scale), sigma)


class SpikeAndSlab:
    """A scalar sparse problem: x = 0 with probability 1 − p, else x ~ N(0, τ²); y = x + e, e ~ N(0, σ²).

    Given y the posterior is a mixture  (1 − w) δ_0 + w N(μ, s²)  with
    μ = τ²/(τ² + σ²) · y,  s² = τ²σ²/(τ² + σ²)  and w = w(y) the probability that x came
    from the slab.  Its mean w·μ shrinks y towards 0; its median is exactly 0 unless
    w(y) is large, so the L1 Bayes estimator is a thresholding rule.
    """

    def __init__(self, p: float = 0.2, tau: float = 1.0, sigma: float = 0.5):
        if not 0 < p < 1:
            raise ValueError(f"slab probability p must lie in (0, 1), got {p}")
        if not (tau > 0 and sigma > 0):
            raise ValueError(f"tau and sigma must be > 0, got {tau} and {sigma}")
        self.p, self.tau, self.sigma = float(p), float(tau), float(sigma)

    def sample(self, m: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """m independent pairs (x_i, y_i), each as [m, 1]."""
        if not isinstance(m, int) or m < 1:
            raise ValueError(f"m must be a positive int, got {m!r}")
        slab = torch.rand(m, 1, dtype=DTYPE, generator=generator) < self.p
        x = slab * self.tau * torch.randn(m, 1, dtype=DTYPE, generator=generator)
        return x, x + self.sigma * torch.randn(m, 1, dtype=DTYPE, generator=generator)

    def _slab_posterior(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """w(y), μ(y) and s of the slab part of the posterior."""
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        y = y.to(DTYPE)
        v_slab, v_spike = self.tau**2 + self.sigma**2, self.sigma**2
        # log of p N(y; 0, v_slab) − log of (1 − p) N(y; 0, v_spike), then a logistic
        log_prior_odds = math.log(self.p / (1 - self.p)) - 0.5 * math.log(v_slab / v_spike)
        log_odds = log_prior_odds - 0.5 * y**2 * (1 / v_slab - 1 / v_spike)
        w = torch.sigmoid(log_odds)
        mu = self.tau**2 / v_slab * y
        s = (self.tau**2 * self.sigma**2 / v_slab) ** 0.5
        return w, mu, torch.full_like(y, s)

    def slab_probability(self, y: Tensor) -> Tensor:
        """w(y) = P(x ≠ 0 | y)."""
        return self._slab_posterior(y)[0]

    def posterior_mean(self, y: Tensor) -> Tensor:
        """E[x | y] = w(y) · μ(y): the Bayes estimator for the squared L2 loss."""
        w, mu, _ = self._slab_posterior(y)
        return w * mu

    def posterior_median(self, y: Tensor) -> Tensor:
        """Median of x | y: the Bayes estimator for the L1 loss.

        The posterior CDF F(t) = (1 − w)·1[t ≥ 0] + w Φ((t − μ)/s) jumps by 1 − w at 0.
        If F stays below ½ up to 0⁻ or reaches ½ only after 0, the median lies in the
        Gaussian part; otherwise it is 0.
        """
        w, mu, s = self._slab_posterior(y)
        below = w * torch.special.ndtr(-mu / s)  # F(0⁻)
        left = mu + s * torch.special.ndtri((0.5 / w).clamp(max=1 - 1e-12))
        right = mu + s * torch.special.ndtri(((w - 0.5) / w).clamp(min=1e-12))
        median = torch.where(below >= 0.5, left, torch.zeros_like(mu))
        return torch.where(below + (1 - w) <= 0.5, right, median)


def relative_distance(estimate: Tensor, reference: Tensor) -> float:
    """‖estimate − reference‖ / ‖reference‖ over all entries (Frobenius norm)."""
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(estimate.shape)} vs {tuple(reference.shape)}")
    reference = reference.to(estimate.dtype)
    return float(torch.linalg.norm(estimate - reference) / torch.linalg.norm(reference))


def l1_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """ℓ_X(x, x̂) = ‖x − x̂‖₁, averaged over the batch.  Its Bayes estimator is the posterior median."""
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and {tuple(x.shape)}")
    return (x_hat - x).abs().flatten(1).sum(dim=1).mean()


LOSSES = {"l2": losses.l2_loss, "l1": l1_loss}


def mlp(n_in: int, n_out: int, width: int = 64) -> nn.Sequential:
    """A small fully connected network n_in → width → width → n_out with ReLUs, in float64."""
    return nn.Sequential(
        nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_out)
    ).to(DTYPE)


@dataclass
class LearningCurve:
    """What :func:`train_estimator` records every ``eval_every`` steps."""

    step: list[int] = field(default_factory=list)
    empirical_risk: list[float] = field(default_factory=list)  # the objective of eq. (4) on the last batch
    distance: list[float] = field(default_factory=list)  # relative distance of R_θ(y_eval) to the reference


def train_estimator(
    R: nn.Module,
    x: Tensor,
    y: Tensor,
    loss: str = "l2",
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-2,
    y_eval: Tensor | None = None,
    reference_eval: Tensor | None = None,
    eval_every: int = 20,
    seed: int = 0,
) -> tuple[nn.Module, LearningCurve]:
    """Empirical risk minimisation, eq. (4): θ̂ ∈ argmin_θ (1/m) Σ_i ℓ_X(x_i, R_θ(y_i)).

    The training pairs (x_i, y_i) are the rows of ``x`` [m, n] and ``y`` [m, k]; Adam on
    random mini-batches with a cosine learning-rate decay to zero.  ``loss`` is ``"l2"``
    (squared L2, Bayes estimator = posterior mean) or ``"l1"`` (posterior median).
    If ``y_eval`` and ``reference_eval`` are given, the learning curve records the relative
    distance ‖R_θ(y_eval) − reference_eval‖ / ‖reference_eval‖, e.g. to the posterior mean.
    Returns R (trained in place, in eval mode) and its :class:`LearningCurve`.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must be [m, n] and [m, k] with the same m, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if (y_eval is None) != (reference_eval is None):
        raise ValueError("give both y_eval and reference_eval, or neither")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be ≥ 1, got {steps} and {batch_size}")
    parameters = list(R.parameters())
    if not parameters:
        raise ValueError(f"R must have trainable parameters, got {type(R).__name__} with none")
    dtype = parameters[0].dtype
    x, y = x.to(dtype), y.to(dtype)
    loss_fn = LOSSES[loss]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    curve = LearningCurve()
    R.train()
    for step in config.progress(range(1, steps + 1), desc=f"ERM ({loss})", leave=False):
        index = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=generator)
        risk = loss_fn(R(y[index]), x[index])
        optimizer.zero_grad()
        risk.backward()
        optimizer.step()
        schedule.step()
        if step == 1 or step % eval_every == 0 or step == steps:
            curve.step.append(step)
            curve.empirical_risk.append(risk.item())
            if y_eval is not None:
                with torch.no_grad():
                    curve.distance.append(relative_distance(R(y_eval.to(dtype)), reference_eval))
    return R.eval(), curve


__all__ = [
    "LOSSES",
    "LearningCurve",
    "LinearGaussian",
    "SpikeAndSlab",
    "blur_operator",
    "deblurring_problem",
    "l1_loss",
    "mlp",
    "relative_distance",
    "squared_exponential_covariance",
    "train_estimator",
]
