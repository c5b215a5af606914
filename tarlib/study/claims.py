"""The paper's claims, each checked against this project's own full runs in ``results/``.

    >>> from tarlib.study import claims
    >>> print(claims.markdown(claims.check("results")))

Each :class:`Claim` names where the paper makes it, the paper's numbers (labelled as the
paper's), our numbers, the rule, and the verdict.  Claims that one way of training
*classifies better* than another are decided by the course's one rule
(:func:`tarlib.stats.compare_family`: paired image bootstrap over the shared test draws of
round 2, Holm-corrected across the table's comparisons, every seed agreeing); the rows they
compare are the pre-registered ones, and a C is only ever the one chosen on validation data
or the paper's own.  The segmentation claim keeps round 2's pre-registered test (its 13
slices come from one brain, too few and too alike for an image bootstrap).  Nothing here is
typed in by hand except the paper's numbers (:data:`tarlib.study.tables.PAPER_TABLE1`).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tarlib import records, stats
from tarlib.study.registry import load_choices, load_record, number
from tarlib.study.tables import PAPER_BEST_C, PAPER_TABLE1

SEEDS = records.SEEDS
NOT_COMPARABLE = "not comparable across papers"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and what our runs say about it (``reproduced`` is None where no verdict is given)."""

    where: str
    claim: str
    paper: str
    ours: str
    rule: str
    reproduced: bool | None
    undecided: str = "undecided"  # the verdict where ``reproduced`` is None: why no verdict is given

    @property
    def verdict(self) -> str:
        """The verdict column: reproduced, not reproduced, or why there is none."""
        return {True: "reproduced", False: "**not reproduced**", None: self.undecided}[self.reproduced]


def mean_metric(results: Path, name: str, metric: str, round: int | None = None) -> tuple[float, float] | None:
    """Mean and standard deviation (0 for one seed) of ``metric`` over the seeds of course name ``name``
    (None where the round has no records)."""
    if not (Path(results) / ("round2" if (round or records.published_round()) == 2 else "")).is_dir():
        return None
    values = [records.test_metrics(r)[metric] for r in records.course_runs(name, results, round).get(name, [])]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _table1(results: Path) -> list[Claim]:
    round2 = results / "round2"
    best = load_choices(round2).get("best_C", {}).get("C")
    rows = {"the paper's C = 0.5": ("r2_joint_C0.5", 0.5)}
    if best is not None:
        rows[f"C = {number(best)}, chosen on validation"] = (f"r2_joint_C{number(best)}", best)
    seq = records.correct("r2_sequential", results)
    pairs = {label: (a, seq) for label, (row, _) in rows.items()
             if seq is not None and (a := records.correct(row, results)) is not None}
    out = []
    for label, verdict in (stats.compare_family(pairs) if pairs else {}).items():
        C = rows[label][1] if label.startswith("the paper") else PAPER_BEST_C  # a chosen C faces the paper's best
        paper = (f"{'' if label.startswith('the paper') else f'its best, C = {number(C)}: '}"
                 f"{PAPER_TABLE1[C][0]:.2f} % vs {PAPER_TABLE1['sequential'][0]:.2f} %")
        out.append(Claim("section 5.1, Table 1", f"joint training ({label}) classifies better than sequential training",
                         paper, f"{verdict.points()} (3 seeds × 5 noise draws); {verdict.text}",
                         "the course's rule (notebook 04), Holm over this table's two comparisons",
                         verdict.resolved is True and verdict.mean > 0))
    l2 = {name: mean_metric(results, f"mnist_{name}", "l2", 2) for name in ("sequential", "end_to_end", "joint_C0.5")}
    if all(l2.values()):
        seq_l2, e2e_l2, joint_l2 = (l2[k][0] for k in ("sequential", "end_to_end", "joint_C0.5"))
        out.append(Claim(
            "section 5.1, Table 1", "end-to-end training (C = 0) reconstructs much worse than sequential",
            f"L2 {PAPER_TABLE1['end-to-end'][1]} vs {PAPER_TABLE1['sequential'][1]}",
            f"L2 {e2e_l2:.1f} vs {seq_l2:.1f} (3 seeds each)",
            "none: with C = 0 nothing ties R to images, so its L2 depends on the run (notebook 06)", None, NOT_COMPARABLE))
        out.append(Claim(
            "section 5.1, Table 1", "joint training (C = 0.5) reconstructs about as well as sequential",
            f"L2 {PAPER_TABLE1[0.5][1]} vs {PAPER_TABLE1['sequential'][1]}",
            f"L2 {joint_l2:.1f} vs {seq_l2:.1f} (3 seeds each)", "L2 within 10 %", abs(joint_l2 / seq_l2 - 1) <= 0.1))
    return out


def _segmentation(results: Path) -> list[Claim]:
    round2 = results / "round2"
    best = load_choices(round2).get("seg_best_C", {}).get("C")
    pairs = [(load_record(round2, f"r2_seg_joint_C{number(best)}_s{s}"), load_record(round2, f"r2_seg_sequential_s{s}"))
             for s in SEEDS] if best is not None else []
    if not pairs or any(j is None or q is None for j, q in pairs):
        return []
    diffs = np.array([j["evaluation"]["test"]["dice"] - q["evaluation"]["test"]["dice"] for j, q in pairs])
    t = stats.paired_t(diffs)
    resolved = t["p_value"] < 0.05 and (all(diffs > 0) or all(diffs < 0))
    text = ("resolved: joint ahead" if t["mean"] > 0 else "resolved: joint behind") if resolved else \
        f"not resolved, joint {'ahead' if t['mean'] > 0 else 'behind'}"
    return [Claim("section 5.2, Figure 3", f"joint training (C = {number(best)}, chosen on validation) segments better "
                  "than sequential training", "shown as images, no numbers",
                  f"Dice {t['mean']:+.4f}, per seed {', '.join(f'{d:+.4f}' for d in diffs)}; t = {t['t']:.2f}, "
                  f"two-sided p = {t['p_value']:.3f}; {text}",
                  "round 2's pre-registered test: t over the 3 seeds (2 df), p < 0.05 and every seed agreeing",
                  resolved and t["mean"] > 0)]


def _robustness(results: Path) -> list[Claim]:
    path = results / "round2" / "robustness.json"
    if not path.is_file():
        return []
    overall = json.loads(path.read_text())["overall"]
    rows = [o for o in overall if o["model"] == "mnist_joint_C0.5" and o["policy"] == "rebuilt"]
    if not rows:
        return []
    ours = "; ".join(f"{o['sweep']}: {100 * o['difference']:+.2f} pp [{100 * o['low']:+.2f}, {100 * o['high']:+.2f}]"
                     for o in rows)
    return [Claim("section 7", "a joint model is more robust than a sequential one to a changed acquisition",
                  "stated, not tested", f"joint C = 0.5 drop − sequential's drop, {ours} (one model each)",
                  "the course's rule: one published model per strategy, so no verdict (notebook 09)", None,
                  stats.ONE_SEED)]


def check(results_dir: str | Path) -> list[Claim]:
    """Every claim that the published round's records in ``results_dir`` (its ``round2/``) can decide."""
    results = Path(results_dir)
    if not results.is_dir():
        raise ValueError(f"results_dir must be the results folder (with round2/ in it), got {results}")
    return _table1(results) + _segmentation(results) + _robustness(results)


def markdown(found: list[Claim]) -> str:
    """The claims as a Markdown table; the paper's numbers in their own column."""
    lines = ["| where | claim | the paper's numbers | ours | rule | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {c.where} | {c.claim} | {c.paper} | {c.ours} | {c.rule} | {c.verdict} |" for c in found]
    return "\n".join(lines) + "\n"
