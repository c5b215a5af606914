"""Losses of the paper: ℓ_X on images, ℓ_D on decisions, and their mix, eq. (18).

Each loss is the batch mean of a per-sample quantity from :mod:`tarlib.metrics`,
i.e. the empirical mean (1/m) Σ_i of eqs. (4), (7), (9) and (20) over a batch.

Images live in X = L²(Ω).  On the pixel grid the integral over Ω becomes a sum
over pixels times the pixel cell volume.  Both geometries of the course use unit
pixels (28 px on [-14, 14]², 128 px on [-64, 64]²), so ``cell_volume=1``.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from tarlib import metrics

Loss = Callable[[Tensor, Tensor], Tensor]


def l2_loss(x_hat: Tensor, x: Tensor, cell_volume: float = 1.0) -> Tensor:
    """ℓ_X(x, x̂) = ‖x − x̂‖²_{L²(Ω)}, averaged over the batch (the loss of eq. (4)).

    Per sample this is Σ_pixels (x − x̂)² · cell_volume: Table 1's "L2-loss".
    """
    return metrics.l2_error(x_hat, x, cell_volume).mean()


def cross_entropy(logits: Tensor, z: Tensor) -> Tensor:
    """ℓ_D for classification: −log T(x)(z), averaged over the batch, eqs. (6)-(7).

    ``logits`` [B, k] are unnormalised log-probabilities (the softmax is applied
    here), ``z`` [B] the integer labels.
    """
    return metrics.cross_entropy(logits, z).mean()


def pixelwise_cross_entropy(logits: Tensor, z: Tensor, cell_volume: float = 1.0) -> Tensor:
    """ℓ_D for segmentation: pointwise cross-entropy integrated over Ω, eqs. (8)-(9).

    ``logits`` [B, k, H, W], ``z`` integer masks [B, H, W] or [B, 1, H, W].  Per
    sample Σ_pixels −log T(x)(t)(z(t)) · cell_volume, then the batch mean.
    """
    return metrics.pixelwise_cross_entropy(logits, z, cell_volume).mean()


class JointLoss:
    """ℓ_{X×D} = (1 − C)·ℓ_D + C·ℓ_X for a fixed 0 ≤ C ≤ 1, eq. (18).

    C = 0 is the end-to-end loss of eq. (14); C → 1 approaches the sequential
    approach of eq. (12).  A term whose weight is zero is not evaluated at all:
    with C = 0 the loss *is* ℓ_D, and with C = 1 the task network T gets no
    gradient.

    ``loss(x_hat, logits, x, z)`` returns ``(total, parts)`` where ``parts`` holds
    the evaluated terms, detached, under the keys ``"task"`` (ℓ_D) and
    ``"reconstruction"`` (ℓ_X).
    """

    def __init__(self, C: float, task_loss: Loss, reconstruction_loss: Loss = l2_loss):
        if isinstance(C, bool) or not isinstance(C, (int, float)):
            raise TypeError(f"C must be a number in [0, 1], got {type(C).__name__}")
        if not 0.0 <= C <= 1.0:
            raise ValueError(f"C must lie in [0, 1] (eq. (18)), got {C}")
        self.C = float(C)
        self.task_loss = task_loss
        self.reconstruction_loss = reconstruction_loss

    def __call__(
        self, x_hat: Tensor | None, logits: Tensor | None, x: Tensor, z: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        parts: dict[str, Tensor] = {}
        terms: list[Tensor] = []
        if self.C < 1.0:
            if logits is None:
                raise ValueError(f"C = {self.C} < 1 needs the task network's logits, got None")
            parts["task"] = self.task_loss(logits, z)
            terms.append((1.0 - self.C) * parts["task"])
        if self.C > 0.0:
            if x_hat is None:
                raise ValueError(f"C = {self.C} > 0 needs a reconstruction x_hat, got None (a model without R)")
            parts["reconstruction"] = self.reconstruction_loss(x_hat, x)
            terms.append(self.C * parts["reconstruction"])
        total = terms[0] if len(terms) == 1 else terms[0] + terms[1]
        return total, {name: value.detach() for name, value in parts.items()}

    def __repr__(self) -> str:
        return f"JointLoss(C={self.C}, task_loss={getattr(self.task_loss, '__name__', self.task_loss)})"
