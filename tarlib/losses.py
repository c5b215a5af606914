"""Losses of the paper: ℓ_X on images, ℓ_D on decisions, and their mix, eq. (18).

Each loss is the batch mean of a per-sample quantity from :mod:`tarlib.metrics`,
i.e. the empirical mean (1/m) Σ_i of eqs. (4), (7), (9) and (20) over a batch.

Images live in X = L²(Ω).  On the pixel grid the integral over Ω becomes a sum
over pixels times the pixel cell volume.  Both geometries of the course use unit
pixels (28 px on [-14, 14]², 128 px on [-64, 64]²), so ``cell_volume=1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
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

    def __init__(self, C: float, task_loss: Loss, reconstruction_loss: Loss = l2_loss, balanced: bool = False):
        if isinstance(C, bool) or not isinstance(C, (int, float)):
            raise TypeError(f"C must be a number in [0, 1], got {type(C).__name__}")
        if not 0.0 <= C <= 1.0:
            raise ValueError(f"C must lie in [0, 1] (eq. (18)), got {C}")
        if balanced and not 0.0 < C < 1.0:
            raise ValueError(f"a balanced joint loss needs 0 < C < 1 (both terms), got C = {C}")
        self.C = float(C)
        self.task_loss = task_loss
        self.reconstruction_loss = reconstruction_loss
        self.balanced = balanced
        # running estimates of ‖∇_θ ℓ_D‖ and ‖∇_θ ℓ_X‖ on R's parameters (balanced loss only)
        self.scales: dict[str, float] = {}

    def terms(self, x_hat: Tensor | None, logits: Tensor | None, x: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The unweighted terms with a non-zero weight, still attached to the graph.

        ``"task"``: ℓ_D(z, T(R(y))) when C < 1; ``"reconstruction"``: ℓ_X(x, R(y)) when C > 0.
        """
        parts: dict[str, Tensor] = {}
        if self.C < 1.0:
            if logits is None:
                raise ValueError(f"C = {self.C} < 1 needs the task network's logits, got None")
            parts["task"] = self.task_loss(logits, z)
        if self.C > 0.0:
            if x_hat is None:
                raise ValueError(f"C = {self.C} > 0 needs a reconstruction x_hat, got None (a model without R)")
            parts["reconstruction"] = self.reconstruction_loss(x_hat, x)
        return parts

    def weights(self) -> dict[str, float]:
        """The weight of each term: 1 − C for ``"task"`` and C for ``"reconstruction"`` (eq. (18)).

        Balanced (``balanced=True``): each weight is further divided by the running
        estimate of that term's gradient norm on R's parameters (:meth:`update_scales`),
        so that C is, approximately, the share of R's gradient that ℓ_X gets.
        """
        weights = {"task": 1.0 - self.C, "reconstruction": self.C}
        if self.balanced:
            if not self.scales:
                raise RuntimeError("a balanced JointLoss needs update_scales(...) before its first use")
            weights = {name: w / self.scales[name] for name, w in weights.items()}
        return weights

    def update_scales(self, norms: Mapping[str, float], momentum: float = 0.5) -> None:
        """Blend newly measured gradient norms (:func:`gradient_norms`) into the running estimates.

        The first call sets them; later calls keep ``momentum`` of the old value.
        """
        for name in ("task", "reconstruction"):
            value = float(norms[name])
            if not value > 0:
                raise ValueError(f"gradient norm of the {name} term must be > 0 to balance the loss, got {value}")
            old = self.scales.get(name)
            self.scales[name] = value if old is None else momentum * old + (1.0 - momentum) * value

    def state_dict(self) -> dict[str, float]:
        """The running gradient-norm estimates of a balanced loss (saved in checkpoints)."""
        return dict(self.scales)

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.scales = {k: float(v) for k, v in state.items()}

    def __call__(
        self, x_hat: Tensor | None, logits: Tensor | None, x: Tensor, z: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        parts = self.terms(x_hat, logits, x, z)
        weights = self.weights()
        weighted = [weights[name] * value for name, value in parts.items()]
        total = weighted[0] if len(weighted) == 1 else weighted[0] + weighted[1]
        return total, {name: value.detach() for name, value in parts.items()}

    def __repr__(self) -> str:
        balanced = ", balanced=True" if self.balanced else ""
        return f"JointLoss(C={self.C}, task_loss={getattr(self.task_loss, '__name__', self.task_loss)}{balanced})"


def gradient_norms(terms: Mapping[str, Tensor], params: Iterable[Tensor]) -> dict[str, float]:
    """‖∇_θ ℓ‖ for each loss term ℓ of ``terms`` with respect to ``params`` (e.g. R's parameters θ).

    The graph is kept, so the terms can still be back-propagated afterwards.  A term that
    does not depend on ``params`` has norm 0.  This is how the course measures which of
    ℓ_D and ℓ_X actually drives R in eq. (18): the losses differ in scale (ℓ_X sums over
    pixels, ℓ_D is one cross-entropy per image), and so do their gradients.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("gradient_norms needs at least one parameter that requires grad")
    norms = {}
    for name, value in terms.items():
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norms[name] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))
    return norms


def task_share(C: float, g_task: float, g_reconstruction: float) -> float:
    """The task's share of R's gradient under eq. (18): (1 − C)·g_D / ((1 − C)·g_D + C·g_X).

    ``g_task`` = ‖∇_θ ℓ_D‖ and ``g_reconstruction`` = ‖∇_θ ℓ_X‖ (see :func:`gradient_norms`).
    The share is 1 − C only when the two gradients have equal norms.
    """
    if not 0.0 <= C <= 1.0:
        raise ValueError(f"C must lie in [0, 1] (eq. (18)), got {C}")
    if g_task < 0 or g_reconstruction < 0:
        raise ValueError(f"gradient norms must be ≥ 0, got {g_task}, {g_reconstruction}")
    task, rec = (1.0 - C) * g_task, C * g_reconstruction
    if task + rec == 0:
        raise ValueError("both weighted gradient norms are 0: the share is undefined")
    return task / (task + rec)
