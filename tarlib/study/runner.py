"""The stage runner: rows run in stages, resumable, each as ``python -m tarlib.experiments``.

- :func:`run_rows` runs a fixed list of rows (round 1: every row is known beforehand).
- :func:`run_stages` runs a staged protocol (rounds 0 and 2): rows become known as the
  choices made on validation data (``results/choices.json``) determine them.

A row whose ``results/<row>.json`` exists is done; an interrupted row resumes from its
checkpoint in ``runs/<row>``.  An executor (:mod:`tarlib.study.executor`) trains the rows:
the local one a row at a time, Ray every row that can start, side by side; the driver
records them and makes the choices in the same order either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tarlib.config import atomic_write, write_json
from tarlib.study.executor import Executor, ExecutorError, Job, LocalExecutor, exit_status
from tarlib.study.registry import Row, load_choices


def run_experiment(argv: list[str]) -> None:
    """``python -m tarlib.experiments ARGV`` in this process; a RuntimeError names the command if it fails."""
    status = exit_status(argv)
    if status != 0:
        raise RuntimeError(f"run failed with exit status {status}: python -m tarlib.experiments {' '.join(argv)}")


def record_run(row: Row, runs: Path, results: Path) -> None:
    """Record a finished row: its run's ``metrics.json`` becomes ``results/<row>.json``."""
    # atomic: a half-copied file must never mark a row as done
    atomic_write(results / f"{row.name}.json", (runs / row.name / "metrics.json").read_bytes())


def run_rows(rows: list[Row], runs: Path, results: Path, fast: bool = False, extra: tuple[str, ...] = (),
             executor: Executor | None = None) -> list[str]:
    """Run every row whose ``results/<row>.json`` is missing (in the order given); return the rows run.

    A finished run's ``metrics.json`` becomes its record ``results/<row>.json``.
    """
    ran = []
    for row in rows:
        if (results / f"{row.name}.json").exists():
            print(f"[reproduce] {row.name}: done ({results / f'{row.name}.json'})", flush=True)

    def record(row: Row, choices: dict[str, Any]) -> None:
        record_run(row, runs, results)
        ran.append(row.name)

    run_stages(lambda choices: rows, lambda choices: choices, record, runs, results, fast, extra, executor)
    return ran


def _trained(runs: Path, name: str) -> bool:
    return (runs / name / "metrics.json").is_file()


def _device_kind(path: Path) -> str:
    return str(json.loads(path.read_text()).get("device", "cpu")).split(":")[0]


def run_stages(
    listed: Callable[[dict[str, Any]], list[Row]],
    decide: Callable[[dict[str, Any]], dict[str, Any]],
    evaluate: Callable[[Row, dict[str, Any]], Any],
    runs: Path,
    results: Path,
    fast: bool = False,
    extra: tuple[str, ...] = (),
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run a staged protocol as far as its choices go (resumable); return the choices made.

    Repeatedly: ``decide(choices)`` makes every choice whose validation evidence is complete
    (saved to ``results/choices.json``), ``listed(choices)`` gives the rows those choices
    determine (each after the rows it starts from), and the first row without a record is
    recorded by ``evaluate(row, choices)``, which writes ``results/<row>.json``.  If its run
    has not finished, ``executor`` (default: the local one, no thread pin) first trains it
    together with every other unrecorded row whose dependencies have finished (up to the
    executor's ``width``).  Rows are recorded, and choices made, in the same order by every
    executor.  Stops when every listed row has its record.  A row trained on another device
    kind (CPU or GPU) than the round's recorded rows is refused (:class:`ExecutorError`).
    """
    executor = executor or LocalExecutor()
    results.mkdir(parents=True, exist_ok=True)
    choices = load_choices(results)
    kinds: dict[str, str] = {}  # device kind of each recorded row
    while True:
        new = decide(choices)
        if new != choices:
            choices = new
            write_json(results / "choices.json", choices)
        rows = listed(choices)
        todo = [r for r in rows if not (results / f"{r.name}.json").is_file()]
        if not todo:
            return choices
        row = todo[0]
        if not _trained(runs, row.name):
            names = {r.name for r in rows}  # a dependency outside the rows was restored before the stages began
            ready = [r for r in todo[1:] if not _trained(runs, r.name)
                     and all(_trained(runs, d) or d not in names for d in r.deps)]
            batch = [row, *ready][: executor.width]
            executor.run([Job(r.name, tuple(r.argv(runs, fast, extra))) for r in batch])
        for r in rows:
            if r.name not in kinds and (results / f"{r.name}.json").is_file():
                kinds[r.name] = _device_kind(results / f"{r.name}.json")
        kind, others = _device_kind(runs / row.name / "metrics.json"), set(kinds.values())
        if others - {kind}:
            raise ExecutorError(f"{row.name} ran on {kind}, the recorded rows of this round on {', '.join(sorted(others))}: "
                                f"one device kind per round; delete {runs / row.name} and rerun it on that kind")
        evaluate(row, choices)
