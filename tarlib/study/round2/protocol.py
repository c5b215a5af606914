"""Round 2 of the reproduction, section 5.1 and 5.2: what ``results/PROTOCOL.md`` decides.

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

The segmentation rows have two choices of their own: the steps N of the later rows
(:func:`choose_seg_steps`) and the best C.  Every finished row is evaluated on the noise
draws shared by all models (:mod:`tarlib.study.evaluation`, :func:`evaluation_plan`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from tarlib.study import evaluation, runner
from tarlib.study.executor import Executor, Job, LocalExecutor
from tarlib.study.registry import Row, load_choices, load_record, number

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
# segmentation (section 5.2)
SEG_C = (0.0, 0.1, 0.5, 0.9, 0.99, 0.999)
SEG_FIRST_STEPS, SEG_EVAL_EVERY, SEG_MAX_STEPS, SEG_PLATEAU = 1500, 100, 800, 0.005


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


def choose_lr(accuracy: dict[tuple[float, int], float],
              grid: tuple[tuple[float, int], ...] | None = None) -> dict[str, Any]:
    """Best (lr, warm-up) of ``grid`` (default :data:`LR_GRID`) by validation accuracy; within 0.1 pp of the
    best the smaller lr, then no warm-up."""
    grid = LR_GRID if grid is None else grid
    if set(accuracy) != set(grid):
        raise ValueError(f"need the accuracy of every grid point {grid}, got {sorted(accuracy)}")
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


# ----------------------------------------------------------------------------- rows


PROTOCOL_ARGS = ("--validation", "stratified", "--protocol", str(PROTOCOL_FILE))


def pretrain_R_row(mu: float, seed: int) -> Row:
    """R_s: 8,000 steps on ℓ_X (eq. (4)) for the data model with attenuation scale μ."""
    return Row(f"r2_pretrain_R_mu{number(mu)}_s{seed}", "mnist",
               ("--strategy", "pretrain_reconstruction", "--mu", number(mu), *PROTOCOL_ARGS),
               seed=seed, steps=STEPS["pretrain_R"], eval_every=MU_EVAL_EVERY).pinned("--clip", evaluation.OLD_CLIP)


def pretrain_T_row(mu: float, seed: int) -> Row:
    """T_s: 3,000 steps on true images (eq. (5)); its record also evaluates T_s ∘ R_s."""
    return Row(f"r2_pretrain_T_s{seed}", "mnist", ("--strategy", "pretrain_task", "--mu", number(mu), *PROTOCOL_ARGS),
               seed=seed, steps=STEPS["pretrain_T"],
               init_reconstruction=pretrain_R_row(mu, seed).name).pinned("--clip", evaluation.OLD_CLIP)


def mu_stage_rows() -> list[Row]:
    """Stage mu: the seed-0 pre-training of R for every candidate μ, run to ``MU_STOP`` with ``--stop-at``."""
    return [pretrain_R_row(mu, 0) for mu in MU_CANDIDATES]


def rows(choices: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """The rows that the choices made so far determine, and what the others still wait for; a row that
    names no clipping ran with the old default (``evaluation.OLD_CLIP``) and keeps it."""
    found, pending = _rows(choices)
    return [r.pinned("--clip", evaluation.OLD_CLIP) for r in found], pending


def _rows(choices: dict[str, Any]) -> tuple[list[Row], list[str]]:
    if "mu" not in choices:
        return [], ["μ (stage mu: mu_stage_rows())"]
    mu = choices["mu"]["chosen"]
    common = ("--mu", number(mu), *PROTOCOL_ARGS)
    out = []
    for s in SEEDS:
        out.append(pretrain_R_row(mu, s))
        out.append(pretrain_T_row(mu, s))
    pre = {s: {"init_reconstruction": pretrain_R_row(mu, s).name, "init_task": f"r2_pretrain_T_s{s}"} for s in SEEDS}
    for lr, warmup in LR_GRID:
        tag = f"lr{lr:g}_w{warmup}"
        out.append(Row(f"r2_grid_sequential_{tag}", "mnist", ("--strategy", "sequential", "--lr", number(lr), "--warmup",
                       str(warmup), *common), seed=0, steps=STEPS["grid"], **pre[0]))
        out.append(Row(f"r2_grid_joint_{tag}", "mnist", ("--strategy", "joint", "--C", number(GRID_C), "--lr", number(lr),
                       "--warmup", str(warmup), "--clip", "separate", *common), seed=0, steps=STEPS["grid"], **pre[0]))
    baselines = [Row("r2_fbp_classifier", "mnist", ("--strategy", "end_to_end", "--recon", "fbp", *common),
                     steps=STEPS["baseline"]),
                 Row("r2_sinogram_cnn", "mnist", ("--strategy", "end_to_end", "--recon", "none", *common),
                     steps=STEPS["baseline"])]
    out += baselines
    if "lr" not in choices:
        return out, ["fine-tuning lr and warm-up (stage grid)"]
    seq = ("--lr", number(choices["lr"]["sequential"]["lr"]), "--warmup", str(choices["lr"]["sequential"]["warmup"]))
    both = ("--lr", number(choices["lr"]["joint"]["lr"]), "--warmup", str(choices["lr"]["joint"]["warmup"]),
            "--clip", "separate")
    ft = STEPS["finetune"]
    for s in SEEDS:
        out.append(Row(f"r2_sequential_s{s}", "mnist", ("--strategy", "sequential", *seq, *common), seed=s, steps=ft,
                       **pre[s]))
        out.append(Row(f"r2_end_to_end_s{s}", "mnist", ("--strategy", "end_to_end", *both, *common), seed=s,
                       steps=ft, **pre[s]))
    for C in C_SWEEP:
        for s in (SEEDS if C == 0.5 else (0,)):
            out.append(Row(f"r2_joint_C{number(C)}_s{s}", "mnist", ("--strategy", "joint", "--C", number(C), *both, *common),
                           seed=s, steps=ft, **pre[s]))
    pending = ["best joint C (stage sweep)"]
    if "best_C" in choices:
        pending, best = [], choices["best_C"]["C"]
        for s in SEEDS[1:] if best != 0.5 else ():
            out.append(Row(f"r2_joint_C{number(best)}_s{s}", "mnist", ("--strategy", "joint", "--C", number(best), *both,
                           *common), seed=s, steps=ft, **pre[s]))
    # last: the balanced loss, the first thing the protocol cuts when the budget runs short
    for C in C_BALANCED:
        out.append(Row(f"r2_balanced_C{number(C)}_s0", "mnist", ("--strategy", "joint", "--C", number(C), "--balanced",
                       *both, *common), seed=0, steps=ft, **pre[0]))
    return out, pending


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
             or any(name.startswith(f"r2_joint_C{number(C)}_") for C in table_C))
    plan = {"test": list(range(evaluation.TEST_DRAWS if table else 1))}
    if name.startswith(("r2_joint_", "r2_balanced_")):
        plan["val"] = list(range(evaluation.VAL_DRAWS))
    return plan


# ----------------------------------------------------------------------------- the stages


def val_accuracy(results: Path, name: str, draws: int) -> float | None:
    """A row's mean validation accuracy over its first ``draws`` shared draws, or None while it has fewer."""
    record = load_record(results, name)
    if record is None:
        return None
    val = record.get("evaluation", {}).get("val", [])
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
            accuracy = {k: val_accuracy(results, f"r2_grid_{strategy}_lr{k[0]:g}_w{k[1]}", 1) for k in LR_GRID}
            if None in accuracy.values():
                return choices
            lr[strategy] = choose_lr(accuracy)
        choices["lr"] = lr
    if "best_C" not in choices:
        accuracy = {C: val_accuracy(results, f"r2_joint_C{number(C)}_s0", evaluation.VAL_DRAWS)
                    for C in C_SWEEP if 0 < C < 1}
        if None in accuracy.values():
            return choices
        choices["best_C"] = choose_best_C(accuracy)
    return choices


PARTS = ("mnist", "segmentation")


def determined(choices: dict[str, Any], parts: tuple[str, ...] = PARTS) -> tuple[list[Row], list[str]]:
    """The rows of ``parts`` that the choices made so far determine (each after the rows it starts
    from), and what the other rows still wait for."""
    found, pending = [], []
    for part, listed in (("mnist", rows), ("segmentation", seg_rows)):
        if part in parts:
            rows_of_part, waiting = listed(choices)
            found, pending = found + rows_of_part, pending + waiting
    return found, pending


def _mu_stage(choices: dict[str, Any], parts: tuple[str, ...]) -> list[Row]:
    """Stage mu's rows while μ is open: the first ``MU_STOP`` steps of each candidate's pre-training."""
    return mu_stage_rows() if "mnist" in parts and "mu" not in choices else []


def mu_stage_done(runs: Path, row: Row) -> bool:
    """Whether a row of stage mu has run its first ``MU_STOP`` steps (or all of them)."""
    return any((runs / row.name / f).is_file() for f in ("metrics.json", "partial.json"))


def run(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = (),
        parts: tuple[str, ...] = PARTS, executor: Executor | None = None) -> dict[str, Any]:
    """Run the protocol's stages of ``parts`` as far as they go (resumable) with ``executor``
    (default: the local one); return the choices made."""
    if not set(parts) <= set(PARTS):
        raise ValueError(f"parts must be among {PARTS}, got {parts}")
    executor = executor or LocalExecutor()
    # stage mu: the first MU_STOP steps of each candidate's pre-training, side by side under Ray
    jobs = [Job(row.name, tuple(row.argv(runs, fast, (*extra, "--stop-at", str(MU_STOP)))))
            for row in _mu_stage(load_choices(results), parts) if not mu_stage_done(runs, row)]
    if jobs:
        executor.run(jobs)

    def evaluate(row: Row, choices: dict[str, Any]) -> None:
        if row.experiment == "mnist":
            evaluation.evaluate_row(row.name, runs, results, evaluation_plan(row.name, choices))
        else:
            evaluation.evaluate_seg_row(row.name, runs, results)

    return runner.run_stages(lambda choices: determined(choices, parts)[0],
                             lambda choices: decide_seg(decide(choices, runs, results), results),
                             evaluate, runs, results, fast, extra, executor)


def listing(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = (),
            parts: tuple[str, ...] = PARTS) -> tuple[list[str], list[str]]:
    """``row: command`` of every row that the choices made so far determine (the μ stage's with
    ``--stop-at`` while μ is open), and what the other rows still wait for."""
    choices = load_choices(results)
    mu_stage = _mu_stage(choices, parts)
    found, pending = determined(choices, parts)
    stop = ("--stop-at", str(MU_STOP))
    return [f"{row.name}: {row.command(runs, fast, (*extra, *(stop if row in mu_stage else ())))}"
            for row in mu_stage + found], pending


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
    """The segmentation rows of the protocol that the choices made so far determine (clipping pinned as in :func:`rows`)."""
    found, pending = _seg_rows(choices)
    return [r.pinned("--clip", evaluation.OLD_CLIP) for r in found], pending


def _seg_rows(choices: dict[str, Any]) -> tuple[list[Row], list[str]]:
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
            out.append(Row(f"r2_seg_joint_C{number(C)}_s0", "segmentation", ("--strategy", "joint", "--C", number(C), *both,
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
        out.append(Row(f"r2_seg_joint_C{number(best)}_s{s}", "segmentation", ("--strategy", "joint", "--C", number(best),
                       *both, *common), seed=s, **n))
    return out, []


def decide_seg(choices: dict[str, Any], results: Path) -> dict[str, Any]:
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
            path = results / f"r2_seg_joint_C{number(C)}_s0.json"
            if not path.is_file():
                return choices
            final[C] = json.loads(path.read_text())["validation"][-1]["dice"]
        eligible = {C: d for C, d in final.items() if 0 < C < 1}
        choices["seg_best_C"] = {"C": max(eligible, key=lambda C: (eligible[C], C)),
                                 "validation_dice": {number(C): d for C, d in final.items()}}
    return choices


