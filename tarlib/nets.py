"""Networks: reconstructions R_θ : Y → X and task networks T_ϑ : X → D.

Reconstruction (section 2, eq. (4)); all map data y to images x̂ [B, 1, H, W]:

- :class:`LearnedGradientDescent`  unrolled gradient descent on the negative
  log-likelihood of the data model M (Adler & Öktem 2017); used for MNIST (5.1)
- :class:`LearnedPrimalDual`       unrolled primal-dual (Adler & Öktem 2018);
  used for the brain segmentation (5.2)
- :class:`LowRankLinear`           a learned affine map of rank k from the log data;
  its L2 optimum is :func:`reduced_rank_regression`
- :class:`FBP`, :class:`FBPUNet`   filtered back-projection, and FBP followed by
  a residual U-Net: the classical baselines
- :class:`Backprojection`         the adjoint Aᵀ of the linearised counts, scaled by 1/‖A‖²:
  an affine function of Aᵀy, the sufficient statistic of Poisson data (an input for probes)

Task (section 3, eq. (5)); all return logits, the softmax is part of the loss:

- :class:`Classifier`              the paper's MNIST CNN (5.1), d ∈ P(Z_10)
- :class:`LinearClassifier`        multinomial logistic regression on the image
- :class:`UNet`                    per-pixel class logits for segmentation (5.2)
- :class:`SinogramClassifier`      a baseline that classifies y directly, no R

:class:`TaskAdapted` composes them into T ∘ R : Y → D, eq. (10).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tarlib import physics


def _conv_block(c_in: int, c_out: int, width: int, activation: Callable[[int], nn.Module]) -> nn.Sequential:
    """conv3×3(width) → act → conv3×3(width) → act → conv3×3(c_out): one unrolled update.

    Weights are stored channels-last, the faster memory layout for convolutions
    on CPUs (a training step of the unrolled networks is 10-20% faster); feed it
    with :func:`_stack`.
    """
    block = nn.Sequential(
        nn.Conv2d(c_in, width, 3, padding=1),
        activation(width),
        nn.Conv2d(width, width, 3, padding=1),
        activation(width),
        nn.Conv2d(width, c_out, 3, padding=1),
    )
    return block.to(memory_format=torch.channels_last)


def _stack(*tensors: Tensor) -> Tensor:
    """Concatenate along the channel axis, in the channels-last layout of :func:`_conv_block`."""
    return torch.cat(tensors, dim=1).contiguous(memory_format=torch.channels_last)


def _exact(operator: Callable[..., Tensor], *tensors: Tensor) -> Tensor:
    """Apply a physics operator in float32 outside autocast (its sparse matrices have no half-precision kernels)."""
    with torch.autocast(tensors[0].device.type, enabled=False):
        return operator(*(t.float() for t in tensors))


def _check_data(y: Tensor, shape: tuple[int, int], name: str) -> None:
    if y.ndim != 4 or y.shape[1] != 1 or tuple(y.shape[-2:]) != tuple(shape):
        raise ValueError(f"{name} expects data y of shape [B, 1, {shape[0]}, {shape[1]}], got {tuple(y.shape)}")


# ----------------------------------------------------------------------------- reconstruction R_θ


@torch.no_grad()
def nll_curvature(M: physics.DataModel, level: float = 0.5, n_iter: int = 30) -> float:
    """The largest curvature L of x ↦ nll(x, y₀): the top eigenvalue of its Hessian.

    Taken at the grey image x̄ = ``level`` everywhere with its noiseless data
    y₀ = A x̄ (no random numbers are used), by the power method on the
    finite-difference Hessian v ↦ (∇nll(x̄ + h·v, y₀) − ∇nll(x̄, y₀)) / h in
    float64 (exact for Gaussian noise).  For Gaussian noise L = ‖A‖²/σ², for
    Poisson transmission data about μ²·I0·e^{−μ·A x̄}·‖A‖².
    """
    param = next(M.buffers())
    x_bar = torch.full((1, 1, *M.A.domain_shape), level, dtype=torch.float64, device=param.device)
    y0 = M.A(x_bar)
    g0 = M.grad_nll(x_bar, y0)
    v = torch.randn(x_bar.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(param.device)
    h, curvature = 1e-4, 0.0
    for _ in range(n_iter):
        v = v / v.norm()
        v = (M.grad_nll(x_bar + h * v, y0) - g0) / h
        curvature = float(v.norm())
    if not math.isfinite(curvature) or curvature <= 0:
        raise ValueError(f"could not estimate the curvature of the data model's nll (got {curvature}); pass another M")
    return curvature


class LearnedGradientDescent(nn.Module):
    """Learned gradient descent: n_iter learned updates driven by ∇_x nll(x, y).

    Starting from x₀ = 0 and a zero memory s₀ (n_memory channels), iteration k is

        (δ, s) = Λ_k([x_k, ∇_x nll(x_k, y) / L, s_k]),   x_{k+1} = x_k + δ,   s_{k+1} = relu(s)

    with Λ_k = conv3×3(width) → ReLU → conv3×3(width) → ReLU → conv3×3(1 + n_memory).
    The gradient comes from ``M.grad_nll`` only, so the same network works for
    Gaussian and Poisson data.  It is divided by a fixed scale L computed once
    here by :func:`nll_curvature`, so that ∇nll / L is one plain gradient-descent
    step of step length 1/L, of the size of an image update.

    ``shared=True`` uses one update network Λ for every iteration (Λ_k = Λ), as in
    the authors' learned gradient scheme: n_iter times fewer parameters, a
    restricted R.
    """

    def __init__(self, M: physics.DataModel, n_iter: int = 10, n_memory: int = 5, width: int = 32,
                 shared: bool = False):
        super().__init__()
        if n_iter < 1 or n_memory < 0 or width < 1:
            raise ValueError(f"need n_iter ≥ 1, n_memory ≥ 0, width ≥ 1, got {n_iter}, {n_memory}, {width}")
        self.M = M
        self.n_iter, self.n_memory = n_iter, n_memory
        self.image_shape = tuple(M.A.domain_shape)
        self.data_shape = tuple(M.A.range_shape)
        self.grad_scale = 1.0 / nll_curvature(M)
        self.updates = nn.ModuleList(
            _conv_block(2 + n_memory, 1 + n_memory, width, lambda _: nn.ReLU()) for _ in range(1 if shared else n_iter)
        )

    def iterates(self, y: Tensor) -> list[Tensor]:
        """All iterates [x₀, x₁, …, x_{n_iter}] of the unrolled scheme; the last is R_θ(y)."""
        _check_data(y, self.data_shape, "LearnedGradientDescent")
        B, dev = y.shape[0], y.device
        xs = [torch.zeros(B, 1, *self.image_shape, device=dev)]
        memory = torch.zeros(B, self.n_memory, *self.image_shape, device=dev)
        for k in range(self.n_iter):
            update = self.updates[k % len(self.updates)]  # one network per iteration, or one for all
            gradient = _exact(self.M.grad_nll, xs[-1], y) * self.grad_scale
            out = update(_stack(xs[-1], gradient, memory))
            xs.append(xs[-1] + out[:, :1])
            memory = torch.relu(out[:, 1:])
        return xs

    def forward(self, y: Tensor) -> Tensor:
        return self.iterates(y)[-1]


class LowRankLinear(nn.Module):
    """A learned affine map of rank ``rank`` from log-transformed data to the image.

        R_θ(y) = U(V φ(y) + b) + c,   φ(y) = M.noise.log_transform(y),

    with V : ℝ^m → ℝ^k, U : ℝ^k → ℝ^n (n pixels) and k = ``rank``: a linear
    reconstruction whose range has at most k dimensions, the most restricted R of
    round 3.  The best such map for the L2 loss has a closed form,
    :func:`reduced_rank_regression`; :meth:`set_affine` loads one.
    """

    def __init__(self, M: physics.DataModel, rank: int = 16):
        super().__init__()
        if not hasattr(M.noise, "log_transform"):
            raise ValueError(f"LowRankLinear reads log-transformed counts: M.noise must be Poisson, got {M.noise!r}")
        m, n = math.prod(M.A.range_shape), math.prod(M.A.domain_shape)
        if not 1 <= rank <= min(m, n):
            raise ValueError(f"rank must lie in [1, {min(m, n)}] (data {m}, image {n} values), got {rank}")
        self.M, self.rank = M, rank
        self.image_shape = tuple(M.A.domain_shape)
        self.data_shape = tuple(M.A.range_shape)
        self.V = nn.Linear(m, rank)
        self.U = nn.Linear(rank, n)

    def features(self, y: Tensor) -> Tensor:
        """φ(y) flattened [B, m]: the log-transformed counts (raw counts are expected)."""
        _check_data(y, self.data_shape, "LowRankLinear")
        return _exact(self.M.noise.log_transform, y).flatten(1)

    def forward(self, y: Tensor) -> Tensor:
        return self.U(self.V(self.features(y))).view(-1, 1, *self.image_shape)

    @torch.no_grad()
    def set_affine(self, W: Tensor, c: Tensor) -> None:
        """Load x̂ = W φ + c with rank(W) ≤ k, as U V = W (from an SVD of W) and bias c."""
        if W.shape != (self.U.out_features, self.V.in_features) or c.shape != (self.U.out_features,):
            raise ValueError(f"need W [{self.U.out_features}, {self.V.in_features}] and c [{self.U.out_features}], "
                             f"got {tuple(W.shape)} and {tuple(c.shape)}")
        left, sv, right = torch.linalg.svd(W.double(), full_matrices=False)
        root = sv[: self.rank].sqrt()
        self.U.weight.copy_(left[:, : self.rank] * root)
        self.V.weight.copy_(root[:, None] * right[: self.rank])
        self.V.bias.zero_()
        self.U.bias.copy_(c)


def reduced_rank_regression(features: Tensor, targets: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """The affine map x̂ = W φ + c of rank ≤ ``rank`` that minimises Σ_i ‖x_i − W φ_i − c‖².

    ``features`` [N, m] (the φ_i), ``targets`` [N, n] (the x_i).  Centre both.  The
    unrestricted least-squares map B = Φ⁺X [m, n] leaves a residual orthogonal to
    the columns of Φ, so for any map G the loss is ‖X − ΦB‖² + ‖ΦB − ΦG‖²; the best
    rank-k ΦG is the fitted values ΦB projected onto their top k right singular
    vectors P (Eckart–Young), reached by G = B P Pᵀ (reduced-rank regression).
    Returns ``(W [n, m], c [n])`` in float64.
    """
    if features.ndim != 2 or targets.ndim != 2 or len(features) != len(targets):
        raise ValueError(f"need features [N, m] and targets [N, n] with one N, got {tuple(features.shape)} and "
                         f"{tuple(targets.shape)}")
    if not 1 <= rank <= min(features.shape[1], targets.shape[1]):
        raise ValueError(f"rank must lie in [1, {min(features.shape[1], targets.shape[1])}], got {rank}")
    Phi, X = features.double(), targets.double()
    phi_mean, x_mean = Phi.mean(0), X.mean(0)
    Phi, X = Phi - phi_mean, X - x_mean
    B = torch.linalg.lstsq(Phi, X, driver="gelsd").solution  # [m, n]: minimum-norm least squares
    P = torch.linalg.svd(Phi @ B, full_matrices=False).Vh[:rank].T  # [n, k]: the fitted values' top directions
    W = (B @ P @ P.T).T
    return W, x_mean - W @ phi_mean


class LearnedPrimalDual(nn.Module):
    """Learned primal-dual with n_primal/n_dual memory channels (all starting at 0).

    Uses the normalised operator Ā = A / ‖A‖ (‖A‖ by the power method at
    construction) and correspondingly the data ȳ = y / ‖A‖.  Iteration k:

        h ← h + Γ_k([h, Ā f[1], ȳ])          (dual, in Y)
        f ← f + Λ_k([f, Āᵀ h[0]])            (primal, in X)

    Γ_k, Λ_k = conv3×3(width) → PReLU → conv3×3(width) → PReLU → conv3×3(5),
    PReLU with one α per channel starting at 0.  Output: f[0].
    """

    def __init__(self, A: physics.RayTransform, n_iter: int = 10, n_primal: int = 5, n_dual: int = 5, width: int = 32):
        super().__init__()
        if n_iter < 1 or n_primal < 2 or n_dual < 1 or width < 1:
            raise ValueError(
                f"need n_iter ≥ 1, n_primal ≥ 2, n_dual ≥ 1, width ≥ 1, "
                f"got {n_iter}, {n_primal}, {n_dual}, {width}"
            )
        self.A = A
        self.n_primal, self.n_dual = n_primal, n_dual
        self.scale = 1.0 / A.norm()

        def prelu(channels: int) -> nn.Module:
            return nn.PReLU(channels, init=0.0)

        self.dual_updates = nn.ModuleList(_conv_block(n_dual + 2, n_dual, width, prelu) for _ in range(n_iter))
        self.primal_updates = nn.ModuleList(_conv_block(n_primal + 1, n_primal, width, prelu) for _ in range(n_iter))

    def forward(self, y: Tensor) -> Tensor:
        _check_data(y, self.A.range_shape, "LearnedPrimalDual")
        B, dev = y.shape[0], y.device
        y = y.float() * self.scale
        primal = torch.zeros(B, self.n_primal, *self.A.domain_shape, device=dev)
        dual = torch.zeros(B, self.n_dual, *self.A.range_shape, device=dev)
        for dual_update, primal_update in zip(self.dual_updates, self.primal_updates):
            A_f = _exact(self.A, primal[:, 1:2]) * self.scale
            dual = dual + dual_update(_stack(dual, A_f, y))
            At_h = _exact(self.A.adjoint, dual[:, :1]) * self.scale
            primal = primal + primal_update(_stack(primal, At_h))
        return primal[:, :1]


class FBP(nn.Module):
    """Filtered back-projection x̂ = FBP(y): a reconstruction without parameters (a baseline).

    ``y`` must be line integrals ≈ A x: Gaussian data, or transmission data from
    ``PoissonTransmission(log_data=True)``.  Raw photon counts give meaningless
    images; log-transform them first with ``M.noise.log_transform(y)``.
    """

    def __init__(self, A: physics.RayTransform, filter: str = "hann", frequency_scaling: float = 1.0):
        super().__init__()
        self.A = A
        self.filter, self.frequency_scaling = filter, frequency_scaling

    def forward(self, y: Tensor) -> Tensor:
        _check_data(y, self.A.range_shape, "FBP")
        return _exact(lambda data: physics.fbp(self.A, data, self.filter, self.frequency_scaling), y)


class Backprojection(nn.Module):
    """The back-projection of the photon counts, x̂ = Aᵀ((I0 − y) / (I0 μ)) / ‖A‖²: no filter, no parameters.

    For Poisson transmission data (eq. (1)) the log-likelihood depends on y only through Aᵀy
    (−Σ I0 e^{−μ(Ax)_i} − μ⟨Aᵀy, x⟩ + terms without x), so Aᵀy is a sufficient statistic for x under
    every prior.  This map is an invertible affine function of Aᵀy, so it keeps exactly that
    statistic: (I0 − y)/(I0 μ) ≈ Ax linearises the counts into line integrals, and 1/‖A‖² (the
    operator norm, :meth:`tarlib.physics.RayTransform.norm`) puts the result on the scale of an image,
    so that a task network learns from it as from one.  ``y`` are raw counts (not their log).
    """

    def __init__(self, A: physics.RayTransform, photons_per_line: float, mu: float):
        super().__init__()
        if not isinstance(A, physics.RayTransform):
            raise TypeError(f"Backprojection expects a tarlib RayTransform A, got {type(A).__name__}")
        if not (photons_per_line > 0 and mu > 0):
            raise ValueError(f"photons_per_line and mu must be > 0, got {photons_per_line} and {mu}")
        self.A, self.photons, self.mu = A, float(photons_per_line), float(mu)
        self.scale = 1.0 / A.norm() ** 2

    def forward(self, y: Tensor) -> Tensor:
        _check_data(y, self.A.range_shape, "Backprojection")
        return _exact(self.A.adjoint, (self.photons - y) / (self.photons * self.mu)) * self.scale


class FBPUNet(nn.Module):
    """Post-processing reconstruction x̂ = x₀ + U(x₀) with x₀ = FBP(y) and a U-Net U (out_ch=1)."""

    def __init__(self, A: physics.RayTransform, unet: UNet):
        super().__init__()
        if unet.out_ch != 1:
            raise ValueError(f"FBPUNet needs a U-Net with out_ch=1 (a residual image), got out_ch={unet.out_ch}")
        self.fbp = FBP(A)
        self.unet = unet

    def forward(self, y: Tensor) -> Tensor:
        x0 = self.fbp(y)
        return x0 + self.unet(x0)


# ----------------------------------------------------------------------------- task T_ϑ


class Classifier(nn.Module):
    """The MNIST classifier of section 5.1: logits [B, n_classes] for images [B, 1, H, W].

    Three conv3×3 layers with 32, 64, 128 channels, each followed by ReLU and
    2×2 max pooling (28 → 14 → 7 → 3), then a dense layer to the logits.
    """

    def __init__(self, n_classes: int = 10, image_size: int = 28, in_ch: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_ch, image_size
        for width in (32, 64, 128):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, size = width, size // 2
        if size < 1:
            raise ValueError(f"image_size must be at least 8 for three 2×2 poolings, got {image_size}")
        self.features = nn.Sequential(*layers)
        self.dense = nn.Linear(channels * size * size, n_classes)
        self.image_shape = (in_ch, image_size, image_size)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.image_shape:
            expected = ", ".join(map(str, self.image_shape))
            raise ValueError(f"Classifier expects images [B, {expected}], got {tuple(x.shape)}")
        return self.dense(self.features(x).flatten(1))


class LinearClassifier(nn.Module):
    """Multinomial logistic regression on the image: logits = W·vec(x) + b, [B, n_classes].

    The weakest task network of round 3: it cannot classify MNIST well from true
    images alone, so a trainable R in front of it can take over part of the work.
    """

    def __init__(self, n_classes: int = 10, image_size: int = 28, in_ch: int = 1):
        super().__init__()
        self.image_shape = (in_ch, image_size, image_size)
        self.dense = nn.Linear(in_ch * image_size * image_size, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.image_shape:
            expected = ", ".join(map(str, self.image_shape))
            raise ValueError(f"LinearClassifier expects images [B, {expected}], got {tuple(x.shape)}")
        return self.dense(x.flatten(1))


NORMS = ("batch", "group")


def _norm(kind: str, channels: int) -> nn.Module:
    """Batch norm, or group norm with 8 groups (fewer when there are fewer channels)."""
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(math.gcd(8, channels), channels)


def _double_conv(c_in: int, c_out: int, norm: str = "batch") -> nn.Sequential:
    """(conv3×3 → normalisation → ReLU) twice: the U-Net's building block."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        _norm(norm, c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        _norm(norm, c_out),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """A U-Net (Ronneberger et al. 2015) returning per-pixel logits [B, out_ch, H, W].

    ``depth`` 2×2 poolings; level i has ``width·2^i`` channels; ``norm`` (batch
    norm, or group norm, which keeps no running statistics and so behaves the same
    in training and evaluation) and ReLU; transposed convolutions upsample and skip
    connections concatenate.  H and W must be divisible by 2^depth.
    """

    def __init__(self, in_ch: int = 1, out_ch: int = 2, depth: int = 3, width: int = 16, norm: str = "batch"):
        super().__init__()
        if depth < 0 or width < 1:
            raise ValueError(f"need depth ≥ 0 and width ≥ 1, got depth={depth}, width={width}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.in_ch, self.out_ch, self.depth = in_ch, out_ch, depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(_double_conv(c_in, c, norm) for c_in, c in zip([in_ch, *chans[:-1]], chans))
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(2 * c, c, 2, stride=2) for c in chans[:-1])
        self.up = nn.ModuleList(_double_conv(2 * c, c, norm) for c in chans[:-1])
        self.head = nn.Conv2d(width, out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_ch or x.shape[-1] % 2**self.depth or x.shape[-2] % 2**self.depth:
            raise ValueError(
                f"UNet expects [B, {self.in_ch}, H, W] with H, W divisible by {2**self.depth}, got {tuple(x.shape)}"
            )
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for upsample, block in zip(reversed(self.upsample), reversed(self.up)):
            x = block(torch.cat([skips.pop(), upsample(x)], dim=1))
        return self.head(x)


class SinogramClassifier(nn.Module):
    """Baseline: classify the data y [B, 1, n_angles, n_det] directly, without reconstructing.

    Batch norm standardises the raw data (counts or line integrals), then two
    conv3×3 + ReLU layers (width, 2·width) and two dense layers.
    """

    def __init__(self, data_shape: tuple[int, int], n_classes: int = 10, width: int = 32):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.features = nn.Sequential(
            nn.BatchNorm2d(1),
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.dense = nn.Sequential(
            nn.Linear(2 * width * self.data_shape[0] * self.data_shape[1], 128), nn.ReLU(), nn.Linear(128, n_classes)
        )

    def forward(self, y: Tensor) -> Tensor:
        _check_data(y, self.data_shape, "SinogramClassifier")
        return self.dense(self.features(y.float()).flatten(1))


# ----------------------------------------------------------------------------- T ∘ R


class TaskAdapted(nn.Module):
    """The task-adapted reconstruction T ∘ R of eq. (10): ``model(y) -> (x̂, d_logits)``.

    ``R=None`` is allowed for a task network that reads the data directly
    (:class:`SinogramClassifier`); then x̂ is None and only C = 0 (end-to-end)
    training makes sense.
    """

    def __init__(self, R: nn.Module | None, T: nn.Module):
        super().__init__()
        self.R = R
        self.T = T

    def forward(self, y: Tensor) -> tuple[Tensor | None, Tensor]:
        if self.R is None:
            return None, self.T(y)
        x_hat = self.R(y)
        return x_hat, self.T(x_hat)


def n_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
