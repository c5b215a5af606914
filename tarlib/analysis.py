"""Measurements and figures on trained T ∘ R models, for the course's part II (sections 4–5).

- :func:`loss_scales`        ℓ_X, ℓ_D and their gradient norms on R's parameters (eq. (18))
- :func:`clipped_task_step`  what gradient clipping and Adam's ε do to T's update near C = 1
- :func:`plot_strategies`, :func:`figure2_digits`  the paper's Figure 2: reconstructions and class
  probabilities, on the first and the hardest digits
- :func:`write_seg_outputs` / :func:`read_seg_outputs`  test-slice outputs of the
  segmentation models (Figure 3), round 2's in ``results/round2/seg_outputs.npz``
- :func:`contrast_window`    a per-image grey window from percentiles
- :func:`plot_seg_panel`, :func:`grey_white_contrast`, :func:`plot_seg_metrics`  Figure 3
  and the segmentation metrics against C
- :func:`inference_time`     seconds per slice of T ∘ R at a batch size

The full runs' results by course name are read by :mod:`tarlib.records`.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from tarlib import experiments, losses, physics, training
from tarlib.config import atomic_write
from tarlib.nets import TaskAdapted
from tarlib.plotting import MAX_WIDTH, to_numpy_2d
from tarlib.records import course_name, test_metrics

ADAM_EPS = 1e-8  # torch.optim.Adam's default ε, used by tarlib.training.train
SEG_OUTPUTS_MAX_BYTES = 5 * 2**20


def loss_scales(model: TaskAdapted, batch: tuple[Tensor, Tensor, Tensor], task: str) -> dict[str, float]:
    """ℓ_X, ℓ_D and g_X = ‖∇_θ ℓ_X‖, g_D = ‖∇_θ ℓ_D‖ on R's parameters θ, for one batch (x, y, z).

    ``ratio`` = g_D / g_X; ``C_balance`` = the C at which (1 − C)·g_D = C·g_X, i.e. where
    the two terms of eq. (18) pull on R equally hard: g_D / (g_D + g_X).
    """
    terms = training.loss_terms(model, batch, task)
    g = losses.gradient_norms(terms, model.R.parameters())
    g_D, g_X = g["task"], g["reconstruction"]
    return {
        "l_X": terms["reconstruction"].item(),
        "l_D": terms["task"].item(),
        "g_X": g_X,
        "g_D": g_D,
        "ratio": g_D / g_X,
        "C_balance": g_D / (g_D + g_X),
    }


def clipped_task_step(
    model: TaskAdapted, batch: tuple[Tensor, Tensor, Tensor], C: float, task: str, eps: float = ADAM_EPS
) -> dict[str, float]:
    """T's gradient under eq. (18) at ``C`` after clipping the joint norm of (R, T) to 1, as in training.

    Returns ``norm`` (the joint gradient norm before clipping), ``task_rms`` (the root mean
    square of T's clipped gradient entries) and ``adam_factor`` = mean of |g|/(|g| + ε) over
    T's entries: the factor by which Adam's ε shrinks T's first steps (1 means no effect;
    for a gradient steady in time Adam's step is lr·|g|/(|g| + ε)).
    """
    terms = training.loss_terms(model, batch, task)
    weights = losses.JointLoss(C, training.task_loss(task)).weights()
    total = sum(weights[name] * value for name, value in terms.items())
    params_R, params_T = list(model.R.parameters()), list(model.T.parameters())
    grads = torch.autograd.grad(total, params_R + params_T, allow_unused=True)
    flat = [g.flatten() if g is not None else torch.zeros(p.numel()) for g, p in zip(grads, params_R + params_T)]
    norm = float(torch.cat(flat).double().norm())
    scale = min(1.0, 1.0 / (norm + 1e-6))  # torch.nn.utils.clip_grad_norm_ with max_norm = 1
    task_grad = torch.cat(flat[len(params_R):]).double().abs() * scale
    return {
        "norm": norm,
        "task_rms": float(task_grad.pow(2).mean().sqrt()),
        "adam_factor": float((task_grad / (task_grad + eps)).mean()),
    }


def figure2_digits(probabilities: Tensor, n: int = 3) -> Tensor:
    """Which digits Figure 2 shows: the first one, then the ``n - 1`` on which the classifier with
    class probabilities ``probabilities`` [N, k] is least confident (most digits are easy for every
    strategy, and their bars say nothing)."""
    if not 1 <= n <= len(probabilities):
        raise ValueError(f"n must lie in [1, {len(probabilities)}] (digits given), got {n}")
    hardest = probabilities[1:].max(dim=1).values.argsort()[: n - 1] + 1
    return torch.cat([torch.zeros(1, dtype=torch.long), hardest.cpu()])


def plot_strategies(
    x: Tensor,
    y: Tensor,
    reconstructions: Mapping[str, Tensor],
    probabilities: Mapping[str, Tensor],
    labels: Tensor | None = None,
) -> Figure:
    """The paper's Figure 2: per digit, x, the data y and, per strategy, R(y) beside T(R(y)) as bars.

    ``x`` [N, 1, H, W], ``y`` [N, 1, angles, detector]; ``reconstructions`` and
    ``probabilities`` map a strategy name to [N, 1, H, W] and [N, k].  A bar is orange
    on the true label (``labels`` [N]) and blue elsewhere.
    """
    names = list(reconstructions)
    if list(probabilities) != names:
        raise ValueError(f"reconstructions and probabilities need the same strategies, got {names} and {list(probabilities)}")
    n = len(x)
    if len(y) != n or any(len(v) != n for v in [*reconstructions.values(), *probabilities.values()]):
        raise ValueError(f"every input needs {n} images (one per digit)")
    cols = 2 + 2 * len(names)
    side = MAX_WIDTH / cols
    fig, axes = plt.subplots(n, cols, figsize=(MAX_WIDTH, 1.25 * side * n + 0.4), squeeze=False)
    for i in range(n):
        row = axes[i]
        row[0].imshow(to_numpy_2d(x[i]), cmap="gray", vmin=0, vmax=1)
        row[1].imshow(to_numpy_2d(y[i]), cmap="gray", aspect="auto")
        for j, name in enumerate(names):
            row[2 + 2 * j].imshow(to_numpy_2d(reconstructions[name][i]), cmap="gray", vmin=0, vmax=1)
            p = probabilities[name][i].detach().cpu().numpy()
            colours = ["tab:blue"] * len(p)
            if labels is not None:
                colours[int(labels[i])] = "tab:orange"
            row[3 + 2 * j].bar(range(len(p)), p, color=colours)
            row[3 + 2 * j].set(ylim=(0, 1), xticks=range(len(p)), yticks=[0, 1])
            row[3 + 2 * j].tick_params(labelsize=6)
            if i == 0:
                row[2 + 2 * j].set_title(name, fontsize=8, loc="left")
        for ax in row[:2]:
            ax.set(xticks=[], yticks=[])
        for j in range(len(names)):
            row[2 + 2 * j].set(xticks=[], yticks=[])
    axes[0][0].set_title("true x", fontsize=8)
    axes[0][1].set_title("data y", fontsize=8)
    fig.tight_layout(pad=0.3)
    return fig


def contrast_window(image: Tensor | np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """(vmin, vmax) = the ``low`` and ``high`` percentiles of the image: each image its own grey window."""
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 ≤ low < high ≤ 100, got {low}, {high}")
    values = np.asarray(to_numpy_2d(image), dtype=np.float64)
    vmin, vmax = np.percentile(values, [low, high])
    return float(vmin), float(max(vmax, vmin + 1e-6))


@torch.no_grad()
def write_seg_outputs(
    models: Mapping[str, TaskAdapted],
    C: Mapping[str, float | None],
    path: str | Path,
    slices: Sequence[int] = range(0, 13, 2),
    seed: int = 0,
) -> Path:
    """Write the test-slice outputs of segmentation models to ``path`` (an ``.npz``, at most 5 MiB).

    ``models`` maps a row name to its T ∘ R, ``C`` the row name to its C (None for rows
    that are not joint).  Every model sees the same data: the test slices ``slices`` of
    :func:`tarlib.data.load_brain` with the noise draw of a run with ``seed``.  The file holds

    - ``x`` [S, H, W] float16: the true slices; ``z`` [S, H, W] uint8: the grey-matter masks;
    - ``rows`` (names, in the order given) and ``C`` [rows] float (nan: not joint);
    - per row, ``recon_<row>`` = R(y) and ``prob_<row>`` = T(R(y))(grey matter), [S, H, W] float16.

    The course's file, ``results/round2/seg_outputs.npz``, is written when round 2 is published
    (``python -m tarlib.reproduce --round 2 --export-weights``); for published models::

        python -m tarlib.analysis seg_sequential seg_joint_C0.5 --out seg_outputs.npz
    """
    if not models:
        raise ValueError("write_seg_outputs needs at least one model")
    missing = sorted(set(models) - set(C))
    if missing:
        raise ValueError(f"no C given for rows {missing}; give C (None for non-joint rows) for every model")
    M = physics.brain_data_model()
    batches = experiments.test_batches("segmentation", M, seed)
    x, y, z = (torch.cat(parts) for parts in zip(*batches))
    index = torch.as_tensor(list(slices))
    if len(index) == 0 or index.min() < 0 or index.max() >= len(x):
        raise ValueError(f"slices must lie in [0, {len(x) - 1}] (test slices), got {list(slices)}")
    arrays: dict[str, Any] = {
        "x": x[index, 0].numpy().astype(np.float16),
        "z": z[index].reshape(len(index), *x.shape[-2:]).numpy().astype(np.uint8),
        "rows": np.array(list(models)),
        "C": np.array([math.nan if C[r] is None else float(C[r]) for r in models], dtype=np.float64),
    }
    for row, model in models.items():
        if model.R is None:
            raise ValueError(f"row {row!r} has no reconstruction network R")
        x_hat, logits = model.eval()(y[index])
        arrays[f"recon_{row}"] = x_hat[:, 0].numpy().astype(np.float16)
        arrays[f"prob_{row}"] = torch.softmax(logits.float(), dim=1)[:, 1].numpy().astype(np.float16)
    path = Path(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    if buffer.tell() > SEG_OUTPUTS_MAX_BYTES:
        raise ValueError(f"{path}: {buffer.tell()} bytes > 5 MiB; pass fewer slices")
    atomic_write(path, buffer.getvalue())
    return path


def read_seg_outputs(path: str | Path) -> dict[str, Any]:
    """Read :func:`write_seg_outputs`'s file: ``x``, ``z``, ``rows`` (list), ``C`` {row: C} and
    ``recon``, ``prob`` {row: [S, H, W] float32}."""
    with np.load(Path(path), allow_pickle=False) as f:
        rows = [str(r) for r in f["rows"]]
        return {
            "x": f["x"].astype(np.float32),
            "z": f["z"],
            "rows": rows,
            "C": dict(zip(rows, f["C"].tolist())),
            "recon": {r: f[f"recon_{r}"].astype(np.float32) for r in rows},
            "prob": {r: f[f"prob_{r}"].astype(np.float32) for r in rows},
        }


def _row_label(row: str, C: float) -> str:
    """``joint, C = 0.1`` for a joint row, else the strategy: ``sequential``, ``FBP + U-Net``."""
    if not math.isnan(C):
        return f"joint, C = {C:g}"
    row = course_name(row)[0].removeprefix("seg_")
    return {"fbp_unet": "FBP + U-Net"}.get(row, row)


def plot_seg_panel(outputs: Mapping[str, Any], index: int, per_row: int = 5) -> Figure:
    """Figure 3 for test slice ``index`` of :func:`read_seg_outputs`'s ``outputs``: one column per model.

    The first column holds the true slice (with the true grey-matter mask drawn on the
    lower copy); then, per model, the reconstruction R(y) in its own grey window
    (:func:`contrast_window`, so that a small-C reconstruction shows what it emphasises)
    above the grey-matter probability T(R(y)) on [0, 1].  Models wrap after ``per_row``.
    """
    rows = outputs["rows"]
    if not 0 <= index < len(outputs["x"]):
        raise ValueError(f"index must lie in [0, {len(outputs['x']) - 1}] (slices in the file), got {index}")
    bands = math.ceil(len(rows) / per_row)
    cols = 1 + min(per_row, len(rows))
    fig, axes = plt.subplots(2 * bands, cols, figsize=(1.9 * cols, 4.1 * bands), squeeze=False)
    for band in range(bands):
        top, bottom = axes[2 * band], axes[2 * band + 1]
        top[0].imshow(outputs["x"][index], cmap="gray")
        top[0].set_title("true x", fontsize=8)
        bottom[0].imshow(outputs["x"][index], cmap="gray")
        bottom[0].contour(outputs["z"][index], levels=[0.5], colors="tab:green", linewidths=0.6)
        bottom[0].set_title("true mask", fontsize=8)
        for j, row in enumerate(rows[band * per_row:(band + 1) * per_row], start=1):
            recon = outputs["recon"][row][index]
            vmin, vmax = contrast_window(recon)
            top[j].imshow(recon, cmap="gray", vmin=vmin, vmax=vmax)
            top[j].set_title(f"{_row_label(row, outputs['C'][row])}\n[{vmin:.2f}, {vmax:.2f}]", fontsize=7)
            bottom[j].imshow(outputs["prob"][row][index], cmap="magma", vmin=0, vmax=1)
            bottom[j].set_title("P(grey matter)", fontsize=7)
    for ax in axes.ravel():
        ax.set(xticks=[], yticks=[])
        if not ax.images:
            ax.set_axis_off()
    fig.tight_layout(pad=0.4, h_pad=1.5)
    return fig


def grey_white_contrast(recon: np.ndarray, x: np.ndarray, z: np.ndarray, white_level: float = 0.75) -> float:
    """(mean over white matter − mean over grey matter) of ``recon``, relative to the same for ``x``.

    Grey matter is the mask ``z``; white matter is approximated by the other pixels whose true
    T1 intensity is at least ``white_level`` (white matter is the brightest tissue in T1).
    1 means the true contrast, 0 none, < 0 inverted.
    """
    if not recon.shape == x.shape == z.shape:
        raise ValueError(f"recon, x and z need one shape, got {recon.shape}, {x.shape}, {z.shape}")
    grey, white = z == 1, (z == 0) & (x >= white_level)
    if not grey.any() or not white.any():
        raise ValueError("no grey-matter or no white-matter pixels: check z and white_level")
    return float((recon[white].mean() - recon[grey].mean()) / (x[white].mean() - x[grey].mean()))


def grey_white_cnr(image: np.ndarray, x: np.ndarray, z: np.ndarray, white_level: float = 0.75) -> float:
    """Contrast-to-noise ratio of white against grey matter in ``image``: the difference of the two tissues'
    mean intensities over their pooled standard deviation, √((var_white + var_grey)/2).

    Tissues as in :func:`grey_white_contrast` (grey: the mask ``z``; white: other pixels whose true
    intensity ``x`` is at least ``white_level``).  Unlike that relative difference it is scale-free: it
    does not change when ``image`` is shifted or multiplied by a positive factor, which a reconstruction
    trained with a small C is free to do; a negative factor flips its sign.
    """
    if not image.shape == x.shape == z.shape:
        raise ValueError(f"image, x and z need one shape, got {image.shape}, {x.shape}, {z.shape}")
    grey, white = z == 1, (z == 0) & (x >= white_level)
    if not grey.any() or not white.any():
        raise ValueError("no grey-matter or no white-matter pixels: check z and white_level")
    image = np.asarray(image, dtype=np.float64)
    spread = np.sqrt((image[white].var() + image[grey].var()) / 2)
    return float((image[white].mean() - image[grey].mean()) / spread)


def plot_seg_metrics(runs: Mapping[str, Sequence[Mapping[str, Any]]],
                     metrics: Sequence[str] = ("dice", "iou", "psnr")) -> Figure:
    """Test metrics of the segmentation runs (``course_runs("seg_")``: name → records over seeds)
    against C on a log axis; a point is the mean over seeds, its bar the standard deviation.

    Joint runs with C > 0 form the curve; C = 0 is drawn at the left edge, and the
    other strategies (sequential, FBP + U-Net, ...) as horizontal lines.
    """
    def over_seeds(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[float, float]:
        values = [test_metrics(r)[metric] for r in records]
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    joint = sorted((records[0]["C"], records) for records in runs.values() if records[0]["strategy"] == "joint")
    others = {name: records for name, records in runs.items() if records[0]["strategy"] in ("sequential", "end_to_end")}
    positive = [C for C, _ in joint if C > 0]
    left = min(positive) / 10 if positive else 1e-3
    fig, axes = plt.subplots(1, len(metrics), figsize=(MAX_WIDTH, 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        points = [over_seeds(records, metric) for _, records in joint]
        ax.errorbar([C if C > 0 else left for C, _ in joint], [m for m, _ in points], yerr=[s for _, s in points],
                    fmt="o-", capsize=2, label="joint")
        ax.set_xscale("log")
        for (name, records), style in zip(others.items(), ("--", ":", "-.")):
            ax.axhline(over_seeds(records, metric)[0], ls=style, color="k", lw=0.8,
                       label=f"{name} ({len(records)} seed{'s' if len(records) > 1 else ''})")
        ax.set(xlabel=f"C (C = 0 drawn at {left:g})", title=metric)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


@torch.no_grad()
def inference_time(model: TaskAdapted, y: Tensor, batch_size: int, repeats: int = 3) -> float:
    """Seconds per sample of ``model(y)`` at ``batch_size``: the best of ``repeats`` timed runs."""
    if batch_size < 1 or batch_size > len(y):
        raise ValueError(f"batch_size must lie in [1, {len(y)}] (samples in y), got {batch_size}")
    batch = y[:batch_size]
    model.eval()(batch)  # warm-up
    best = math.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        model(batch)
        best = min(best, time.perf_counter() - start)
    return best / batch_size


def build_parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(prog="python -m tarlib.analysis",
                                     description=write_seg_outputs.__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="published segmentation models (tarlib.pretrained.names())")
    parser.add_argument("--out", required=True, help="the .npz to write, e.g. seg_outputs.npz")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m tarlib.analysis NAME ... --out FILE``: seg outputs of published models."""
    from tarlib import pretrained

    args = build_parser().parse_args(argv)
    entries = pretrained.manifest()
    models = {name: pretrained.load(name) for name in args.names}
    path = write_seg_outputs(models, {name: entries[name]["C"] for name in args.names}, args.out)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
