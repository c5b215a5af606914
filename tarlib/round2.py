"""The second reproduction round of section 5.1: ``results/PROTOCOL.md`` as code.

    python -m tarlib.reproduce --round 2 --list            # the rows known so far, with their commands
    python -m tarlib.reproduce --round 2 --runs DIR        # run the next stages (resumable), then decide

The protocol fixes its choices in stages, each made on validation data only and
written to ``results/round2/choices.json`` before the stage that needs it runs:

1. ``mu``: the first 2,000 steps of R's 8,000-step pre-training for each candidate
   μ; :func:`choose_mu` extrapolates the check-set L2 to 8,000 steps.
2. ``pretrain``: R_s and T_s for the seeds s = 0, 1, 2 (R_0 continues the chosen μ's run).
3. ``grid``: the fine-tuning learning rate and warm-up (:func:`choose_lr`).
4. ``sweep``: joint training over C, seed 0; :func:`choose_best_C` on 3 validation draws.
5. ``table``: every other row of the protocol.

Every finished row is evaluated on noise draws shared by all models
(:func:`draw_seed`); its summary goes to ``results/round2/<row>.json`` and its
per-image predictions to ``results/round2/predictions/<row>.npz``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tarlib import data, experiments, physics, stats, training
from tarlib.config import write_json
from tarlib.reproduce import PAPER_TABLE1, ROUND1_MU, Row, run_experiment

PROTOCOL_FILE = Path("results/PROTOCOL.md")
RESULTS = Path("results/round2")
MU_CANDIDATES = (0.1, 0.15, 0.2, 0.3)
MU_STOP, MU_EVAL_EVERY, MU_FIT_FROM, MU_TARGET_L2, MU_TIE = 2000, 250, 500, 9.0, 0.1
LR_GRID = tuple((lr, warmup) for lr in (1e-4, 3e-4, 1e-3) for warmup in (0, 300))
GRID_C, LR_TIE = 0.1, 0.001
C_SWEEP = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 0.9, 0.999, 1.0)
C_BALANCED = (0.1, 0.3, 0.5, 0.7, 0.9)
BEST_C_TIE = 0.0005
SEEDS = (0, 1, 2)
STEPS = {"pretrain_R": 8000, "pretrain_T": 3000, "grid": 1000, "finetune": 3000, "baseline": 11000}
DRAW_SEED, TEST_DRAWS, VAL_DRAWS = 20261130, 5, 3
# segmentation (section 5.2)
SEG_C = (0.0, 0.1, 0.5, 0.9, 0.99, 0.999)
SEG_FIRST_STEPS, SEG_EVAL_EVERY, SEG_MAX_STEPS, SEG_PLATEAU = 1500, 100, 800, 0.005


def draw_seed(split: str, d: int) -> int:
    """Seed of noise draw ``d`` of the ``"test"`` or ``"val"`` data, shared by every model."""
    key = {"test": 1, "val": 2}.get(split)
    if key is None or d < 0:
        raise ValueError(f"split must be 'test' or 'val' and d ≥ 0, got {split!r}, {d}")
    return int(np.random.SeedSequence([DRAW_SEED, key, d]).generate_state(1)[0] & 0x7FFF_FFFF)


# ----------------------------------------------------------------------------- choices


def choose_mu(histories: dict[float, list[dict[str, float]]]) -> dict[str, Any]:
    """The protocol's μ rule from each candidate's check-set evaluations ``[{step, l2}, ...]``.

    Fits L(t) = a + b·t^(−1/2) by least squares to the evaluations at
    ``MU_FIT_FROM`` ≤ t ≤ ``MU_STOP``, extrapolates to the paper's 8,000 steps and
    picks the μ closest to the paper's L2 of 9.0 (ties within 0.1: the smaller μ).
    """
    fits = {}
    for mu, history in sorted(histories.items()):
        points = [(e["step"], e["l2"]) for e in history if MU_FIT_FROM <= e["step"] <= MU_STOP]
        if len(points) < 3:
            raise ValueError(f"μ = {mu}: need ≥ 3 evaluations in [{MU_FIT_FROM}, {MU_STOP}], got {len(points)}")
        t, L = np.array(points, dtype=float).T
        (a, b), *_ = np.linalg.lstsq(np.stack([np.ones_like(t), t**-0.5], 1), L, rcond=None)
        fits[mu] = {"a": float(a), "b": float(b), "l2_at_2000": float(L[t == t.max()][0]),
                    "l2_at_8000": float(a + b / math.sqrt(STEPS["pretrain_R"])),
                    "check_l2": [[int(e["step"]), float(e["l2"])] for e in history if e["step"] <= MU_STOP]}
    distance = {mu: abs(f["l2_at_8000"] - MU_TARGET_L2) for mu, f in fits.items()}
    best = min(distance.values())
    chosen = min(mu for mu, dist in distance.items() if dist <= best + MU_TIE)
    return {"chosen": chosen, "fits": {str(mu): f for mu, f in fits.items()}, "rule": "results/PROTOCOL.md, μ"}


def choose_lr(accuracy: dict[tuple[float, int], float]) -> dict[str, Any]:
    """Best (lr, warm-up) by validation accuracy; within 0.1 pp of the best the smaller lr, then no warm-up."""
    if set(accuracy) != set(LR_GRID):
        raise ValueError(f"need the accuracy of every grid point {LR_GRID}, got {sorted(accuracy)}")
    best = max(accuracy.values())
    lr, warmup = min((k for k, v in accuracy.items() if v >= best - LR_TIE), key=lambda k: (k[0], k[1]))
    return {"lr": lr, "warmup": warmup, "accuracy": {f"{k[0]:g}/{k[1]}": v for k, v in accuracy.items()}}


def choose_best_C(accuracy: dict[float, float]) -> dict[str, Any]:
    """Best joint C of the sweep by mean validation accuracy (0 < C < 1); ties within 0.05 pp: the larger C."""
    eligible = {C: a for C, a in accuracy.items() if 0 < C < 1}
    if not eligible:
        raise ValueError("no joint C with 0 < C < 1 to choose from")
    best = max(eligible.values())
    C = max(C for C, a in eligible.items() if a >= best - BEST_C_TIE)
    return {"C": C, "accuracy": {f"{c:g}": a for c, a in sorted(accuracy.items())}}


def load_choices(results: Path = RESULTS) -> dict[str, Any]:
    path = results / "choices.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# ----------------------------------------------------------------------------- rows


def _c(C: float) -> str:
    return f"{C:g}"


PROTOCOL_ARGS = ("--validation", "stratified", "--protocol", str(PROTOCOL_FILE))


def pretrain_R_row(mu: float, seed: int) -> Row:
    """R_s: 8,000 steps on ℓ_X (eq. (4)) for the data model with attenuation scale μ."""
    return Row(f"r2_pretrain_R_mu{_c(mu)}_s{seed}", "mnist",
               ("--strategy", "pretrain_reconstruction", "--mu", _c(mu), *PROTOCOL_ARGS),
               seed=seed, steps=STEPS["pretrain_R"], eval_every=MU_EVAL_EVERY)


def mu_stage_rows() -> list[Row]:
    """Stage mu: the seed-0 pre-training of R for every candidate μ, run to ``MU_STOP`` with ``--stop-at``."""
    return [pretrain_R_row(mu, 0) for mu in MU_CANDIDATES]


def rows(choices: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """The rows that the choices made so far determine, and what the others still wait for."""
    if "mu" not in choices:
        return [], ["μ (stage mu: mu_stage_rows())"]
    mu = choices["mu"]["chosen"]
    common = ("--mu", _c(mu), *PROTOCOL_ARGS)
    out = []
    for s in SEEDS:
        out.append(pretrain_R_row(mu, s))
        out.append(Row(f"r2_pretrain_T_s{s}", "mnist", ("--strategy", "pretrain_task", *common), seed=s,
                       steps=STEPS["pretrain_T"], init_reconstruction=pretrain_R_row(mu, s).name))
    pre = {s: {"init_reconstruction": pretrain_R_row(mu, s).name, "init_task": f"r2_pretrain_T_s{s}"} for s in SEEDS}
    for lr, warmup in LR_GRID:
        tag = f"lr{lr:g}_w{warmup}"
        out.append(Row(f"r2_grid_sequential_{tag}", "mnist", ("--strategy", "sequential", "--lr", _c(lr), "--warmup",
                       str(warmup), *common), seed=0, steps=STEPS["grid"], **pre[0]))
        out.append(Row(f"r2_grid_joint_{tag}", "mnist", ("--strategy", "joint", "--C", _c(GRID_C), "--lr", _c(lr),
                       "--warmup", str(warmup), "--clip", "separate", *common), seed=0, steps=STEPS["grid"], **pre[0]))
    baselines = [Row("r2_fbp_classifier", "mnist", ("--strategy", "end_to_end", "--recon", "fbp", *common),
                     steps=STEPS["baseline"]),
                 Row("r2_sinogram_cnn", "mnist", ("--strategy", "end_to_end", "--recon", "none", *common),
                     steps=STEPS["baseline"])]
    out += baselines
    if "lr" not in choices:
        return out, ["fine-tuning lr and warm-up (stage grid)"]
    seq = ("--lr", _c(choices["lr"]["sequential"]["lr"]), "--warmup", str(choices["lr"]["sequential"]["warmup"]))
    both = ("--lr", _c(choices["lr"]["joint"]["lr"]), "--warmup", str(choices["lr"]["joint"]["warmup"]),
            "--clip", "separate")
    ft = STEPS["finetune"]
    for s in SEEDS:
        out.append(Row(f"r2_sequential_s{s}", "mnist", ("--strategy", "sequential", *seq, *common), seed=s, steps=ft,
                       **pre[s]))
        out.append(Row(f"r2_end_to_end_s{s}", "mnist", ("--strategy", "end_to_end", *both, *common), seed=s,
                       steps=ft, **pre[s]))
    for C in C_SWEEP:
        for s in (SEEDS if C == 0.5 else (0,)):
            out.append(Row(f"r2_joint_C{_c(C)}_s{s}", "mnist", ("--strategy", "joint", "--C", _c(C), *both, *common),
                           seed=s, steps=ft, **pre[s]))
    pending = ["best joint C (stage sweep)"]
    if "best_C" in choices:
        pending, best = [], choices["best_C"]["C"]
        for s in SEEDS[1:] if best != 0.5 else ():
            out.append(Row(f"r2_joint_C{_c(best)}_s{s}", "mnist", ("--strategy", "joint", "--C", _c(best), *both,
                           *common), seed=s, steps=ft, **pre[s]))
    # last: the balanced loss, the first thing the protocol cuts when the budget runs short
    for C in C_BALANCED:
        out.append(Row(f"r2_balanced_C{_c(C)}_s0", "mnist", ("--strategy", "joint", "--C", _c(C), "--balanced",
                       *both, *common), seed=0, steps=ft, **pre[0]))
    return out, pending


# ----------------------------------------------------------------------------- evaluation


def _mu_of(summary: dict[str, Any]) -> float:
    """The μ a run used: recorded since round 2; a file without it is round 1's (``ROUND1_MU``)."""
    mu = summary["config"].get("mu")
    return ROUND1_MU if mu is None else mu


def evaluate_draws(model, M, images: torch.Tensor, labels: torch.Tensor, seeds: list[int],
                   true_images: bool = False) -> tuple[list[dict[str, float]], np.ndarray]:
    """Metrics of T ∘ R on each noise draw (one per seed), and the predicted classes [draws, N] (uint8)."""
    per_draw, predictions = [], []
    for seed in seeds:
        batches = experiments._fixed_batches(images, labels, M, experiments.EVAL_BATCH["mnist"], seed, "cpu")
        decisions: list[torch.Tensor] = []
        metrics = training.evaluate(model, batches, "classification", true_images=true_images, predictions=decisions)
        predictions.append(torch.cat(decisions).to(torch.uint8).numpy())
        per_draw.append({"seed": seed, **metrics})
    return per_draw, np.stack(predictions)


def evaluation_plan(name: str, choices: dict[str, Any]) -> dict[str, list[int]]:
    """Which noise draws a finished row is evaluated on (results/PROTOCOL.md, *Evaluation*).

    Grid rows: validation draw 0.  Table 1 rows: test draws 0–4.  Joint and balanced
    rows: validation draws 0–2 (the choice of the best C) and, unless they are Table 1
    rows, test draw 0.  R's pre-training: none (T_s ∘ R_s is the pre-training row).
    """
    if name.startswith("r2_grid_"):
        return {"val": [0]}
    if name.startswith("r2_pretrain_R_"):
        return {}
    table_C = {0.5, 0.01, 0.999} | ({choices["best_C"]["C"]} if "best_C" in choices else set())
    table = (name.startswith(("r2_pretrain_T_", "r2_sequential_", "r2_end_to_end_", "r2_fbp_", "r2_sinogram_"))
             or any(name.startswith(f"r2_joint_C{_c(C)}_") for C in table_C))
    plan = {"test": list(range(TEST_DRAWS if table else 1))}
    if name.startswith(("r2_joint_", "r2_balanced_")):
        plan["val"] = list(range(VAL_DRAWS))
    return plan


def load_run(run: Path) -> tuple[Any, physics.DataModel, dict[str, Any]]:
    """T ∘ R of a finished run directory (R from the run, or from the run it started from), its M and summary."""
    summary = json.loads((run / "metrics.json").read_text())
    config = summary["config"]
    if summary["experiment"] == "mnist":
        model, M = experiments.build_model("mnist", config["recon"], config["fast"], _mu_of(summary),
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


def evaluate_row(name: str, runs: Path, results: Path, choices: dict[str, Any]) -> dict[str, Any]:
    """Evaluate a finished row on its draws; write ``results/<row>.json`` and ``predictions/<row>.npz``."""
    start = time.perf_counter()
    model, M, summary = load_run(runs / name)
    plan = evaluation_plan(name, choices)
    train_images, train_labels = data.load_mnist("train")
    _, val = data.mnist_validation_split(train_labels)
    n = 500 if summary["config"]["fast"] else None  # smoke-size runs: a smoke-size evaluation
    sets = {"val": (train_images[val][:n], train_labels[val][:n]), "test": tuple(t[:n] for t in data.load_mnist("test"))}
    true_images = summary["strategy"] == "pretrain_task"
    evaluation, arrays = {}, {}
    for part, draws in plan.items():
        images, labels = sets[part]
        per_draw, predictions = evaluate_draws(model, M, images, labels, [draw_seed(part, d) for d in draws])
        evaluation[part] = per_draw
        arrays[part] = predictions
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


# ----------------------------------------------------------------------------- the stages


def _val_accuracy(results: Path, name: str, draws: int) -> float | None:
    path = results / f"{name}.json"
    if not path.is_file():
        return None
    val = json.loads(path.read_text()).get("evaluation", {}).get("val", [])
    return float(np.mean([d["accuracy"] for d in val[:draws]])) if len(val) >= draws else None


def decide(choices: dict[str, Any], runs: Path, results: Path) -> dict[str, Any]:
    """Make every choice of the protocol whose validation evidence is complete; return the new choices."""
    choices = dict(choices)
    if "mu" not in choices:
        histories, seconds = {}, 0.0
        for row in mu_stage_rows():
            files = [runs / row.name / f for f in ("partial.json", "metrics.json")]
            found = next((f for f in files if f.is_file()), None)
            if found is None:
                return choices
            stage = json.loads(found.read_text())
            histories[float(row.args[row.args.index("--mu") + 1])] = stage["validation"]
            seconds += stage["wall_time_s"]
        choices["mu"] = choose_mu(histories) | {"wall_time_s": round(seconds, 2)}
    if "lr" not in choices:
        lr = {}
        for strategy in ("sequential", "joint"):
            accuracy = {k: _val_accuracy(results, f"r2_grid_{strategy}_lr{k[0]:g}_w{k[1]}", 1) for k in LR_GRID}
            if None in accuracy.values():
                return choices
            lr[strategy] = choose_lr(accuracy)
        choices["lr"] = lr
    if "best_C" not in choices:
        accuracy = {C: _val_accuracy(results, f"r2_joint_C{_c(C)}_s0", VAL_DRAWS) for C in C_SWEEP if 0 < C < 1}
        if None in accuracy.values():
            return choices
        choices["best_C"] = choose_best_C(accuracy)
    return choices


PARTS = ("mnist", "segmentation")


def run(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = (),
        parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Run the protocol's stages of ``parts`` as far as they go (resumable); return the choices made."""
    if not set(parts) <= set(PARTS):
        raise ValueError(f"parts must be among {PARTS}, got {parts}")
    results.mkdir(parents=True, exist_ok=True)
    choices = load_choices(results)
    for row in mu_stage_rows() if "mnist" in parts else []:
        done = [(runs / row.name / f).is_file() for f in ("metrics.json", "partial.json")]
        if "mu" not in choices and not any(done):
            run_experiment(row.argv(runs, fast, (*extra, "--stop-at", str(MU_STOP))))
    while True:
        new = decide_seg(decide(choices, runs, results), runs, results)
        if new != choices:
            choices = new
            write_json(results / "choices.json", choices)
        listed = (rows(choices)[0] if "mnist" in parts else []) + (seg_rows(choices)[0] if "segmentation" in parts else [])
        todo = [r for r in listed if not (results / f"{r.name}.json").is_file()]
        if not todo:
            return choices
        row = todo[0]  # the rows are listed after the rows they start from
        if not (runs / row.name / "metrics.json").is_file():
            run_experiment(row.argv(runs, fast, extra))
        if row.experiment == "mnist":
            evaluate_row(row.name, runs, results, choices)
        else:
            evaluate_seg_row(row.name, runs, results)


# ----------------------------------------------------------------------------- segmentation (section 5.2)


def choose_seg_steps(curves: list[list[dict[str, float]]]) -> dict[str, Any]:
    """Steps N of every other segmentation row, from the first runs' validation Dice curves.

    For each curve: the 3-point running mean m_k of the Dice at evaluation k; the plateau
    step is the first evaluation after which m never rises more than ``SEG_PLATEAU`` above
    m_k.  N is the larger plateau of the curves, capped at ``SEG_MAX_STEPS`` (the budget).
    """
    plateaus = []
    for curve in curves:
        steps = [e["step"] for e in curve]
        dice = np.array([e["dice"] for e in curve], dtype=float)
        if len(dice) < 4:
            raise ValueError(f"need ≥ 4 validation evaluations per curve, got {len(dice)}")
        mean = np.convolve(dice, np.ones(3) / 3, mode="valid")  # m_k for k = 2, 3, ...
        k = next(k for k in range(len(mean)) if (mean[k + 1 :] - mean[k] <= SEG_PLATEAU).all())
        plateaus.append(steps[k + 2])
    return {"steps": min(max(plateaus), SEG_MAX_STEPS), "plateaus": plateaus, "cap": SEG_MAX_STEPS}


def seg_rows(choices: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """The segmentation rows of the protocol that the choices made so far determine."""
    common = ("--unet-norm", "group", "--protocol", str(PROTOCOL_FILE))
    both = ("--clip", "separate")
    first = {"steps": SEG_FIRST_STEPS, "eval_every": SEG_EVAL_EVERY}
    out = [Row("r2_seg_pretrain_R_s0", "segmentation", ("--strategy", "pretrain_reconstruction", *common), **first),
           Row("r2_seg_sequential_s0", "segmentation", ("--strategy", "sequential", *common),
               init_reconstruction="r2_seg_pretrain_R_s0", **first),
           Row("r2_seg_joint_C0.5_s0", "segmentation", ("--strategy", "joint", "--C", "0.5", *both, *common), **first)]
    if "seg_steps" not in choices:
        return out, ["segmentation steps N (first runs)"]
    n = {"steps": choices["seg_steps"]["steps"], "eval_every": SEG_EVAL_EVERY}
    out.append(Row("r2_seg_pretrain_T_s0", "segmentation", ("--strategy", "pretrain_task", *common),
                   init_reconstruction="r2_seg_pretrain_R_s0", **n))
    for C in SEG_C:
        if C != 0.5:
            out.append(Row(f"r2_seg_joint_C{_c(C)}_s0", "segmentation", ("--strategy", "joint", "--C", _c(C), *both,
                           *common), **n))
    for s in SEEDS:
        if s:
            out.append(Row(f"r2_seg_pretrain_R_s{s}", "segmentation", ("--strategy", "pretrain_reconstruction",
                           *common), seed=s, **n))
            out.append(Row(f"r2_seg_sequential_s{s}", "segmentation", ("--strategy", "sequential", *common), seed=s,
                           init_reconstruction=f"r2_seg_pretrain_R_s{s}", **n))
        out.append(Row(f"r2_seg_fbp_unet_s{s}", "segmentation", ("--strategy", "end_to_end", "--recon", "fbp",
                       *common), seed=s, **n))
    if "seg_best_C" not in choices:
        return out, ["best segmentation C (joint rows, seed 0)"]
    best = choices["seg_best_C"]["C"]
    for s in SEEDS[1:]:
        out.append(Row(f"r2_seg_joint_C{_c(best)}_s{s}", "segmentation", ("--strategy", "joint", "--C", _c(best),
                       *both, *common), seed=s, **n))
    return out, []


@torch.no_grad()
def evaluate_seg_row(name: str, runs: Path, results: Path) -> dict[str, Any]:
    """Per-slice test Dice, IoU and PSNR of a finished segmentation row (one noise draw, shared by all rows)."""
    from tarlib import metrics

    start = time.perf_counter()
    model, M, summary = load_run(runs / name)
    test = data.load_brain("test")
    per_slice: dict[str, list[float]] = {"dice": [], "iou": [], "psnr": []}
    batch = experiments.EVAL_BATCH["segmentation"]
    for x, y, z in experiments._fixed_batches(test.images, test.masks, M, batch, draw_seed("test", 0), "cpu"):
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


def decide_seg(choices: dict[str, Any], runs: Path, results: Path) -> dict[str, Any]:
    """The segmentation choices whose validation evidence is complete (steps N, then the best C)."""
    choices = dict(choices)
    if "seg_steps" not in choices:
        files = [results / f"r2_seg_{r}_s0.json" for r in ("sequential", "joint_C0.5")]
        if not all(f.is_file() for f in files):
            return choices
        choices["seg_steps"] = choose_seg_steps([json.loads(f.read_text())["validation"] for f in files])
    if "seg_best_C" not in choices:
        final = {}
        for C in SEG_C:
            path = results / f"r2_seg_joint_C{_c(C)}_s0.json"
            if not path.is_file():
                return choices
            final[C] = json.loads(path.read_text())["validation"][-1]["dice"]
        eligible = {C: d for C, d in final.items() if 0 < C < 1}
        choices["seg_best_C"] = {"C": max(eligible, key=lambda C: (eligible[C], C)),
                                 "validation_dice": {_c(C): d for C, d in final.items()}}
    return choices


# ----------------------------------------------------------------------------- tables, statistics, targets


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _draw_mean(summary: dict[str, Any], part: str, metric: str) -> float | None:
    draws = summary.get("evaluation", {}).get(part, [])
    values = [d[metric] for d in draws if metric in d]
    return float(np.mean(values)) if values else None


def _cell(values: list[float], digits: int, scale: float = 1.0) -> str:
    values = [scale * v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _seeded(prefix: str) -> list[str]:
    return [f"{prefix}_s{s}" for s in SEEDS]


def table_rows(choices: dict[str, Any]) -> list[tuple[str, list[str], str, str | float | None]]:
    """Table 1 of round 2: (label, row names over seeds, evaluation part, key of the paper's numbers in
    :data:`tarlib.reproduce.PAPER_TABLE1`, None where the paper has no such row)."""
    best = choices.get("best_C", {}).get("C")
    out = [("classifier on true images (eq. (5))", ["r2_pretrain_T_s0"], "test_true_images", "true"),
           ("pre-training: T ∘ R, separately trained", _seeded("r2_pretrain_T"), "test", "pre-training"),
           ("sequential (eq. (13))", _seeded("r2_sequential"), "test", "sequential"),
           ("end-to-end (eq. (16))", _seeded("r2_end_to_end"), "test", "end-to-end")]
    if best is not None:
        out.append((f"joint, best C = {_c(best)} (chosen on validation)", _seeded(f"r2_joint_C{_c(best)}"), "test",
                    best if best in PAPER_TABLE1 else None))
    out += [("joint, C = 0.5 (eq. (20))", _seeded("r2_joint_C0.5"), "test", 0.5),
            ("joint, C = 0.01", ["r2_joint_C0.01_s0"], "test", 0.01),
            ("joint, C = 0.999", ["r2_joint_C0.999_s0"], "test", 0.999),
            ("FBP + classifier", ["r2_fbp_classifier"], "test", None),
            ("CNN on the sinogram", ["r2_sinogram_cnn"], "test", None)]
    return out


def _table_runs(results: Path, names: list[str], part: str) -> list[dict[str, Any]]:
    """The finished runs among ``names`` that were evaluated on ``part``."""
    return [r for r in (_load(results, n) for n in names) if r is not None and part in r.get("evaluation", {})]


def mnist_table(results: Path, choices: dict[str, Any]) -> str:
    """Table 1 of round 2 as Markdown: accuracy, L2 and cross-entropy, mean over draws, mean ± std over seeds.

    The last column is the largest range (max − min) of one model's accuracy over the test draws:
    how far a single noise draw can move the number that a one-draw evaluation would report.
    """
    lines = ["| method | accuracy (%) | L2 loss | cross-entropy | seeds | test draws | largest draw range (pp) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, names, part, _ in table_rows(choices):
        runs = _table_runs(results, names, part)
        draws = sorted({len(r["evaluation"][part]) for r in runs})
        ranges = [100 * (max(a) - min(a)) for r in runs if len(a := [d["accuracy"] for d in r["evaluation"][part]]) > 1]
        cells = [_cell([_draw_mean(r, part, "accuracy") for r in runs], 2, 100.0),
                 _cell([_draw_mean(r, part, "l2") for r in runs], 2),
                 _cell([_draw_mean(r, part, "cross_entropy") for r in runs], 3)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(runs)} | {', '.join(map(str, draws)) or '—'} | "
                     + (f"{max(ranges):.2f}" if ranges else "—") + " |")
    return "\n".join(lines) + "\n"


def comparison_table(results: Path, choices: dict[str, Any]) -> str:
    """Table 1 of round 2 next to the paper's, for the rows the paper reports (test metrics: the
    mean over the shared draws, then mean ± std over seeds)."""
    from tarlib.reproduce import paper_comparison

    rows = []
    for label, names, part, key in table_rows(choices):
        runs = _table_runs(results, names, part)
        if key is not None:
            rows.append((label, PAPER_TABLE1[key], [{m: v for m in ("accuracy", "l2", "cross_entropy")
                                                     if (v := _draw_mean(r, part, m)) is not None} for r in runs]))
    return paper_comparison(rows) or "No Table 1 row has finished yet.\n"


def sweep_points(results: Path, prefix: str, values: tuple[float, ...]) -> list[dict[str, Any]]:
    """Per C of a sweep (seed 0): validation accuracy (3 draws), test accuracy and L2 (draw 0), task share."""
    points = []
    for C in values:
        run = _load(results, f"{prefix}{_c(C)}_s0")
        if run is None:
            continue
        test = run["evaluation"]["test"][0]
        points.append({"C": C, "val_accuracy": _draw_mean(run, "val", "accuracy"), "test_accuracy": test["accuracy"],
                       "l2": test["l2"], "task_share": (run.get("gradient_balance") or {}).get("task_share"),
                       "s_per_step": run["wall_time_s"] / run["config"]["steps"]})
    return points


def sweep_table(points: list[dict[str, Any]], what: str) -> str:
    """A sweep as Markdown, one row per C; the training time per step shows the balanced loss's overhead."""
    lines = [f"| {what} | validation accuracy (%, 3 draws) | test accuracy (%, 1 draw) | test L2 "
             "| task's share of R's gradient | s / step |", "|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        val = "—" if p["val_accuracy"] is None else f"{100 * p['val_accuracy']:.2f}"
        lines.append(f"| {_c(p['C'])} | {val} | {100 * p['test_accuracy']:.2f} | {p['l2']:.2f} | {_share(p['task_share'])} "
                     f"| {p['s_per_step']:.3f} |")
    return "\n".join(lines) + "\n"


def balanced_overhead(results: Path) -> str:
    """The balanced loss's time cost: median s / step of its rows against the plain sweep's (medians, so
    that one row slowed by other work on the machine does not decide it); '' until both have run."""
    plain = [p["s_per_step"] for p in sweep_points(results, "r2_joint_C", C_SWEEP) if p["C"] < 1]
    balanced = [p["s_per_step"] for p in sweep_points(results, "r2_balanced_C", C_BALANCED)]
    if not plain or not balanced:
        return ""
    a, b = float(np.median(balanced)), float(np.median(plain))
    return (f"\nTime per step, median over rows: {a:.3f} s with the balanced loss, {b:.3f} s with eq. (18) "
            f"({len(balanced)} and {len(plain)} rows): {100 * (a / b - 1):+.0f} %.\n")


def _correct(results: Path, name: str, labels: np.ndarray) -> np.ndarray | None:
    """Per-image correctness [draws, N] of a row on the shared test draws, or None."""
    path = results / "predictions" / f"{name}.npz"
    if not path.is_file():
        return None
    predictions = np.load(path)["test"]
    return predictions == labels[None, : predictions.shape[1]]  # smoke-size runs evaluate the first images only


def comparison(results: Path, choices: dict[str, Any], a: str, b: str = "r2_sequential") -> dict[str, Any] | None:
    """Paired statistics of row family ``a`` (e.g. the best joint C) against ``b`` over the seeds (target 1)."""
    labels = data.load_mnist("test").labels.numpy()
    pairs = [(_correct(results, f"{a}_s{s}", labels), _correct(results, f"{b}_s{s}", labels)) for s in SEEDS]
    if any(v is None for pair in pairs for v in pair):
        return None
    per_seed = [{"seed": s, "difference_pp": 100 * float(x.mean() - y.mean()),
                 "mcnemar_draw0": stats.mcnemar_exact(x[0], y[0])} for s, (x, y) in zip(SEEDS, pairs)]
    diff = np.mean([x.mean(0) - y.mean(0) for x, y in pairs], axis=0)  # per image: seed-mean of draw-mean
    return {"a": a, "b": b, "per_seed": per_seed, "bootstrap": stats.paired_bootstrap(diff)}


def paired_table(results: Path, choices: dict[str, Any]) -> str:
    """The protocol's paired test of target 1 for every three-seed row against sequential.

    Only the best C's line is pre-registered (target 1); end-to-end and C = 0.5 get the same
    statistics as a description of how far apart the strategies are.
    """
    best = choices.get("best_C", {}).get("C")
    families = [("end-to-end", "r2_end_to_end", False), ("joint, C = 0.5", "r2_joint_C0.5", best == 0.5)]
    if best is not None and best != 0.5:
        families.append((f"joint, best C = {_c(best)}", f"r2_joint_C{_c(best)}", True))
    lines = ["| against sequential | difference (pp) | 95 % bootstrap interval (pp) | per seed (pp) "
             "| McNemar p, seed 0, draw 0 | pre-registered (target 1) |", "|---|---:|---:|---|---:|---|"]
    for label, family, registered in families:
        stat = comparison(results, choices, family)
        if stat is None:
            lines.append(f"| {label} | — | — | — | — | {'yes' if registered else 'no'} |")
            continue
        b = stat["bootstrap"]
        seeds = ", ".join(f"{p['difference_pp']:+.2f}" for p in stat["per_seed"])
        lines.append(f"| {label} | {100 * b['mean']:+.2f} | [{100 * b['low']:+.2f}, {100 * b['high']:+.2f}] | {seeds} "
                     f"| {stat['per_seed'][0]['mcnemar_draw0']['p_value']:.2f} | {'yes' if registered else 'no'} |")
    return "\n".join(lines) + "\n"


def _unrecorded(results: Path) -> dict[str, dict[str, Any]]:
    """Time of sittings that a row's JSON does not contain, by row: ``{"seconds", "reason"}`` (budget only)."""
    path = results / "unrecorded_time.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _complete(results: Path, choices: dict[str, Any], part: str) -> bool:
    """Whether every row of ``part`` ("mnist" or "seg") is determined and has its JSON file."""
    listed, pending = rows(choices) if part == "mnist" else seg_rows(choices)
    return not pending and all((results / f"{r.name}.json").is_file() for r in listed)


def targets(results: Path, choices: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The protocol's targets: (target, measured, verdict — None while the runs are missing)."""
    out: list[tuple[str, str, bool | None]] = []
    best = choices.get("best_C", {}).get("C")
    stat = comparison(results, choices, f"r2_joint_C{_c(best)}") if best is not None else None
    if stat is None:
        out.append(("1. best joint C beats sequential (bootstrap CI excludes 0, every seed positive)", "—", None))
    else:
        b = stat["bootstrap"]
        diffs = [p["difference_pp"] for p in stat["per_seed"]]
        met = b["low"] > 0 and all(d > 0 for d in diffs)
        out.append(("1. best joint C beats sequential (bootstrap CI excludes 0, every seed positive)",
                    f"{100 * b['mean']:+.2f} pp, 95 % CI [{100 * b['low']:+.2f}, {100 * b['high']:+.2f}]; per seed "
                    + ", ".join(f"{d:+.2f}" for d in diffs), met))
    runs = [_load(results, n) for n in (_seeded(f"r2_joint_C{_c(best)}") if best is not None else [])]
    if runs and all(r is not None for r in runs):
        acc = float(np.mean([_draw_mean(r, "test", "accuracy") for r in runs]))
        out.append(("2. best joint C ≥ 97.0 % (paper 97.00 %), 3 seeds × 5 draws", f"{100 * acc:.2f} %", acc >= 0.97))
    else:
        out.append(("2. best joint C ≥ 97.0 % (paper 97.00 %), 3 seeds × 5 draws", "—", None))
    seg_best = choices.get("seg_best_C", {}).get("C")
    seg = [(_load(results, f"r2_seg_joint_C{_c(seg_best)}_s{s}") if seg_best is not None else None,
            _load(results, f"r2_seg_sequential_s{s}")) for s in SEEDS]
    if all(j is not None and q is not None for j, q in seg):
        diffs = np.array([j["evaluation"]["test"]["dice"] - q["evaluation"]["test"]["dice"] for j, q in seg])
        t = stats.one_sided_t(diffs)
        out.append(("3. segmentation: best joint C beats sequential in Dice (one-sided t, 2 df)",
                    f"{t['mean']:+.4f} Dice, t = {t['t']:.2f} (critical {t['critical']:.2f}); per seed "
                    + ", ".join(f"{d:+.4f}" for d in diffs), bool(t["significant"])))
    else:
        out.append(("3. segmentation: best joint C beats sequential in Dice (one-sided t, 2 df)", "—", None))
    for part, budget in (("mnist", 10.0), ("seg", 5.0)):
        names = [p.stem for p in results.glob("r2_*.json") if p.stem.startswith("r2_seg_") == (part == "seg")]
        seconds = sum(sum(json.loads((results / f"{n}.json").read_text()).get(k, 0)
                          for k in ("wall_time_s", "evaluation_time_s")) for n in names)
        # the μ stage's runs count too, and sittings whose time a run did not record (unrecorded_time.json)
        seconds += choices.get("mu", {}).get("wall_time_s", 0) if part == "mnist" else 0
        seconds += sum(v["seconds"] for k, v in _unrecorded(results).items() if k.startswith("r2_seg_") == (part == "seg"))
        hours = seconds / 3600
        complete = _complete(results, choices, part)
        out.append((f"4. {part}: ≤ {budget:g} CPU-hours on 2 cores", f"{hours:.2f} h in {len(names)} runs",
                    hours <= budget if complete else None))
    return out


def targets_markdown(rows: list[tuple[str, str, bool | None]]) -> str:
    verdict = {None: "not run yet", True: "met", False: "**missed**"}
    return "\n".join(["| target | measured | verdict |", "|---|---|---|",
                      *(f"| {t} | {m} | {verdict[v]} |" for t, m, v in rows)]) + "\n"


def plot_sweep(results: Path, path: Path) -> bool:
    """Accuracy and L2 against C on a log axis (eq. (18) and the balanced loss), and accuracy against the
    measured task share of R's gradient, on which the two sweeps can be compared; False if no point exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = sweep_points(results, "r2_joint_C", C_SWEEP)
    balanced = sweep_points(results, "r2_balanced_C", C_BALANCED)
    if not plain:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for points, name, style in ((plain, "eq. (18)", "o"), (balanced, "balanced", "s")):
        shown = [p for p in points if p["C"] < 1 and None not in (p["task_share"], p["val_accuracy"])]
        axes[2].plot([p["task_share"] for p in shown], [p["val_accuracy"] for p in shown], style, label=name)
    axes[2].set(xlabel="task's share of R's gradient at the end of training", ylabel="validation accuracy (3 draws)",
                title="the same runs against the share ℓ_D really had")
    axes[2].title.set_fontsize(9)
    axes[2].grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    for ax, key, label in ((axes[0], "val_accuracy", "validation accuracy (3 draws)"), (axes[1], "l2", "test L2 loss")):
        for points, name, style in ((plain, "eq. (18)", "o-"), (balanced, "balanced: C = ℓ_X's share", "s--")):
            joined = [p for p in points if p["C"] < 1 and p[key] is not None]
            if joined:
                ax.plot([p["C"] for p in joined], [p[key] for p in joined], style, label=name)
        ends = [p for p in plain if p["C"] == 1 and p[key] is not None]
        if ends:  # C = 1 leaves T untrained: a separate marker, not part of the curve
            ax.plot([1.0], [ends[0][key]], "kx", markersize=9, label="C = 1 (T untrained)")
        ax.set(xscale="log", xlabel="C", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Joint training on MNIST, round 2 (results/PROTOCOL.md), seed 0. "
                 "Regenerate: python -m tarlib.reproduce --round 2 --tables-only", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def seg_table_rows(choices: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The segmentation table of round 2: (label, row names over seeds)."""
    best = choices.get("seg_best_C", {}).get("C")
    out = [("U-Net on true images ∘ R_0 (pre-training)", ["r2_seg_pretrain_T_s0"]),
           ("sequential (eq. (13))", _seeded("r2_seg_sequential")),
           ("FBP + U-Net", _seeded("r2_seg_fbp_unet"))]
    if best is not None:
        out.append((f"joint, best C = {_c(best)} (chosen on validation)", _seeded(f"r2_seg_joint_C{_c(best)}")))
    out += [(("end-to-end, C = 0" if C == 0 else f"joint, C = {_c(C)}"), [f"r2_seg_joint_C{_c(C)}_s0"])
            for C in SEG_C if C != best]
    return out


def _share(share: float | None) -> str:
    """The task's measured share of R's gradient as a percentage, or "—" where none was measured."""
    return "—" if share is None else f"{100 * share:.1f} %"


def _slices(summary: dict[str, Any], metric: str) -> np.ndarray:
    return np.asarray(summary["evaluation"]["test_per_slice"][metric], dtype=float)


def seg_table(results: Path, choices: dict[str, Any]) -> str:
    """Segmentation rows as Markdown: test Dice, IoU, PSNR (mean ± std over seeds), the paired per-slice
    Dice difference to sequential (same seed, mean over the 13 test slices and the seeds), seed 0's validation
    Dice at its last step (what chooses the best C) and task's share of R's gradient, and which row is best."""
    lines = ["| method | Dice | IoU | PSNR (dB) | Δ Dice vs sequential, paired per slice | seeds | steps "
             "| validation Dice, seed 0 | task's share of R's gradient, seed 0 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    means, rows, chosen = {}, seg_table_rows(choices), "seg_best_C" in choices
    complete = chosen
    for label, names in rows:
        runs = {n: r for n in names if (r := _load(results, n)) is not None}
        complete = complete and len(runs) == len(names)
        if not runs:
            lines.append(f"| {label} | — | — | — | — | 0 | — | — | — |")
            continue
        cells = [_cell([r["evaluation"]["test"].get(m) for r in runs.values()], d) for m, d in
                 (("dice", 3), ("iou", 3), ("psnr", 2))]
        diffs = [_slices(r, "dice") - _slices(seq, "dice") for n, r in runs.items()
                 if (seq := _load(results, f"r2_seg_sequential_s{n.rsplit('_s', 1)[1]}")) is not None]
        delta = "—" if not diffs or "sequential" in label else f"{np.mean(diffs):+.4f} ({len(diffs)} seed{'s' if len(diffs) > 1 else ''} × 13 slices)"
        steps = sorted({r["config"]["steps"] for r in runs.values()})
        first = runs.get(names[0])
        seed0 = ["—", "—"] if first is None else [f"{first['validation'][-1]['dice']:.3f}",
                                                  _share((first.get("gradient_balance") or {}).get("task_share"))]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {delta} | {len(runs)} | {', '.join(map(str, steps))} | "
                     + " | ".join(seed0) + " |")
        means[label] = float(np.mean([r["evaluation"]["test"]["dice"] for r in runs.values()]))
    text = "\n".join(lines) + "\n"
    if means:
        best = max(means, key=means.get)
        so_far = ""
        if not complete:  # a partial table must not read as the verdict of the round
            pending = "" if chosen else "; the best C is not chosen yet"
            so_far = f" so far ({len(means)} of {len(rows)} rows have results{pending})"
        text += f"\nHighest mean test Dice{so_far}: **{best}** ({means[best]:.3f}).\n"
    return text


def plot_seg_curves(results: Path, path: Path) -> bool:
    """Validation Dice against training step of the segmentation runs (the steps rule reads the first two)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {n: r["validation"] for n in ["r2_seg_sequential_s0", *(f"r2_seg_joint_C{_c(C)}_s0" for C in SEG_C)]
              if (r := _load(results, n)) is not None and r.get("validation")}
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.plot([e["step"] for e in curve], [e["dice"] for e in curve], ".-", label=name.removeprefix("r2_seg_"))
    if "seg_steps" in load_choices(results):
        ax.axvline(load_choices(results)["seg_steps"]["steps"], color="k", ls=":", label="N (steps of later rows)")
    ax.set(xlabel="training step", ylabel="validation Dice (13 slices)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle("Segmentation, round 2, seed 0. Regenerate: python -m tarlib.reproduce --round 2 --tables-only",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------- publishing (weights/ and figures)


SEG_OUTPUT_ROWS = ("r2_seg_sequential_s0", "r2_seg_fbp_unet_s0", *(f"r2_seg_joint_C{_c(C)}_s0" for C in SEG_C))
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
    pre_R = pretrain_R_row(choices["mu"]["chosen"], 0).name

    def both(row: str) -> dict[str, str]:
        return {"R": row, "T": row}

    return {
        "mnist_pretrain_T": {"R": pre_R, "T": "r2_pretrain_T_s0"},
        "mnist_sequential": {"R": pre_R, "T": "r2_sequential_s0"},
        "mnist_end_to_end": both("r2_end_to_end_s0"),
        **{f"mnist_joint_C{_c(C)}": both(f"r2_joint_C{_c(C)}_s0") for C in (0.01, 0.5, 0.999)},
        "mnist_joint_best": both(f"r2_joint_C{_c(choices['best_C']['C'])}_s0"),
        "mnist_fbp_classifier": {"T": "r2_fbp_classifier"},
        "mnist_sinogram_cnn": {"T": "r2_sinogram_cnn"},
        "seg_sequential": {"R": "r2_seg_pretrain_R_s0", "T": "r2_seg_sequential_s0"},
        "seg_joint_C0.5": both("r2_seg_joint_C0.5_s0"),
        "seg_pretrain_T": {"R": "r2_seg_pretrain_R_s0", "T": "r2_seg_pretrain_T_s0"},
    }


def publish(runs: Path, results: Path = RESULTS, weights: Path | None = None, n_check: int = 1000) -> list[Path]:
    """Publish round 2 for the course: ``weights/`` (:func:`published`, the U-Nets in float16),
    ``results/seg_outputs.npz`` (every segmentation row of :data:`SEG_OUTPUT_ROWS`, under its course name), and the panels
    ``figure2.png`` (digits, reconstructions, class probabilities) and ``figure3.png``.  Each MNIST
    model's ``check`` in the manifest is its accuracy on the first ``n_check`` test images."""
    from tarlib import analysis, pretrained

    choices = load_choices(results)
    by_name = {r.name: r for r in [*rows(choices)[0], *seg_rows(choices)[0]]}
    models = {}
    for name, parts in published(choices).items():
        summary = _load(results, parts["T"])
        if summary is None or summary["config"].get("fast"):
            raise ValueError(f"{name}: {results / parts['T']}.json is missing or from a --fast run: "
                             "only finished full runs are published")
        config = summary["config"]
        models[name] = {
            "round": 2, "experiment": summary["experiment"], "recon": config["recon"], "strategy": summary["strategy"],
            "C": summary["C"], "seed": summary["seed"], "balanced": config.get("balanced", False),
            **({"mu": _mu_of(summary)} if summary["experiment"] == "mnist" else {"norm": config["unet_norm"]}),
            "commands": [f"python -m tarlib.experiments {' '.join(by_name[r].argv(Path('runs')))}"
                         for r in sorted(set(parts.values()))],
            "reproduce": "python -m tarlib.reproduce --round 2 --runs RUNS, then --round 2 --export-weights",
            "metrics": summary["metrics"]["test"], "files": parts,
        }
    written = [pretrained.export(models, runs, weights, n_check, half=FLOAT16)]
    # (T ∘ R, M, the run's summary) by course name (seg_sequential, seg_joint_C0.5, ...), as in round 1
    loaded = {analysis.course_name(row)[0]: load_run(runs / row) for row in SEG_OUTPUT_ROWS}
    written.append(analysis.write_seg_outputs({row: run[0] for row, run in loaded.items()},
                                              {row: run[2]["C"] for row, run in loaded.items()},
                                              results.parent / "seg_outputs.npz"))
    written += [plot_figure2(weights, results / "figure2.png"),
                plot_figure3(results.parent / "seg_outputs.npz", results / "figure3.png")]
    return written


def plot_figure2(weights: Path | None, path: Path, n: int = 4, pool: int = 500) -> Path:
    """The paper's Figure 2 for the published models :data:`FIGURE2_MODELS`: the first test digit and
    the ``n - 1`` of the first ``pool`` on which the sequential model is least confident."""
    from tarlib import analysis, pretrained

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
    return _save(fig, path)


def plot_figure3(outputs: Path, path: Path, index: int = 3) -> Path:
    """The paper's Figure 3 for slice ``index`` of ``seg_outputs.npz``: every row, its own grey window."""
    from tarlib import analysis

    fig = analysis.plot_seg_panel(analysis.read_seg_outputs(outputs), index)
    fig.suptitle("Round 2, seed 0. Regenerate: python -m tarlib.reproduce --round 2 --export-weights",
                 fontsize=8, y=1.04)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def mu_table(choices: dict[str, Any]) -> str:
    """The μ stage: each candidate's check-set L2 after 2,000 steps, its extrapolation to 8,000, the choice."""
    if "mu" not in choices:
        return "The μ stage has not finished.\n"
    lines = ["| μ | check-set L2 at 2,000 steps | fit a + b/√t: a, b | extrapolated L2 at 8,000 | distance to the paper's 9.0 |",
             "|---:|---:|---:|---:|---:|"]
    for mu, fit in choices["mu"]["fits"].items():
        chosen = " (chosen)" if float(mu) == choices["mu"]["chosen"] else ""
        lines.append(f"| {mu}{chosen} | {fit['l2_at_2000']:.2f} | {fit['a']:.2f}, {fit['b']:.1f} | "
                     f"{fit['l2_at_8000']:.2f} | {abs(fit['l2_at_8000'] - MU_TARGET_L2):.2f} |")
    return "\n".join(lines) + "\n"


def lr_table(choices: dict[str, Any]) -> str:
    """The grid stage: validation accuracy (full set, draw 0) of each learning rate and warm-up, and the choice."""
    if "lr" not in choices:
        return "The learning-rate grid has not finished.\n"
    lines = ["| fine-tuning of | learning rate | warm-up steps | validation accuracy (%) |", "|---|---:|---:|---:|"]
    for part, label in (("sequential", "T only (sequential)"), ("joint", "R and T (joint, C = 0.1)")):
        chosen = choices["lr"][part]
        for key, accuracy in choices["lr"][part]["accuracy"].items():
            lr, warmup = key.split("/")
            mark = " (chosen)" if (float(lr), int(warmup)) == (chosen["lr"], chosen["warmup"]) else ""
            lines.append(f"| {label} | {lr}{mark} | {warmup} | {100 * accuracy:.2f} |")
    return "\n".join(lines) + "\n"


def tables(results: Path = RESULTS) -> dict[str, str]:
    """Round 2's Markdown tables by file name, computed from its JSON files alone."""
    choices = load_choices(results)
    return {"mu.md": mu_table(choices), "lr.md": lr_table(choices), "table1.md": mnist_table(results, choices),
            "comparison.md": comparison_table(results, choices), "paired.md": paired_table(results, choices),
            "sweep.md": sweep_table(sweep_points(results, "r2_joint_C", C_SWEEP), "C"),
            "balanced.md": sweep_table(sweep_points(results, "r2_balanced_C", C_BALANCED), "C (balanced)")
            + balanced_overhead(results),
            "segmentation.md": seg_table(results, choices),
            "targets.md": targets_markdown(targets(results, choices))}


def write_tables(results: Path = RESULTS) -> list[Path]:
    """Write round 2's tables (mu, table1, sweep, balanced, segmentation, targets as .md), sweep.png and
    seg_curves.png from its JSON files."""
    written = []
    for name, text in tables(results).items():
        (results / name).write_text(text)
        written.append(results / name)
    for name, plot in (("sweep.png", plot_sweep), ("seg_curves.png", plot_seg_curves)):
        if plot(results, results / name):
            written.append(results / name)
    return written
