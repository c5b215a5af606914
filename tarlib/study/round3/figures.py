"""What joint training makes R show T, in round 3: reconstructions of the first test digits, and the subspaces
of the rank-16 map.

    python -m tarlib.study --round 3 --tables-only --runs DIR   # with the run folders: also these figures

For each cell, the sequential model's R is its level's pre-trained R_0 and the joint model's is the seed-0
run of the C chosen on validation.  The rank-16 map x̂ = W φ(y) + c is not unique as a product U V, so it
is compared through what is unique: the column space of W (the images it can produce), by the principal
angles between the sequential and the joint map's spaces, and W's leading singular images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tarlib import data, experiments, nets
from tarlib.config import write_json
from tarlib.study.evaluation import draw_seed, load_run
from tarlib.study.registry import load_choices
from tarlib.study.round3 import protocol
from tarlib.study.round3.tables import LABEL
from tarlib.study.tables import save_figure

COMMAND = "python -m tarlib.study --round 3 --tables-only --runs DIR"


def reconstructions(runs: Path, results: Path = protocol.RESULTS) -> dict[tuple[str, str], dict[str, nets.TaskAdapted]]:
    """{cell: {"sequential": T ∘ R, "joint": T ∘ R}} at seed 0, for every cell whose best C is chosen and
    whose run folders are in ``runs``."""
    choices, out = load_choices(results), {}
    for cell in protocol.CELLS:
        best = choices.get("best_C", {}).get("_".join(cell))
        if best is None:
            continue
        joint = protocol.finetune_row(cell, "joint", 0, choices, protocol.FULL, best["C"]).name
        sequential = protocol.row_name(cell, "sequential", 0)
        if all((runs / row / "metrics.json").is_file() for row in (joint, sequential)):
            out[cell] = {"sequential": load_run(runs / sequential)[0], "joint": load_run(runs / joint)[0]}
    return out


@torch.no_grad()
def digits_figure(models: dict[tuple[str, str], dict[str, nets.TaskAdapted]], path: Path, n: int = 8) -> Path:
    """The first ``n`` test digits of shared test draw 0, and each cell's sequential and joint R(y) of them."""
    import matplotlib.pyplot as plt

    images, labels = data.load_mnist("test")
    M = experiments.data_model("mnist", "lgd", protocol.MU)
    x, z = images[: experiments.EVAL_BATCH["mnist"]], labels[: experiments.EVAL_BATCH["mnist"]]
    _, y, _ = next(iter(experiments.fixed_batches(x, z, M, len(x), draw_seed("test", 0), "cpu")))
    rows = [("true image", x[:n])] + [(f"{LABEL[c[0]]} × {LABEL[c[1]]}\n{s}", m[s].R(y[:n]))
                                       for c, m in models.items() for s in ("sequential", "joint")]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.15 * len(rows)), squeeze=False)
    for (label, images_), ax_row in zip(rows, axes):
        for image, ax in zip(images_, ax_row):
            ax.imshow(image.squeeze().numpy(), cmap="gray")
            ax.set(xticks=[], yticks=[])
        ax_row[0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"Round 3: what R shows T, sequential and joint (seed 0, test draw 0) ({COMMAND})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def affine_map(R: nets.LowRankLinear) -> torch.Tensor:
    """W = U V of x̂ = W φ(y) + c, [pixels, data values], in float64."""
    return (R.U.weight @ R.V.weight).double().detach()


def principal_angles(W1: torch.Tensor, W2: torch.Tensor, rank: int) -> np.ndarray:
    """Principal angles in degrees, smallest first, between the ``rank``-dimensional column spaces of W1 and W2."""
    Q1, Q2 = (torch.linalg.svd(W, full_matrices=False)[0][:, :rank] for W in (W1, W2))
    cosines = torch.linalg.svdvals(Q1.T @ Q2).clamp(max=1.0)
    return np.degrees(np.arccos(cosines.numpy()))


def subspaces(models: dict[tuple[str, str], dict[str, nets.TaskAdapted]], k: int = 4) -> dict[str, Any]:
    """For every rank-16 cell: the principal angles between the sequential and joint maps' column spaces,
    and each map's singular values."""
    out = {}
    for cell, pair in models.items():
        if cell[0] != "rank16":
            continue
        W = {s: affine_map(pair[s].R) for s in pair}
        rank = pair["sequential"].R.rank
        out["_".join(cell)] = {
            "principal_angles_deg": principal_angles(W["sequential"], W["joint"], rank).round(3).tolist(),
            "singular_values": {s: torch.linalg.svdvals(W[s])[:rank].numpy().round(6).tolist() for s in W},
        }
    return out


def singular_images_figure(models: dict[tuple[str, str], dict[str, nets.TaskAdapted]], found: dict[str, Any],
                           path: Path, k: int = 6) -> Path:
    """Each rank-16 map's leading ``k`` singular images (left singular vectors, sign fixed by their largest
    entry), sequential above joint, with the principal angles between their spaces in the title."""
    import matplotlib.pyplot as plt

    cells = [c for c in models if c[0] == "rank16"]
    fig, axes = plt.subplots(2 * len(cells), k, figsize=(1.3 * k, 1.45 * 2 * len(cells)), squeeze=False)
    for i, cell in enumerate(cells):
        for j, strategy in enumerate(("sequential", "joint")):
            U = torch.linalg.svd(affine_map(models[cell][strategy].R), full_matrices=False)[0][:, :k]
            U = U * torch.sign(U.gather(0, U.abs().argmax(dim=0, keepdim=True)))
            side = math.isqrt(U.shape[0])
            for col in range(k):
                ax = axes[2 * i + j, col]
                vmax = float(U[:, col].abs().max())
                ax.imshow(U[:, col].reshape(side, side).numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
                ax.set(xticks=[], yticks=[])
            axes[2 * i + j, 0].set_ylabel(f"{LABEL[cell[0]]} × {LABEL[cell[1]]}\n{strategy}", fontsize=7)
        angles = found["_".join(cell)]["principal_angles_deg"]
        axes[2 * i, 0].set_title(f"principal angles between the two spaces: {angles[0]:.1f}° to {angles[-1]:.1f}°",
                                 fontsize=8, loc="left")
    fig.suptitle(f"Round 3: leading singular images of the rank-16 R, seed 0 ({COMMAND})", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def write_figures(runs: Path, results: Path = protocol.RESULTS) -> list[Path]:
    """The digits figure, the rank-16 subspaces (JSON, table and figure) of every cell whose seed-0 runs are in
    ``runs``."""
    models = reconstructions(runs, results)
    if not models:
        return []
    written = [digits_figure(models, results / "what_R_shows.png")]
    found = subspaces(models)
    if found:
        write_json(results / "rank16_subspaces.json", found)
        (results / "rank16_subspaces.md").write_text(subspaces_table(found))
        written += [results / "rank16_subspaces.json", results / "rank16_subspaces.md",
                    singular_images_figure(models, found, results / "rank16_singular_images.png")]
    return written


def subspaces_table(found: dict[str, Any]) -> str:
    """Per rank-16 cell: the principal angles between the sequential and joint maps' column spaces (smallest,
    median, largest, how many exceed 10° and 45°) and the share of the joint map's energy (squared singular
    values) in its leading 4 directions, against the sequential map's."""
    lines = ["| cell | angles: smallest / median / largest (°) | > 10° | > 45° | energy in the leading 4, seq / joint |",
             "|---|---|---:|---:|---|"]
    for cell, v in found.items():
        a = np.array(v["principal_angles_deg"])
        share = {s: float(np.sum(np.square(sv[:4])) / np.sum(np.square(sv))) for s, sv in v["singular_values"].items()}
        R, T = cell.split("_")
        lines.append(f"| {LABEL[R]} × {LABEL[T]} | {a.min():.1f} / {np.median(a):.1f} / {a.max():.1f} | {(a > 10).sum()} "
                     f"| {(a > 45).sum()} of {a.size} | {100 * share['sequential']:.0f} % / {100 * share['joint']:.0f} % |")
    return "\n".join(lines) + "\n"
