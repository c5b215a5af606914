"""Round 2's tables, statistics, targets and figures, computed from its JSON records alone.

    python -m tarlib.reproduce --round 2 --tables-only     # results/round2/*.md, sweep.png, seg_curves.png

Table 1 next to the paper's, the paired tests of the protocol (:func:`paired_table`), the
sweeps over C, the segmentation table and the verdicts on the protocol's targets
(:func:`targets`).  Every number is read from ``results/round2/<row>.json`` and the
per-image predictions in ``results/round2/predictions/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tarlib import stats
from tarlib.study import evaluation
from tarlib.study.registry import load_choices, load_record, number
from tarlib.study.round2 import protocol
from tarlib.study.tables import PAPER_BEST_C, PAPER_TABLE1, mean_std, paper_comparison, save_figure, verdict_table


def _draw_mean(summary: dict[str, Any], part: str, metric: str) -> float | None:
    draws = summary.get("evaluation", {}).get(part, [])
    values = [d[metric] for d in draws if metric in d]
    return float(np.mean(values)) if values else None


def _seeded(prefix: str) -> list[str]:
    return [f"{prefix}_s{s}" for s in protocol.SEEDS]


def table_rows(choices: dict[str, Any]) -> list[tuple[str, list[str], str, str | float | None]]:
    """Table 1 of round 2: (label, row names over seeds, evaluation part, key of the paper's numbers in
    :data:`tarlib.study.tables.PAPER_TABLE1`, None where the paper has no such row)."""
    best = choices.get("best_C", {}).get("C")
    out = [("classifier on true images (eq. (5))", ["r2_pretrain_T_s0"], "test_true_images", "true"),
           ("pre-training: T ∘ R, separately trained", _seeded("r2_pretrain_T"), "test", "pre-training"),
           ("sequential (eq. (13))", _seeded("r2_sequential"), "test", "sequential"),
           ("end-to-end (eq. (16))", _seeded("r2_end_to_end"), "test", "end-to-end")]
    if best is not None:
        # against the paper's best joint row: each side's best C, ours chosen on validation
        out.append((f"joint, best C = {number(best)} (chosen on validation)", _seeded(f"r2_joint_C{number(best)}"), "test",
                    PAPER_BEST_C))
    out += [("joint, C = 0.5 (eq. (20))", _seeded("r2_joint_C0.5"), "test", 0.5),
            ("joint, C = 0.01", ["r2_joint_C0.01_s0"], "test", 0.01),
            ("joint, C = 0.999", ["r2_joint_C0.999_s0"], "test", 0.999),
            ("FBP + classifier", ["r2_fbp_classifier"], "test", None),
            ("CNN on the sinogram", ["r2_sinogram_cnn"], "test", None)]
    return out


def _table_runs(results: Path, names: list[str], part: str) -> list[dict[str, Any]]:
    """The finished runs among ``names`` that were evaluated on ``part``."""
    return [r for r in (load_record(results, n) for n in names) if r is not None and part in r.get("evaluation", {})]


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
        cells = [mean_std([_draw_mean(r, part, "accuracy") for r in runs], 2, 100.0),
                 mean_std([_draw_mean(r, part, "l2") for r in runs], 2),
                 mean_std([_draw_mean(r, part, "cross_entropy") for r in runs], 3)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(runs)} | {', '.join(map(str, draws)) or '—'} | "
                     + (f"{max(ranges):.2f}" if ranges else "—") + " |")
    return "\n".join(lines) + "\n"


def comparison_table(results: Path, choices: dict[str, Any]) -> str:
    """Table 1 of round 2 next to the paper's, for the rows the paper reports (test metrics: the
    mean over the shared draws, then mean ± std over seeds)."""
    rows = []
    for label, names, part, key in table_rows(choices):
        runs = _table_runs(results, names, part)
        if key is not None:
            label += f"; the paper's: its best, C = {number(key)}" if label.startswith("joint, best C") else ""
            rows.append((label, PAPER_TABLE1[key], [{m: v for m in ("accuracy", "l2", "cross_entropy")
                                                     if (v := _draw_mean(r, part, m)) is not None} for r in runs]))
    return paper_comparison(rows) or "No Table 1 row has finished yet.\n"


def sweep_points(results: Path, prefix: str, values: tuple[float, ...]) -> list[dict[str, Any]]:
    """Per C of a sweep (seed 0): validation accuracy (3 draws), test accuracy and L2 (draw 0), task share."""
    points = []
    for C in values:
        run = load_record(results, f"{prefix}{number(C)}_s0")
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
        lines.append(f"| {number(p['C'])} | {val} | {100 * p['test_accuracy']:.2f} | {p['l2']:.2f} | {_share(p['task_share'])} "
                     f"| {p['s_per_step']:.3f} |")
    return "\n".join(lines) + "\n"


def balanced_overhead(results: Path) -> str:
    """The balanced loss's time cost: median s / step of its rows against the plain sweep's (medians, so
    that one row slowed by other work on the machine does not decide it); '' until both have run."""
    plain = [p["s_per_step"] for p in sweep_points(results, "r2_joint_C", protocol.C_SWEEP) if p["C"] < 1]
    balanced = [p["s_per_step"] for p in sweep_points(results, "r2_balanced_C", protocol.C_BALANCED)]
    if not plain or not balanced:
        return ""
    a, b = float(np.median(balanced)), float(np.median(plain))
    return (f"\nTime per step, median over rows: {a:.3f} s with the balanced loss, {b:.3f} s with eq. (18) "
            f"({len(balanced)} and {len(plain)} rows): {100 * (a / b - 1):+.0f} %.\n")


def _seed_pairs(results: Path, a: str, b: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per-image correctness of rows ``a`` and ``b`` for every seed, [(a_s, b_s), ...], or None if one is missing."""
    pairs = [(evaluation.correct(results, f"{a}_s{s}"), evaluation.correct(results, f"{b}_s{s}")) for s in protocol.SEEDS]
    return None if any(v is None for pair in pairs for v in pair) else pairs  # type: ignore[return-value]


def paired_table(results: Path, choices: dict[str, Any]) -> str:
    """The protocol's paired test of target 1 for every three-seed row against sequential, and the best C
    against the paper's C = 0.5, each also under the course's rule (:func:`tarlib.stats.compare`).

    Only the best C's line against sequential is pre-registered (target 1); the others describe how far
    apart the strategies are with the same statistics.  McNemar's exact test is counted over all 15 seed ×
    draw pairs (descriptive only).
    """
    best = choices.get("best_C", {}).get("C")
    families = [("end-to-end", "sequential", "r2_end_to_end", "r2_sequential", False),
                ("joint, C = 0.5", "sequential", "r2_joint_C0.5", "r2_sequential", best == 0.5)]
    if best is not None and best != 0.5:
        families += [(f"joint, best C = {number(best)}", "sequential", f"r2_joint_C{number(best)}", "r2_sequential", True),
                     (f"joint, best C = {number(best)}", "joint, C = 0.5", f"r2_joint_C{number(best)}", "r2_joint_C0.5",
                      False)]
    lines = ["| comparison | difference (pp) | 95 % bootstrap interval (pp) | per seed (pp) | the course's rule "
             "| McNemar p < 0.05, of 15 seed × draw pairs | pre-registered (target 1) |",
             "|---|---:|---:|---|---|---:|---|"]
    for name_a, name_b, a, b, registered in families:
        label = f"{name_a} against {name_b}"
        pairs = _seed_pairs(results, a, b)
        if pairs is None:
            lines.append(f"| {label} | — | — | — | — | — | {'yes' if registered else 'no'} |")
            continue
        verdict = stats.compare(np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs]))
        mcnemar = [stats.mcnemar_exact(x[d], y[d])["p_value"] for x, y in pairs for d in range(x.shape[0])]
        seeds = ", ".join(f"{100 * d:+.2f}" for d in verdict.per_seed)
        lines.append(f"| {label} | {100 * verdict.mean:+.2f} | [{100 * verdict.low:+.2f}, {100 * verdict.high:+.2f}] "
                     f"| {seeds} | {verdict.describe(name_a, name_b)} | {sum(p < 0.05 for p in mcnemar)} | {'yes' if registered else 'no'} |")
    return "\n".join(lines) + "\n"


def _unrecorded(results: Path) -> dict[str, dict[str, Any]]:
    """Time of sittings that a row's JSON does not contain, by row: ``{"seconds", "reason"}`` (budget only)."""
    path = results / "unrecorded_time.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _complete(results: Path, choices: dict[str, Any], part: str) -> bool:
    """Whether every row of ``part`` ("mnist" or "seg") is determined and has its JSON file."""
    listed, pending = protocol.rows(choices) if part == "mnist" else protocol.seg_rows(choices)
    return not pending and all((results / f"{r.name}.json").is_file() for r in listed)


def targets(results: Path, choices: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The protocol's targets: (target, measured, verdict — None while the runs are missing)."""
    out: list[tuple[str, str, bool | None]] = []
    best = choices.get("best_C", {}).get("C")
    pairs = _seed_pairs(results, f"r2_joint_C{number(best)}", "r2_sequential") if best is not None else None
    if pairs is None:
        out.append(("1. best joint C beats sequential (bootstrap CI excludes 0, every seed positive)", "—", None))
    else:  # the pre-registered statistics: bootstrap of the per-image seed-mean of draw-means, per-seed differences
        b = stats.paired_bootstrap(np.mean([x.mean(0) - y.mean(0) for x, y in pairs], axis=0))
        diffs = [100 * float(x.mean() - y.mean()) for x, y in pairs]
        met = b["low"] > 0 and all(d > 0 for d in diffs)
        out.append(("1. best joint C beats sequential (bootstrap CI excludes 0, every seed positive)",
                    f"{100 * b['mean']:+.2f} pp, 95 % CI [{100 * b['low']:+.2f}, {100 * b['high']:+.2f}]; per seed "
                    + ", ".join(f"{d:+.2f}" for d in diffs), met))
    runs = [load_record(results, n) for n in (_seeded(f"r2_joint_C{number(best)}") if best is not None else [])]
    if runs and all(r is not None for r in runs):
        acc = float(np.mean([_draw_mean(r, "test", "accuracy") for r in runs]))
        out.append(("2. best joint C ≥ 97.0 % (paper 97.00 %), 3 seeds × 5 draws",
                    f"{100 * acc:.2f} % (sequential training reaches this level too: our classifier is stronger than "
                    "the paper's, so the target does not separate the strategies)", acc >= 0.97))
    else:
        out.append(("2. best joint C ≥ 97.0 % (paper 97.00 %), 3 seeds × 5 draws", "—", None))
    seg_best = choices.get("seg_best_C", {}).get("C")
    seg = [(load_record(results, f"r2_seg_joint_C{number(seg_best)}_s{s}") if seg_best is not None else None,
            load_record(results, f"r2_seg_sequential_s{s}")) for s in protocol.SEEDS]
    if all(j is not None and q is not None for j, q in seg):
        diffs = np.array([j["evaluation"]["test"]["dice"] - q["evaluation"]["test"]["dice"] for j, q in seg])
        t, two_sided = stats.one_sided_t(diffs), stats.paired_t(diffs)["p_value"]
        out.append(("3. segmentation: best joint C beats sequential in Dice (one-sided t, 2 df)",
                    f"{t['mean']:+.4f} Dice, t = {t['t']:.2f} (critical {t['critical']:.2f}; two-sided p = {two_sided:.3f}: "
                    f"{'resolved' if two_sided < 0.05 else 'not resolved'} in either direction at 5 %); per seed "
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


def plot_sweep(results: Path, path: Path) -> bool:
    """Accuracy and L2 against C on a log axis (eq. (18) and the balanced loss), and accuracy against the
    measured task share of R's gradient, on which the two sweeps can be compared; False if no point exists."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plain = sweep_points(results, "r2_joint_C", protocol.C_SWEEP)
    balanced = sweep_points(results, "r2_balanced_C", protocol.C_BALANCED)
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
    save_figure(fig, path)
    return True


def seg_table_rows(choices: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The segmentation table of round 2: (label, row names over seeds)."""
    best = choices.get("seg_best_C", {}).get("C")
    out = [("U-Net on true images ∘ R_0 (pre-training)", ["r2_seg_pretrain_T_s0"]),
           ("sequential (eq. (13))", _seeded("r2_seg_sequential")),
           ("FBP + U-Net", _seeded("r2_seg_fbp_unet"))]
    if best is not None:
        out.append((f"joint, best C = {number(best)} (chosen on validation)", _seeded(f"r2_seg_joint_C{number(best)}")))
    out += [(("end-to-end, C = 0" if C == 0 else f"joint, C = {number(C)}"), [f"r2_seg_joint_C{number(C)}_s0"])
            for C in protocol.SEG_C if C != best]
    return out


def _share(share: float | None) -> str:
    """The task's measured share of R's gradient as a percentage, or "—" where none was measured."""
    return "—" if share is None else f"{100 * share:.1f} %"


def _slices(summary: dict[str, Any], metric: str) -> np.ndarray:
    return np.asarray(summary["evaluation"]["test_per_slice"][metric], dtype=float)


def _seg_delta(results: Path, runs: dict[str, dict[str, Any]]) -> str:
    """The Δ Dice cell: per test slice, a row's seed minus sequential's same seed, over the seeds whose two runs
    trained for the same number of steps (a seed-0 run that set the step count ran longer than the others)."""
    pairs = [(r, q) for n, r in runs.items() if (q := load_record(results, f"r2_seg_sequential_s{n.rsplit('_s', 1)[1]}"))]
    if not pairs:
        return "—"
    diffs = [_slices(r, "dice") - _slices(q, "dice") for r, q in pairs if r["config"]["steps"] == q["config"]["steps"]]
    if not diffs:
        return "— (steps differ from sequential's same seed)"
    left = len(pairs) - len(diffs)
    note = f"; {left} at other steps than sequential's left out" if left else ""
    return f"{np.mean(diffs):+.4f} ({len(diffs)} seed{'s' if len(diffs) > 1 else ''} × 13 slices{note})"


def seg_table(results: Path, choices: dict[str, Any]) -> str:
    """Segmentation rows as Markdown: test Dice, IoU, PSNR (mean ± std over seeds), the paired per-slice
    Dice difference to sequential (same seed and steps, mean over the 13 test slices and the seeds), seed 0's validation
    Dice at its last step (what chooses the best C) and task's share of R's gradient, and which row is best."""
    lines = ["| method | Dice | IoU | PSNR (dB) | Δ Dice vs sequential, paired per slice | seeds | steps "
             "| validation Dice, seed 0 | task's share of R's gradient, seed 0 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    means, rows, chosen = {}, seg_table_rows(choices), "seg_best_C" in choices
    complete = chosen
    for label, names in rows:
        runs = {n: r for n in names if (r := load_record(results, n)) is not None}
        complete = complete and len(runs) == len(names)
        if not runs:
            lines.append(f"| {label} | — | — | — | — | 0 | — | — | — |")
            continue
        cells = [mean_std([r["evaluation"]["test"].get(m) for r in runs.values()], d) for m, d in
                 (("dice", 3), ("iou", 3), ("psnr", 2))]
        delta = "—" if "sequential" in label else _seg_delta(results, runs)
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

    names = ["r2_seg_sequential_s0", *(f"r2_seg_joint_C{number(C)}_s0" for C in protocol.SEG_C)]
    curves = {n: r["validation"] for n in names
              if (r := load_record(results, n)) is not None and r.get("validation")}
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
    save_figure(fig, path)
    return True


def mu_table(choices: dict[str, Any]) -> str:
    """The μ stage: each candidate's check-set L2 after 2,000 steps, its extrapolation to 8,000, the choice."""
    if "mu" not in choices:
        return "The μ stage has not finished.\n"
    lines = ["| μ | check-set L2 at 2,000 steps | fit a + b/√t: a, b | extrapolated L2 at 8,000 | distance to the paper's 9.0 |",
             "|---:|---:|---:|---:|---:|"]
    for mu, fit in choices["mu"]["fits"].items():
        chosen = " (chosen)" if float(mu) == choices["mu"]["chosen"] else ""
        lines.append(f"| {mu}{chosen} | {fit['l2_at_2000']:.2f} | {fit['a']:.2f}, {fit['b']:.1f} | "
                     f"{fit['l2_at_8000']:.2f} | {abs(fit['l2_at_8000'] - protocol.MU_TARGET_L2):.2f} |")
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


def tables(results: Path = protocol.RESULTS) -> dict[str, str]:
    """Round 2's Markdown tables by file name, computed from its JSON files alone."""
    choices = load_choices(results)
    return {"mu.md": mu_table(choices), "lr.md": lr_table(choices), "table1.md": mnist_table(results, choices),
            "comparison.md": comparison_table(results, choices), "paired.md": paired_table(results, choices),
            "sweep.md": sweep_table(sweep_points(results, "r2_joint_C", protocol.C_SWEEP), "C"),
            "balanced.md": sweep_table(sweep_points(results, "r2_balanced_C", protocol.C_BALANCED), "C (balanced)")
            + balanced_overhead(results),
            "segmentation.md": seg_table(results, choices),
            "targets.md": verdict_table(targets(results, choices))}


def write_tables(results: Path = protocol.RESULTS) -> list[Path]:
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
