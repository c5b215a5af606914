"""Figures of merit for the reconstruction x̂ and the decision d = T(x̂).

Every metric returns one value per sample, shape [B]; the number reported for a
test set is the mean over all its samples (see :func:`tarlib.training.evaluate`).

- reconstruction: ``l2_error`` (Table 1's "L2-loss": Σ_pixels (x − x̂)² · cell
  volume, the ℓ_X of :mod:`tarlib.losses`), ``psnr`` and ``ssim`` (data range 1)
- classification: ``accuracy`` and ``cross_entropy`` (eq. (6))
- binary segmentation: ``dice`` and ``iou`` of the predicted foreground, and
  ``pixelwise_cross_entropy`` (eq. (8), integrated over Ω)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_same_shape(a: Tensor, b: Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def l2_error(x_hat: Tensor, x: Tensor, cell_volume: float = 1.0) -> Tensor:
    """‖x − x̂‖²_{L²(Ω)} per sample: Σ_pixels (x − x̂)² · cell_volume."""
    _check_same_shape(x_hat, x, "x_hat and x")
    return cell_volume * (x_hat.float() - x.float()).pow(2).flatten(1).sum(dim=1)


def psnr(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio 10·log10(range² / MSE) in dB, per sample."""
    _check_same_shape(x_hat, x, "x_hat and x")
    mse = (x_hat.float() - x.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    t = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(x_hat: Tensor, x: Tensor, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al. 2004) per sample, for images [B, 1, H, W].

    Local statistics use a normalised Gaussian window (11 × 11, σ = 1.5) over
    the positions where it fits inside the image ("valid"); the SSIM map is
    averaged over those positions.  Constants K1 = 0.01, K2 = 0.03.
    """
    _check_same_shape(x_hat, x, "x_hat and x")
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"ssim expects images [B, 1, H, W], got {tuple(x.shape)}")
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"images {tuple(x.shape[-2:])} are smaller than the SSIM window {window_size}")
    w = _gaussian_window(window_size, sigma, x.device)[None, None]
    a, b = x_hat.float(), x.float()
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    var_a = F.conv2d(a * a, w) - mu_a**2
    var_b = F.conv2d(b * b, w) - mu_b**2
    cov = F.conv2d(a * b, w) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1)


def accuracy(logits: Tensor, z: Tensor) -> Tensor:
    """1 where the most probable label arg max_z d(z) is the true one, else 0 (section 5.1)."""
    if logits.ndim != 2 or z.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [B, k] and labels [B], got {tuple(logits.shape)} and {tuple(z.shape)}")
    return (logits.argmax(dim=1) == z).float()


def cross_entropy(logits: Tensor, z: Tensor) -> Tensor:
    """−log d(z) per sample, eq. (6) with d = softmax(logits)."""
    if logits.ndim != 2 or z.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [B, k] and labels [B], got {tuple(logits.shape)} and {tuple(z.shape)}")
    return F.cross_entropy(logits.float(), z, reduction="none")


def _masks(logits_or_mask: Tensor) -> Tensor:
    """Foreground mask [B, H, W] from logits [B, k, H, W] (arg max) or from a mask [B, (1,) H, W]."""
    if logits_or_mask.is_floating_point():
        return logits_or_mask.argmax(dim=1) == 1
    if logits_or_mask.ndim == 4 and logits_or_mask.shape[1] == 1:
        logits_or_mask = logits_or_mask[:, 0]
    return logits_or_mask.bool()


def pixelwise_cross_entropy(logits: Tensor, z: Tensor, cell_volume: float = 1.0) -> Tensor:
    """∫_Ω −log d(t)(z(t)) dt per sample, eq. (8) (sum over pixels × cell volume)."""
    if z.ndim == 4 and z.shape[1] == 1:
        z = z[:, 0]
    if logits.ndim != 4 or z.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"expected logits [B, k, H, W] and masks [B, H, W], got {tuple(logits.shape)} and {tuple(z.shape)}"
        )
    return cell_volume * F.cross_entropy(logits.float(), z, reduction="none").flatten(1).sum(dim=1)


def _overlap(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    p, t = _masks(prediction), _masks(target)
    _check_same_shape(p, t, "predicted and true masks")
    return (p & t).flatten(1).sum(1).float(), p.flatten(1).sum(1).float(), t.flatten(1).sum(1).float()


def dice(prediction: Tensor, target: Tensor) -> Tensor:
    """Dice 2|P ∩ G| / (|P| + |G|) per sample; 1 when both are empty.

    ``prediction`` is either class logits [B, 2, H, W] (foreground = arg max is
    class 1) or a binary mask; ``target`` a binary mask [B, H, W] or [B, 1, H, W].
    """
    inter, p, t = _overlap(prediction, target)
    return torch.where(p + t > 0, 2 * inter / (p + t).clamp(min=1), torch.ones_like(inter))


def iou(prediction: Tensor, target: Tensor) -> Tensor:
    """Intersection over union |P ∩ G| / |P ∪ G| per sample; 1 when both are empty."""
    inter, p, t = _overlap(prediction, target)
    union = p + t - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


__all__ = [
    "accuracy",
    "cross_entropy",
    "dice",
    "iou",
    "l2_error",
    "pixelwise_cross_entropy",
    "psnr",
    "ssim",
]
