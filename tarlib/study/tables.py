"""What the tables of every round share: the paper's Table 1, mean ± std cells, the comparison
with the paper, the verdicts on targets, and saving figures.

Every table of a round is a pure function of its JSON records; these helpers format them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Table 1 of Adler et al. (2022): test accuracy (%), L2 loss, cross-entropy, for the side-by-side comparison
PAPER_TABLE1: dict[str | float, tuple[float, float | None, float]] = {
    "pre-training": (93.61, 9.0, 0.643),
    "sequential": (96.01, 9.0, 0.124),
    "end-to-end": (96.70, 19.7, 0.118),
    0.01: (96.74, 12.8, 0.108),
    0.5: (97.00, 9.2, 0.100),
    0.999: (96.61, 9.0, 0.108),
    "true": (97.76, None, 0.088),
}
PAPER_BEST_C = max((k for k in PAPER_TABLE1 if not isinstance(k, str)), key=lambda k: PAPER_TABLE1[k][0])  # 0.5
VERDICTS = {None: "not run yet", True: "met", False: "**missed**"}


def mean_std(values: Iterable[float | None], digits: int, scale: float = 1.0) -> str:
    """A table cell: the mean ± sample standard deviation of ``scale`` × the values over seeds
    (missing ones left out); one value alone, "—" for none."""
    scaled = [scale * v for v in values if v is not None]
    if not scaled:
        return "—"
    if len(scaled) == 1:
        return f"{scaled[0]:.{digits}f}"
    return f"{statistics.mean(scaled):.{digits}f} ± {statistics.stdev(scaled):.{digits}f}"


def paper_comparison(rows: list[tuple[str, tuple[float, float | None, float], list[dict[str, float]]]]) -> str | None:
    """Markdown of (label, the paper's Table-1 numbers, our test metrics per seed) rows; rows without
    runs are left out (None when no row is left)."""
    lines = []
    for label, (acc, l2, ce), runs in rows:
        if not runs:
            continue
        ours = [mean_std([r[k] for r in runs if k in r], digits, scale)
                for k, digits, scale in (("accuracy", 2, 100.0), ("l2", 2, 1.0), ("cross_entropy", 3, 1.0))]
        ours[1] = ours[1] if l2 is not None else "–"
        paper = [f"{acc:.2f}", "–" if l2 is None else f"{l2:.1f}", f"{ce:.3f}"]
        cells = [c for pair in zip(paper, ours) for c in pair]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(runs)} |")
    if not lines:
        return None
    return "\n".join([
        "| method | accuracy (%), paper | accuracy (%), ours | L2, paper | L2, ours "
        "| cross-entropy, paper | cross-entropy, ours | our seeds |",
        "|---|" + "---:|" * 7,
        *lines,
    ]) + "\n"


def verdict_table(rows: list[tuple[str, str | None, bool | None]]) -> str:
    """Targets as Markdown: (target, measured or None, met — None while its runs are missing)."""
    return "\n".join(["| target | measured | verdict |", "|---|---|---|",
                      *(f"| {t} | {m or '—'} | {VERDICTS[v]} |" for t, m, v in rows)]) + "\n"


def save_figure(fig: Any, path: Path, dpi: int = 120, **options: Any) -> Path:
    """Write a matplotlib figure to ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi, **options)
    plt.close(fig)
    return path
