"""The information probe: how well the course's classifier learns the digit from each form of the data.

    python -m tarlib.study --probe --measure-steps            # time every input's step (results/probe/step_times.json)
    python -m tarlib.study --probe --list                     # the rows, their commands and the estimate
    python -m tarlib.study --probe --runs DIR --cpus-per-row 1  # run what is missing (resumable)
    python -m tarlib.study --probe --tables-only              # results/probe/probe.md and probe.json

The classifier T of section 5.1 (:class:`tarlib.nets.Classifier`; for y itself round 2's
sinogram CNN, :class:`tarlib.nets.SinogramClassifier`, as a reference) is trained from scratch
on each input, three seeds each, with the learning rate of round 2's pre-training of T and one
step count for all (:data:`STEPS`), on fresh Poisson data every batch (eq. (2),
:class:`tarlib.data.TaskLoader`):

- ``aty``: the back-projection of the counts, an affine function of Aᵀy, which is sufficient for x
  under every prior with Poisson data (:class:`tarlib.nets.Backprojection`);
- ``fbp``: filtered back-projection of the log data (:class:`tarlib.nets.FBP`);
- ``R_sequential``, ``R_end_to_end``: R_θ(y) of the published models ``mnist_sequential`` (R
  trained on ℓ_X, eq. (4)) and ``mnist_end_to_end`` (R trained on ℓ_D, eq. (16)), R frozen;
- ``y``: the counts themselves, through the sinogram CNN.

Each finished row is evaluated on the test draws shared by every model
(:func:`tarlib.study.evaluation.draw_seed`), its predictions saved, so that every pair of inputs
is compared image by image under the course's rule (:func:`tarlib.stats.compare_family`).

A probe measures what *this* classifier extracts from an input with *this* budget: a lower bound
on the information the input holds about the digit, not that information itself.  By Prop. 1,
R(y) cannot hold more information about x than y does (it is computed from y alone), so a weaker
score on y than on R(y) says that the probe reads y less well, never that R adds information.

The estimate (:func:`estimate`, from :func:`measure_step_times`) and the chosen steps are stated
in ``results/probe/PLAN.md``, committed before the full run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tarlib import data, experiments, physics, pretrained, stats, training
from tarlib.config import sha256_file, write_json
from tarlib.study import evaluation, runner
from tarlib.study.executor import Executor
from tarlib.study.registry import Row, load_record, number
from tarlib.study.round2 import protocol as round2

PLAN_FILE = Path("results/probe/PLAN.md")
RESULTS = Path("results/probe")
# input -> (label, the options of its rows)
INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aty": ("Aᵀy (back-projection)", ("--strategy", "end_to_end", "--recon", "adjoint")),
    "fbp": ("FBP(y)", ("--strategy", "end_to_end", "--recon", "fbp")),
    "R_sequential": ("R_θ(y), sequential", ("--strategy", "sequential", "--recon", "lgd")),
    "R_end_to_end": ("R_θ(y), end-to-end", ("--strategy", "sequential", "--recon", "lgd")),
    "y": ("y, sinogram CNN", ("--strategy", "end_to_end", "--recon", "none")),
}
PUBLISHED = {"R_sequential": "mnist_sequential", "R_end_to_end": "mnist_end_to_end"}  # input -> published model
MU = physics.MNIST_MU  # round 2's μ, that of every published model
LR = 1e-3  # round 2's pre-training of T (results/round2/r2_pretrain_T_s0.json): lr 0.001, batch 64, 3,000 steps
# The steps of every row.  Round 2 pre-trained T for 3,000 steps; at the CPU time per step measured at one
# thread (results/probe/step_times.json: 0.45 CPU-s for one step of all five inputs) the 15 rows would need
# about 1.28 CPU-hours at 3,000 steps.  The largest multiple of 500 whose estimate fits the 1-CPU-hour budget
# is taken (2,200 would fit with 2 % to spare, too little for timings measured under a background load).
STEPS = 2000
TEST_DRAWS = (0,)  # the shared test draws each row is evaluated on (draw 0 pairs with round 2's rows too)
BUDGET_S = 3600  # CPU-seconds: 1 CPU-hour, rows at one torch thread
COMMON = ("--mu", number(MU), "--lr", number(LR), "--validation", "stratified", "--clip", "joint",
          "--protocol", str(PLAN_FILE))
CAPTION = ("A probe measures what this classifier extracts from an input with this budget: a lower bound on the "
           "information the input holds about the digit, not the information itself.  R(y) is computed from y, so by "
           "Prop. 1 it cannot hold more information about x than y; a weaker score on y says that the probe reads y "
           "less well, never that R adds information.")


@dataclasses.dataclass(frozen=True)
class Design:
    """The probe's sizes: the full one (:data:`FULL`) or a smoke-size one for tests (:data:`FAST`)."""

    seeds: tuple[int, ...]


FULL = Design(seeds=round2.SEEDS)
FAST = Design(seeds=(0, 1))  # --fast also sets smoke-size steps in each run


def design_for(fast: bool) -> Design:
    """:data:`FAST` for smoke-size runs, else :data:`FULL`."""
    return FAST if fast else FULL


def published_R(input: str) -> str:
    """The run folder that holds the published model's R for ``input`` (``R.pt``, restored by :func:`restore`)."""
    return f"probe_published_R_{PUBLISHED[input]}"


def row(input: str, seed: int, design: Design = FULL) -> Row:
    """The row that trains a fresh classifier on ``input`` with ``seed``; one check on validation data at the end."""
    if input not in INPUTS:
        raise ValueError(f"input must be one of {list(INPUTS)}, got {input!r}")
    return Row(f"probe_{input}_s{seed}", "mnist", (*INPUTS[input][1], *COMMON), seed=seed, steps=STEPS,
               eval_every=STEPS, init_reconstruction=published_R(input) if input in PUBLISHED else None)


def rows(design: Design = FULL) -> list[Row]:
    """Every row, seed by seed: an interrupted probe has whole seeds first."""
    return [row(input, s, design) for s in design.seeds for input in INPUTS]


def restore(runs: Path, fast: bool = False, weights: Path | None = None) -> list[Path]:
    """Write the published R of each R input to ``runs/<published_R(input)>/R.pt``; return the files written.

    Full size: the published file, checked against the manifest's SHA-256 and μ.  Smoke size
    (``fast``): an untrained smoke-size learned gradient descent, since the published R is full size.
    """
    directory = Path(weights or pretrained.weights_dir())
    written = []
    for input, name in PUBLISHED.items():
        target = runs / published_R(input) / "R.pt"
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if fast:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                training.save_weights(experiments.build_model("mnist", "lgd", fast=True, mu=MU)[0].R, target)
        else:
            entry = pretrained.manifest(directory)[name]
            source = directory / entry["files"]["R"]["path"]
            if entry.get("mu") != MU or sha256_file(source) != entry["files"]["R"]["sha256"]:
                raise ValueError(f"{source} ({name}) does not match the manifest's SHA-256 and μ = {MU}: restore weights/")
            shutil.copyfile(source, target)
        written.append(target)
    return written


def run(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = (),
        executor: Executor | None = None) -> list[str]:
    """Train and evaluate every row without a record (resumable, :func:`tarlib.study.runner.run_stages`);
    return the rows recorded now."""
    restore(runs, fast)
    recorded: list[str] = []

    def evaluate(r: Row, choices: dict[str, Any]) -> None:
        evaluation.evaluate_row(r.name, runs, results, {"test": list(TEST_DRAWS)})
        recorded.append(r.name)

    design = design_for(fast)
    runner.run_stages(lambda choices: rows(design), lambda choices: choices, evaluate, runs, results, fast, extra,
                      executor)
    return recorded


# ----------------------------------------------------------------------------- time


def measure_step_times(steps: int = 30, warmup: int = 5, threads: int = 1) -> dict[str, Any]:
    """Seconds per training step of each input (batch 64, full-size networks, on training images), seconds
    per evaluated draw of 10,000 images, and what a row pays before its first step, at ``threads`` torch
    threads (the rows' own).  Uses no test data.

    ``train`` and ``draw`` are CPU seconds of this process (what the budget counts: at one thread they are
    the wall time of an unloaded machine), ``*_wall`` the wall time under the load of the moment, ``load``
    the 1-minute load average before and after."""
    torch.set_num_threads(threads)
    start, load = time.perf_counter(), [os.getloadavg()[0]]
    images, labels = data.load_mnist("train")
    tick = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from tarlib import data, experiments; data.load_mnist('train'); "
                    "data.load_mnist('test'); experiments.build_model('mnist', 'lgd')"], check=True)
    out: dict[str, Any] = {"steps": steps, "threads": torch.get_num_threads(), "startup_s": time.perf_counter() - tick,
                           "train": {}, "draw": {}, "train_wall": {}, "draw_wall": {}}
    for input, (_, args) in INPUTS.items():
        options = dict(zip(args[::2], args[1::2]))
        model, M = experiments.build_model("mnist", options["--recon"], mu=MU)
        loader = data.TaskLoader(images, labels, M, batch_size=64, seed=0)
        out["train"][input], out["train_wall"][input] = training.seconds_per_step(
            model, loader, options["--strategy"], steps, warmup, lr=LR)
        cpu, wall = time.process_time(), time.perf_counter()
        training.evaluate(model.eval(), experiments.fixed_batches(images[:10_000], labels[:10_000], M, 500, 0, "cpu"))
        out["draw"][input], out["draw_wall"][input] = time.process_time() - cpu, time.perf_counter() - wall
        print(f"[probe] {input}: {out['train'][input]:.4f} CPU-s per step ({out['train_wall'][input]:.4f} s wall), "
              f"{out['draw'][input]:.1f} CPU-s per draw", flush=True)
    out["load"] = [*load, os.getloadavg()[0]]
    out["wall_time_s"] = round(time.perf_counter() - start, 2)
    return out


def estimate(times: dict[str, Any], steps: int = STEPS) -> dict[str, float]:
    """Estimated seconds of each input's row (start, steps, one check on 2,000 validation images, the run's
    own test evaluation in ``metrics.json``, the shared test draws), and the total over every row of :data:`FULL`."""
    per_input = {input: times["startup_s"] + steps * times["train"][input]
                 + (len(TEST_DRAWS) + 1.2) * times["draw"][input] for input in INPUTS}
    return {**per_input, "total": len(FULL.seeds) * sum(per_input.values())}


def largest_steps(times: dict[str, Any], budget_s: float = BUDGET_S, round_to: int = 500) -> int:
    """The largest common step count, a multiple of ``round_to``, whose :func:`estimate` fits ``budget_s``."""
    fixed = estimate(times, 0)["total"]
    per_step = estimate(times, 1)["total"] - fixed
    return int((budget_s - fixed) / per_step // round_to * round_to)


def listing(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """``row: command`` of every row, with its estimate and the total against the budget when
    ``results/step_times.json`` exists."""
    times_file = results / "step_times.json"
    times = json.loads(times_file.read_text()) if times_file.is_file() and not fast else None
    seconds = estimate(times) if times else {}
    design = design_for(fast)
    lines = [f"{r.name}: {r.command(runs, fast, extra)}" + (f"   [≈ {seconds[input]:.0f} s]" if seconds else "")
             for s in design.seeds for input in INPUTS if (r := row(input, s, design))]
    if seconds:
        lines.append(f"estimate for all {len(rows())} rows at {times['threads']} thread(s): "
                     f"{seconds['total'] / 3600:.2f} CPU-h ({100 * seconds['total'] / BUDGET_S:.0f} % of the "
                     f"{BUDGET_S / 3600:g}-CPU-hour budget); the most steps within it: {largest_steps(times)}")
    return lines


# ----------------------------------------------------------------------------- tables


def _design(results: Path) -> Design:
    """The design a results folder was made with: smoke size when its records come from ``--fast`` runs."""
    record = next((json.loads(p.read_text()) for p in sorted(results.glob("probe_*.json"))), None)
    return design_for(record is not None and bool(record["config"].get("fast")))


def analysis(results: Path = RESULTS) -> dict[str, Any]:
    """Accuracy per input and seed, and every pair of complete inputs under the course's rule (one family,
    Holm-corrected, :func:`tarlib.stats.compare_family`; differences first − second)."""
    design = _design(results)
    scores = {input: [evaluation.correct(results, f"probe_{input}_s{s}") for s in design.seeds] for input in INPUTS}
    complete = {k: np.stack(v) for k, v in scores.items() if all(c is not None for c in v)}
    inputs = {}
    for input, per_seed in scores.items():
        records = [load_record(results, f"probe_{input}_s{s}") for s in design.seeds]
        inputs[input] = {"label": INPUTS[input][0],
                         "accuracy": [None if c is None else float(c.mean()) for c in per_seed],
                         "steps": [None if r is None else r["config"]["steps"] for r in records],
                         "wall_time_s": [None if r is None else r["wall_time_s"] for r in records],
                         "evaluation_time_s": [None if r is None else r.get("evaluation_time_s", 0.0) for r in records]}
    names = list(complete)
    sides = {f"{a} − {b}": (a, b) for i, a in enumerate(names) for b in names[i + 1:]}
    verdicts = stats.compare_family({k: (complete[a], complete[b]) for k, (a, b) in sides.items()}) if sides else {}
    return {"caption": CAPTION, "rule": stats.RULE, "seeds": list(design.seeds), "test_draws": list(TEST_DRAWS),
            "images": int(next(iter(complete.values())).shape[-1]) if complete else None, "inputs": inputs,
            "pairs": {name: {"a": sides[name][0], "b": sides[name][1], **dataclasses.asdict(v)}
                      for name, v in verdicts.items()}}


def _verdict(pair: dict[str, Any]) -> stats.Verdict:
    """The :class:`tarlib.stats.Verdict` of a pair that :func:`analysis` wrote as JSON."""
    kept = {f.name: pair[f.name] for f in dataclasses.fields(stats.Verdict)}
    return stats.Verdict(**{**kept, "per_seed": tuple(kept["per_seed"])})


def table(a: dict[str, Any]) -> str:
    """``probe.md``: accuracy per input, then every pair under the course's rule, with the caption."""
    labels = {k: v["label"] for k, v in a["inputs"].items()}
    lines = [f"{a['caption']}", "",
             f"Test accuracy on {a['images'] or '—'} test images, shared draw(s) {a['test_draws']}; seeds {a['seeds']}.",
             "", "| input | accuracy (%), mean ± std | per seed (%) |", "|---|---:|---|"]
    for v in a["inputs"].values():
        known = [x for x in v["accuracy"] if x is not None]
        cell = f"{100 * np.mean(known):.2f} ± {100 * np.std(known, ddof=1) if len(known) > 1 else 0:.2f}" if known else "—"
        lines.append(f"| {v['label']} | {cell} | "
                     + ", ".join("—" if x is None else f"{100 * x:.2f}" for x in v["accuracy"]) + " |")
    lines += ["", f"Pairs under the course's rule ({a['rule']}):", "",
              "| A against B | A − B, interval | per seed (pp) | verdict |", "|---|---|---|---|"]
    for p in a["pairs"].values():
        v = _verdict(p)
        lines.append(f"| {labels[p['a']]} against {labels[p['b']]} | {v.points()} | "
                     + ", ".join(f"{100 * d:+.2f}" for d in v.per_seed) + f" | {v.describe(labels[p['a']], labels[p['b']])} |")
    if not a["pairs"]:
        lines.append("| — | — | — | no input has all its seeds yet |")
    seconds = sum(t or 0.0 for v in a["inputs"].values() for k in ("wall_time_s", "evaluation_time_s") for t in v.get(k, []))
    lines += ["", f"Time: {seconds / 3600:.2f} CPU-hours in training and evaluation, each row at one torch thread "
              f"(the plan's budget: {BUDGET_S / 3600:g})."]
    return "\n".join(lines) + "\n"


def write_tables(results: Path = RESULTS) -> list[Path]:
    """Write ``probe.md`` and ``probe.json`` from the records and predictions in ``results``."""
    a = analysis(results)
    (results / "probe.md").write_text(table(a))
    write_json(results / "probe.json", a)
    return [results / "probe.md", results / "probe.json"]
