"""Round 1 of the reproduction of section 5: Table 1, a sweep over C and the segmentation of Figure 3.

    python -m tarlib.reproduce                       # every run (CPU-hours), then the tables
    python -m tarlib.reproduce --only mnist --fast   # smoke-size runs of Table 1 only
    python -m tarlib.reproduce --tables-only --readme README.md   # regenerate results/*.md, sweep.png, README block

Each run is one row of :data:`ROWS` (:class:`~tarlib.study.registry.Row`): a command of
``python -m tarlib.experiments`` with its own run directory ``runs/<row>``.  Rows are run
in dependency order (for MNIST, R and T are pre-trained once and passed on with
``--init-reconstruction`` / ``--init-task``, as in section 5.1; the joint segmentation
runs start from scratch: "There was no pre-training", section 5.2); a row whose
``results/<row>.json`` exists is done and skipped, and an interrupted row resumes from its
checkpoint.  The Markdown tables and the sweep figure are generated from those JSON files
alone (:func:`tables_from_results`, :func:`plot_sweep`), as mean ± std over seeds.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from tarlib import experiments, pretrained
from tarlib.config import atomic_write
from tarlib.study.evaluation import OLD_CLIP, ROUND1_MU
from tarlib.study.registry import Entry, Row, Table, load_record, number
from tarlib.study.tables import PAPER_TABLE1, mean_std, paper_comparison, save_figure, verdict_table

C_TABLE1 = (0.01, 0.5, 0.999)  # Table 1
C_SWEEP = (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999, 1.0)  # Table 1's joint rows, extended to all of [0, 1]
C_SEGMENTATION = (0.0, 0.1, 0.5, 0.99)  # Figure 3
SEEDS = 3  # seeds of the rows that report mean ± std (sequential and joint C = 0.5)
# Training steps of the full runs.  The paper pre-trains R for 8,000 steps of batch 64
# (section 5.1); on 2 CPU cores a step of learned gradient descent took 0.32 s.  These
# counts came from an estimate of what would fit 3 CPU-hours per table; the runs took
# 0.85 h (MNIST) and 1.10 h (segmentation), so the estimate, not the budget, set them.
# R and T are pre-trained once, and every fine-tuning row (sequential, end-to-end,
# joint) gets the same, smaller number of steps, so that the strategies are compared at
# equal cost.  Round 2 (tarlib.study.round2) uses the paper's 8,000 pre-training steps.
STEPS = {
    "mnist_pretrain_R": 2500,  # 0.32 s per step
    "mnist_pretrain_T": 3000,  # 0.02 s per step (classifier on true images)
    "mnist_finetune": 600,  # sequential 0.12 s, end-to-end and joint 0.33 s per step
    "mnist_baseline": 3000,  # FBP + classifier and the sinogram CNN, from scratch, ≈ 0.03 s per step
    "seg_pretrain": 400,  # learned primal-dual 1.1 s, U-Net on true images ≈ 0.3 s per step
    "seg": 400,  # joint 1.4 s, sequential 0.6 s per step (batch 8)
}


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
        if experiment == "mnist":  # round 1 ran at the μ of its time (evaluation.ROUND1_MU)
            args = (*args, "--mu", number(ROUND1_MU))
        for s, n in enumerate(names):  # and with the clipping of its time (evaluation.OLD_CLIP)
            rows.append(Row(n, experiment, tuple(args), seed=s, steps=STEPS[steps], **init).pinned("--clip", OLD_CLIP))
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
        C: e2e if C == 0 else add(f"mnist_joint_C{number(C)}", "mnist", "--strategy", "joint", "--C", number(C),
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
        *(Entry(f"joint, C = {number(C)} (eq. (20))", joint[C], C=C, paper=PAPER_TABLE1[C]) for C in C_TABLE1),
        Entry("FBP + classifier", fbp),
        Entry("CNN on the sinogram", sino),
    ])
    sweep = Table("sweep", "MNIST: joint training for C from 0 to 1 (section 5.1, Table 1's joint rows extended)",
                  (("accuracy", "accuracy (%)"), ("l2", "L2 loss")),
                  [Entry(f"C = {number(C)}", joint[C], C=C) for C in C_SWEEP])

    # section 5.2, Figure 3: grey-matter segmentation; joint training without pre-training, as in the paper;
    # sequential trains T on the output of the pre-trained R (eq. (13))
    R = add("seg_pretrain_R", "segmentation", "--strategy", "pretrain_reconstruction", steps="seg_pretrain")
    T = add("seg_pretrain_T", "segmentation", "--strategy", "pretrain_task", steps="seg_pretrain",
            init_reconstruction="seg_pretrain_R")
    seq = add("seg_sequential", "segmentation", "--strategy", "sequential", steps="seg",
              init_reconstruction="seg_pretrain_R")
    seg_joint = {C: add(f"seg_joint_C{number(C)}", "segmentation", "--strategy", "joint", "--C", number(C), steps="seg")
                 for C in C_SEGMENTATION}
    fbp = add("seg_fbp_unet", "segmentation", "--strategy", "end_to_end", "--recon", "fbp", steps="seg")
    segmentation = Table("segmentation", "Grey-matter segmentation of brain slices (section 5.2, Figure 3)",
                         (("dice", "Dice"), ("iou", "IoU"), ("l2", "L2 loss"), ("psnr", "PSNR (dB)")), [
        Entry("pre-training of R (eq. (4))", R),
        Entry("U-Net on true images (eq. (5))", T, key="test_true_images"),
        Entry("pre-training: T ∘ R, separately trained", T),
        Entry("sequential (eq. (13))", seq),
        *(Entry(f"joint, C = {number(C)} (eq. (20))", seg_joint[C], C=C) for C in C_SEGMENTATION),
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


def _load(results: Path, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of the finished rows among ``names``."""
    return [record for n in names if (record := load_record(results, n)) is not None]


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
        cells = [mean_std([r["metrics"][entry.key][m] for r in runs if m in r["metrics"][entry.key]], digits[m],
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
    seg_joint = {C: _values(results, seg, f"joint, C = {number(C)} ", "dice") for C in (0.1, 0.5)}
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")  # noqa: E731
    rows: list[tuple[str, str | None, bool | None]] = []

    def target(text: str, measured: str | None, met: bool | None) -> None:
        rows.append((text, measured, met))

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
    return verdict_table(rows)


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
    save_figure(fig, path)
    return True


# the columns of the Figure-3-like panel: (row of the run, title)
FIGURE3 = (("seg_fbp_unet", "FBP + U-Net"), ("seg_sequential", "sequential"),
           *((f"seg_joint_C{number(C)}", f"joint, C = {number(C)}") for C in sorted(C_SEGMENTATION, reverse=True)))


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
    save_figure(fig, path, dpi=110)
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
            "commands": [by_name[r].command(Path("runs")) for r in runs_used],
            "reproduce": "make reproduce (python -m tarlib.reproduce --readme README.md --export-weights)",
            "metrics": summary["metrics"]["test"],
            "files": parts,
        }
    return pretrained.export(models, runs, directory)


