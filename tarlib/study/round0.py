"""Round 0: a smoke round of four short rows in two stages, to try an executor or a cluster first.

    python -m tarlib.study --round 0 --runs DIR                       # here, one row at a time
    python -m tarlib.study --round 0 --address HEAD:6379 --runs /shared/runs --results /shared/results

It takes minutes on a 2-core CPU and exercises what a real round needs: rows side by side,
checkpoints (every 20 steps, so that a lost worker resumes mid-run), and a choice made by
the driver on validation data between two stages:

1. ``lr``: FBP + classifier trained end to end from scratch (fast-mode sizes, 60 steps),
   seed 0, at each learning rate of :data:`LRS`; the choice is the rate with the higher
   final validation accuracy (ties: the smaller rate);
2. ``seeds``: the chosen rate at the seeds :data:`SEEDS`.

Its records are each run's ``metrics.json``, copied to ``<results>/round0/<row>.json``, and
its choice ``<results>/round0/choices.json``.  It measures nothing about the paper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tarlib.study import runner
from tarlib.study.executor import Executor
from tarlib.study.registry import Row, load_record, number

RESULTS = Path("results/round0")
LRS = (1e-3, 3e-3)
SEEDS = (1, 2)
ARGS = ("--strategy", "end_to_end", "--recon", "fbp", "--steps", "60", "--batch-size", "16", "--eval-every", "20",
        "--checkpoint-every", "20")


def _row(lr: float, seed: int, name: str) -> Row:
    return Row(name, "mnist", ("--lr", number(lr), *ARGS), seed=seed)


def rows(choices: dict[str, Any]) -> tuple[list[Row], list[str]]:
    """The rows that the choices made so far determine, and what the others wait for."""
    out = [_row(lr, 0, f"r0_lr{number(lr)}_s0") for lr in LRS]
    if "lr" not in choices:
        return out, ["the learning rate (stage lr)"]
    return out + [_row(choices["lr"]["lr"], s, f"r0_s{s}") for s in SEEDS], []


def decide(choices: dict[str, Any], results: Path) -> dict[str, Any]:
    """Choose the learning rate once both rows of stage lr are recorded: the higher final validation
    accuracy, ties to the smaller rate."""
    if "lr" in choices:
        return choices
    accuracy = {}
    for lr in LRS:
        record = load_record(results, f"r0_lr{number(lr)}_s0")
        if record is None:
            return choices
        accuracy[lr] = record["validation"][-1]["accuracy"]
    best = max(accuracy.values())
    lr = min(lr for lr, a in accuracy.items() if a >= best)
    return {**choices, "lr": {"lr": lr, "validation_accuracy": {number(k): a for k, a in accuracy.items()}}}


def run(runs: Path, results: Path = RESULTS, extra: tuple[str, ...] = (), executor: Executor | None = None) -> dict[str, Any]:
    """Run round 0 as far as it goes (resumable) with ``executor``; return its choices."""
    return runner.run_stages(lambda choices: rows(choices)[0], lambda choices: decide(choices, results),
                             lambda row, choices: runner.record_run(row, runs, results), runs, results, fast=True,
                             extra=extra, executor=executor)
