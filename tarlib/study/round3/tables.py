"""Round 3's tables, statistics and figures, computed from its JSON records and saved predictions.

    python -m tarlib.study --round 3 --tables-only     # results/round3/*.md and regime.png

- ``regime.md``: per cell, T's ceiling, sequential and joint (best C) accuracy, Δ with its 95 %
  interval and per seed, Δ as a share of the headroom, the part above the ceiling, the L2 losses
  and the reconstruction-constrained Δ;
- ``contrasts.md``: the four named contrasts on one shared image bootstrap, Holm-corrected, and
  the seed-level t as a sensitivity check;
- ``pretraining.md``: the plateau rule, the rank-16 check and the retrained round-2 networks;
- ``mcnemar.md``: McNemar's exact test for every seed and draw (descriptive);
- ``regime_summary.md``: the regime table's core (the README's block shows it too);
- ``rows.md``: every fine-tuning row (grid, seeds, end-to-end) with its accuracy and L2 losses;
- ``targets.md``: the protocol's targets with computed verdicts; ``regime.png``: the regime figure;
- ``summary.json``: the numbers of these tables for the course (notebook 10 reads it through
  :func:`tarlib.records.study_file`), and the README's round-3 block (:func:`readme_block`).

Every number is a function of ``results/round3/`` (and of round 2's records for the full × CNN
cell's sequential rows); a table that lacks rows says how many it has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tarlib import stats
from tarlib.config import write_json
from tarlib.study import evaluation
from tarlib.study.registry import load_choices, load_record, number
from tarlib.study.round2 import protocol as round2
from tarlib.study.round3 import protocol
from tarlib.study.round3.protocol import CELLS, FAST, FULL, Design, row_name
from tarlib.study.tables import save_figure, verdict_table

BOOTSTRAP_SEED, RESAMPLES = 20261203, 10_000
TIE, CONTRAST_EFFECT = 0.0015, 0.003  # smallest effects of interest: ±0.15 points per cell, 0.3 points per contrast
CONTRASTS = {  # name: weights of the cells' Δ
    "R effect (primary): Δ(rank 16, CNN) − Δ(full, CNN)": {"rank16_cnn": 1, "full_cnn": -1},
    "paper-like R effect: Δ(small, CNN) − Δ(full, CNN)": {"small_cnn": 1, "full_cnn": -1},
    "T effect at the small R: Δ(small, linear) − Δ(small, CNN)": {"small_linear": 1, "small_cnn": -1},
    "interaction on {rank 16, small} × {CNN, linear}": {"rank16_linear": 1, "rank16_cnn": -1, "small_linear": -1,
                                                        "small_cnn": 1},
}
LABEL = {"rank16": "rank 16", "small": "small", "full": "full", "cnn": "CNN", "linear": "linear"}


def _design(results: Path) -> Design:
    """The design a results folder was made with: smoke size when its records come from ``--fast`` runs."""
    record = next((json.loads(p.read_text()) for p in sorted(results.glob("r3_*.json"))), None)
    return FAST if record is not None and record["config"].get("fast") else FULL


def _record(results: Path, name: str) -> dict[str, Any] | None:
    """A row's record: round 3's own, or round 2's for the rows round 3 takes over."""
    return load_record(results, name) or (load_record(results.parent / "round2", name) if name.startswith("r2_") else None)


def correct(results: Path, name: str) -> np.ndarray | None:
    """Per-image correctness [draws, N] of a row on the shared test draws (round 3's, or round 2's for the rows
    round 3 takes over), or None."""
    return next((c for folder in (results, results.parent / "round2")
                 if (c := evaluation.correct(folder, name)) is not None), None)


def _mean_over(record: dict[str, Any] | None, part: str, metric: str) -> float | None:
    draws = (record or {}).get("evaluation", {}).get(part, [])
    return float(np.mean([d[metric] for d in draws])) if draws else None


def ceiling(results: Path, t: str, design: Design) -> float | None:
    """T level ``t``'s accuracy on true test images, mean over its pre-trained seeds."""
    records = [_record(results, protocol.pre_T(t, s)) for s in design.seeds]
    if any(r is None for r in records):
        return None
    return float(np.mean([r["evaluation"]["test_true_images"][0]["accuracy"] for r in records]))


def cell(results: Path, c: tuple[str, str], choices: dict[str, Any], design: Design) -> dict[str, Any] | None:
    """Everything the regime table shows of one cell, or None until its sequential and best-C rows are evaluated."""
    best = choices.get("best_C", {}).get("_".join(c))
    if best is None:
        return None
    names = {"sequential": [row_name(c, "sequential", s) for s in design.seeds],
             "joint": [row_name(c, f"joint_C{number(best['C'])}", s) for s in design.seeds]}
    scores = {k: [correct(results, n) for n in v] for k, v in names.items()}
    if any(x is None for v in scores.values() for x in v):
        return None
    seq, joint = (np.mean([x.mean(0) for x in scores[k]], axis=0) for k in ("sequential", "joint"))
    records = {k: [_record(results, n) for n in v] for k, v in names.items()}
    top = ceiling(results, c[1], design)
    out = {"C": best["C"], "seq": float(seq.mean()), "joint": float(joint.mean()), "diff": joint - seq,
           "delta": float((joint - seq).mean()), "ceiling": top,
           "per_seed": [float(j.mean() - q.mean()) for j, q in zip(scores["joint"], scores["sequential"])],
           "mcnemar": [[stats.mcnemar_exact(j[d], q[d])["p_value"] for d in range(j.shape[0])]
                       for j, q in zip(scores["joint"], scores["sequential"])],
           **{f"l2_{k}_{part}": float(np.mean([_l2(results, c, k, part, s, r, choices) for s, r in zip(design.seeds, records[k])]))
              for k in records for part in ("val", "test")}}
    out["headroom"] = out["delta"] / (top - out["seq"]) if top is not None and top > out["seq"] else None
    out["above_ceiling"] = max(0.0, out["joint"] - top) if top is not None else None
    out["constrained"] = constrained_delta(results, c, choices, design)
    return out


def _l2(results: Path, c: tuple[str, str], strategy: str, part: str, s: int, record: dict[str, Any] | None,
        choices: dict[str, Any]) -> float:
    """A row's L2 loss on ``part`` (mean over its draws).  Round 2's sequential rows were evaluated on test draws
    only; a sequential row keeps its R_s, so its validation L2 is R_s's (validation draw 0)."""
    l2 = _mean_over(record, part, "l2")
    if l2 is None and strategy == "sequential" and part == "val":
        l2 = protocol.pretrained_val_l2(results, c[0], s, choices)
    if l2 is None:
        raise ValueError(f"{row_name(c, strategy, s)} has no {part} L2 loss in {results}")
    return l2


def constrained_delta(results: Path, c: tuple[str, str], choices: dict[str, Any], design: Design) -> dict[str, Any] | None:
    """Seed 0 only: the validation-best C among those whose validation L2 stays within 10 % of sequential's
    (that of the pre-trained R_0, which the sequential row keeps), and its test accuracy minus sequential's
    (one seed: training variance not included)."""
    seq_l2 = _l2(results, c, "sequential", "val", 0, _record(results, row_name(c, "sequential", 0)), choices)
    grid = {C: _record(results, row_name(c, f"joint_C{number(C)}", 0)) for C in design.c_grid}
    eligible = {C: _mean_over(r, "val", "accuracy") for C, r in grid.items()
                if r is not None and _mean_over(r, "val", "l2") <= (1 + protocol.L2_ALLOWANCE) * seq_l2}
    seq = correct(results, row_name(c, "sequential", 0))
    if not eligible or seq is None:
        return None
    C = round2.choose_best_C(eligible)["C"]
    return {"C": C, "delta": float(correct(results, row_name(c, f"joint_C{number(C)}", 0)).mean() - seq.mean())}


def analysis(results: Path) -> dict[str, Any]:
    """The round's statistics: the cells (:func:`cell`), and the contrasts on one shared image bootstrap
    with Holm's correction (only once every cell they use is complete)."""
    design, choices = _design(results), load_choices(results)
    cells = {"_".join(c): cell(results, c, choices, design) if c in design.cells else None for c in CELLS}
    done = {k: v for k, v in cells.items() if v is not None}
    resampled = stats.bootstrap_means({k: v["diff"] for k, v in done.items()}, RESAMPLES, BOOTSTRAP_SEED) if done else {}
    for k, v in done.items():
        v["low"], v["high"] = stats.interval(resampled[k])
    _cell_verdicts(done, resampled)
    contrasts: dict[str, Any] = {}
    for name, weights in CONTRASTS.items():
        if set(weights) <= set(done):
            r = sum(w * resampled[k] for k, w in weights.items())
            seeds = np.sum([w * np.array(done[k]["per_seed"]) for k, w in weights.items()], axis=0)
            contrasts[name] = {"estimate": sum(w * done[k]["delta"] for k, w in weights.items()),
                               "p": stats.bootstrap_p(r), "resampled": r, "per_seed": seeds.tolist(),
                               "t": stats.paired_t(seeds) if len(seeds) > 1 else None}
    if len(contrasts) == len(CONTRASTS):
        for name, h in stats.holm({k: v["p"] for k, v in contrasts.items()}).items():
            contrasts[name].update(h, interval=stats.interval(contrasts[name]["resampled"], h["level"]))
    return {"design": design, "choices": choices, "cells": cells, "contrasts": contrasts}


def _cell_verdicts(done: dict[str, dict[str, Any]], resampled: dict[str, np.ndarray]) -> None:
    """The course's rule (:data:`tarlib.stats.RULE`) for each complete cell, Holm-corrected over them: its
    ``verdict``, whether it ``ties`` (95 % interval within the ±0.15-point margin) and the ``kind`` of a
    resolved gain: above T's ceiling (R does part of the classifying) or within it."""
    if not done:
        return
    verdicts = stats.decide({k: resampled[k] for k in done}, {k: v["delta"] for k, v in done.items()},
                            {k: tuple(v["per_seed"]) for k, v in done.items()})
    for k, v in done.items():
        v["resolved"] = bool(verdicts[k].resolved)
        v["holm_level"], v["holm_low"], v["holm_high"] = verdicts[k].level, verdicts[k].low, verdicts[k].high
        v["ties"] = bool(-TIE <= v["low"] and v["high"] <= TIE)
        v["verdict"] = (("resolved: joint better" if v["delta"] > 0 else "resolved: sequential better")
                        if v["resolved"] else "not resolved") + ("; ties within ±0.15 pp" if v["ties"] else "")
        if not v["resolved"] or v["delta"] < 0:
            v["kind"] = "—"
        elif v["above_ceiling"]:
            v["kind"] = "above T's ceiling: R does part of the classifying"
        else:
            v["kind"] = "within T's ceiling: a gain a reconstruction could give"


def _pp(x: float | None, sign: bool = True) -> str:
    return "—" if x is None else f"{100 * x:{'+' if sign else ''}.2f}"


def regime_table(a: dict[str, Any]) -> str:
    """Per cell: ceiling, sequential, joint (best C), Δ with its 95 % interval and per seed, headroom share,
    the part above the ceiling, L2 losses and the reconstruction-constrained Δ."""
    lines = ["| R | T | T's ceiling (%) | sequential (%) | joint, best C (%) | best C | Δ (pp) | 95 % interval (pp) "
             "| Δ per seed (pp) | share of headroom | above ceiling (pp) | val L2, seq / joint | test L2, seq / joint "
             "| constrained Δ, seed 0 (pp) | verdict (Holm over the cells) | kind of gain |", "|---|---|" + "---:|" * 12 + "---|---|"]
    for c in CELLS:
        v = a["cells"]["_".join(c)]
        if v is None:
            lines.append(f"| {LABEL[c[0]]} | {LABEL[c[1]]} |" + " — |" * 14)
            continue
        share = "—" if v["headroom"] is None else f"{100 * v['headroom']:.0f} %"
        con = v["constrained"]
        constrained = "—" if con is None else f"{_pp(con['delta'])} (C = {number(con['C'])})"
        lines.append(
            f"| {LABEL[c[0]]} | {LABEL[c[1]]} | {_pp(v['ceiling'], False)} | {_pp(v['seq'], False)} "
            f"| {_pp(v['joint'], False)} | {number(v['C'])} | {_pp(v['delta'])} | [{_pp(v['low'])}, {_pp(v['high'])}] "
            f"| {', '.join(_pp(d) for d in v['per_seed'])} | {share} | {_pp(v['above_ceiling'], False)} "
            f"| {v['l2_sequential_val']:.2f} / {v['l2_joint_val']:.2f} "
            f"| {v['l2_sequential_test']:.2f} / {v['l2_joint_test']:.2f} | {constrained} | {v['verdict']} | {v['kind']} |")
    done = sum(v is not None for v in a["cells"].values())
    note = "" if done == len(CELLS) else f"\nSo far {done} of {len(CELLS)} cells have their rows.\n"
    return "\n".join(lines) + "\n" + note + f"\n{VERDICT_NOTE}\n"


VERDICT_NOTE = ("Verdicts follow the course's rule: " + stats.RULE + "; here Holm runs over the cells of the table. "
                "A cell *ties* when its 95 % interval lies within ±0.15 points. A resolved gain above T's ceiling (its "
                "accuracy on true images) is one no reconstruction could give that T: R does part of the classifying. "
                "The constrained Δ is seed 0 only (" + stats.ONE_SEED + ").")


def summary_table(a: dict[str, Any]) -> str:
    """The regime table's core, for the README: per cell, T's ceiling, the two strategies, Δ with its interval,
    the verdict and the kind of gain."""
    lines = ["| R | T | T's ceiling (%) | sequential (%) | joint, best C (%) | Δ (pp), 95 % interval | verdict | kind of gain |",
             "|---|---|---:|---:|---:|---|---|---|"]
    for c in CELLS:
        v = a["cells"]["_".join(c)]
        lines.append(f"| {LABEL[c[0]]} | {LABEL[c[1]]} |" + (" — |" * 6 if v is None else (
            f" {_pp(v['ceiling'], False)} | {_pp(v['seq'], False)} | {_pp(v['joint'], False)} (C = {number(v['C'])}) "
            f"| {_pp(v['delta'])} [{_pp(v['low'])}, {_pp(v['high'])}] | {v['verdict']} | {v['kind']} |")))
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- round 3: begin (generated by python -m tarlib.study --round 3 --tables-only --readme README.md) -->"
README_END = "<!-- round 3: end -->"


def readme_block(results: Path = protocol.RESULTS, a: dict[str, Any] | None = None) -> str:
    """The README's round-3 block: the regime summary and the targets, from the round's records."""
    a = analysis(results) if a is None else a
    return "\n".join([README_BEGIN, "", "Round 3 (MNIST, `results/round3/`): joint training at the C chosen on validation "
                      "against sequential training, by capacity of R and T; test accuracy, seed means over 3 seeds × "
                      "5 shared noise draws of the 10,000 test images.", "", summary_table(a).rstrip(), "",
                      verdict_table(targets(results, a)).rstrip(), "", README_END])


def summary(results: Path, a: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the tables as plain JSON (no per-image arrays), for the course."""
    keep = ("C", "seq", "joint", "delta", "low", "high", "per_seed", "ceiling", "headroom", "above_ceiling",
            "l2_sequential_val", "l2_joint_val", "l2_sequential_test", "l2_joint_test", "constrained", "resolved",
            "holm_level", "holm_low", "holm_high", "ties", "verdict", "kind")
    cells = {k: None if v is None else {f: v.get(f) for f in keep} for k, v in a["cells"].items()}
    contrasts = {k: {f: v.get(f) for f in ("estimate", "per_seed", "p", "adjusted_p", "level", "interval", "rejected")}
                 | {"t_p": None if v.get("t") is None else v["t"]["p_value"]} for k, v in a["contrasts"].items()}
    return {"labels": LABEL, "cells": cells, "contrasts": contrasts, "tie_pp": 100 * TIE,
            "targets": [{"target": t, "measured": m, "met": v} for t, m, v in targets(results, a)]}


def contrasts_table(a: dict[str, Any]) -> str:
    """The named contrasts: estimate, bootstrap p, Holm-adjusted p and interval, verdict, and the seed-level t."""
    lines = ["| contrast | estimate (pp) | per seed (pp) | bootstrap p | Holm p | interval at its Holm level (pp) "
             "| resolved | seed-level t (2 df): p |", "|---|---:|---|---:|---:|---:|---|---:|"]
    for name in CONTRASTS:
        v = a["contrasts"].get(name)
        if v is None or "interval" not in v:
            lines.append(f"| {name} |" + " — |" * 7)
            continue
        low, high = v["interval"]
        t = "—" if v["t"] is None else f"{v['t']['p_value']:.3f}"
        lines.append(f"| {name} | {_pp(v['estimate'])} | {', '.join(_pp(d) for d in v['per_seed'])} | {v['p']:.4f} "
                     f"| {v['adjusted_p']:.4f} | [{_pp(low)}, {_pp(high)}] ({100 * v['level']:.1f} %) "
                     f"| {'yes' if v['rejected'] else 'no'} | {t} |")
    return "\n".join(lines) + "\n"


def rows_table(results: Path, a: dict[str, Any]) -> str:
    """Every fine-tuning row of every cell: validation (3 draws) and test (5 draws) accuracy and L2, and its test
    L2 against its pre-trained R_s's (the sequential row of the same seed, which keeps R_s)."""
    listed = {r.name for r in protocol.rows(a["choices"], a["design"])[0]}
    lines = ["| R | T | row | seed | val accuracy (%) | test accuracy (%) | val L2 | test L2 | test L2 / R_s's |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for c in CELLS:
        whats = ["sequential", *(f"joint_C{number(C)}" for C in a["design"].c_grid), "end_to_end"]
        for what in whats:
            for s in a["design"].seeds:
                name = row_name(c, what, s)
                record = _record(results, name)
                if record is None or (name not in listed and not name.startswith("r2_")):
                    continue
                seq = _mean_over(_record(results, row_name(c, "sequential", s)), "test", "l2")
                l2 = _mean_over(record, "test", "l2")
                ratio = "—" if seq is None or l2 is None else f"{l2 / seq:.2f}"
                val, test = (_mean_over(record, part, "accuracy") for part in ("val", "test"))
                val_l2 = _mean_over(record, "val", "l2")
                if val_l2 is None and what == "sequential":
                    val_l2 = protocol.pretrained_val_l2(results, c[0], s, a["choices"])
                    val_l2 = None if val_l2 is None else f"{val_l2:.2f}¹"
                label = what.replace("_", "-") if not what.startswith("joint") else f"joint, C = {what[7:]}"
                lines.append(f"| {LABEL[c[0]]} | {LABEL[c[1]]} | {label} | {s} | {_pp(val, False)} | {_pp(test, False)} "
                             f"| {'—' if val_l2 is None else val_l2 if isinstance(val_l2, str) else f'{val_l2:.2f}'} "
                             f"| {'—' if l2 is None else f'{l2:.2f}'} | {ratio} |")
    return "\n".join(lines) + ("\n\n¹ Round 2's sequential rows were evaluated on test draws only; a sequential row "
                                "keeps its pre-trained R_s, so this is R_s's L2 on validation draw 0.\n")


def mcnemar_table(a: dict[str, Any]) -> str:
    """McNemar's exact p for every cell, seed and draw (joint best C against sequential): descriptive only."""
    lines = ["| R | T | seed | p per test draw 0–4 |", "|---|---|---:|---|"]
    for c in CELLS:
        v = a["cells"]["_".join(c)]
        for s, ps in zip(a["design"].seeds, v["mcnemar"] if v else []):
            lines.append(f"| {LABEL[c[0]]} | {LABEL[c[1]]} | {s} | {', '.join(f'{p:.3f}' for p in ps)} |")
    return "\n".join(lines) + "\n"


def _plateau(record: dict[str, Any]) -> float | None:
    """Relative change of the check-set L2 from step 6,000 (or the run's 3/4 point) to the end."""
    curve = {e["step"]: e["l2"] for e in record.get("validation", [])}
    if len(curve) < 2:
        return None
    end = max(curve)
    start = min(curve, key=lambda step: abs(step - 0.75 * end))
    return curve[end] / curve[start] - 1


def pretraining_table(results: Path, design: Design, choices: dict[str, Any]) -> str:
    """Each pre-trained R: its check-set L2, the plateau rule and, for rank 16, the closed-form check;
    each retrained round-2 network against round 2's record."""
    lines = ["| network | seed | check-set L2 at the end | change over the last quarter | plateau rule (< 1 %) "
             "| closed-form L2 (val draw 0) | trained / closed form | round 2's record |", "|---|---:|---:|---:|---|---:|---:|---|"]
    for level in protocol.R_LEVELS:
        for s in design.seeds:
            name = protocol.pre_R(level, s, {})
            record = _record(results, name)  # round 2's record for seed 0 of the full level (restored, not rerun)
            if record is None:
                lines.append(f"| R, {LABEL[level]} | {s} |" + " — |" * 6)
                continue
            change = _plateau(record)
            plateau = "—" if change is None else f"{100 * change:+.2f} %"
            rule = "—" if change is None else "met" if abs(change) < protocol.PLATEAU else "**missed**"
            rrr = choices.get("rrr", {}).get(str(s)) if level == "rank16" else None
            closed = ("—", "—") if rrr is None else (f"{rrr['closed_form_l2']:.3f}", f"{rrr['ratio']:.4f}")
            old = load_record(results.parent / "round2", name) if level == "full" else None
            same = "—" if old is None or load_record(results, name) is None else (
                f"check-set L2 {old['validation'][-1]['l2']:.3f} then, {record['validation'][-1]['l2']:.3f} now")
            lines.append(f"| R, {LABEL[level]} | {s} | {record['validation'][-1]['l2']:.3f} | {plateau} | {rule} "
                         f"| {closed[0]} | {closed[1]} | {same} |")
    return "\n".join(lines) + "\n"


def seconds(results: Path) -> tuple[float, int]:
    """Wall time of the round: every record's training and evaluation, the step timing, the closed-form
    rank-16 checks, the restored R_0's evaluation, and the sittings its records do not hold (``unrecorded_time.json``); and the number of records."""
    records = [json.loads(p.read_text()) for p in results.glob("*.json") if p.stem.startswith(("r2_", "r3_"))]
    total = sum(r.get("wall_time_s", 0) + r.get("evaluation_time_s", 0) for r in records)
    extra = [results / "unrecorded_time.json", results / "step_times.json"]
    total += sum(v["seconds"] for v in json.loads(extra[0].read_text()).values()) if extra[0].is_file() else 0
    total += json.loads(extra[1].read_text()).get("wall_time_s", 0) if extra[1].is_file() else 0
    total += sum(check.get("seconds", 0) for check in load_choices(results).get("rrr", {}).values())  # closed forms
    restored = results / protocol.RESTORED_FILE  # validation draw 0 of the restored R_0
    total += sum(v["seconds"] for v in json.loads(restored.read_text()).values()) if restored.is_file() else 0
    return total, len(records)


def complete(results: Path, a: dict[str, Any]) -> bool:
    """Whether every row of the round is determined and recorded."""
    listed, pending = protocol.rows(a["choices"], a["design"])
    return not pending and all((results / f"{r.name}.json").is_file() for r in listed)


def targets(results: Path, a: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The protocol's targets: (target, measured, verdict — None while the rows are missing)."""
    cells, contrasts, out = a["cells"], a["contrasts"], []
    primary = contrasts.get(next(iter(CONTRASTS)), {})
    rank16 = cells["rank16_cnn"]
    text = "1. primary: the R effect resolved (Holm-level interval excludes 0, estimate ≥ 0.3 pp), Δ(rank 16, CNN) > 0 in each seed"
    if "interval" in primary and rank16 is not None:
        low, high = primary["interval"]
        met = primary["rejected"] and low > 0 and primary["estimate"] >= CONTRAST_EFFECT and min(rank16["per_seed"]) > 0
        out.append((text, f"{_pp(primary['estimate'])} pp, [{_pp(low)}, {_pp(high)}] at {100 * primary['level']:.1f} %; "
                    f"Δ(rank 16, CNN) per seed {', '.join(_pp(d) for d in rank16['per_seed'])}", met))
    else:
        out.append((text, "—", None))
    full = cells["full_cnn"]
    text = "2. full × CNN ties: Δ's 95 % interval within ±0.15 pp"
    out.append((text, "—", None) if full is None else (
        text, f"{_pp(full['delta'])} pp, [{_pp(full['low'])}, {_pp(full['high'])}]", -TIE <= full["low"] and full["high"] <= TIE))
    for name in list(CONTRASTS)[2:]:
        v = contrasts.get(name, {})
        text = f"3. {name}: resolved or not (reported, no direction set)"
        out.append((text, "—", None) if "interval" not in v else (
            text, f"{_pp(v['estimate'])} pp, Holm p = {v['adjusted_p']:.4f}: {'resolved' if v['rejected'] else 'not resolved'}",
            True))
    hours, n = seconds(results)[0] / 3600, seconds(results)[1]
    budget = protocol.BUDGET_S / 3600
    shared_file = results / "shared_sittings.json"
    shared = sum(map(len, json.loads(shared_file.read_text()).values())) if shared_file.is_file() else 0
    out.append((f"4. time: ≤ {budget:g} wall-hours on 2 cores", f"{hours:.2f} h in {n} records"
                + (f"; {shared} sitting(s) shared the cores with other work (shared_sittings.json)" if shared else ""),
                hours <= budget if complete(results, a) else None))
    return out


def plot_regime(a: dict[str, Any], path: Path) -> Path | None:
    """Left: Δ with its 95 % interval for each cell, the per-cell tie margin shaded.  Right: sequential and
    joint accuracy of each cell with its T's ceiling marked.  None until a cell is complete."""
    import matplotlib.pyplot as plt

    done = [(c, a["cells"]["_".join(c)]) for c in CELLS if a["cells"]["_".join(c)] is not None]
    if not done:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = [f"{LABEL[c[0]]} × {LABEL[c[1]]}" for c, _ in done]
    y = np.arange(len(done))
    deltas = np.array([100 * v["delta"] for _, v in done])
    errors = np.array([[100 * (v["delta"] - v["low"]), 100 * (v["high"] - v["delta"])] for _, v in done]).T
    left.axvspan(-100 * TIE, 100 * TIE, color="0.9", label="tie margin ±0.15 pp")
    left.errorbar(deltas, y, xerr=errors, fmt="o", capsize=4)
    left.axvline(0, color="k", lw=0.8)
    left.set(yticks=y, yticklabels=labels, xlabel="Δ = joint (best C) − sequential, test accuracy (pp)",
             title="the gap, with its 95 % image-bootstrap interval")
    left.legend(loc="lower right", fontsize=8)
    for i, (_, v) in enumerate(done):
        right.plot([100 * v["seq"], 100 * v["joint"]], [i, i], color="0.6")
        right.plot(100 * v["seq"], i, "s", color="C0", label="sequential" if i == 0 else None)
        right.plot(100 * v["joint"], i, "o", color="C1", label="joint, best C" if i == 0 else None)
        if v["ceiling"] is not None:
            right.plot(100 * v["ceiling"], i, "|", color="k", ms=14, mew=2, label="T on true images" if i == 0 else None)
    right.set(yticks=y, yticklabels=[], xlabel="test accuracy (%)", title="accuracies and T's ceiling")
    right.legend(loc="lower left", fontsize=8)
    fig.suptitle("Round 3: when does task adaptation pay? (python -m tarlib.study --round 3 --tables-only)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def tables(results: Path = protocol.RESULTS, a: dict[str, Any] | None = None) -> dict[str, str]:
    """Every Markdown table of round 3, by file name, from its records (``a``: its :func:`analysis`)."""
    a = analysis(results) if a is None else a
    return {"regime.md": regime_table(a), "contrasts.md": contrasts_table(a), "mcnemar.md": mcnemar_table(a),
            "rows.md": rows_table(results, a), "regime_summary.md": summary_table(a),
            "pretraining.md": pretraining_table(results, a["design"], a["choices"]),
            "targets.md": verdict_table(targets(results, a))}


def write_tables(results: Path = protocol.RESULTS) -> list[Path]:
    """Write the tables and the regime figure; return the files written."""
    a, written = analysis(results), []
    for name, text in tables(results, a).items():
        (results / name).write_text(text)
        written.append(results / name)
    write_json(results / "summary.json", summary(results, a))
    written.append(results / "summary.json")
    figure = plot_regime(a, results / "regime.png")
    return written + ([figure] if figure is not None else [])
