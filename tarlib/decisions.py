"""Post-processing as a decision rule (section 3): labels z, decisions d = T(x), and calibration.

A post-processing task is a statistical estimation problem, eq. (5): a hidden
label z ∈ Λ, a decision space D, a hand-crafted map τ : Λ → D and a loss
ℓ_D : D × D → R.  The task network T_ϑ : X → D is trained so that T_ϑ(x) is
close to τ(z) in ℓ_D.

- classification (section 3.1): Λ = {0, …, k−1}, D = probability vectors over
  Λ, τ(z) = δ_z (a one-hot vector) and ℓ_D the cross-entropy of eq. (6);
- segmentation (section 3.2): Λ = label maps Ω → {0, …, k−1}, D = maps from Ω
  to probability vectors with independent pixels, τ(z)(t) = δ_{z(t)} and ℓ_D the
  pointwise cross-entropy integrated over Ω, eq. (8).

This module holds τ, ℓ_D on decisions, the maps from network logits to
decisions (probabilities, arg-max label, thresholded mask), calibration
(reliability diagram and expected calibration error, Guo et al. 2017)
and figures that draw decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from tarlib.metrics import dice
from tarlib.plotting import interact, overlay


def _as_label_map(z: Tensor) -> Tensor:
    """Labels [B] or label maps [B, H, W] / [B, 1, H, W] as int64 [B] or [B, H, W]."""
    if not isinstance(z, Tensor):
        raise TypeError(f"labels z must be a torch.Tensor, got {type(z).__name__}")
    if z.is_floating_point() or z.is_complex() or z.dtype == torch.bool:
        raise TypeError(f"labels z must be an integer tensor, got dtype {z.dtype}")
    if z.ndim == 4 and z.shape[1] == 1:
        z = z[:, 0]
    if z.ndim not in (1, 3):
        raise ValueError(f"labels z must be [B] (classification) or [B, H, W] / [B, 1, H, W] (segmentation), "
                         f"got shape {tuple(z.shape)}")
    return z.long()


def _check_decision(d: Tensor, name: str = "d") -> None:
    """Raise unless ``d`` holds probability vectors along dim 1 (an element of D)."""
    if not isinstance(d, Tensor) or not d.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor of probabilities, got {type(d).__name__}"
                        + (f" with dtype {d.dtype}" if isinstance(d, Tensor) else ""))
    if d.ndim not in (2, 4):
        raise ValueError(f"{name} must be [B, k] or [B, k, H, W], got shape {tuple(d.shape)}")
    if d.min() < 0 or not torch.allclose(d.sum(dim=1), torch.ones((), dtype=d.dtype, device=d.device), atol=1e-4):
        raise ValueError(f"{name} must hold probabilities (non-negative, summing to 1 over dim 1); "
                         "did you pass logits? Use probabilities(logits) first")


def tau(z: Tensor, k: int) -> Tensor:
    """τ(z) = δ_z: the decision that puts all probability on the true label, eqs. (5)-(9).

    Classification: labels [B] → one-hot vectors [B, k] (section 3.1).
    Segmentation: label maps [B, H, W] or [B, 1, H, W] → per-pixel point masses
    [B, k, H, W], τ(z)(t) = δ_{z(t)} (section 3.2).
    """
    z = _as_label_map(z)
    if not isinstance(k, int) or k < 2:
        raise ValueError(f"the number of labels k must be an int >= 2, got {k!r}")
    if z.numel() and (z.min() < 0 or z.max() >= k):
        raise ValueError(f"labels must lie in {{0, ..., {k - 1}}}, got values in [{int(z.min())}, {int(z.max())}]")
    one_hot = torch.nn.functional.one_hot(z, k).float()
    return one_hot if z.ndim == 1 else one_hot.permute(0, 3, 1, 2)


def decision_cross_entropy(d: Tensor, d_prime: Tensor, cell_volume: float = 1.0) -> Tensor:
    """ℓ_D(d, d′) = −Σ_z d(z) log d′(z) per sample, eq. (6); for maps [B, k, H, W] integrated over Ω, eq. (8).

    ``d`` and ``d_prime`` are probabilities (not logits).  With d = τ(z) the sum
    keeps a single term, −log d′(z): the training loss of eqs. (7) and (9).
    Terms with d(z) = 0 count as 0 even where d′(z) = 0.
    """
    _check_decision(d, "d")
    _check_decision(d_prime, "d_prime")
    if d.shape != d_prime.shape:
        raise ValueError(f"d and d_prime must have the same shape, got {tuple(d.shape)} and {tuple(d_prime.shape)}")
    pointwise = -torch.special.xlogy(d, d_prime).sum(dim=1)
    return pointwise if d.ndim == 2 else cell_volume * pointwise.flatten(1).sum(dim=1)


def probabilities(logits: Tensor) -> Tensor:
    """The decision d = T(x) ∈ D from the network's logits: a softmax over the label dim 1."""
    if not isinstance(logits, Tensor) or not logits.is_floating_point() or logits.ndim not in (2, 4):
        raise ValueError("logits must be a floating-point tensor [B, k] or [B, k, H, W], got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    return torch.softmax(logits.float(), dim=1)


def argmax_label(d: Tensor) -> Tensor:
    """The single-label prediction arg max_z d(z) (section 5.1): [B, k] → [B], [B, k, H, W] → [B, H, W].

    Works on probabilities or logits alike (the softmax does not move the arg max).
    """
    if not isinstance(d, Tensor) or d.ndim not in (2, 4):
        raise ValueError(f"expected [B, k] or [B, k, H, W], got {getattr(d, 'shape', type(d).__name__)}")
    return d.argmax(dim=1)


def threshold_mask(d: Tensor, threshold: float = 0.5) -> Tensor:
    """Binary segmentation mask {t : d(t)(1) > threshold} as int64 [B, H, W] from probabilities [B, 2, H, W].

    ``threshold = 0.5`` is the arg-max rule; a lower threshold trades false
    negatives for false positives.
    """
    _check_decision(d, "d")
    if d.ndim != 4 or d.shape[1] != 2:
        raise ValueError(f"threshold_mask needs binary segmentation probabilities [B, 2, H, W], got {tuple(d.shape)}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    return (d[:, 1] > threshold).long()


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data: equal-width confidence bins on [0, 1].

    ``confidence[b]`` and ``accuracy[b]`` are the mean top-label confidence
    max_z d(z) and the fraction of correct arg-max labels of the samples in bin
    b (NaN for an empty bin); ``counts[b]`` the number of samples in it.
    """

    edges: Tensor
    confidence: Tensor
    accuracy: Tensor
    counts: Tensor

    @property
    def ece(self) -> float:
        """Expected calibration error Σ_b (n_b / n) · |accuracy_b − confidence_b|."""
        full = self.counts > 0
        weights = self.counts[full].double() / self.counts.sum()
        return float((weights * (self.accuracy[full] - self.confidence[full]).abs().double()).sum())


def reliability(d: Tensor, z: Tensor, n_bins: int = 10) -> Reliability:
    """Bin the top-label confidences of decisions d [N, k] against labels z [N].

    A sample with confidence c falls in the bin (e_b, e_{b+1}] (the first bin also
    takes c = 0).  A decision rule is *calibrated* when, among all samples where
    it says "c", a fraction c is right: accuracy_b ≈ confidence_b in every bin.
    """
    _check_decision(d, "d")
    z = _as_label_map(z)
    if d.ndim != 2 or z.shape != d.shape[:1]:
        raise ValueError(f"expected decisions [N, k] and labels [N], got {tuple(d.shape)} and {tuple(z.shape)}")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    confidence, label = d.detach().double().max(dim=1)
    correct = (label == z).double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=d.device)
    index = (torch.bucketize(confidence, edges, right=False) - 1).clamp(0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins)
    safe = counts.clamp(min=1).double()
    empty = counts == 0
    mean_conf = torch.bincount(index, weights=confidence, minlength=n_bins) / safe
    mean_acc = torch.bincount(index, weights=correct, minlength=n_bins) / safe
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=d.device)
    return Reliability(edges=edges.cpu(), confidence=torch.where(empty, nan, mean_conf).cpu(),
                       accuracy=torch.where(empty, nan, mean_acc).cpu(), counts=counts.cpu())


def expected_calibration_error(d: Tensor, z: Tensor, n_bins: int = 10) -> float:
    """ECE of decisions d [N, k] against labels z [N] with ``n_bins`` equal-width bins (0 = calibrated)."""
    return reliability(d, z, n_bins).ece


def plot_reliability(rel: Reliability, axes: tuple[Axes, Axes] | None = None,
                     title: str = "Reliability diagram") -> Figure:
    """Reliability diagram (accuracy per confidence bin against the diagonal) above a histogram of counts."""
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top, bottom = axes
    fig = top.figure
    edges = rel.edges.numpy()
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    full = rel.counts.numpy() > 0
    acc, conf = rel.accuracy.numpy(), rel.confidence.numpy()
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.bar(centers[full], acc[full], width=width[full], edgecolor="k", color="tab:blue", label="accuracy")
    top.bar(centers[full], conf[full] - acc[full], bottom=acc[full], width=width[full], fill=False,
            edgecolor="tab:red", hatch="//", label="gap to mean confidence")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy in bin", title=f"{title} (ECE = {rel.ece:.3f})")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centers, rel.counts.numpy(), width=width, color="grey", edgecolor="k")
    bottom.set(xlabel="confidence max$_z$ d(z)", ylabel="samples", yscale="log")
    fig.tight_layout()
    return fig


def temperature_figure(logits: Tensor, z: Tensor, temperature: float = 1.0, n_bins: int = 10) -> Figure:
    """Reliability diagram of the temperature-scaled decisions softmax(logits / temperature) against z."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    rel = reliability(probabilities(logits / temperature), z, n_bins)
    return plot_reliability(rel, title=f"temperature {temperature:.2f}")


def temperature_explorer(logits: Tensor, z: Tensor, temperature: float = 1.0) -> widgets.VBox:
    """A temperature slider over :func:`temperature_figure` (needs a running kernel)."""
    slider = widgets.FloatLogSlider(value=temperature, base=10, min=-0.7, max=0.7, step=0.05, description="temperature")
    return interact(lambda temperature: temperature_figure(logits, z, temperature), {"temperature": slider})


def dice_by_threshold(d: Tensor, z: Tensor, thresholds: Tensor) -> Tensor:
    """Mean Dice of the masks {t : d(t)(1) > threshold} against z, one value per threshold."""
    return torch.stack([dice(threshold_mask(d, float(t)), z).mean() for t in thresholds])


def dice_threshold_figure(x: Tensor, z: Tensor, d: Tensor, threshold: float = 0.5, index: int = 0) -> Figure:
    """Mean Dice against the threshold of the decision d(t)(1), and slice ``index`` thresholded there.

    ``x`` [N, 1, H, W] images, ``z`` true masks, ``d`` probabilities [N, 2, H, W].
    """
    thresholds = torch.linspace(0.02, 0.98, 49)
    curve = dice_by_threshold(d, z, thresholds)
    mask = threshold_mask(d[index : index + 1], threshold)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(thresholds, curve, "k-")
    left.axvline(threshold, color="tab:red", ls=":")
    left.plot([threshold], [dice_by_threshold(d, z, torch.tensor([threshold]))], "o", color="tab:red")
    left.set(xlabel="threshold on d(t)(1)", ylabel="mean Dice over the slices", ylim=(0, 1),
             title=f"best threshold {float(thresholds[curve.argmax()]):.2f}")
    overlay(right, x[index], mask[0].float().cpu())
    right.set_title(f"slice {index}: mask at threshold {threshold:.2f}, "
                    f"Dice {float(dice(mask, z[index : index + 1])):.3f}", fontsize=9)
    right.axis("off")
    fig.tight_layout()
    return fig


def dice_threshold_explorer(x: Tensor, z: Tensor, d: Tensor, threshold: float = 0.5) -> widgets.VBox:
    """A threshold slider over :func:`dice_threshold_figure` (needs a running kernel)."""
    controls = {
        "threshold": widgets.FloatSlider(value=threshold, min=0.02, max=0.98, step=0.02, description="threshold"),
        "index": widgets.IntSlider(value=0, min=0, max=x.shape[0] - 1, description="slice"),
    }
    return interact(lambda threshold, index: dice_threshold_figure(x, z, d, threshold, index), controls)


def plot_decisions(x: Tensor, d: Tensor, z: Tensor | None = None, n: int = 5) -> Figure:
    """Draw decisions of a classifier: each image x_i above its probability vector d_i = T(x_i).

    The true label z_i (if given) is the green bar, the predicted arg max outlined.
    """
    _check_decision(d, "d")
    if x.ndim != 4 or d.ndim != 2 or x.shape[0] != d.shape[0]:
        raise ValueError(f"expected images [N, 1, H, W] and decisions [N, k], "
                         f"got {tuple(x.shape)} and {tuple(d.shape)}")
    n = min(n, x.shape[0])
    k = d.shape[1]
    fig, axes = plt.subplots(2, n, figsize=(2 * n, 4.2), squeeze=False, gridspec_kw={"height_ratios": [1.2, 1]})
    for i in range(n):
        probs = d[i].detach().cpu().numpy()
        guess = int(probs.argmax())
        truth = None if z is None else int(z[i])
        axes[0, i].imshow(x[i, 0].detach().cpu().numpy(), cmap="gray")
        axes[0, i].set_title(f"z = {truth}, guess {guess}" if truth is not None else f"guess {guess}", fontsize=9)
        axes[0, i].axis("off")
        colors = ["tab:green" if j == truth else "tab:grey" for j in range(k)]
        bars = axes[1, i].bar(range(k), probs, color=colors)
        bars[guess].set_edgecolor("k")
        bars[guess].set_linewidth(1.5)
        axes[1, i].set(ylim=(0, 1), xticks=range(k), xlabel="label")
        axes[1, i].tick_params(labelsize=7)
    axes[1, 0].set_ylabel("d(z)")
    fig.suptitle("Decisions d = T(x) ∈ D: probability vectors over the labels")
    fig.tight_layout()
    return fig


def plot_segmentations(x: Tensor, z: Tensor, d: Tensor, n: int = 3,
                       title: str = "Segmentation: true vs predicted") -> Figure:
    """One row per image: true mask z, predicted mask (arg max), their differences, and the decision d(t)(1).

    ``x`` [N, 1, H, W] images, ``z`` true masks, ``d`` probabilities [N, 2, H, W].
    In the difference panel false positives are red and false negatives blue.
    """
    _check_decision(d, "d")
    z = _as_label_map(z)
    if x.ndim != 4 or d.ndim != 4 or d.shape[1] != 2 or z.shape != (d.shape[0], *d.shape[2:]):
        raise ValueError(f"expected x [N, 1, H, W], z [N, H, W] and d [N, 2, H, W], "
                         f"got {tuple(x.shape)}, {tuple(z.shape)} and {tuple(d.shape)}")
    n = min(n, x.shape[0])
    prediction = threshold_mask(d).cpu()
    z = z.cpu()
    fig, axes = plt.subplots(n, 4, figsize=(10, 2.6 * n), squeeze=False)
    for i in range(n):
        overlay(axes[i, 0], x[i], z[i].float())
        overlay(axes[i, 1], x[i], prediction[i].float())
        overlay(axes[i, 2], x[i], (prediction[i] > z[i]).float(), color="tab:red", alpha=0.8)
        blue = np.ma.masked_where((prediction[i] < z[i]).numpy() == 0, np.ones(z[i].shape))
        axes[i, 2].imshow(blue, cmap=ListedColormap(["tab:blue"]), alpha=0.8, vmin=0, vmax=1)
        shown = axes[i, 3].imshow(d[i, 1].detach().cpu().numpy(), cmap="magma", vmin=0, vmax=1)
        fig.colorbar(shown, ax=axes[i, 3], fraction=0.046)
        for ax, name in zip(axes[i], ["true mask z", "predicted mask", "false pos. / false neg.", "decision d(t)(1)"]):
            ax.set_title(name, fontsize=10)
            ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = [
    "Reliability",
    "argmax_label",
    "decision_cross_entropy",
    "dice_by_threshold",
    "dice_threshold_explorer",
    "dice_threshold_figure",
    "expected_calibration_error",
    "plot_decisions",
    "plot_reliability",
    "plot_segmentations",
    "probabilities",
    "reliability",
    "tau",
    "temperature_explorer",
    "temperature_figure",
    "threshold_mask",
]
