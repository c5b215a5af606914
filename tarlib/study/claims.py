"""The paper's claims, each checked against this project's own full runs in ``results/``.

    >>> from tarlib.study import claims
    >>> print(claims.markdown(claims.check("results")))

Each :class:`Claim` names where the paper makes it, the paper's numbers (labelled as the
paper's), our numbers read from the JSON files of ``python -m tarlib.reproduce`` and
``python -m tarlib.robustness``, the rule that decides "reproduced", and the verdict
(``None`` when the needed results are missing).  Nothing here is typed in by hand
except the paper's numbers, which come from :data:`tarlib.study.tables.PAPER_TABLE1`.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from tarlib import records
from tarlib.study.tables import PAPER_TABLE1


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and what our runs say about it."""

    where: str
    claim: str
    paper: str
    ours: str
    rule: str
    reproduced: bool | None


def _runs(results: Path, name: str, round: int | None) -> list[dict]:
    """The test metrics of course name ``name`` over its seeds (:func:`tarlib.records.course_runs`)."""
    return [records.test_metrics(r) for r in records.course_runs(name, results, round).get(name, [])]


def mean_metric(results: Path, name: str, metric: str, round: int | None = None) -> tuple[float, float] | None:
    """Mean and standard deviation (0 for one seed) of ``metric`` over the seeds of ``name``."""
    values = [run[metric] for run in _runs(results, name, round)]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _table1(results: Path, round: int | None) -> list[Claim]:
    seq = mean_metric(results, "mnist_sequential", "accuracy", round)
    joint = mean_metric(results, "mnist_joint_C0.5", "accuracy", round)
    l2 = {name: mean_metric(results, f"mnist_{name}", "l2", round) for name in ("sequential", "end_to_end", "joint_C0.5")}
    out = []
    if seq and joint:
        gap, noise = joint[0] - seq[0], max(seq[1], joint[1])
        out.append(Claim(
            "section 5.1, Table 1", "joint training (C = 0.5) classifies better than sequential training",
            f"{PAPER_TABLE1[0.5][0]:.2f} % vs {PAPER_TABLE1['sequential'][0]:.2f} %",
            f"{100 * joint[0]:.2f} % vs {100 * seq[0]:.2f} % (seed std {100 * noise:.2f} pp)",
            "the gap exceeds the seed-to-seed standard deviation", gap > noise))
    if all(l2.values()):
        seq_l2, e2e_l2, joint_l2 = (l2[k][0] for k in ("sequential", "end_to_end", "joint_C0.5"))
        out.append(Claim(
            "section 5.1, Table 1", "end-to-end training (C = 0) reconstructs much worse than sequential",
            f"L2 {PAPER_TABLE1['end-to-end'][1]} vs {PAPER_TABLE1['sequential'][1]}",
            f"L2 {e2e_l2:.1f} vs {seq_l2:.1f}", "L2 at least 20 % larger", e2e_l2 > 1.2 * seq_l2))
        out.append(Claim(
            "section 5.1, Table 1", "joint training (C = 0.5) reconstructs about as well as sequential",
            f"L2 {PAPER_TABLE1[0.5][1]} vs {PAPER_TABLE1['sequential'][1]}",
            f"L2 {joint_l2:.1f} vs {seq_l2:.1f}", "L2 within 10 %", abs(joint_l2 / seq_l2 - 1) <= 0.1))
    return out


def _segmentation(results: Path, round: int | None) -> list[Claim]:
    dice = {C: mean_metric(results, f"seg_joint_C{C}", "dice", round) for C in ("0", "0.1", "0.5", "0.99")}
    psnr = {C: mean_metric(results, f"seg_joint_C{C}", "psnr", round) for C in ("0", "0.5")}
    if not all(dice.values()) or not all(psnr.values()):
        return []
    best = max(dice["0.1"][0], dice["0.5"][0])
    return [
        Claim("section 5.2, Figure 3", "a joint C in [0.1, 0.5] segments better than C = 0.99",
              "shown as images, no numbers", f"Dice {best:.3f} (best of C = 0.1, 0.5) vs {dice['0.99'][0]:.3f}",
              "higher Dice", best > dice["0.99"][0]),
        Claim("section 5.2, Figure 3", "as C → 0 the segmentation stays usable but the reconstruction degrades",
              "shown as images, no numbers",
              f"C = 0: Dice {dice['0'][0]:.3f}, PSNR {psnr['0'][0]:.1f} dB; C = 0.5: Dice {dice['0.5'][0]:.3f}, "
              f"PSNR {psnr['0.5'][0]:.1f} dB", "Dice at least 90 % of C = 0.5's and PSNR at least 3 dB lower",
              dice["0"][0] >= 0.9 * dice["0.5"][0] and psnr["0"][0] < psnr["0.5"][0] - 3),
    ]


def _robustness(results: Path) -> list[Claim]:
    path = results / "robustness.json"
    if not path.is_file():
        return []
    overall = json.loads(path.read_text())["overall"]
    rows = [o for o in overall if o["model"] == "mnist_joint_C0.5" and o["policy"] == "rebuilt"]
    if not rows:
        return []
    ours = "; ".join(f"{o['sweep']}: {100 * o['difference']:+.2f} pp [{100 * o['low']:+.2f}, {100 * o['high']:+.2f}]"
                     for o in rows)
    return [Claim("section 7", "a joint model is more robust than a sequential one to a changed acquisition",
                  "stated, not tested", f"joint C = 0.5 drop − sequential's drop, {ours}",
                  "the 95 % interval lies below 0 on both sweeps", all(o["verdict"] == "more robust" for o in rows))]


def check(results_dir: str | Path, round: int | None = None) -> list[Claim]:
    """Every claim that the runs of reproduction round ``round`` in ``results_dir`` can decide (by
    default the round whose models ``weights/`` publishes)."""
    results = Path(results_dir)
    if not results.is_dir():
        raise ValueError(f"results_dir must be a folder of run JSON files, got {results}")
    return _table1(results, round) + _segmentation(results, round) + _robustness(results)


def markdown(found: list[Claim]) -> str:
    """The claims as a Markdown table; the paper's numbers in their own column."""
    verdict = {True: "reproduced", False: "**not reproduced**", None: "undecided"}
    lines = ["| where | claim | the paper's numbers | ours | rule | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {c.where} | {c.claim} | {c.paper} | {c.ours} | {c.rule} | {verdict[c.reproduced]} |" for c in found]
    return "\n".join(lines) + "\n"
