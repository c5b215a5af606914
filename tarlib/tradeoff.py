"""The C trade-off of eq. (18) in a linear-Gaussian toy where every risk is computable.

The data model is :class:`tarlib.bayes.LinearGaussian` (x ~ N(0, Σ_x), y = A x + e) and
the task is binary, z = 1[wᵀx > 0].  The reconstruction R_θ(y) = U V y is linear of
rank r (U [n, r], V [r, k]); the task network T_ϑ(x̂) = sigmoid(aᵀx̂ + b) is logistic.
For such a pair both risks are exact:

- ℓ_X: E‖x − B y‖² with B = U V (:meth:`LinearGaussian.risk`, eq. (3));
- ℓ_D: E[−log T(R(y))(z)], a one-dimensional Gaussian integral, because aᵀB y and wᵀx
  are jointly Gaussian (Gauss–Hermite quadrature, exact to round-off).

The Bayes bounds come from the posterior N(K y, Σ_post): ℓ_X ≥ tr Σ_post, and the task's
Bayes decision is P(z = 1 | y) = Φ(wᵀK y / s) with s² = wᵀΣ_post w.

:func:`train` fits a pair for every C of a grid at once (independent parameters, one
batched Adam), by sampling fresh triplets (x, y, z) every step, i.e. the empirical risk
of eq. (20); ``strategy="sequential"`` trains R on ℓ_X alone and then T on R's outputs
(eqs. (12)–(13)).  Everything is float64 and takes seconds on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from tarlib.bayes import DTYPE, LinearGaussian

_NODES, _WEIGHTS = (torch.tensor(v, dtype=DTYPE) for v in np.polynomial.hermite_e.hermegauss(96))
_WEIGHTS = _WEIGHTS / math.sqrt(2 * math.pi)  # E[f(u)], u ~ N(0, 1), as Σ_j w_j f(u_j)


@dataclass
class Toy:
    """A linear-Gaussian problem and the task direction w of z = 1[wᵀx > 0]."""

    problem: LinearGaussian
    w: Tensor

    def sample(self, m: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """m triplets (x, y, z) with z = 1[wᵀx > 0] as float64 0/1, shapes [m, n], [m, k], [m]."""
        x, y = self.problem.sample(m, generator)
        return x, y, (x @ self.w > 0).to(DTYPE)

    def bayes_reconstruction_risk(self) -> float:
        """min over all R of E‖x − R(y)‖²: tr Σ_post, reached by the posterior mean K y."""
        return float(torch.trace(self.problem.posterior_covariance()))

    def _posterior_task(self) -> tuple[float, float]:
        """(std of wᵀK y, posterior std s of wᵀx given y)."""
        K, Cy, w = self.problem.K, self.problem.C_y, self.w
        v_m = float(w @ K @ Cy @ K.T @ w)
        s2 = float(w @ self.problem.posterior_covariance() @ w)
        return math.sqrt(max(v_m, 0.0)), math.sqrt(max(s2, 1e-300))

    def bayes_task_risk(self) -> float:
        """min over all decisions d(y) of E[−log d(z)]: the expected binary entropy of Φ(wᵀK y / s)."""
        sd_m, s = self._posterior_task()
        p = torch.special.ndtr(sd_m * _NODES / s).clamp(1e-300, 1 - 1e-16)
        entropy = -(p * p.log() + (1 - p) * torch.log1p(-p))
        return float((_WEIGHTS * entropy).sum())

    def bayes_accuracy(self) -> float:
        """P(sign(wᵀK y) = sign(wᵀx)) = ½ + arctan(std(wᵀK y) / s) / π."""
        sd_m, s = self._posterior_task()
        return 0.5 + math.atan(sd_m / s) / math.pi

    def reconstruction_risk(self, B: Tensor) -> Tensor:
        """E‖x − B y‖² for a batch of linear reconstructions B [G, n, k] (or one [n, k])."""
        B = B.to(DTYPE)
        p = self.problem
        S, Cy = p.Sigma_x, p.C_y
        value = torch.trace(S) - 2 * torch.einsum("...ij,jl,li->...", B, p.A, S) + torch.einsum(
            "...ij,jl,...il->...", B, Cy, B
        )
        return value

    def task_risk(self, B: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """E[cross-entropy of sigmoid(aᵀB y + b) against z], batched over a leading G.

        t = aᵀB y and u = wᵀx are jointly Gaussian with zero means, so
        P(z = 1 | t) = Φ(β t / s_c) with β = Cov(u, t)/Var(t) and s_c² = Var(u | t); the
        remaining expectation over t is a 1D Gauss–Hermite sum.
        """
        p = self.problem
        B, a, b = B.to(DTYPE), a.to(DTYPE), b.to(DTYPE)
        g = torch.einsum("...i,...ij->...j", a, B)  # t = gᵀ y
        var_t = torch.einsum("...j,jl,...l->...", g, p.C_y, g).clamp_min(1e-300)
        cov = torch.einsum("i,ij,lj,...l->...", self.w, p.Sigma_x, p.A, g)
        var_u = self.w @ p.Sigma_x @ self.w
        s_c = (var_u - cov**2 / var_t).clamp_min(1e-24).sqrt()
        t = var_t.sqrt()[..., None] * _NODES  # [..., nodes]
        p_one = torch.special.ndtr((cov / var_t)[..., None] * t / s_c[..., None])
        logit = t + b[..., None]
        ce = p_one * F.softplus(-logit) + (1 - p_one) * F.softplus(logit)
        return (ce * _WEIGHTS).sum(-1)


def toy(n: int = 6, sigma: float = 0.05, largest: float = 1.0, smallest: float = 0.04) -> Toy:
    """The course's toy: y = x + e (A = I), Σ_x = diag of n variances from ``largest`` down to ``smallest``.

    The task direction w is the last coordinate, the one of *smallest* prior variance, yet
    observed with a signal-to-noise ratio ``smallest``/σ² ≫ 1: the task is learnable from y,
    but an L2-trained R of rank r < n spends its rank on the large-variance coordinates and
    drops it.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int ≥ 2, got {n!r}")
    if not 0 < smallest < largest:
        raise ValueError(f"need 0 < smallest < largest, got {smallest}, {largest}")
    variances = torch.tensor(np.geomspace(largest, smallest, n), dtype=DTYPE)
    problem = LinearGaussian(torch.eye(n, dtype=DTYPE), torch.diag(variances), sigma)
    w = torch.zeros(n, dtype=DTYPE)
    w[-1] = 1.0
    return Toy(problem, w)


@dataclass
class ToyFit:
    """What :func:`train` returns: one row per C (for ``sequential``, one row with C = nan)."""

    C: Tensor  # [G]
    B: Tensor  # [G, n, k]  the reconstruction R(y) = B y
    a: Tensor  # [G, n]     the task network's weights
    b: Tensor  # [G]        and bias
    l_X: Tensor  # [G]      exact E‖x − R(y)‖²
    l_D: Tensor  # [G]      exact E[cross-entropy of T(R(y)) against z]


def train(
    toy: Toy,
    rank: int,
    Cs: list[float] | Tensor | None = None,
    strategy: str = "joint",
    seed: int = 0,
    steps: int = 1500,
    batch_size: int = 256,
    lr: float = 0.02,
    lr_task: float = 0.5,
    init_scale: float = 0.5,
) -> ToyFit:
    """Fit T ∘ R with R of rank ``rank`` for every C in ``Cs`` (``joint``, eq. (20)) or ``sequential``.

    ``joint``: each C has its own (U, V, a, b); one Adam minimises Σ_C [(1 − C)·ℓ_D + C·ℓ_X] on
    fresh triplets, which trains every C independently (Adam acts per parameter).
    ``sequential``: R minimises ℓ_X for ``steps`` steps (eq. (4)), then T minimises ℓ_D on
    R's outputs, R fixed (eq. (13)).  Initial parameters ~ N(0, init_scale²/fan-in), seeded.
    Adam's step for T is ``lr_task``: the Bayes decision needs a large weight on the
    small-variance direction w (logits of order wᵀx / s), which a step of ``lr`` cannot reach.
    """
    n, k = toy.problem.n, toy.problem.k
    if not isinstance(rank, int) or not 1 <= rank <= min(n, k):
        raise ValueError(f"rank must be an int in [1, {min(n, k)}], got {rank!r}")
    if strategy not in ("joint", "sequential"):
        raise ValueError(f"strategy must be 'joint' or 'sequential', got {strategy!r}")
    if strategy == "joint":
        if Cs is None or len(Cs) == 0:
            raise ValueError("strategy='joint' needs a non-empty list of C values in [0, 1]")
        C = torch.as_tensor(Cs, dtype=DTYPE).flatten()
        if ((C < 0) | (C > 1)).any():
            raise ValueError(f"every C must lie in [0, 1] (eq. (18)), got {C.tolist()}")
    elif Cs is not None:
        raise ValueError("strategy='sequential' takes no C (it is the limit C → 1)")
    else:
        C = torch.tensor([math.nan], dtype=DTYPE)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be ≥ 1, got {steps} and {batch_size}")
    G = len(C)
    gen = torch.Generator().manual_seed(seed)
    U = (init_scale / math.sqrt(rank) * torch.randn(G, n, rank, dtype=DTYPE, generator=gen)).requires_grad_()
    V = (init_scale / math.sqrt(k) * torch.randn(G, rank, k, dtype=DTYPE, generator=gen)).requires_grad_()
    a = (init_scale / math.sqrt(n) * torch.randn(G, n, dtype=DTYPE, generator=gen)).requires_grad_()
    b = torch.zeros(G, dtype=DTYPE, requires_grad=True)

    def fit(params: list[Tensor], objective) -> None:
        optimizer = torch.optim.Adam([{"params": [p for p in params if p is U or p is V], "lr": lr},
                                      {"params": [p for p in params if p is a or p is b], "lr": lr_task}])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        for _ in range(steps):
            x, y, z = toy.sample(batch_size, gen)
            x_hat = torch.einsum("gnr,grk,mk->gmn", U, V, y)
            loss = objective(x, x_hat, z).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()

    def l_X(x: Tensor, x_hat: Tensor) -> Tensor:  # [G]: batch mean of ‖x − x̂‖², eq. (4)
        return (x_hat - x).pow(2).sum(-1).mean(-1)

    def l_D(x_hat: Tensor, z: Tensor) -> Tensor:  # [G]: batch mean of the binary cross-entropy
        logits = torch.einsum("gmn,gn->gm", x_hat, a) + b[:, None]
        return F.binary_cross_entropy_with_logits(logits, z.expand_as(logits), reduction="none").mean(-1)

    if strategy == "joint":
        fit([U, V, a, b], lambda x, x_hat, z: (1 - C) * l_D(x_hat, z) + C * l_X(x, x_hat))
    else:
        fit([U, V], lambda x, x_hat, z: l_X(x, x_hat))
        fit([a, b], lambda x, x_hat, z: l_D(x_hat.detach(), z))
    with torch.no_grad():
        B = U @ V
        return ToyFit(C, B, a.detach().clone(), b.detach().clone(), toy.reconstruction_risk(B), toy.task_risk(B, a, b))


def joint_advantage(toy: Toy, rank: int, C: float, seeds: list[int] | range = range(3), **kwargs) -> Tensor:
    """ℓ_D(sequential) − ℓ_D(joint at C) for each seed: how much task risk joint training saves.

    Positive means joint is better.  ``kwargs`` go to :func:`train`.
    """
    gaps = []
    for seed in seeds:
        sequential = train(toy, rank, strategy="sequential", seed=seed, **kwargs)
        joint = train(toy, rank, [C], seed=seed, **kwargs)
        gaps.append(float(sequential.l_D[0] - joint.l_D[0]))
    return torch.tensor(gaps, dtype=DTYPE)


__all__ = ["Toy", "ToyFit", "joint_advantage", "toy", "train"]
