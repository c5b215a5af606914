"""Information conservation (section 6): a finite model in which every posterior is exact.

Proposition 1 and Corollary 1 of the paper say when a reconstruction operator B loses
no information about the task: P(z | B y) = P(z | y).  This module makes the
statement computable.  :class:`LinearGaussianMixture` is a class-conditional Gaussian
mixture prior on x ∈ ℝⁿ, a linear forward operator A ∈ ℝ^{m×n} and Gaussian noise
with any positive definite covariance Σ; the task z is the mixture component, so
z ⊥ y | x holds by construction.  Everything is float64 and exact:

- ``class_posterior(y, B)``: P(z | y), or P(z | B y) for a matrix B [k, m];
- ``posterior_mean`` / ``posterior_covariance``: moments of x given B y;
- ``bayes_accuracy`` / ``bayes_cross_entropy``: what the best decision rule achieves
  from B y (closed form Φ(Δ/2) where it exists, else a seeded Monte Carlo with its
  standard error, :class:`Estimate`);
- ``sufficiency(B)``: the linear criterion ker B ⊆ ker AᵀΣ⁻¹, with its tolerance;
- ``information_loss(B)``: mean KL(P(z|y) ‖ P(z|By)), max |ΔP| and the drop in
  Bayes accuracy, reported beside the sufficiency verdict.

The standard linear B's built from A (:func:`adjoint`, :func:`pseudo_inverse`,
:func:`tikhonov`, :func:`wiener`, :func:`truncated_svd`, :func:`whitened_adjoint`,
:func:`fbp_filter_matrix`, :func:`filtered_backprojection`), the row facts of a real ray transform
(:func:`row_facts`), a PCA Gaussian mixture fitted to MNIST (:func:`pca_mixture`) and a
quantiser of a one- or two-dimensional statistic (:func:`quantiser_loss`) complete it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tarlib import classical, physics

DTYPE = torch.float64
EPS = torch.finfo(DTYPE).eps
SUFFICIENCY_TOL = math.sqrt(EPS)  # relative residual below which ker B ⊆ ker AᵀΣ⁻¹ is accepted


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error (0 for a closed form) and how it was computed."""

    value: float
    stderr: float
    method: str

    def __str__(self) -> str:
        return f"{self.value:.4g}" if self.stderr == 0 else f"{self.value:.4g} ± {self.stderr:.1g}"


@dataclass(frozen=True)
class Sufficiency:
    """Verdict of the linear sufficiency test ker B ⊆ ker AᵀΣ⁻¹.

    ``residual`` = ‖AᵀΣ⁻¹ (I − P_B)‖₂ / ‖AᵀΣ⁻¹‖₂ with P_B the projector onto the row
    space of B (rank ``rank`` at relative singular-value tolerance ``rank_tol``); the
    verdict is ``residual ≤ tol``.
    """

    sufficient: bool
    residual: float
    tol: float
    rank: int
    rank_tol: float


@dataclass(frozen=True)
class InformationLoss:
    """How much of P(z | y) survives in P(z | B y), measured on the same samples y."""

    kl: Estimate  # mean per-sample KL(P(z|y) ‖ P(z|By)), in nats
    max_dp: float  # max over samples and classes of |P(z|y) − P(z|By)|
    accuracy_y: Estimate  # Bayes accuracy E[max_k P(z=k | y)]
    accuracy_By: Estimate  # Bayes accuracy E[max_k P(z=k | By)]
    accuracy_drop: Estimate  # paired difference of the two
    sufficiency: Sufficiency


# --------------------------------------------------------------------------
# Input checks and linear algebra helpers
# --------------------------------------------------------------------------


def _tensor(name: str, value: Tensor, ndim: int) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf")
    return value.to(DTYPE)


def _symmetric_eigenvalues(name: str, C: Tensor) -> Tensor:
    """Eigenvalues of each matrix of C [..., d, d]; ValueError unless C is symmetric."""
    scale = C.abs().amax(dim=(-2, -1)).clamp_min(1.0)
    asym = (C - C.transpose(-2, -1)).abs().amax(dim=(-2, -1))
    if (asym > 1e-10 * scale).any():
        raise ValueError(f"{name} must be symmetric; largest |C − Cᵀ| is {float(asym.max()):.3g}")
    return torch.linalg.eigvalsh((C + C.transpose(-2, -1)) / 2)


def rank_tolerance(M: Tensor, rtol: float | None = None) -> float:
    """The relative singular-value tolerance used for M: ``rtol`` or max(shape)·eps (LAPACK's)."""
    return max(M.shape) * EPS if rtol is None else float(rtol)


def range_basis(M: Tensor, rtol: float | None = None) -> Tensor:
    """Orthonormal basis [k, r] of the column space of M [k, m]: left singular vectors whose
    singular values exceed ``rank_tolerance(M, rtol)`` times the largest."""
    U, S, _ = torch.linalg.svd(_tensor("M", M, 2), full_matrices=False)
    return U[:, : classical.numerical_rank(S, tuple(M.shape), rank_tolerance(M, rtol))]


def _row_space_basis(M: Tensor, rtol: float | None) -> Tensor:
    """Orthonormal basis [m, r] of the row space of M [k, m]."""
    return range_basis(M.T, rtol)


def _log_gaussians(u: Tensor, means: Tensor, covs: Tensor) -> Tensor:
    """log N(u; means_k, covs_k) for all samples and classes: [N, K] (covs positive definite)."""
    L = torch.linalg.cholesky(covs)  # [K, r, r]
    eye = torch.eye(covs.shape[-1], dtype=DTYPE).expand_as(covs)
    L_inv = torch.linalg.solve_triangular(L, eye, upper=False)  # [K, r, r]
    half_logdet = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # [K]
    const = 0.5 * covs.shape[-1] * math.log(2 * math.pi)
    out = torch.empty(u.shape[0], means.shape[0], dtype=DTYPE)
    for k in range(means.shape[0]):  # one class at a time keeps memory at [N, r]
        d = (u - means[k]) @ L_inv[k].T
        out[:, k] = -0.5 * (d * d).sum(1) - half_logdet[k] - const
    return out


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


class LinearGaussianMixture:
    """z ~ Categorical(weights), x | z=k ~ N(means[k], covs[k]), y = A x + e, e ~ N(0, noise_cov).

    Shapes: means [K, n], covs [K, n, n] (symmetric positive semi-definite), weights [K]
    (non-negative, summing to 1), A [m, n], noise_cov [m, m] (positive definite).  Given
    class k, y ~ N(A μ_k, A C_k Aᵀ + Σ), so every posterior over z is a finite softmax.
    """

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor, A: Tensor, noise_cov: Tensor):
        means, covs = _tensor("means", means, 2), _tensor("covs", covs, 3)
        weights, A = _tensor("weights", weights, 1), _tensor("A", A, 2)
        noise_cov = _tensor("noise_cov", noise_cov, 2)
        K, n = means.shape
        m = A.shape[0]
        if K == 0:
            raise ValueError("the mixture needs at least one class (K ≥ 1), got K = 0")
        if covs.shape != (K, n, n):
            raise ValueError(f"covs must be [K, n, n] = [{K}, {n}, {n}] to match means {[K, n]}, got {list(covs.shape)}")
        if weights.shape != (K,):
            raise ValueError(f"weights must be [K] = [{K}], got {list(weights.shape)}")
        if A.shape[1] != n or m == 0:
            raise ValueError(f"A must be [m, n] with n = {n} (from means) and m ≥ 1, got {list(A.shape)}")
        if noise_cov.shape != (m, m):
            raise ValueError(f"noise_cov must be [m, m] = [{m}, {m}] to match A, got {list(noise_cov.shape)}")
        if (weights < 0).any() or abs(float(weights.sum()) - 1) > 1e-9:
            raise ValueError(f"weights must be non-negative and sum to 1, got sum {float(weights.sum()):.12g}")
        cov_eig = _symmetric_eigenvalues("covs", covs)  # [K, n]
        if (cov_eig.amin(-1) < -1e-10 * cov_eig.abs().amax(-1).clamp_min(1.0)).any():
            raise ValueError(f"covs must be positive semi-definite; smallest eigenvalue {float(cov_eig.min()):.3g}")
        noise_eig = _symmetric_eigenvalues("noise_cov", noise_cov)
        if not noise_eig.min() > m * EPS * noise_eig.abs().max():
            raise ValueError(f"noise_cov must be positive definite; smallest eigenvalue {float(noise_eig.min()):.3g}")
        self.means, self.weights, self.A = means, weights, A
        self.covs = (covs + covs.transpose(-2, -1)) / 2
        self.noise_cov = (noise_cov + noise_cov.T) / 2
        # sampling factors F_k F_kᵀ = C_k (C_k may be singular, so eigh rather than Cholesky)
        lam, U = torch.linalg.eigh(self.covs)
        self._cov_factors = U * lam.clamp_min(0).sqrt()[:, None, :]
        self._noise_factor = torch.linalg.cholesky(self.noise_cov)
        self.data_means = means @ A.T  # [K, m]: E[y | z=k]
        self.data_covs = A @ self.covs @ A.T + self.noise_cov  # [K, m, m]: Cov[y | z=k]

    @property
    def K(self) -> int:
        """Number of classes."""
        return self.means.shape[0]

    @property
    def n(self) -> int:
        """Dimension of x."""
        return self.means.shape[1]

    @property
    def m(self) -> int:
        """Dimension of y."""
        return self.A.shape[0]

    # -- sampling ------------------------------------------------------------

    def sample(self, N: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """N independent triplets: x [N, n], y [N, m] (float64) and z [N] (int64)."""
        if isinstance(N, bool) or not isinstance(N, int) or N < 1:
            raise ValueError(f"N must be a positive int, got {N!r}")
        z = torch.multinomial(self.weights, N, replacement=True, generator=generator)
        eps = torch.randn(N, self.n, dtype=DTYPE, generator=generator)
        x = self.means[z]
        for k in range(self.K):
            rows = z == k
            x[rows] += eps[rows] @ self._cov_factors[k].T
        e = torch.randn(N, self.m, dtype=DTYPE, generator=generator) @ self._noise_factor.T
        return x, x @ self.A.T + e, z

    # -- posteriors ----------------------------------------------------------

    def _check_y(self, y: Tensor) -> Tensor:
        if not isinstance(y, Tensor) or y.ndim != 2 or y.shape[1] != self.m:
            got = list(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(f"y must be a batch [N, m] = [N, {self.m}], got {got}")
        return y.to(DTYPE)

    def range_basis(self, B: Tensor | None, rtol: float | None = None) -> Tensor | None:
        """Q [k, r]: one orthonormal basis of ran B, shared by all classes (None for B=None).

        B y always lies in ran B, so u = Qᵀ(B y) loses nothing, and W = QᵀB has full row
        rank r, so u has a positive definite covariance W (A C_k Aᵀ + Σ) Wᵀ under every
        class: its density is the pseudo-density of B y on ran B, with no jitter.  ``rtol``
        is the relative singular-value tolerance that decides r (:func:`rank_tolerance`).
        """
        if B is None:
            return None
        B = _tensor("B", B, 2)
        if B.shape[1] != self.m:
            raise ValueError(f"B must be [k, m] with rows in ℝ^m, m = {self.m}; got {list(B.shape)}")
        Q = range_basis(B, rtol)
        if Q.shape[1] == 0:
            raise ValueError("B is zero to within the rank tolerance: B y carries no information")
        return Q

    def _reduced(self, y: Tensor, B: Tensor | None, rtol: float | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """W = QᵀB, the data u = Qᵀ(B y) (B y first, as a reconstruction would compute it), and
        the class means [K, r] and covariances [K, r, r] of u."""
        y, Q = self._check_y(y), self.range_basis(B, rtol)
        if Q is None:
            return torch.eye(self.m, dtype=DTYPE), y, self.data_means, self.data_covs
        B = B.to(DTYPE)
        W = Q.T @ B
        return W, (y @ B.T) @ Q, self.data_means @ W.T, W @ self.data_covs @ W.T

    def class_posterior(self, y: Tensor, B: Tensor | None = None, rtol: float | None = None) -> Tensor:
        """P(z | y) [N, K], or P(z | B y) for a matrix B [k, m] (see :meth:`range_basis`)."""
        _, u, means, covs = self._reduced(y, B, rtol)
        log_joint = _log_gaussians(u, means, covs) + torch.log(self.weights)
        return torch.softmax(log_joint, dim=1)

    def _class_moments(self, y: Tensor, B: Tensor | None, rtol: float | None) -> tuple[Tensor, Tensor, Tensor]:
        """P(z | By) [N, K], E[x | By, z=k] [N, K, n] and Cov[x | By, z=k] [K, n, n]."""
        W, u, means, covs = self._reduced(y, B, rtol)
        probs = torch.softmax(_log_gaussians(u, means, covs) + torch.log(self.weights), dim=1)
        cross = self.covs @ (W @ self.A).T  # Cov[x, W y | z=k]: [K, n, r]
        gain = torch.linalg.solve(covs, cross.transpose(-2, -1)).transpose(-2, -1)  # [K, n, r]
        cond_means = self.means[None] + torch.einsum("kir,nkr->nki", gain, u[:, None, :] - means[None])
        cond_covs = self.covs - gain @ cross.transpose(-2, -1)
        return probs, cond_means, (cond_covs + cond_covs.transpose(-2, -1)) / 2

    def posterior_mean(self, y: Tensor, B: Tensor | None = None, rtol: float | None = None) -> Tensor:
        """E[x | B y] [N, n]: the class posteriors times the class-wise Gaussian conditional means.

        It is non-linear in y (the weights P(z | By) depend on y), so it is no matrix B."""
        probs, cond_means, _ = self._class_moments(y, B, rtol)
        return torch.einsum("nk,nki->ni", probs, cond_means)

    def posterior_covariance(self, y: Tensor, B: Tensor | None = None, rtol: float | None = None) -> Tensor:
        """Cov[x | B y] [N, n, n] = Σ_k P(k|By)(P_k + m_k m_kᵀ) − m mᵀ (law of total covariance)."""
        probs, cond_means, cond_covs = self._class_moments(y, B, rtol)
        mean = torch.einsum("nk,nki->ni", probs, cond_means)
        second = torch.einsum("nk,kij->nij", probs, cond_covs)
        second += torch.einsum("nk,nki,nkj->nij", probs, cond_means, cond_means)
        return second - mean[:, :, None] * mean[:, None, :]

    def moments(self) -> tuple[Tensor, Tensor]:
        """Mean [n] and covariance [n, n] of the prior mixture on x."""
        mean = self.weights @ self.means
        centred = self.means - mean
        cov = torch.einsum("k,kij->ij", self.weights, self.covs) + centred.T @ (self.weights[:, None] * centred)
        return mean, cov

    # -- Bayes risks -----------------------------------------------------------

    def _closed_form_applies(self) -> bool:
        return (self.K == 2 and abs(float(self.weights[0]) - 0.5) < 1e-12
                and torch.allclose(self.covs[0], self.covs[1], rtol=0, atol=1e-12))

    def bayes_accuracy(self, B: Tensor | None = None, N: int = 10_000, seed: int = 0,
                       method: str = "auto", rtol: float | None = None) -> Estimate:
        """Accuracy of the Bayes decision rule argmax_k P(z=k | By).

        ``method="closed form"`` (the default ``"auto"`` uses it when it applies): two
        equal-weight classes with equal covariance give Φ(Δ/2), Δ the Mahalanobis distance
        of the class means of W y.  ``"monte carlo"``: the mean of max_k P(z=k | By) over N
        seeded samples, with its standard error.
        """
        if method not in ("auto", "closed form", "monte carlo"):
            raise ValueError(f"method must be 'auto', 'closed form' or 'monte carlo', got {method!r}")
        if method == "closed form" or (method == "auto" and self._closed_form_applies()):
            if not self._closed_form_applies():
                raise ValueError("the closed form Φ(Δ/2) needs K = 2, equal weights and equal class covariances")
            _, _, means, covs = self._reduced(self.data_means[:1], B, rtol)
            diff = means[1] - means[0]
            delta = float(diff @ torch.linalg.solve(covs[0], diff)) ** 0.5
            return Estimate(float(torch.special.ndtr(torch.tensor(delta / 2))), 0.0, "closed form Φ(Δ/2)")
        _, y, _ = self.sample(N, torch.Generator().manual_seed(seed))
        best = self.class_posterior(y, B, rtol).amax(1)
        return Estimate(float(best.mean()), float(best.std() / N**0.5), f"monte carlo, N={N}, seed={seed}")

    def bayes_cross_entropy(self, B: Tensor | None = None, N: int = 10_000, seed: int = 0,
                            rtol: float | None = None) -> Estimate:
        """Cross-entropy E[−log P(z | By)] of the Bayes posterior (the conditional entropy
        H(z | By), in nats): seeded Monte Carlo with its standard error."""
        _, y, z = self.sample(N, torch.Generator().manual_seed(seed))
        nll = -torch.log(self.class_posterior(y, B, rtol).gather(1, z[:, None])[:, 0])
        return Estimate(float(nll.mean()), float(nll.std() / N**0.5), f"monte carlo, N={N}, seed={seed}")

    # -- information conservation ----------------------------------------------

    def sufficiency(self, B: Tensor, tol: float = SUFFICIENCY_TOL, rtol: float | None = None) -> Sufficiency:
        """Does B y keep P(z | ·) for every prior?  Yes iff AᵀΣ⁻¹y is a function of B y,
        i.e. ker B ⊆ ker AᵀΣ⁻¹, i.e. AᵀΣ⁻¹ vanishes on the orthogonal complement of B's row space.
        """
        B = _tensor("B", B, 2)
        if B.shape[1] != self.m:
            raise ValueError(f"B must be [k, m] with rows in ℝ^m, m = {self.m}; got {list(B.shape)}")
        G = torch.linalg.solve(self.noise_cov, self.A).T  # AᵀΣ⁻¹ [n, m]
        V = _row_space_basis(B, rtol)
        residual = float(torch.linalg.matrix_norm(G - (G @ V) @ V.T, ord=2) / torch.linalg.matrix_norm(G, ord=2))
        return Sufficiency(residual <= tol, residual, float(tol), V.shape[1], rank_tolerance(B.T, rtol))

    def information_loss(self, B: Tensor, N: int = 10_000, seed: int = 0, rtol: float | None = None) -> InformationLoss:
        """KL, max |ΔP| and Bayes-accuracy drop of B y against y, on N seeded samples, with the
        sufficiency verdict beside them."""
        _, y, _ = self.sample(N, torch.Generator().manual_seed(seed))
        return compare_posteriors(self.class_posterior(y), self.class_posterior(y, B, rtol),
                                  self.sufficiency(B, rtol=rtol), f"monte carlo, N={N}, seed={seed}")


def _mean_se(values: Tensor, method: str) -> Estimate:
    return Estimate(float(values.mean()), float(values.std() / values.numel() ** 0.5), method)


def compare_posteriors(p_y: Tensor, p_b: Tensor, sufficiency: Sufficiency, method: str) -> InformationLoss:
    """The loss measures of :class:`InformationLoss` from paired posteriors P(z|y), P(z|By) [N, K]."""
    kl = (torch.xlogy(p_y, p_y) - torch.xlogy(p_y, p_b.clamp_min(1e-300))).sum(1).clamp_min(0)  # ≥ 0 up to round-off
    best_y, best_b = p_y.amax(1), p_b.amax(1)
    return InformationLoss(_mean_se(kl, method), float((p_y - p_b).abs().max()), _mean_se(best_y, method),
                           _mean_se(best_b, method), _mean_se(best_y - best_b, method), sufficiency)


# --------------------------------------------------------------------------
# The standard linear B's built from A
# --------------------------------------------------------------------------


def adjoint(A: Tensor) -> Tensor:
    """B = Aᵀ (back-projection)."""
    return _tensor("A", A, 2).T.contiguous()


def pseudo_inverse(A: Tensor, rtol: float | None = None) -> Tensor:
    """B = A⁺, the Moore–Penrose pseudo-inverse (minimum-norm least squares)."""
    A = _tensor("A", A, 2)
    return torch.linalg.pinv(A, rtol=rank_tolerance(A, rtol))


def tikhonov(A: Tensor, alpha: float) -> Tensor:
    """B = (AᵀA + αI)⁻¹Aᵀ, the minimiser of ‖Ax − y‖² + α‖x‖²."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    A = _tensor("A", A, 2)
    return torch.linalg.solve(A.T @ A + alpha * torch.eye(A.shape[1], dtype=DTYPE), A.T)


def truncated_svd(A: Tensor, r: int) -> Tensor:
    """B = V_r S_r⁻¹ U_rᵀ: the pseudo-inverse restricted to the r largest singular values."""
    A = _tensor("A", A, 2)
    U, S, Vh = torch.linalg.svd(A, full_matrices=False)
    if not 1 <= r <= int((S > rank_tolerance(A) * S[0]).sum()):
        raise ValueError(f"r must be between 1 and rank(A) = {int((S > rank_tolerance(A) * S[0]).sum())}, got {r}")
    return Vh[:r].T @ (U[:, :r] / S[:r]).T


def whitened_adjoint(A: Tensor, noise_cov: Tensor) -> Tensor:
    """B = AᵀΣ⁻¹: sufficient for x under any Gaussian noise N(0, Σ), since the likelihood
    depends on y only through it."""
    A, noise_cov = _tensor("A", A, 2), _tensor("noise_cov", noise_cov, 2)
    return torch.linalg.solve(noise_cov, A).T


def wiener(model: LinearGaussianMixture) -> Tensor:
    """The linear MMSE (Wiener) matrix Cov[x, y] Cov[y]⁻¹ = Σ_x Aᵀ (A Σ_x Aᵀ + Σ)⁻¹, with Σ_x
    the covariance of the whole mixture.  (The mixture's posterior mean is not linear.)"""
    _, cov_x = model.moments()
    cov_y = model.A @ cov_x @ model.A.T + model.noise_cov
    return torch.linalg.solve(cov_y, model.A @ cov_x).T


def fbp_filter_matrix(ray: physics.RayTransform, filter: str = "ram-lak", frequency_scaling: float = 1.0) -> Tensor:
    """F [m, m]: the filter step of FBP (:func:`tarlib.physics.fbp_filter`) as a matrix, one
    block per angle; column j is the filtered j-th unit sinogram."""
    m = math.prod(ray.range_shape)
    units = torch.eye(m, dtype=DTYPE).reshape(m, 1, *ray.range_shape)
    with torch.no_grad():
        return physics.fbp_filter(ray, units, filter, frequency_scaling).reshape(m, m).T.contiguous()


def filtered_backprojection(ray: physics.RayTransform, filter: str = "ram-lak", frequency_scaling: float = 1.0,
                            zero_dead_lines: bool = False) -> Tensor:
    """B = A_pixᵀ F [n_pix, m]: the FBP image in pixels (:func:`tarlib.physics.fbp`) as a matrix.

    With ``zero_dead_lines`` the data of lines that miss the image (zero rows of A_pix)
    are set to 0 before filtering: B = A_pixᵀ F D.
    """
    A_pix = classical.dense_matrix(ray, max_entries=math.prod(ray.range_shape) * math.prod(ray.domain_shape))
    F = fbp_filter_matrix(ray, filter, frequency_scaling)
    if zero_dead_lines:
        F[:, zero_rows(A_pix)] = 0
    return A_pix.T @ F


# --------------------------------------------------------------------------
# Facts about a real operator
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RowFacts:
    """Rows of a forward operator A [m, n]: how many are zero, and how many live rows depend
    on the others.  The rank comes from the eigenvalues λ of the live rows' Gram matrix
    G = A_live A_liveᵀ, counted as non-zero above ``tol`` = (number of live rows)·eps·λ_max,
    the round-off level of G; ``gap`` is (largest λ counted as zero, smallest λ counted as
    non-zero), to show whether the count hinges on tol."""

    m: int
    n: int
    zero_rows: int
    rank: int
    dependent_live_rows: int
    tol: float
    gap: tuple[float, float]


def zero_rows(A: Tensor) -> Tensor:
    """Boolean mask [m] of the rows of A that are exactly zero (lines that miss the image)."""
    return (_tensor("A", A, 2) == 0).all(1)


def row_facts(A: Tensor | physics.RayTransform) -> RowFacts:
    """Zero rows, rank and dependent live rows of A, a dense matrix or a :class:`RayTransform`
    (whose Gram matrix is formed from its sparse matrix, so the brain operator fits)."""
    if isinstance(A, physics.RayTransform):
        sparse = A.matrix.to(DTYPE)
        m, n = sparse.shape
        dead = (sparse.crow_indices()[1:] == sparse.crow_indices()[:-1])  # rows without entries
        gram = torch.sparse.mm(sparse, sparse.t().to_sparse_csr()).to_dense()[~dead][:, ~dead]
    else:
        A = _tensor("A", A, 2)
        (m, n), dead = A.shape, zero_rows(A)
        gram = A[~dead] @ A[~dead].T
    eig = torch.linalg.eigvalsh(gram)
    tol = gram.shape[0] * EPS * float(eig[-1])
    rank = int((eig > tol).sum())
    below = eig[eig <= tol]
    gap = (float(below.max()) if below.numel() else 0.0, float(eig[eig > tol].min()))
    return RowFacts(m, n, int(dead.sum()), rank, gram.shape[0] - rank, tol, gap)


def detector_correlated_noise(n_angles: int, n_det: int, sigma: float, rho: float) -> Tensor:
    """Σ = σ² · blockdiag_angles(T), T[i, j] = ρ^|i−j|: neighbouring detector cells share noise
    (cross-talk), independently per angle.  Positive definite for |ρ| < 1."""
    if not (sigma > 0 and abs(rho) < 1):
        raise ValueError(f"need sigma > 0 and |rho| < 1, got sigma={sigma}, rho={rho}")
    i = torch.arange(n_det, dtype=DTYPE)
    T = rho ** (i[:, None] - i[None, :]).abs()
    return sigma**2 * torch.block_diag(*[T] * n_angles)


# --------------------------------------------------------------------------
# A course-sized model: a Gaussian mixture on MNIST in a PCA basis
# --------------------------------------------------------------------------


def pca_mixture(images: Tensor, labels: Tensor, A_pix: Tensor, noise_cov: Tensor,
                n_components: int = 64) -> tuple[LinearGaussianMixture, Tensor]:
    """Fit one Gaussian per class to the PCA coefficients of ``images`` [N, 1, H, W].

    V [H·W, n] are the leading right singular vectors of the (uncentred) image matrix, the
    coefficients are x = Vᵀ image, and the operator in that basis is A = A_pix V.  Returns
    the model and V (images of coefficients x are V x).
    """
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be [N, 1, H, W] with labels [N], got {list(images.shape)}, {list(labels.shape)}")
    flat = images.flatten(1).to(DTYPE)
    if A_pix.shape[1] != flat.shape[1] or not 1 <= n_components <= flat.shape[1]:
        raise ValueError(f"A_pix must be [m, {flat.shape[1]}] and 1 ≤ n_components ≤ {flat.shape[1]}; "
                         f"got {list(A_pix.shape)} and {n_components}")
    _, V = torch.linalg.eigh(flat.T @ flat)
    V = V[:, -n_components:].flip(1)
    coeffs = flat @ V
    classes = torch.unique(labels)
    means = torch.stack([coeffs[labels == c].mean(0) for c in classes])
    covs = torch.stack([torch.cov(coeffs[labels == c].T) for c in classes])
    weights = torch.stack([(labels == c).to(DTYPE).mean() for c in classes])
    return LinearGaussianMixture(means, covs, weights / weights.sum(), A_pix.to(DTYPE) @ V, noise_cov), V


# --------------------------------------------------------------------------
# A non-linear B: quantising a low-dimensional statistic
# --------------------------------------------------------------------------


def _cell_probabilities(means: Tensor, covs: Tensor, edges: Tensor, nodes: int = 48) -> Tensor:
    """P_k(cell) [cells, K] of the grid cut at ``edges`` [d, L−1] for Gaussians N(means_k, covs_k), d ≤ 2.

    d = 1: Φ differences (exact).  d = 2: ∫ φ(s₁) [Φ(b | s₁) − Φ(a | s₁)] ds₁ over each
    s₁-interval (clipped to ±12 standard deviations) by Gauss–Legendre quadrature with
    ``nodes`` nodes, the inner integral being exact.
    """
    inf = torch.tensor([math.inf], dtype=DTYPE)
    bounds = [torch.cat([-inf, e, inf]) for e in edges]
    sd1 = covs[:, 0, 0].sqrt()[:, None]  # [K, 1]
    cdf1 = torch.special.ndtr((bounds[0][None] - means[:, :1]) / sd1)  # [K, L+1]
    if len(edges) == 1:
        return (cdf1[:, 1:] - cdf1[:, :-1]).T
    t, w = (torch.as_tensor(a, dtype=DTYPE) for a in np.polynomial.legendre.leggauss(nodes))
    lo = torch.maximum(bounds[0][:-1][None], means[:, :1] - 12 * sd1)  # [K, L]
    hi = torch.minimum(bounds[0][1:][None], means[:, :1] + 12 * sd1).maximum(lo)
    s1 = (lo + hi)[..., None] / 2 + (hi - lo)[..., None] / 2 * t  # [K, L, nodes]
    density = torch.exp(-0.5 * ((s1 - means[:, :1, None]) / sd1[..., None]) ** 2) / (sd1[..., None] * math.sqrt(2 * math.pi))
    slope = (covs[:, 0, 1] / covs[:, 0, 0])[:, None, None]
    cond_mean = means[:, 1, None, None] + slope * (s1 - means[:, :1, None])
    cond_sd = (covs[:, 1, 1] - covs[:, 0, 1] ** 2 / covs[:, 0, 0]).clamp_min(0).sqrt()[:, None, None, None]
    cdf2 = torch.special.ndtr((bounds[1][None, None, None] - cond_mean[..., None]) / cond_sd)  # [K, L, nodes, L+1]
    inner = cdf2[..., 1:] - cdf2[..., :-1]  # [K, L, nodes, L]
    p = torch.einsum("q,klq,klqj->klj", w, density, inner) * ((hi - lo) / 2)[..., None]
    return p.reshape(p.shape[0], -1).T


def quantiser_loss(model: LinearGaussianMixture, S: Tensor, levels: int, N: int = 10_000,
                   seed: int = 0) -> tuple[InformationLoss, Estimate]:
    """Information left in the non-linear statistic q(S y): S [d, m] (d = 1 or 2) and each
    coordinate of S y quantised into ``levels`` cells, cut at the quantiles of its marginal.

    P(z | q) ∝ w_k P_k(cell), with P_k(cell) by :func:`_cell_probabilities` (closed form for
    d = 1, quadrature for d = 2).  Returns the loss measures against P(z | y) on N seeded
    samples (their sufficiency field judges the linear S alone) and the exact Bayes
    accuracy Σ_cells max_k w_k P_k(cell) of the quantiser.
    """
    S = _tensor("S", S, 2)
    d = S.shape[0]
    if d not in (1, 2) or S.shape[1] != model.m:
        raise ValueError(f"S must be [d, m] with d = 1 or 2 and m = {model.m}, got {list(S.shape)}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int ≥ 2, got {levels!r}")
    _, y, _ = model.sample(N, torch.Generator().manual_seed(seed))
    s = y @ S.T
    edges = torch.quantile(s, torch.linspace(0, 1, levels + 1, dtype=DTYPE)[1:-1], dim=0).T.contiguous()
    cell = torch.zeros(N, dtype=torch.int64)
    for j in range(d):
        cell = cell * levels + torch.searchsorted(edges[j], s[:, j].contiguous())
    joint = _cell_probabilities(model.data_means @ S.T, S @ model.data_covs @ S.T, edges) * model.weights
    posterior = joint / joint.sum(1, keepdim=True).clamp_min(1e-300)
    loss = compare_posteriors(model.class_posterior(y), posterior[cell], model.sufficiency(S),
                              f"monte carlo, N={N}, seed={seed}")
    method = "closed form" if d == 1 else "Gauss-Legendre quadrature"
    return loss, Estimate(float(joint.amax(1).sum()), 0.0, method)


__all__ = [
    "Estimate",
    "InformationLoss",
    "LinearGaussianMixture",
    "RowFacts",
    "SUFFICIENCY_TOL",
    "Sufficiency",
    "adjoint",
    "compare_posteriors",
    "detector_correlated_noise",
    "fbp_filter_matrix",
    "filtered_backprojection",
    "pca_mixture",
    "pseudo_inverse",
    "quantiser_loss",
    "range_basis",
    "rank_tolerance",
    "row_facts",
    "tikhonov",
    "truncated_svd",
    "whitened_adjoint",
    "wiener",
    "zero_rows",
]
