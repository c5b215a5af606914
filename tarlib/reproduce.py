"""Reproduce section 5 of the paper: Table 1, a sweep over C and the segmentation of Figure 3.

    python -m tarlib.reproduce                       # every run (CPU-hours), then the tables
    python -m tarlib.reproduce --only mnist --fast   # smoke-size runs of Table 1 only
    python -m tarlib.reproduce --tables-only --readme README.md   # regenerate results/*.md, sweep.png, README block
    python -m tarlib.reproduce --export-weights      # publish the notebooks' models in weights/ (needs runs/)

Each run is one row of :data:`ROWS`: a command of ``python -m tarlib.experiments``
with its own run directory ``runs/<row>``.  Rows are run in dependency order
(for MNIST, R and T are pre-trained once and passed on with ``--init-reconstruction``
/ ``--init-task``, as in section 5.1; the joint segmentation runs start from scratch:
"There was no pre-training", section 5.2); a row whose ``results/<row>.json`` exists is done and skipped,
and an interrupted row resumes from its checkpoint.  Each finished run's
``metrics.json`` is copied to ``results/<row>.json``; the Markdown tables and the
sweep figure are then regenerated from those JSON files alone
(:func:`tables_from_results`, :func:`plot_sweep`), as mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tarlib
from tarlib import experiments, pretrained
from tarlib.config import atomic_write

# ----------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class Row:
    """One run of ``python -m tarlib.experiments``, stored as ``results/<name>.json``.

    ``init_reconstruction`` / ``init_task`` name earlier rows whose ``R.pt`` / ``T.pt``
    this run starts from; they are its dependencies.
    """

    name: str
    experiment: str
    args: tuple[str, ...]
    seed: int = 0
    init_reconstruction: str | None = None
    init_task: str | None = None
    steps: int | None = None  # the training budget of a full run (see STEPS); --fast runs use their own sizes
    eval_every: int | None = None  # validation every N steps (default: every fifth of the run)

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(d for d in (self.init_reconstruction, self.init_task) if d is not None)

    def argv(self, runs: Path, fast: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
        """The command line of this row for :func:`tarlib.experiments.main`."""
        argv = [self.experiment, *self.args, "--seed", str(self.seed), "--out", str(runs / self.name)]
        if self.steps is not None and not fast:
            argv += ["--steps", str(self.steps), "--eval-every", str(self.eval_every or max(1, self.steps // 5))]
        if self.init_reconstruction is not None:
            argv += ["--init-reconstruction", str(runs / self.init_reconstruction / "R.pt")]
        if self.init_task is not None:
            argv += ["--init-task", str(runs / self.init_task / "T.pt")]
        return argv + (["--fast"] if fast else []) + list(extra)


@dataclass(frozen=True)
class Entry:
    """One line of a results table: the mean ± std of ``metrics[key]`` over the runs ``rows`` (seeds)."""

    label: str
    rows: tuple[str, ...]
    key: str = "test"
    C: float | None = None
    paper: tuple[float, float | None, float] | None = None  # Table 1 of the paper: accuracy (%), L2, cross-entropy


@dataclass
class Table:
    """A results table (``results/<name>.md``) and the metrics shown in its columns."""

    name: str
    title: str
    columns: tuple[tuple[str, str], ...]  # (metric in the JSON, column heading)
    entries: list[Entry] = field(default_factory=list)


C_TABLE1 = (0.01, 0.5, 0.999)  # Table 1
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
C_SWEEP = (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999, 1.0)  # Table 1's joint rows, extended to all of [0, 1]
C_SEGMENTATION = (0.0, 0.1, 0.5, 0.99)  # Figure 3
SEEDS = 3  # seeds of the rows that report mean ± std (sequential and joint C = 0.5)
# Round 1 ran before round 2 chose μ = 0.15 (tarlib.physics.MNIST_MU), with the default of
# that time; its JSON files have no "mu".  Its MNIST rows pin it, so that rerunning round 1
# means what it meant, and readers of its files use it.
ROUND1_MU = 0.1
# Training steps of the full runs.  The paper pre-trains R for 8,000 steps of batch 64
# (section 5.1); on 2 CPU cores a step of learned gradient descent took 0.32 s.  These
# counts came from an estimate of what would fit 3 CPU-hours per table; the runs took
# 0.85 h (MNIST) and 1.10 h (segmentation), so the estimate, not the budget, set them.
# R and T are pre-trained once, and every fine-tuning row (sequential, end-to-end,
# joint) gets the same, smaller number of steps, so that the strategies are compared at
# equal cost.  Round 2 (tarlib.round2) uses the paper's 8,000 pre-training steps.
STEPS = {
    "mnist_pretrain_R": 2500,  # 0.32 s per step
    "mnist_pretrain_T": 3000,  # 0.02 s per step (classifier on true images)
    "mnist_finetune": 600,  # sequential 0.12 s, end-to-end and joint 0.33 s per step
    "mnist_baseline": 3000,  # FBP + classifier and the sinogram CNN, from scratch, ≈ 0.03 s per step
    "seg_pretrain": 400,  # learned primal-dual 1.1 s, U-Net on true images ≈ 0.3 s per step
    "seg": 400,  # joint 1.4 s, sequential 0.6 s per step (batch 8)
}


def _c(C: float) -> str:
    return f"{C:g}"


def _seeded(name: str, seeds: int) -> list[str]:
    """Row names of the seeds 0, …, seeds − 1 (seed 0 keeps the plain name)."""
    return [name if s == 0 else f"{name}_seed{s}" for s in range(seeds)]


def build_rows(seeds: int = SEEDS) -> tuple[list[Row], list[Table]]:
    """The runs of section 5 and the tables made of them (Table 1, the C sweep, Figure 3 of section 5.2)."""
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer ≥ 1, got {seeds!r}")
    rows: list[Row] = []

    def add(name: str, experiment: str, *args: str, steps: str, n_seeds: int = 1, **init: str) -> tuple[str, ...]:
        names = _seeded(name, n_seeds)
        if experiment == "mnist":
            args = (*args, "--mu", _c(ROUND1_MU))
        for s, n in enumerate(names):
            rows.append(Row(n, experiment, tuple(args), seed=s, steps=STEPS[steps], **init))
        return tuple(names)

    # section 5.1, Table 1: R pre-trained on ℓ_X (eq. (4)), T on true images (eq. (5))
    pre = {"init_reconstruction": "mnist_pretrain_R", "init_task": "mnist_pretrain_T"}
    R = add("mnist_pretrain_R", "mnist", "--strategy", "pretrain_reconstruction", steps="mnist_pretrain_R")
    T = add("mnist_pretrain_T", "mnist", "--strategy", "pretrain_task", steps="mnist_pretrain_T",
            init_reconstruction="mnist_pretrain_R")
    seq = add("mnist_sequential", "mnist", "--strategy", "sequential", steps="mnist_finetune", n_seeds=seeds, **pre)
    e2e = add("mnist_end_to_end", "mnist", "--strategy", "end_to_end", steps="mnist_finetune", **pre)
    # joint with C = 0 is the end-to-end run (eq. (16)): the sweep reuses it instead of training it twice
    joint = {
        C: e2e if C == 0 else add(f"mnist_joint_C{_c(C)}", "mnist", "--strategy", "joint", "--C", _c(C),
                                  steps="mnist_finetune", n_seeds=seeds if C == 0.5 else 1, **pre)
        for C in sorted(set(C_TABLE1) | set(C_SWEEP))
    }
    fbp = add("mnist_fbp_classifier", "mnist", "--strategy", "end_to_end", "--recon", "fbp", steps="mnist_baseline")
    sino = add("mnist_sinogram_cnn", "mnist", "--strategy", "end_to_end", "--recon", "none", steps="mnist_baseline")
    columns = (("accuracy", "accuracy (%)"), ("l2", "L2 loss"), ("cross_entropy", "cross entropy"), ("psnr", "PSNR (dB)"))
    mnist = Table("mnist", "MNIST classification from Poisson data (section 5.1, Table 1)", columns, [
        Entry("pre-training of R (eq. (4))", R),
        Entry("classifier on true images (eq. (5))", T, key="test_true_images", paper=PAPER_TABLE1["true"]),
        Entry("pre-training: T ∘ R, separately trained", T, paper=PAPER_TABLE1["pre-training"]),
        Entry("sequential (eq. (13))", seq, paper=PAPER_TABLE1["sequential"]),
        Entry("end-to-end (eq. (16))", e2e, paper=PAPER_TABLE1["end-to-end"]),
        *(Entry(f"joint, C = {_c(C)} (eq. (20))", joint[C], C=C, paper=PAPER_TABLE1[C]) for C in C_TABLE1),
        Entry("FBP + classifier", fbp),
        Entry("CNN on the sinogram", sino),
    ])
    sweep = Table("sweep", "MNIST: joint training for C from 0 to 1 (section 5.1, Table 1's joint rows extended)",
                  (("accuracy", "accuracy (%)"), ("l2", "L2 loss")),
                  [Entry(f"C = {_c(C)}", joint[C], C=C) for C in C_SWEEP])

    # section 5.2, Figure 3: grey-matter segmentation; joint training without pre-training, as in the paper;
    # sequential trains T on the output of the pre-trained R (eq. (13))
    R = add("seg_pretrain_R", "segmentation", "--strategy", "pretrain_reconstruction", steps="seg_pretrain")
    T = add("seg_pretrain_T", "segmentation", "--strategy", "pretrain_task", steps="seg_pretrain",
            init_reconstruction="seg_pretrain_R")
    seq = add("seg_sequential", "segmentation", "--strategy", "sequential", steps="seg",
              init_reconstruction="seg_pretrain_R")
    seg_joint = {C: add(f"seg_joint_C{_c(C)}", "segmentation", "--strategy", "joint", "--C", _c(C), steps="seg")
                 for C in C_SEGMENTATION}
    fbp = add("seg_fbp_unet", "segmentation", "--strategy", "end_to_end", "--recon", "fbp", steps="seg")
    segmentation = Table("segmentation", "Grey-matter segmentation of brain slices (section 5.2, Figure 3)",
                         (("dice", "Dice"), ("iou", "IoU"), ("l2", "L2 loss"), ("psnr", "PSNR (dB)")), [
        Entry("pre-training of R (eq. (4))", R),
        Entry("U-Net on true images (eq. (5))", T, key="test_true_images"),
        Entry("pre-training: T ∘ R, separately trained", T),
        Entry("sequential (eq. (13))", seq),
        *(Entry(f"joint, C = {_c(C)} (eq. (20))", seg_joint[C], C=C) for C in C_SEGMENTATION),
        Entry("FBP + U-Net", fbp),
    ])
    return rows, [mnist, sweep, segmentation]


ROWS, TABLES = build_rows()

# The models published in weights/ (the ones the notebooks show): the results row whose test
# metrics describe the model, and the run whose R.pt / T.pt it consists of.  About 24 MB.
_BOTH = ("R", "T")
PUBLISHED: dict[str, dict[str, str]] = {
    "mnist_pretrain_T": {"R": "mnist_pretrain_R", "T": "mnist_pretrain_T"},  # R and T trained separately
    "mnist_sequential": {"R": "mnist_pretrain_R", "T": "mnist_sequential"},
    **{row: {part: row for part in _BOTH}
       for row in ("mnist_end_to_end", "mnist_joint_C0.01", "mnist_joint_C0.5", "mnist_joint_C0.999")},
    "mnist_fbp_classifier": {"T": "mnist_fbp_classifier"},
    "mnist_sinogram_cnn": {"T": "mnist_sinogram_cnn"},
    "seg_sequential": {"R": "seg_pretrain_R", "T": "seg_sequential"},
    # of the joint runs with C in [0.1, 0.5], the one with the higher final validation Dice
    "seg_joint_C0.5": {part: "seg_joint_C0.5" for part in _BOTH},
}


def select(rows: list[Row], tables: list[Table], only: str | None = None, names: list[str] | None = None) -> list[Row]:
    """The rows of table ``only`` (or the rows ``names``) with all their dependencies, in dependency order."""
    by_name = {r.name: r for r in rows}
    if only is not None:
        table = {t.name: t for t in tables}.get(only)
        if table is None:
            raise ValueError(f"--only must be one of {[t.name for t in tables]}, got {only!r}")
        wanted = [n for e in table.entries for n in e.rows]
    else:
        wanted = list(names) if names is not None else [r.name for r in rows]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise ValueError(f"unknown rows {unknown}; the rows are {sorted(by_name)}")
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ValueError(f"rows depend on each other in a cycle: {' -> '.join(path + (name,))}")
        if name in order:
            return
        for dep in by_name[name].deps:
            if dep not in by_name:
                raise ValueError(f"row {name} depends on {dep}, which is no row")
            visit(dep, path + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return [by_name[n] for n in order]


# ----------------------------------------------------------------------------- running


def run_experiment(argv: list[str]) -> None:
    """``python -m tarlib.experiments ARGV`` in this process; a RuntimeError names the command if it fails."""
    try:
        status = experiments.main(argv)
    except SystemExit as err:  # argparse rejected the arguments
        status = err.code
    if status != 0:
        raise RuntimeError(f"run failed with exit status {status}: python -m tarlib.experiments {' '.join(argv)}")


def run_rows(
    rows: list[Row], runs: Path, results: Path, fast: bool = False, extra: tuple[str, ...] = ()
) -> list[str]:
    """Run every row whose ``results/<row>.json`` is missing (in the order given); return the rows run."""
    results.mkdir(parents=True, exist_ok=True)
    ran = []
    for row in rows:
        done = results / f"{row.name}.json"
        if done.exists():
            print(f"[reproduce] {row.name}: done ({done})", flush=True)
            continue
        argv = row.argv(runs, fast, extra)
        print(f"[reproduce] {row.name}: python -m tarlib.experiments {' '.join(argv)}", flush=True)
        run_experiment(argv)
        # atomic: a half-copied file must never mark a row as done
        atomic_write(done, (runs / row.name / "metrics.json").read_bytes())
        ran.append(row.name)
    return ran


# ----------------------------------------------------------------------------- tables and figure


def _load(results: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [json.loads((results / f"{n}.json").read_text()) for n in names if (results / f"{n}.json").exists()]


def _mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _pm(values: list[float], digits: int, scale: float = 1.0) -> str:
    return _mean_std([v * scale for v in values], digits)


def _mode(runs: list[dict[str, Any]]) -> str:
    """Whether the numbers come from ``--fast`` (smoke-size) runs or full runs, from the recorded config."""
    fast = {bool(r["config"].get("fast")) for r in runs}
    if fast == {True}:
        return "`--fast` (smoke-size) runs: these numbers only show that the pipeline works"
    if fast == {False}:
        return "full runs"
    return "a MIX of `--fast` and full runs: rerun the `--fast` rows in full before trusting the table"


def table_markdown(table: Table, results: Path) -> str | None:
    """The Markdown of ``table`` from the JSON files in ``results`` (None when none of its runs exists)."""
    all_runs = [r for e in table.entries for r in _load(results, e.rows)]
    if not all_runs:
        return None
    digits = {"accuracy": 2, "dice": 3, "iou": 3, "cross_entropy": 3, "l2": 2, "psnr": 2}
    scale = {"accuracy": 100.0}  # accuracy in %, as in the paper
    fast = " --fast" if all(r["config"].get("fast") for r in all_runs) else ""
    lines = [
        f"## {table.title}",
        "",
        f"Regenerate: `python -m tarlib.reproduce --only {table.name}{fast}` (runs what is missing, then the tables);",
        "tables only: `python -m tarlib.reproduce --tables-only`.",
        f"Numbers from {_mode(all_runs)}. Test set metrics, mean ± std over seeds where there are several.",
        "",
        "| method | " + " | ".join(h for _, h in table.columns) + " | seeds | steps |",
        "|---|" + "---:|" * (len(table.columns) + 2),
    ]
    for entry in table.entries:
        runs = [r for r in _load(results, entry.rows) if entry.key in r["metrics"]]
        cells = [_pm([r["metrics"][entry.key][m] for r in runs if m in r["metrics"][entry.key]], digits[m],
                     scale.get(m, 1.0))
                 for m, _ in table.columns]
        steps = sorted({r["config"]["steps"] for r in runs})
        steps_cell = ", ".join(map(str, steps)) or "—"
        lines.append(f"| {entry.label} | " + " | ".join(cells) + f" | {len(runs)} | {steps_cell} |")
    return "\n".join(lines) + "\n"


def comparison_markdown(table: Table, results: Path) -> str | None:
    """Our numbers next to the paper's Table 1, for the entries of ``table`` that the paper reports."""
    rows = [(entry.label, entry.paper, [r["metrics"][entry.key] for r in _load(results, entry.rows)
                                        if entry.key in r["metrics"]])
            for entry in table.entries if entry.paper is not None]
    return paper_comparison(rows)


def paper_comparison(rows: list[tuple[str, tuple[float, float | None, float], list[dict[str, float]]]]) -> str | None:
    """Markdown of (label, the paper's Table-1 numbers, our test metrics per seed) rows; rows without
    runs are left out."""
    lines = []
    for label, (acc, l2, ce), runs in rows:
        if not runs:
            continue
        ours = [_pm([r[k] for r in runs if k in r], digits, scale)
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


def _hours(runs: list[dict[str, Any]]) -> float:
    return sum(r.get("wall_time_s", 0.0) for r in runs) / 3600


def times_markdown(tables: list[Table], results: Path) -> str | None:
    """Measured wall time of every finished run, per table (a row shared by two tables counts in each)."""
    lines = []
    for table in tables:
        names = list(dict.fromkeys(n for e in table.entries for n in e.rows))
        runs = _load(results, tuple(names))
        if runs:
            devices = ", ".join(sorted({r.get("device", "?") for r in runs}))
            lines.append(f"| {table.name} | {len(runs)} of {len(names)} | {_hours(runs):.2f} | {devices} |")
    if not lines:
        return None
    return "\n".join([
        "| table | runs finished | wall time (hours) | device |",
        "|---|---:|---:|---|",
        *lines,
    ]) + "\n"


def _values(results: Path, table: Table, label_start: str, metric: str) -> list[float]:
    entry = next(e for e in table.entries if e.label.startswith(label_start))
    return [r["metrics"][entry.key][metric] for r in _load(results, entry.rows) if entry.key in r["metrics"]]


def targets_markdown(tables: list[Table], results: Path) -> str | None:
    """The targets of the reproduction (issue 7 of the project), each with the measured value and a verdict."""
    by_name = {t.name: t for t in tables}
    if not {"mnist", "segmentation"} <= set(by_name):
        return None
    mnist, seg = by_name["mnist"], by_name["segmentation"]
    joint, seq = _values(results, mnist, "joint, C = 0.5", "accuracy"), _values(results, mnist, "sequential", "accuracy")
    true = _values(results, mnist, "classifier on true images", "accuracy")
    seg_seq = _values(results, seg, "sequential", "dice")
    seg_joint = {C: _values(results, seg, f"joint, C = {_c(C)} ", "dice") for C in (0.1, 0.5)}
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")  # noqa: E731
    lines = []

    def target(text: str, measured: str | None, met: bool | None) -> None:
        verdict = "not run yet" if met is None else ("met" if met else "**missed**")
        lines.append(f"| {text} | {measured or '—'} | {verdict} |")

    ok = len(joint) > 0
    target("joint, C = 0.5: test accuracy ≥ 97.0 % (paper 97.00 %)",
           f"{100 * statistics.mean(joint):.2f} % (mean of {len(joint)})" if ok else None,
           statistics.mean(joint) >= 0.97 if ok else None)
    ok = len(joint) > 1 and len(seq) > 1
    gap = statistics.mean(joint) - statistics.mean(seq) if ok else 0.0
    target("joint, C = 0.5 beats sequential by more than the seed std",
           f"{100 * gap:+.2f} pp; std {100 * sd(joint):.2f} / {100 * sd(seq):.2f} pp" if ok else None,
           gap > max(sd(joint), sd(seq)) if ok else None)
    target("classifier on true images ≥ 99.0 %", f"{100 * true[0]:.2f} %" if true else None,
           true[0] >= 0.99 if true else None)
    ok = bool(seg_seq) and all(seg_joint.values())
    best = max(seg_joint, key=lambda C: seg_joint[C][0]) if ok else None
    target("segmentation: a joint C in [0.1, 0.5] beats sequential in Dice",
           f"C = {best}: {seg_joint[best][0]:.3f} vs {seg_seq[0]:.3f}" if ok else None,
           seg_joint[best][0] > seg_seq[0] if ok else None)
    for table in (mnist, seg):
        names = list(dict.fromkeys(n for e in table.entries for n in e.rows))
        runs = _load(results, tuple(names))
        complete = len(runs) == len(names)
        target(f"{table.name} table: ≤ 3 CPU-hours on 2 cores", f"{_hours(runs):.2f} h" if complete else None,
               _hours(runs) <= 3 if complete else None)
    return "\n".join(["| target | measured | verdict |", "|---|---|---|", *lines]) + "\n"


def tables_from_results(results_dir: str | Path, tables: list[Table] | None = None) -> dict[str, str]:
    """Every table with at least one finished run, as ``{name: markdown}``; a pure function of the JSON files.

    Besides the tables themselves: ``comparison`` (ours next to the paper's Table 1)
    and ``times`` (measured wall time per table).
    """
    results = Path(results_dir)
    if not results.is_dir():
        raise ValueError(f"results_dir must be a folder, got {results}")
    tables = TABLES if tables is None else tables
    out = {}
    for table in tables:
        markdown = table_markdown(table, results)
        if markdown is not None:
            out[table.name] = markdown
    mnist = next((t for t in tables if t.name == "mnist"), None)
    comparison = comparison_markdown(mnist, results) if mnist is not None else None
    if comparison is not None:
        out["comparison"] = comparison
    targets = targets_markdown(tables, results)
    if targets is not None and out:
        out["targets"] = targets
    times = times_markdown(tables, results)
    if times is not None:
        out["times"] = times
    return out


README_BEGIN = "<!-- results: begin (generated by python -m tarlib.reproduce --tables-only --readme README.md) -->"
README_END = "<!-- results: end -->"


def readme_block(results: Path, round: int | None = None) -> str:
    """The Results block of the README for the round whose models ``weights/`` publishes (or ``round``):
    the comparison with Table 1, the measured times (round 1; round 2's targets include them) and the
    targets."""
    from tarlib import analysis

    round = analysis.published_round() if round is None else round
    tables = analysis.course_tables(results, round)
    parts = [README_BEGIN]
    if "comparison" in tables:
        draws = "" if round == 1 else " (each seed's accuracy is its mean over 5 shared noise draws)"
        parts += ["", f"MNIST (section 5.1), reproduction round {round}: test set of 10,000 images, mean ± std over "
                  f"seeds{draws}; the paper's numbers are copied from its Table 1.", "", tables["comparison"].rstrip()]
    if "times" in tables:
        parts += ["", "Measured wall time on the 2-core CPU (a run shared by two tables counts in both):", "",
                  tables["times"].rstrip()]
    if "targets" in tables:
        parts += ["", "The targets we set ourselves, checked against the same files:", "", tables["targets"].rstrip()]
    return "\n".join(parts + ["", README_END])


def update_readme(readme: Path, results: Path, round: int | None = None) -> bool:
    """Replace the text between the README's results markers by :func:`readme_block`; False without markers."""
    text = readme.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        return False
    new = text[:begin] + readme_block(results, round) + text[end + len(README_END):]
    if new != text:
        atomic_write(readme, new.encode())
    return True


def plot_sweep(results_dir: str | Path, path: str | Path, table: Table | None = None) -> bool:
    """Test accuracy and L2 loss of joint training (section 5.1) against C; False (no file) if a C is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, table = Path(results_dir), table or next(t for t in TABLES if t.name == "sweep")
    points = [(e.C, _load(results, e.rows)) for e in table.entries]
    if any(not runs for _, runs in points):
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in zip(axes, ("accuracy", "l2"), ("test accuracy", "test L2 loss")):
        values = [[r["metrics"]["test"][metric] for r in runs] for _, runs in points]
        mean = [statistics.mean(v) for v in values]
        std = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        ax.errorbar([C for C, _ in points], mean, yerr=std, marker="o", capsize=3)
        ax.set(xlabel="C (weight of ℓ_X in eq. (18))", ylabel=label, title=f"{label} vs C")
        ax.grid(alpha=0.3)
    all_runs = [r for _, runs in points for r in runs]
    mode = _mode(all_runs).split(":")[0].replace("`", "")
    fast = " --fast" if all(r["config"].get("fast") for r in all_runs) else ""
    fig.suptitle(f"Joint training on MNIST (section 5.1), numbers from {mode}.\n"
                 f"Regenerate: python -m tarlib.reproduce --only sweep{fast}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# the columns of the Figure-3-like panel: (row of the run, title)
FIGURE3 = (("seg_fbp_unet", "FBP + U-Net"), ("seg_sequential", "sequential"),
           *((f"seg_joint_C{_c(C)}", f"joint, C = {_c(C)}") for C in sorted(C_SEGMENTATION, reverse=True)))


def plot_segmentation_panel(runs: Path, path: Path, slice_index: int = 6) -> bool:
    """A panel like Figure 3 of the paper from the finished segmentation runs; False if one is missing.

    Top: the reconstruction x̂ = R(y) of one test slice; bottom: the grey-matter
    probability T(x̂) with the true boundary, and the Dice score of that slice.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from tarlib import metrics, physics, training
    from tarlib.plotting import to_numpy_2d as image

    if any(not (runs / row / "T.pt").is_file() for row, _ in FIGURE3):
        return False
    fig, axes = plt.subplots(2, len(FIGURE3) + 1, figsize=(2.2 * (len(FIGURE3) + 1), 5.6))
    batch = experiments.test_batches("segmentation", physics.brain_data_model(), seed=0)
    x, y, z = (t[slice_index : slice_index + 1] for t in batch[0])
    axes[0, 0].imshow(image(x[0]), cmap="gray")
    axes[0, 0].set_title("true image x", fontsize=9)
    axes[1, 0].imshow(image(z[0]), cmap="magma", vmin=0, vmax=1)
    axes[1, 0].set_title("true grey matter", fontsize=9)
    for column, (row, title) in enumerate(FIGURE3, start=1):
        config = json.loads((runs / row / "config.json").read_text())
        model, _ = experiments.build_model("segmentation", config["recon"])
        for part in ("R", "T"):
            if (runs / row / f"{part}.pt").is_file():
                training.load_weights(getattr(model, part), runs / row / f"{part}.pt")
        with torch.no_grad():
            x_hat, logits = model.eval()(y)
        probability = logits.softmax(1)[0, 1]
        axes[0, column].imshow(image(x_hat[0]), cmap="gray", vmin=float(x.min()), vmax=float(x.max()))
        axes[0, column].set_title(f"{title}\nPSNR {float(metrics.psnr(x_hat, x)[0]):.1f} dB", fontsize=9)
        axes[1, column].imshow(image(probability), cmap="magma", vmin=0, vmax=1)
        axes[1, column].contour(image(z[0]), levels=[0.5], colors="cyan", linewidths=0.5)
        axes[1, column].set_title(f"Dice {float(metrics.dice(logits, z)[0]):.3f}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Grey matter from 30-angle data (section 5.2), test slice {slice_index}, full runs. "
                 "Regenerate: python -m tarlib.reproduce --only segmentation", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96), h_pad=2.0)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_tables(results: Path, tables: list[Table] | None = None) -> list[Path]:
    """Write ``results/<table>.md`` (and ``sweep.png`` when the sweep is complete); return the files written."""
    tables = TABLES if tables is None else tables
    written = []
    for name, markdown in tables_from_results(results, tables).items():
        atomic_write(results / f"{name}.md", markdown.encode())
        written.append(results / f"{name}.md")
    sweep = next((t for t in tables if t.name == "sweep"), None)
    if sweep is not None and plot_sweep(results, results / "sweep.png", sweep):
        written.append(results / "sweep.png")
    return written


def export_weights(runs: Path, results: Path, directory: Path | None = None) -> Path:
    """Publish the weights of :data:`PUBLISHED` (full runs only) with :func:`tarlib.pretrained.export`."""
    by_name = {r.name: r for r in ROWS}
    models = {}
    for name, parts in PUBLISHED.items():
        summary = json.loads((results / f"{name}.json").read_text())
        if summary["config"].get("fast"):
            raise ValueError(f"results/{name}.json comes from a --fast run: only full runs are published")
        runs_used = sorted(set(parts.values()))
        models[name] = {
            "experiment": summary["experiment"], "recon": summary["config"]["recon"],
            "strategy": summary["strategy"], "C": summary["C"], "seed": summary["seed"],
            "commands": [" ".join(["python -m tarlib.experiments", *by_name[r].argv(Path("runs"))]) for r in runs_used],
            "reproduce": "make reproduce (python -m tarlib.reproduce --readme README.md --export-weights)",
            "metrics": summary["metrics"]["test"],
            "files": parts,
        }
    return pretrained.export(models, runs, directory)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    p = argparse.ArgumentParser(prog="python -m tarlib.reproduce", description=__doc__.split("\n")[0])
    p.add_argument("--round", type=int, choices=(1, 2), default=1,
                   help="1: the first round (results/*.json); 2: the pre-registered protocol of results/PROTOCOL.md "
                        "(results/round2/, see tarlib.round2)")
    p.add_argument("--only", choices=[t.name for t in TABLES], default=None, help="one table and its dependencies")
    p.add_argument("--rows", default=None, help="comma-separated row names (and their dependencies) instead")
    p.add_argument("--fast", action="store_true", help="smoke-size runs (as TARLIB_FAST=1)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of the run directories")
    p.add_argument("--results", type=Path, default=Path("results"), help="folder of the JSON files and tables")
    p.add_argument("--seeds", type=int, default=SEEDS, help="seeds of sequential and joint C = 0.5 (mean ± std)")
    p.add_argument("--steps", type=int, default=None, help="override --steps and --pretrain-steps of every run")
    p.add_argument("--device", default=None, help="cpu or cuda, passed to every run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--tables-only", action="store_true", help="only regenerate the tables from the JSON files")
    p.add_argument("--list", action="store_true", help="print the rows that would run and their commands")
    p.add_argument("--export-weights", action="store_true",
                   help="copy the published models' weights to --weights with a manifest (needs their runs; "
                        "with --round 2 it only publishes finished runs and trains nothing)")
    p.add_argument("--readme", type=Path, default=None, help="a README whose results block to update (README.md)")
    p.add_argument("--weights", type=Path, default=None, help="folder of the published weights (default weights/)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tarlib.reproduce``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.only is not None and args.rows is not None:
        parser.error("give --only or --rows, not both")
    if args.round == 2:
        return _main_round2(args)
    try:
        rows, tables = build_rows(args.seeds)
        names = args.rows.split(",") if args.rows is not None else None
        selected = select(rows, tables, args.only, names)
    except ValueError as err:
        parser.error(str(err))
    fast = args.fast or tarlib.fast_mode()  # recorded in each run's config, so the tables can say so
    extra: list[str] = []
    if args.steps is not None:
        extra += ["--steps", str(args.steps), "--pretrain-steps", str(args.steps)]
    if args.device is not None:
        extra += ["--device", args.device]
    if args.no_progress:
        extra.append("--no-progress")
    if args.list:
        for row in selected:
            print(f"{row.name}: python -m tarlib.experiments {' '.join(row.argv(args.runs, fast, tuple(extra)))}")
        return 0
    if not args.tables_only:
        run_rows(selected, args.runs, args.results, fast, tuple(extra))
    if not args.results.is_dir():
        parser.error(f"--results {args.results} is not a folder: nothing to tabulate")
    for path in write_tables(args.results, tables):
        print(f"[reproduce] wrote {path}")
    if plot_segmentation_panel(args.runs, args.results / "figure3.png"):
        print(f"[reproduce] wrote {args.results / 'figure3.png'}")
    if args.readme is not None and update_readme(args.readme, args.results):
        print(f"[reproduce] updated the results block of {args.readme}")
    if args.export_weights:
        print(f"[reproduce] wrote {export_weights(args.runs, args.results, args.weights)}")
    return 0


def _main_round2(args: argparse.Namespace) -> int:
    """``--round 2``: list or run the stages of results/PROTOCOL.md (see :mod:`tarlib.round2`)."""
    from tarlib import round2

    results = args.results / "round2"
    fast = args.fast or tarlib.fast_mode()
    extra = ("--no-progress",) if args.no_progress else ()
    if args.device is not None:
        extra += ("--device", args.device)
    parts = round2.PARTS if args.only is None else ("segmentation",) if args.only == "segmentation" else ("mnist",)
    if args.list:
        choices = round2.load_choices(results)
        determined, pending = [], []
        for part, listing in (("mnist", round2.rows), ("segmentation", round2.seg_rows)):
            if part in parts:
                found, waiting = listing(choices)
                determined, pending = determined + found, pending + waiting
        for row in [*(round2.mu_stage_rows() if "mu" not in choices and "mnist" in parts else []), *determined]:
            stop = ("--stop-at", str(round2.MU_STOP)) if row in round2.mu_stage_rows() and "mu" not in choices else ()
            print(f"{row.name}: python -m tarlib.experiments {' '.join(row.argv(args.runs, fast, (*extra, *stop)))}")
        for what in pending:
            print(f"(further rows wait for the choice of {what})")
        return 0
    if not args.tables_only and not args.export_weights:  # exporting never trains: it publishes finished runs
        choices = round2.run(args.runs, results, fast, extra, parts)
        print(f"[reproduce] round 2: choices so far {json.dumps(choices)}")
    if not results.is_dir():
        print(f"[reproduce] round 2: {results} does not exist yet: nothing to tabulate")
        return 0
    for path in round2.write_tables(results):
        print(f"[reproduce] wrote {path}")
    if args.export_weights:
        for path in round2.publish(args.runs, results, args.weights):
            print(f"[reproduce] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
