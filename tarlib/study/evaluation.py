"""Evaluation on shared draws: every model of a round sees the same noisy data.

A run evaluates itself on one noise draw of its own seed (``metrics.json``), so two runs
never see the same y.  The protocols evaluate every finished row again on noise draws
shared by all models (:func:`draw_seed`), which pairs their outcomes image by image:

- MNIST (:func:`evaluate_row`): metrics per draw of the validation and test images, and the
  predicted classes per draw and image (``results/<round>/predictions/<row>.npz``, read back
  as per-image correctness by :func:`correct`);
- segmentation (:func:`evaluate_seg_row`): per-slice Dice, IoU and PSNR on test draw 0.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tarlib import data, experiments, metrics, nets, physics, training
from tarlib.config import write_json

DRAW_SEED, TEST_DRAWS, VAL_DRAWS = 20261130, 5, 3  # results/PROTOCOL.md, *Evaluation*
# Round 1 ran before round 2 chose μ = 0.15 (tarlib.physics.MNIST_MU), with the default of
# that time; its JSON files have no "mu".  Its MNIST rows pin it (tarlib.study.round1), so
# that rerunning round 1 means what it meant, and readers of its files use it.
ROUND1_MU = 0.1
OLD_CLIP = "joint"  # the clipping of every run that names none, before v0.3.0 made "separate" the default


def draw_seed(split: str, d: int) -> int:
    """Seed of noise draw ``d`` of the ``"test"`` or ``"val"`` data, shared by every model."""
    key = {"test": 1, "val": 2}.get(split)
    if key is None or d < 0:
        raise ValueError(f"split must be 'test' or 'val' and d ≥ 0, got {split!r}, {d}")
    return int(np.random.SeedSequence([DRAW_SEED, key, d]).generate_state(1)[0] & 0x7FFF_FFFF)


def mu_of(summary: dict[str, Any]) -> float:
    """The μ an MNIST run used: recorded since round 2; a record without it is round 1's (``ROUND1_MU``)."""
    mu = summary["config"].get("mu")
    return ROUND1_MU if mu is None else mu


def load_run(run: Path) -> tuple[nets.TaskAdapted, physics.DataModel, dict[str, Any]]:
    """T ∘ R of a finished run directory (R from the run, or from the run it started from), its M and summary."""
    summary = json.loads((run / "metrics.json").read_text())
    config = summary["config"]
    if summary["experiment"] == "mnist":
        model, M = experiments.build_model("mnist", config["recon"], config["fast"], mu_of(summary),
                                           task_net=config.get("task_net", "cnn"))
    else:
        model, M = experiments.build_model("segmentation", config["recon"], config["fast"],
                                           norm=config.get("unet_norm", "batch"))
    R_file = run / "R.pt" if (run / "R.pt").is_file() else config.get("init_reconstruction")
    if model.R is not None and R_file is not None:
        training.load_weights(model.R, R_file)
    if (run / "T.pt").is_file():
        training.load_weights(model.T, run / "T.pt")
    return model.eval(), M, summary


def evaluate_draws(model: nets.TaskAdapted, M: physics.DataModel, images: torch.Tensor, labels: torch.Tensor,
                   seeds: list[int], true_images: bool = False) -> tuple[list[dict[str, float]], np.ndarray]:
    """Metrics of T ∘ R on each noise draw (one per seed), and the predicted classes [draws, N] (uint8)."""
    per_draw, predictions = [], []
    for seed in seeds:
        batches = experiments.fixed_batches(images, labels, M, experiments.EVAL_BATCH["mnist"], seed, "cpu")
        decisions: list[torch.Tensor] = []
        result = training.evaluate(model, batches, "classification", true_images=true_images, predictions=decisions)
        predictions.append(torch.cat(decisions).to(torch.uint8).numpy())
        per_draw.append({"seed": seed, **result})
    return per_draw, np.stack(predictions)


def evaluate_row(name: str, runs: Path, results: Path, plan: dict[str, list[int]]) -> dict[str, Any]:
    """Evaluate a finished MNIST row on the draws of ``plan`` ({"val" or "test": draw indices});
    write ``results/<row>.json`` and ``results/predictions/<row>.npz``."""
    start = time.perf_counter()
    model, M, summary = load_run(runs / name)
    train_images, train_labels = data.load_mnist("train")
    _, val = data.mnist_validation_split(train_labels)
    n = 500 if summary["config"]["fast"] else None  # smoke-size runs: a smoke-size evaluation
    sets = {"val": (train_images[val][:n], train_labels[val][:n]), "test": tuple(t[:n] for t in data.load_mnist("test"))}
    true_images = summary["strategy"] == "pretrain_task"
    evaluation, arrays = {}, {}
    for part, draws in plan.items():
        images, labels = sets[part]
        evaluation[part], arrays[part] = evaluate_draws(model, M, images, labels, [draw_seed(part, d) for d in draws])
        if true_images and part == "test":  # the classifier on true images (no noise, one "draw")
            evaluation["test_true_images"], arrays["test_true_images"] = evaluate_draws(
                model, M, images, labels, [0], true_images=True)
    summary["evaluation"] = evaluation
    summary["evaluation_time_s"] = round(time.perf_counter() - start, 2)
    (results / "predictions").mkdir(parents=True, exist_ok=True)
    if arrays:
        np.savez_compressed(results / "predictions" / f"{name}.npz", **arrays)
    write_json(results / f"{name}.json", summary)
    return summary


@functools.lru_cache(maxsize=1)
def test_labels() -> np.ndarray:
    """The MNIST test labels, loaded once per process (read-only)."""
    labels = data.load_mnist("test").labels.numpy()
    labels.flags.writeable = False
    return labels


def correct(results: Path, name: str) -> np.ndarray | None:
    """Per-image correctness [draws, N] of MNIST row ``name`` on the shared test draws, from the predictions that
    :func:`evaluate_row` saved in ``results``, or None; smoke-size rows cover the first N test images only."""
    path = results / "predictions" / f"{name}.npz"
    if not path.is_file():
        return None
    predictions = np.load(path)["test"]
    return predictions == test_labels()[None, : predictions.shape[1]]


@torch.no_grad()
def evaluate_seg_row(name: str, runs: Path, results: Path) -> dict[str, Any]:
    """Per-slice test Dice, IoU and PSNR of a finished segmentation row on test draw 0; write ``results/<row>.json``."""
    start = time.perf_counter()
    model, M, summary = load_run(runs / name)
    test = data.load_brain("test")
    per_slice: dict[str, list[float]] = {"dice": [], "iou": [], "psnr": []}
    batch = experiments.EVAL_BATCH["segmentation"]
    for x, y, z in experiments.fixed_batches(test.images, test.masks, M, batch, draw_seed("test", 0), "cpu"):
        x_hat, logits = model(y)
        per_slice["dice"] += metrics.dice(logits, z).tolist()
        per_slice["iou"] += metrics.iou(logits, z).tolist()
        if x_hat is not None:
            per_slice["psnr"] += metrics.psnr(x_hat, x).tolist()
    summary["evaluation"] = {"test_per_slice": per_slice,
                             "test": {k: float(np.mean(v)) for k, v in per_slice.items() if v}}
    summary["evaluation_time_s"] = round(time.perf_counter() - start, 2)
    write_json(results / f"{name}.json", summary)
    return summary
