"""Networks: reconstructions R_θ : Y → X and task networks T_ϑ : X → D.

Reconstruction (section 2, eq. (4)); all map data y to images x̂ [B, 1, H, W]:

- :class:`LearnedGradientDescent`  unrolled gradient descent on the negative
  log-likelihood of the data model M (Adler & Öktem 2017); used for MNIST (5.1)
- :class:`LearnedPrimalDual`       unrolled primal-dual (Adler & Öktem 2018);
  used for the brain segmentation (5.2)
- :class:`FBP`, :class:`FBPUNet`   filtered back-projection, and FBP followed by
  a residual U-Net: the classical baselines

Task (section 3, eq. (5)); all return logits, the softmax is part of the loss:

- :class:`Classifier`              the paper's MNIST CNN (5.1), d ∈ P(Z_10)
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
    """

    def __init__(self, M: physics.DataModel, n_iter: int = 10, n_memory: int = 5, width: int = 32):
        super().__init__()
        if n_iter < 1 or n_memory < 0 or width < 1:
            raise ValueError(f"need n_iter ≥ 1, n_memory ≥ 0, width ≥ 1, got {n_iter}, {n_memory}, {width}")
        self.M = M
        self.n_memory = n_memory
        self.image_shape = tuple(M.A.domain_shape)
        self.data_shape = tuple(M.A.range_shape)
        self.grad_scale = 1.0 / nll_curvature(M)
        self.updates = nn.ModuleList(
            _conv_block(2 + n_memory, 1 + n_memory, width, lambda _: nn.ReLU()) for _ in range(n_iter)
        )

    def iterates(self, y: Tensor) -> list[Tensor]:
        """All iterates [x₀, x₁, …, x_{n_iter}] of the unrolled scheme; the last is R_θ(y)."""
        _check_data(y, self.data_shape, "LearnedGradientDescent")
        B, dev = y.shape[0], y.device
        xs = [torch.zeros(B, 1, *self.image_shape, device=dev)]
        memory = torch.zeros(B, self.n_memory, *self.image_shape, device=dev)
        for update in self.updates:
            gradient = _exact(self.M.grad_nll, xs[-1], y) * self.grad_scale
            out = update(_stack(xs[-1], gradient, memory))
            xs.append(xs[-1] + out[:, :1])
            memory = torch.relu(out[:, 1:])
        return xs

    def forward(self, y: Tensor) -> Tensor:
        return self.iterates(y)[-1]


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
