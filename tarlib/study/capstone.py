"""The capstone of notebook 12: does joint training beat sequential training when the reconstruction is restricted?

    python -m tarlib.study --capstone --list               # its rows, their commands and the estimate (bench.json)
    python -m tarlib.study --capstone --runs DIR           # the reference run (resumable), then its summary
    python -m tarlib.study --capstone --fast --runs DIR    # the same at smoke size (CI: under 40 s on one thread)
    python -m tarlib.study --capstone --tables-only        # the summary from the records in results/capstone/
    python benchmarks/capstone.py                          # its step times and estimate (make bench)

Round 3's rank-16 × CNN cell (:mod:`tarlib.study.round3`) at a size a learner can rerun: for each seed
s = 0, 1, 2, the rank-16 affine R_s (:class:`tarlib.nets.LowRankLinear`) is pre-trained on ℓ_X (eq. (4)) and
the course's classifier T_s on true images (eq. (5)); both then fine-tune, from the same R_s and T_s,
sequentially (eq. (13)) and jointly (eq. (20)) with one C fixed in advance: the C that round 3 chose on
validation data for this cell (``results/round3/choices.json``), with round 3's learning rates.  Every
fine-tuned model is evaluated on the five shared test draws (:func:`tarlib.study.evaluation.draw_seed`),
its predictions saved, and the two strategies are compared image by image under the course's rule
(:func:`tarlib.stats.paired_scores`, :func:`tarlib.stats.compare`).  The summary adds the smallest
effect the design detects (:func:`tarlib.stats.detectable_effect`) against the smallest effect of interest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from tarlib import data, experiments, stats, training
from tarlib.config import write_json
from tarlib.study import evaluation, runner
from tarlib.study.executor import Executor
from tarlib.study.registry import Row, load_record, number
from tarlib.study.round3 import protocol as round3

RESULTS = Path("results/capstone")
BENCH_FILE = "bench.json"  # in RESULTS: the step times of make bench and the estimate of the full run
CELL = ("rank16", "cnn")
MU, LR_R, LR_T = round3.MU, round3.LR_R, round3.LR_T_CNN  # round 3's μ and per-network learning rates
STRATEGIES = ("joint", "sequential")  # A and B of the comparison: differences are joint − sequential
TEST_DRAWS = tuple(range(evaluation.TEST_DRAWS))  # the shared test draws every fine-tuned model is evaluated on
BUDGET_S = 45 * 60  # the full run, on 2 cores at 2 torch threads
SMALLEST_EFFECT = 0.005  # the smallest effect of interest: half a point of accuracy
RECON = round3.R_LEVELS[CELL[0]]
COMMON = ("--recon", RECON, "--mu", number(MU), "--validation", "stratified", "--clip", "separate")


@dataclasses.dataclass(frozen=True)
class Design:
    """The capstone's sizes: the reference run's (:data:`FULL`) or a smoke-size one (:data:`FAST`)."""

    seeds: tuple[int, ...]
    steps: dict[str, int]  # pretrain_R, pretrain_T, finetune
    fast: bool = False


# Steps: round 3's own (results/round3/PROTOCOL.md), so that the capstone repeats round 3's rank-16 × CNN cell
# with its own pre-trainings; their estimate fits BUDGET_S at make bench's step times and at round 3's, measured
# on the idle machine (results/capstone/bench.json; tests/test_capstone.py checks both).
FULL = Design(seeds=(0, 1, 2), steps={"pretrain_R": round3.FULL.steps["pretrain_R"],
                                      "pretrain_T": round3.FULL.steps["pretrain_T"],
                                      "finetune": round3.FULL.steps["finetune"]})
FAST = Design(seeds=(0, 1, 2), steps={"pretrain_R": 20, "pretrain_T": 20, "finetune": 20}, fast=True)


def design_for(fast: bool) -> Design:
    """:data:`FAST` for smoke-size runs, else :data:`FULL`."""
    return FAST if fast else FULL


def fixed_C(choices: Path = round3.RESULTS / "choices.json") -> float:
    """The C of the joint rows: round 3's choice on validation data for its rank-16 × CNN cell."""
    best = json.loads(choices.read_text()).get("best_C", {}).get("_".join(CELL)) if choices.is_file() else None
    if best is None:
        raise ValueError(f"{choices} holds no best C for {' × '.join(CELL)}: the capstone's C is round 3's choice")
    return float(best["C"])


def row_name(what: str, s: int) -> str:
    """``cap_<what>_s<seed>``: ``pretrain_R``, ``pretrain_T``, ``sequential`` or ``joint``."""
    return f"cap_{what}_s{s}"


def rows(design: Design = FULL, C: float | None = None) -> list[Row]:
    """Every row, seed by seed: R_s, T_s (T ∘ R_s in its record), then sequential and joint from both."""
    C = fixed_C() if C is None else C
    fine = ("--task-net", CELL[1], "--lr-R", number(LR_R), "--lr-T", number(LR_T))
    out = []
    for s in design.seeds:
        pre = {"init_reconstruction": row_name("pretrain_R", s), "init_task": row_name("pretrain_T", s)}
        out += [_row(design, "pretrain_R", s, ("--strategy", "pretrain_reconstruction")),
                _row(design, "pretrain_T", s, ("--strategy", "pretrain_task"), init_reconstruction=pre["init_reconstruction"]),
                _row(design, "sequential", s, ("--strategy", "sequential", *fine), **pre),
                _row(design, "joint", s, ("--strategy", "joint", "--C", number(C), *fine), **pre)]
    return out


def _row(design: Design, what: str, s: int, args: tuple[str, ...], **deps: str) -> Row:
    steps = design.steps[what if what.startswith("pretrain") else "finetune"]
    own = ("--steps", str(steps), "--eval-every", str(steps)) if design.fast else ()  # --fast ignores Row.steps
    return Row(row_name(what, s), "mnist", (*args, *COMMON, *own), seed=s, steps=steps, **deps)


def run(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = (),
        executor: Executor | None = None) -> list[str]:
    """Train and evaluate every row without a record (resumable: a finished row is not run again, an interrupted
    one resumes from its checkpoint), write the summary; return the rows recorded now."""
    design, recorded = design_for(fast), []
    if results.is_dir() and any(results.glob("cap_*.json")) and _design(results) is not design:
        raise ValueError(f"{results} holds {'smoke-size' if _design(results).fast else 'full-size'} records: give the "
                         f"{'smoke-size' if fast else 'full-size'} run its own --results folder")

    def evaluate(r: Row, choices: dict[str, Any]) -> None:
        fine = r.init_task is not None
        summary = evaluation.evaluate_row(r.name, runs, results, {"test": list(TEST_DRAWS)} if fine else {})
        summary.update(command=r.command(runs, fast, extra), test_draws=list(TEST_DRAWS) if fine else [],
                       predictions=f"predictions/{r.name}.npz" if fine else None)
        write_json(results / f"{r.name}.json", summary)
        recorded.append(r.name)

    runner.run_stages(lambda choices: rows(design), lambda choices: choices, evaluate, runs, results, fast, extra,
                      executor)
    write_summary(results)
    return recorded


# ----------------------------------------------------------------------------- the comparison


def scores(results: Path, name: str) -> stats.RunScores | None:
    """Per-image correctness of a fine-tuned row on its shared test draws, as :func:`tarlib.stats.paired_scores`
    takes it, or None before the row is recorded."""
    record, correct = load_record(results, name), evaluation.correct(results, name)
    if record is None or correct is None:
        return None
    return stats.RunScores(record["strategy"], record["seed"], tuple(record["test_draws"]),
                           tuple(range(correct.shape[1])), correct)


def _design(results: Path) -> Design:
    """The design a results folder was made with: smoke size when its records come from ``--fast`` runs."""
    record = next((json.loads(p.read_text()) for p in sorted(results.glob("cap_*.json"))), None)
    return design_for(record is not None and bool(record["config"].get("fast")))


def analysis(results: Path = RESULTS) -> dict[str, Any]:
    """Accuracy per strategy and seed, the rule's verdict on joint − sequential, the power and the time."""
    design = _design(results)
    names = [row_name(what, s) for s in design.seeds for what in ("pretrain_R", "pretrain_T", *STRATEGIES)]
    records = {n: load_record(results, n) for n in names}
    found = [x for s in design.seeds for what in STRATEGIES if (x := scores(results, row_name(what, s))) is not None]
    out: dict[str, Any] = {
        "question": "does joint training beat sequential training when the reconstruction is restricted (rank 16)?",
        "rule": stats.RULE, "C": next((r["C"] for n, r in records.items() if r and "joint" in n), None),
        "seeds": list(design.seeds), "test_draws": list(TEST_DRAWS), "fast": design.fast,
        "smallest_effect": SMALLEST_EFFECT, "rows_recorded": sum(r is not None for r in records.values()),
        "rows": len(names), "seconds": round(sum(r["wall_time_s"] + r.get("evaluation_time_s", 0.0)
                                                 for r in records.values() if r), 2),
        "accuracy": {what: {str(x.seed): float(x.scores.mean()) for x in found if x.strategy == what}
                     for what in STRATEGIES},
        "verdict": None}
    complete = len(found) == 2 * len(design.seeds)
    if complete:
        A, B = stats.paired_scores(found, *STRATEGIES)
        verdict = stats.compare(A, B)
        detectable = stats.detectable_effect(A.mean(axis=(0, 1)) - B.mean(axis=(0, 1)))
        out.update(images=int(A.shape[-1]), verdict={**dataclasses.asdict(verdict), "text": verdict.describe(*STRATEGIES)},
                   detectable_effect=detectable, powered=bool(detectable <= SMALLEST_EFFECT))
    return out


def table(a: dict[str, Any]) -> str:
    """``summary.md``: the question, accuracy per seed, the verdict with its interval and per-seed signs, the power."""
    lines = [f"Capstone: {a['question']}", "",
             f"Joint (C = {a['C']}) against sequential, from the same pre-trained R_s and T_s, seeds {a['seeds']}; "
             f"shared test draws {a['test_draws']}" + (" (smoke size)" if a["fast"] else "") + ".", "",
             "| strategy | accuracy (%) per seed |", "|---|---|"]
    for what, per_seed in a["accuracy"].items():
        lines.append(f"| {what} | " + (", ".join(f"{100 * v:.2f}" for v in per_seed.values()) or "—") + " |")
    lines.append("")
    if a["verdict"] is None:
        lines.append(f"Not complete: {a['rows_recorded']} of {a['rows']} rows recorded.")
    else:
        v = stats.Verdict(**{f.name: a["verdict"][f.name] for f in dataclasses.fields(stats.Verdict)})
        signs = ", ".join(f"{100 * d:+.2f}" for d in v.per_seed)
        lines += [f"Joint − sequential on {a['images']:,} test images: {v.points()}; per seed {signs} pp: "
                  f"**{v.describe(*STRATEGIES)}** ({a['rule']}).", "",
                  f"Power: the design detects a true difference of {100 * a['detectable_effect']:.2f} pp with "
                  f"probability 0.8 at 95 %; the smallest effect of interest is {100 * a['smallest_effect']:.2f} pp "
                  f"({'powered' if a['powered'] else 'not powered'} for it)."]
    lines += ["", f"Time: {a['seconds'] / 60:.1f} min of recorded training and evaluation."]
    return "\n".join(lines) + "\n"


def write_summary(results: Path = RESULTS) -> list[Path]:
    """Write ``summary.json`` and ``summary.md`` from the records and predictions in ``results``."""
    a = analysis(results)
    write_json(results / "summary.json", a)
    (results / "summary.md").write_text(table(a))
    return [results / "summary.json", results / "summary.md"]


# ----------------------------------------------------------------------------- time


def step_kind(row: Row) -> str:
    """``pretrain_R``, ``pretrain_T``, ``sequential`` or ``joint``: what a row's step costs depends on."""
    return row.name[len("cap_"):].rsplit("_s", 1)[0]


def measure_step_times(steps: int = 20, warmup: int = 3) -> dict[str, Any]:
    """Seconds per training step of each kind of row (batch 64, on training images), per evaluated draw of 10,000
    images, and what a row pays before its first step (imports, MNIST, the operator); uses no test data.

    Each is measured twice: wall seconds at 2 torch threads (the run's setting, ``*_wall_2``), which any other
    load on the machine slows down, and CPU seconds at 1 thread (``*_cpu_1``), which load barely changes; the
    estimate uses the smaller (``train``, ``draw_s``, ``startup_s``).  :func:`round3_times` gives a second
    estimate, from round 3's 2-thread times on the idle machine.  The 1-minute load average before and after
    is recorded with the machine and the date."""
    load, start = [os.getloadavg()[0]], time.perf_counter()
    images, labels = data.load_mnist("train")
    out: dict[str, Any] = {"device": "cpu, 2 threads", "machine": platform.processor() or platform.machine(),
                           "date": datetime.now(UTC).date().isoformat(), "torch": torch.__version__, "steps": steps,
                           "gpu": "not measured"}
    before, tick = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-c", "from tarlib import data, experiments; data.load_mnist('train'); "
                    "data.load_mnist('test'); experiments.build_model('mnist', 'rank16')"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["startup_wall"] = time.perf_counter() - tick
    out["startup_cpu"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    strategy = {"pretrain_R": "pretrain_reconstruction", "pretrain_T": "pretrain_task"}
    previous = torch.get_num_threads()
    for threads, key in ((2, "wall_2"), (1, "cpu_1")):
        torch.set_num_threads(threads)
        out[f"train_{key}"] = {}
        for kind in ("pretrain_R", "pretrain_T", *STRATEGIES):
            model, M = experiments.build_model("mnist", RECON, mu=MU)
            loader = data.TaskLoader(images, labels, M, batch_size=64, seed=0)
            cpu, wall = training.seconds_per_step(model, loader, strategy.get(kind, kind), steps, warmup)
            out[f"train_{key}"][kind] = wall if threads == 2 else cpu
        cpu, wall = time.process_time(), time.perf_counter()
        training.evaluate(model.eval(), experiments.fixed_batches(images[:10_000], labels[:10_000], M, 500, 0, "cpu"))
        out[f"draw_{key}"] = time.perf_counter() - wall if threads == 2 else time.process_time() - cpu
    torch.set_num_threads(previous)
    out["train"] = {k: min(v, out["train_cpu_1"][k]) for k, v in out["train_wall_2"].items()}
    out["draw_s"] = min(out["draw_wall_2"], out["draw_cpu_1"])
    out["startup_s"] = min(out["startup_wall"], out["startup_cpu"])
    out["load"] = [*load, os.getloadavg()[0]]
    out["wall_time_s"] = round(time.perf_counter() - start, 2)
    return out


def estimate(row: Row, times: dict[str, Any]) -> float:
    """Estimated seconds of a row: its start, its steps, its checks on 2,000 validation images (a fifth of a
    draw each), its own test evaluation (T's also on true images) and the shared test draws of a fine-tuned row."""
    kind, steps = step_kind(row), row.steps or 0
    checks = steps // (row.eval_every or max(1, steps // 5))
    draws = {"pretrain_R": 1, "pretrain_T": 2}.get(kind, 1 + len(TEST_DRAWS))
    return times["startup_s"] + steps * times["train"][kind] + (draws + 0.2 * checks) * times["draw_s"]


def full_estimate(times: dict[str, Any], design: Design = FULL) -> float:
    """Estimated seconds of the whole run of ``design`` (every row of :func:`rows`)."""
    return sum(estimate(r, times) for r in rows(design, C=0.0))


def round3_times(path: Path = round3.RESULTS / "step_times.json") -> dict[str, Any]:
    """Round 3's step times of the same kinds of rows (2 torch threads, measured on the idle machine before its
    protocol), in the form of :func:`measure_step_times`: a second estimate that no load of today's machine skews."""
    r3 = json.loads(path.read_text())
    kinds = {"pretrain_R": f"pretrain_reconstruction/{RECON}/-", "pretrain_T": f"pretrain_task/-/{CELL[1]}",
             "sequential": f"sequential/{RECON}/{CELL[1]}", "joint": f"joint/{RECON}/{CELL[1]}"}
    return {"train": {k: r3["train"][v] for k, v in kinds.items()}, "draw_s": r3["draw"][f"{RECON}/{CELL[1]}"],
            "startup_s": r3["startup_s"], "threads": r3["threads"]}


def write_bench(results: Path = RESULTS, steps: int = 20) -> dict[str, Any]:
    """``make bench``'s part: :func:`measure_step_times` and the estimate of the full run against
    :data:`BUDGET_S`, with the estimate at round 3's step times (:func:`round3_times`), written to
    ``results/capstone/bench.json`` (the notebook reads it)."""
    times = measure_step_times(steps)
    times.update(estimate_s=full_estimate(times), estimate_round3_times_s=full_estimate(round3_times()),
                 budget_s=BUDGET_S, full_steps=FULL.steps, seeds=list(FULL.seeds))
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / BENCH_FILE, times)
    return times


def listing(runs: Path, results: Path = RESULTS, fast: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """``row: command`` of every row, with its estimated seconds and the total when ``bench.json`` exists."""
    bench = results / BENCH_FILE
    times = json.loads(bench.read_text()) if bench.is_file() and not fast else None
    lines = [f"{r.name}: {r.command(runs, fast, extra)}" + (f"   [≈ {estimate(r, times):.0f} s]" if times else "")
             for r in rows(design_for(fast))]
    if times:
        lines.append(f"estimate for all {len(lines)} rows at {times['device']} ({times['date']}): "
                     f"{full_estimate(times) / 60:.0f} min, budget {BUDGET_S / 60:.0f} min")
    return lines
