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
from collections.abc import Callable
from dataclasses import dataclass, field

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from tarlib import config, losses
from tarlib.plotting import interact

DTYPE = torch.float64


def _as_matrix(name: str, value: Tensor) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be a matrix (2D tensor), got shape {tuple(value.shape)}")
    return value.to(DTYPE)


def _check_count(m: int) -> None:
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"m must be a positive int, got {m!r}")


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
        _check_count(m)
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

    def excess_risk(self, B: Tensor) -> float:
        """E‖E[x | y] − B y‖² = tr((K − B) C_y (K − B)ᵀ): the distance of y ↦ B y to the posterior mean.

        For every estimator R, E‖x − R(y)‖² = E‖x − E[x | y]‖² + E‖E[x | y] − R(y)‖² (the cross
        term vanishes because the error of the posterior mean is orthogonal to every function
        of y), so ``risk(B) = risk(K) + excess_risk(B)``: minimising eq. (3) over a class
        D_rec finds the member closest to the posterior mean.
        """
        B = _as_matrix("B", B)
        if B.shape != (self.n, self.k):
            raise ValueError(f"B must be [{self.n}, {self.k}], got {tuple(B.shape)}")
        gap = self.K - B
        return float(torch.trace(gap @ self.C_y @ gap.T))

    def best_low_rank(self, r: int) -> Tensor:
        """The rank-r matrix B [n, k] with the smallest risk E‖x − B y‖² (eq. (3) over rank-r maps).

        With C_y = L Lᵀ (Cholesky) the excess risk is ‖(K − B) L‖²_F, so by Eckart–Young the
        best B L is the rank-r truncated SVD of K L.
        """
        if not isinstance(r, int) or not 1 <= r <= min(self.n, self.k):
            raise ValueError(f"rank r must be an int in [1, {min(self.n, self.k)}], got {r!r}")
        L = torch.linalg.cholesky(self.C_y)
        U, S, Vh = torch.linalg.svd(self.K @ L)
        truncated = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
        return torch.linalg.solve_triangular(L, truncated, upper=False, left=False)


class LowRank(nn.Module):
    """The restricted class of linear estimators R(y) = U V y of rank at most r (float64)."""

    def __init__(self, k: int, n: int, r: int):
        super().__init__()
        if not 1 <= r <= min(n, k):
            raise ValueError(f"rank r must lie in [1, min(n, k) = {min(n, k)}], got {r}")
        self.V = nn.Linear(k, r, bias=False, dtype=DTYPE)
        self.U = nn.Linear(r, n, bias=False, dtype=DTYPE)

    def forward(self, y: Tensor) -> Tensor:
        return self.U(self.V(y))

    @property
    def matrix(self) -> Tensor:
        """The matrix B = U V [n, k] of the estimator y ↦ B y."""
        return (self.U.weight @ self.V.weight).detach()


def deblurring_problem(
    n: int = 32, length_scale: float = 0.1, blur_width: float = 0.035, sigma: float = 0.05
) -> LinearGaussian:
    """A 1D deblurring problem: smooth Gaussian-process prior, Gaussian blur, white noise."""
    return LinearGaussian(blur_operator(n, blur_width), squared_exponential_covariance(n, length_scale), sigma)


class SpikeAndSlab:
    """A scalar sparse problem: x = 0 with probability 1 − p, else x ~ N(0, τ²); y = x + e, e ~ N(0, σ²).

    Given y the posterior is a mixture  (1 − w) δ_0 + w N(μ, s²)  with
    μ = τ²/(τ² + σ²) · y,  s² = τ²σ²/(τ² + σ²)  and w = w(y) the probability that x came
    from the slab.  Its mean w·μ shrinks y towards 0; its median is exactly 0 if and only
    if w·Φ(|μ|/s) ≤ ½, so the L1 Bayes estimator is a thresholding rule.  The posterior
    has an atom, so "the mode" depends on the reference measure: :meth:`posterior_mode`
    takes densities with respect to δ_0 + Lebesgue, while the Bayes rules of the 0-1
    losses 1[|x − x̂| > ε] (:meth:`zero_one_estimate`) tend to 0 for every y as ε → 0.
    """

    def __init__(self, p: float = 0.2, tau: float = 1.0, sigma: float = 0.5):
        if not 0 < p < 1:
            raise ValueError(f"slab probability p must lie in (0, 1), got {p}")
        if not (tau > 0 and sigma > 0):
            raise ValueError(f"tau and sigma must be > 0, got {tau} and {sigma}")
        self.p, self.tau, self.sigma = float(p), float(tau), float(sigma)

    def sample(self, m: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """m independent pairs (x_i, y_i), each as [m, 1]."""
        _check_count(m)
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

    def median_is_zero(self, y: Tensor) -> Tensor:
        """Where the posterior median is exactly 0: w(y)·Φ(|μ(y)|/s) ≤ ½ (the atom straddles ½).

        The atom holding half the mass (w ≤ ½) is sufficient but not necessary.
        """
        w, mu, s = self._slab_posterior(y)
        return w * torch.special.ndtr(mu.abs() / s) <= 0.5

    def posterior_mode(self, y: Tensor) -> Tensor:
        """MAP with densities taken against δ_0 + Lebesgue: μ(y) if w φ(0)/s > 1 − w, else 0.

        The atom's density is its mass 1 − w; the slab's peak density is w/(s√(2π)).  Another
        reference measure (say 2δ_0 + Lebesgue) gives another rule: the MAP of a posterior
        with an atom is a convention, not a Bayes estimator.
        """
        w, mu, s = self._slab_posterior(y)
        slab_peak = w / (s * math.sqrt(2 * math.pi))
        return torch.where(slab_peak > 1 - w, mu, torch.zeros_like(mu))

    def zero_one_estimate(self, y: Tensor, eps: float) -> Tensor:
        """Bayes estimator of the 0-1 loss 1[|x − x̂| > ε]: the x̂ whose ε-interval holds most posterior mass.

        The slab's mass in [c − ε, c + ε] is largest at c = μ and falls off symmetrically, so
        the best c is either μ or the point of [−ε, ε] nearest to μ (which also catches the atom).
        """
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        w, mu, s = self._slab_posterior(y)

        def mass(c: Tensor) -> Tensor:
            slab = torch.special.ndtr((c + eps - mu) / s) - torch.special.ndtr((c - eps - mu) / s)
            return w * slab + (1 - w) * (c.abs() <= eps)

        near_zero = mu.clamp(-eps, eps)
        return torch.where(mass(near_zero) >= mass(mu), near_zero, mu)


def spike_and_slab_figure(p: float = 0.2, sigma: float = 0.5, tau: float = 1.0) -> Figure:
    """Posterior mean, median and MAP (densities against δ_0 + Lebesgue) of :class:`SpikeAndSlab` against y."""
    problem = SpikeAndSlab(p=p, tau=tau, sigma=sigma)
    y = torch.linspace(-3, 3, 601, dtype=DTYPE)
    fig, (ax, ax_w) = plt.subplots(2, 1, figsize=(7, 4.6), sharex=True, height_ratios=(3, 1))
    ax.plot(y, y, color="0.6", ls=":", label="MLE $\\hat x = y$")
    ax.plot(y, problem.posterior_mean(y), "C0", label="posterior mean ($L^2$)")
    ax.plot(y, problem.posterior_median(y), "C3", label="posterior median ($L^1$)")
    ax.plot(y, problem.posterior_mode(y), "C2--", label="MAP against $\\delta_0$ + Lebesgue")
    ax.set(ylabel="estimate $\\hat x(y)$", ylim=(-3, 3), title=f"spike and slab: p = {p:.2f}, σ = {sigma:.2f}")
    ax.legend(fontsize=8, loc="upper left")
    ax_w.plot(y, problem.slab_probability(y), "k")
    ax_w.axhline(0.5, color="0.6", ls=":")
    ax_w.set(xlabel="data $y$", ylabel="$w(y)$", ylim=(0, 1))
    fig.tight_layout()
    return fig


def spike_and_slab_explorer(p: float = 0.2, sigma: float = 0.5) -> widgets.VBox:
    """Sliders for p and σ over :func:`spike_and_slab_figure` (needs a running kernel)."""
    controls = {
        "p": widgets.FloatSlider(value=p, min=0.02, max=0.98, step=0.02, description="p (slab)"),
        "sigma": widgets.FloatLogSlider(value=sigma, base=10, min=-1.5, max=0.5, step=0.05, description="σ (noise)"),
    }
    return interact(spike_and_slab_figure, controls)


class GaussianMixturePrior:
    """A scalar problem with a multimodal prior: x ~ Σ_j π_j N(m_j, t_j²), y = x + e, e ~ N(0, σ²).

    Given y the posterior is again a mixture, Σ_j w_j(y) N(μ_j(y), s_j²) with
    μ_j = (t_j² y + σ² m_j)/(t_j² + σ²) and s_j² = t_j²σ²/(t_j² + σ²), so its mean, median
    and mode are cheap to compute.  The default, a broad mode next to a narrow one, makes
    the three differ: the mean sits between the modes, the median follows the mass, the
    mode the height.
    """

    def __init__(self, weights: tuple[float, ...] = (0.75, 0.25), means: tuple[float, ...] = (-0.5, 2.0),
                 stds: tuple[float, ...] = (0.8, 0.15), sigma: float = 0.5):
        if not len(weights) == len(means) == len(stds) or len(weights) < 2:
            raise ValueError(f"need as many weights, means and stds (at least 2), got "
                             f"{len(weights)}, {len(means)} and {len(stds)}")
        if min(weights) <= 0 or abs(sum(weights) - 1) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {weights}")
        if min(stds) <= 0 or not sigma > 0:
            raise ValueError(f"stds and sigma must be > 0, got {stds} and {sigma}")
        self.weights = torch.tensor(weights, dtype=DTYPE)
        self.means = torch.tensor(means, dtype=DTYPE)
        self.stds = torch.tensor(stds, dtype=DTYPE)
        self.sigma = float(sigma)

    def sample(self, m: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """m independent pairs (x_i, y_i), each as [m, 1]."""
        _check_count(m)
        j = torch.multinomial(self.weights, m, replacement=True, generator=generator)
        x = self.means[j, None] + self.stds[j, None] * torch.randn(m, 1, dtype=DTYPE, generator=generator)
        return x, x + self.sigma * torch.randn(m, 1, dtype=DTYPE, generator=generator)

    def posterior(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Weights w_j(y), means μ_j(y) and stds s_j of x | y, each [..., J] for y [...]."""
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
        y = y.to(DTYPE)[..., None]
        t2, e2 = self.stds**2, self.sigma**2
        log_w = self.weights.log() - 0.5 * (y - self.means) ** 2 / (t2 + e2) - 0.5 * (t2 + e2).log()
        mu = (t2 * y + e2 * self.means) / (t2 + e2)
        return torch.softmax(log_w, dim=-1), mu, (t2 * e2 / (t2 + e2)).sqrt().expand_as(mu)

    def posterior_mean(self, y: Tensor) -> Tensor:
        """E[x | y]: the Bayes estimator of the squared L2 loss."""
        w, mu, _ = self.posterior(y)
        return (w * mu).sum(-1)

    def posterior_median(self, y: Tensor, n_iter: int = 60) -> Tensor:
        """The median of x | y (the Bayes estimator of the L1 loss), by bisection on the posterior CDF."""
        w, mu, s = self.posterior(y)
        low, high = (mu - 8 * s).min(-1).values, (mu + 8 * s).max(-1).values
        for _ in range(n_iter):
            mid = (low + high) / 2
            below = (w * torch.special.ndtr((mid[..., None] - mu) / s)).sum(-1) < 0.5
            low, high = torch.where(below, mid, low), torch.where(below, high, mid)
        return (low + high) / 2

    def posterior_mode(self, y: Tensor, width: float = 0.0, n_grid: int = 801, n_iter: int = 30) -> Tensor:
        """The MAP estimate (``width`` = 0), or the Bayes estimator of the loss 1 − exp(−(x − x̂)²/(2 width²)).

        That loss is a smooth stand-in for the 0-1 loss; its Bayes estimator maximises the
        posterior density smoothed by N(0, width²), a mixture with variances s_j² + width².
        Found by a grid search refined with fixed-point (mean-shift) iterations.
        """
        if width < 0:
            raise ValueError(f"width must be ≥ 0, got {width}")
        w, mu, s = self.posterior(y)
        var = s**2 + width**2

        def terms(c: Tensor) -> Tensor:  # w_j N(c; μ_j, var_j), c [..., G] → [..., G, J]
            d = c[..., None] - mu[..., None, :]
            return w[..., None, :] * torch.exp(-0.5 * d**2 / var[..., None, :]) / var[..., None, :].sqrt()

        low, high = (mu - 3 * var.sqrt()).min(-1).values, (mu + 3 * var.sqrt()).max(-1).values
        c = low[..., None] + (high - low)[..., None] * torch.linspace(0, 1, n_grid, dtype=DTYPE)
        c = c.gather(-1, terms(c).sum(-1).argmax(-1, keepdim=True))
        for _ in range(n_iter):  # stationary point of the density: c = Σ r_j μ_j/var_j / Σ r_j/var_j
            r = terms(c) / var[..., None, :]
            c = (r * mu[..., None, :]).sum(-1) / r.sum(-1)
        return c[..., 0]


class GaussianClasses:
    """A classification problem with a closed-form Bayes estimator (eq. (5) with the cross-entropy).

    z ∈ {0, …, k−1} with prior probabilities π_z, and x | z ~ N(m_z, s² I) in R^d.  The
    Bayes estimator of the cross-entropy is the posterior P(z | x) = softmax_z(log π_z −
    ‖x − m_z‖²/(2s²)).  With data y = x + e, e ~ N(0, σ² I) drawn from x alone (y and z
    independent given x), P(z | y) = E[P(z | x) | y] is closed-form too.
    """

    def __init__(self, means: Tensor, std: float = 1.0, prior: tuple[float, ...] | None = None):
        self.means = _as_matrix("means", means)
        k = self.means.shape[0]
        if k < 2 or not std > 0:
            raise ValueError(f"need at least 2 classes and std > 0, got {k} classes and std {std}")
        prior = prior or (1 / k,) * k
        if len(prior) != k or min(prior) <= 0 or abs(sum(prior) - 1) > 1e-9:
            raise ValueError(f"prior must hold {k} positive probabilities summing to 1, got {prior}")
        self.prior = torch.tensor(prior, dtype=DTYPE)
        self.std = float(std)

    def sample(self, m: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """m pairs: labels z [m] (int64) and images x [m, d]."""
        _check_count(m)
        z = torch.multinomial(self.prior, m, replacement=True, generator=generator)
        return z, self.means[z] + self.std * torch.randn(m, self.means.shape[1], dtype=DTYPE, generator=generator)

    def _posterior(self, x: Tensor, var: float) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.means.shape[1]:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected a batch [B, {self.means.shape[1]}], got {got}")
        logits = self.prior.log() - 0.5 * torch.cdist(x.to(DTYPE), self.means) ** 2 / var
        return torch.softmax(logits, dim=1)

    def posterior(self, x: Tensor) -> Tensor:
        """P(z | x) [B, k]: the Bayes estimator of eq. (5) for the cross-entropy of eq. (6)."""
        return self._posterior(x, self.std**2)

    def data_posterior(self, y: Tensor, sigma: float) -> Tensor:
        """P(z | y) [B, k] for data y = x + e, e ~ N(0, σ² I): y | z ~ N(m_z, (s² + σ²) I)."""
        return self._posterior(y, self.std**2 + sigma**2)

    def sample_x_given_y(self, y: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
        """One draw of x | y per row of y: first z ~ P(z | y), then x | y, z (Gaussian)."""
        z = torch.multinomial(self.data_posterior(y, sigma), 1, generator=generator)[:, 0]
        t2, e2 = self.std**2, sigma**2
        mean = (e2 * self.means[z] + t2 * y.to(DTYPE)) / (t2 + e2)
        return mean + (t2 * e2 / (t2 + e2)) ** 0.5 * torch.randn(mean.shape, dtype=DTYPE, generator=generator)


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


def zero_one_surrogate(width: float) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss 1 − exp(−‖x − x̂‖²/(2 width²)), batch mean: a smooth 0-1 loss; small width ≈ "hit or miss"."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")

    def loss(x_hat: Tensor, x: Tensor) -> Tensor:
        if x_hat.shape != x.shape:
            raise ValueError(f"x_hat and x must have the same shape, got {tuple(x_hat.shape)} and {tuple(x.shape)}")
        return (1 - torch.exp(-(x_hat - x).pow(2).flatten(1).sum(dim=1) / (2 * width**2))).mean()

    return loss


def cross_entropy_loss(logits: Tensor, d: Tensor) -> Tensor:
    """ℓ_D(d, softmax(logits)) of eq. (6), batch mean: targets d [B, k] are decisions, e.g. τ(z).

    Its Bayes estimator over all maps to D is the posterior P(z | input).
    """
    if logits.shape != d.shape or logits.ndim != 2:
        raise ValueError(f"logits and targets must both be [B, k], got {tuple(logits.shape)} and {tuple(d.shape)}")
    return -(d * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


LOSSES = {"l2": losses.l2_loss, "l1": l1_loss, "cross_entropy": cross_entropy_loss}


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
    loss: str | Callable[[Tensor, Tensor], Tensor] = "l2",
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
    (squared L2, Bayes estimator = posterior mean), ``"l1"`` (posterior median),
    ``"cross_entropy"`` (rows of ``x`` are decisions such as τ(z), R returns logits; the
    Bayes estimator is P(z | input)) or any callable ℓ(x_hat, x) such as
    :func:`zero_one_surrogate`.
    If ``y_eval`` and ``reference_eval`` are given, the learning curve records the relative
    distance ‖R_θ(y_eval) − reference_eval‖ / ‖reference_eval‖, e.g. to the posterior mean.
    Returns R (trained in place, in eval mode) and its :class:`LearningCurve`.
    """
    if not callable(loss) and loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable ℓ(x_hat, x), got {loss!r}")
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
    loss_fn = loss if callable(loss) else LOSSES[loss]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    curve = LearningCurve()
    R.train()
    for step in config.progress(range(1, steps + 1), desc="ERM", leave=False):
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
    "GaussianClasses",
    "GaussianMixturePrior",
    "LearningCurve",
    "LinearGaussian",
    "LowRank",
    "SpikeAndSlab",
    "blur_operator",
    "cross_entropy_loss",
    "deblurring_problem",
    "l1_loss",
    "mlp",
    "relative_distance",
    "spike_and_slab_explorer",
    "spike_and_slab_figure",
    "squared_exponential_covariance",
    "train_estimator",
    "zero_one_surrogate",
]
