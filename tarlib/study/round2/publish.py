"""Round 2 published for the course: ``weights/``, ``results/round2/seg_outputs.npz`` and Figures 2 and 3.

    python -m tarlib.reproduce --round 2 --export-weights --runs DIR   # trains nothing

Seed 0 of each row that the course shows becomes a published model (:func:`published`),
with the command lines that trained it in ``weights/manifest.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tarlib import analysis, experiments, pretrained, records
from tarlib.study.evaluation import load_run, mu_of
from tarlib.study.registry import load_choices, load_record, number
from tarlib.study.round2 import protocol
from tarlib.study.tables import save_figure

SEG_OUTPUT_ROWS = ("r2_seg_sequential_s0", "r2_seg_fbp_unet_s0", *(f"r2_seg_joint_C{number(C)}_s0" for C in protocol.SEG_C))
FLOAT16 = ("seg_sequential", "seg_joint_C0.5", "seg_pretrain_T")  # the U-Nets are most of the bytes
FIGURE2_MODELS = ("mnist_sequential", "mnist_end_to_end", "mnist_joint_C0.01", "mnist_joint_best")


def published(choices: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Published name → {part: the round-2 row whose R.pt / T.pt it is}.

    The ten names of round 1 keep their meaning (seed 0 of each row), and two are new:
    ``mnist_joint_best`` (the joint C chosen on validation) and ``seg_pretrain_T`` (the
    U-Net trained on true slices, with the pre-trained R of the sequential run).
    """
    if "best_C" not in choices:
        raise ValueError("round 2 is not finished: the best joint C has not been chosen (stage sweep)")
    pre_R = protocol.pretrain_R_row(choices["mu"]["chosen"], 0).name

    def both(row: str) -> dict[str, str]:
        return {"R": row, "T": row}

    return {
        "mnist_pretrain_T": {"R": pre_R, "T": "r2_pretrain_T_s0"},
        "mnist_sequential": {"R": pre_R, "T": "r2_sequential_s0"},
        "mnist_end_to_end": both("r2_end_to_end_s0"),
        **{f"mnist_joint_C{number(C)}": both(f"r2_joint_C{number(C)}_s0") for C in (0.01, 0.5, 0.999)},
        "mnist_joint_best": both(f"r2_joint_C{number(choices['best_C']['C'])}_s0"),
        "mnist_fbp_classifier": {"T": "r2_fbp_classifier"},
        "mnist_sinogram_cnn": {"T": "r2_sinogram_cnn"},
        "seg_sequential": {"R": "r2_seg_pretrain_R_s0", "T": "r2_seg_sequential_s0"},
        "seg_joint_C0.5": both("r2_seg_joint_C0.5_s0"),
        "seg_pretrain_T": {"R": "r2_seg_pretrain_R_s0", "T": "r2_seg_pretrain_T_s0"},
    }


def publish(runs: Path, results: Path = protocol.RESULTS, weights: Path | None = None, n_check: int = 1000) -> list[Path]:
    """Publish round 2 for the course: ``weights/`` (:func:`published`, the U-Nets in float16),
    ``results/round2/seg_outputs.npz`` (every segmentation row of :data:`SEG_OUTPUT_ROWS`, under its course name), and the panels
    ``figure2.png`` (digits, reconstructions, class probabilities) and ``figure3.png``.  Each MNIST
    model's ``check`` in the manifest is its accuracy on the first ``n_check`` test images."""
    choices = load_choices(results)
    by_name = {r.name: r for r in protocol.determined(choices)[0]}
    models = {}
    for name, parts in published(choices).items():
        summary = load_record(results, parts["T"])
        if summary is None or summary["config"].get("fast"):
            raise ValueError(f"{name}: {results / parts['T']}.json is missing or from a --fast run: "
                             "only finished full runs are published")
        config = summary["config"]
        models[name] = {
            "round": 2, "experiment": summary["experiment"], "recon": config["recon"], "strategy": summary["strategy"],
            "C": summary["C"], "seed": summary["seed"], "balanced": config.get("balanced", False),
            **({"mu": mu_of(summary)} if summary["experiment"] == "mnist" else {"norm": config["unet_norm"]}),
            "commands": [by_name[r].command(Path("runs")) for r in sorted(set(parts.values()))],
            "reproduce": "python -m tarlib.reproduce --round 2 --runs RUNS, then --round 2 --export-weights",
            "metrics": summary["metrics"]["test"], "files": parts,
        }
    written = [pretrained.export(models, runs, weights, n_check, half=FLOAT16)]
    # (T ∘ R, M, the run's summary) by course name (seg_sequential, seg_joint_C0.5, ...), as in round 1
    loaded = {records.course_name(row)[0]: load_run(runs / row) for row in SEG_OUTPUT_ROWS}
    written.append(analysis.write_seg_outputs({row: run[0] for row, run in loaded.items()},
                                              {row: run[2]["C"] for row, run in loaded.items()},
                                              results / "seg_outputs.npz"))
    written += [plot_figure2(weights, results / "figure2.png"),
                plot_figure3(results / "seg_outputs.npz", results / "figure3.png")]
    return written


def plot_figure2(weights: Path | None, path: Path, n: int = 4, pool: int = 500) -> Path:
    """The paper's Figure 2 for the published models :data:`FIGURE2_MODELS`: the first test digit and
    the ``n - 1`` of the first ``pool`` on which the sequential model is least confident."""
    M = pretrained.data_model(FIGURE2_MODELS[0], weights)
    x, y, z = experiments.test_batches("mnist", M, seed=0, n=pool)[0]  # pool ≤ 500: one batch
    entries, recon, prob = pretrained.manifest(weights), {}, {}
    with torch.no_grad():
        for name in FIGURE2_MODELS:
            C = entries[name]["C"]
            label = name.removeprefix("mnist_").replace("_", "-") if C is None or C == 0 else f"joint, C = {C:g}"
            x_hat, logits = pretrained.load(name, directory=weights)(y)
            recon[label], prob[label] = x_hat, logits.softmax(dim=1)
    digits = analysis.figure2_digits(prob["sequential"], n)
    fig = analysis.plot_strategies(x[digits], y[digits], {k: v[digits] for k, v in recon.items()},
                                   {k: v[digits] for k, v in prob.items()}, labels=z[digits])
    fig.suptitle(f"Round 2, seed 0 (weights/); the C chosen on validation is {entries[FIGURE2_MODELS[-1]]['C']:g}. "
                 "Regenerate: python -m tarlib.reproduce --round 2 --export-weights", fontsize=8, y=1.04)
    return save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_figure3(outputs: Path, path: Path, index: int = 3) -> Path:
    """The paper's Figure 3 for slice ``index`` of ``seg_outputs.npz``: every row, its own grey window."""
    fig = analysis.plot_seg_panel(analysis.read_seg_outputs(outputs), index)
    fig.suptitle("Round 2, seed 0. Regenerate: python -m tarlib.reproduce --round 2 --export-weights",
                 fontsize=8, y=1.04)
    return save_figure(fig, path, dpi=110, bbox_inches="tight")
