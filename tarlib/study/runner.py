"""The stage runner: rows run one at a time, resumable, each as ``python -m tarlib.experiments``.

- :func:`run_rows` runs a fixed list of rows (round 1: every row is known beforehand).
- :func:`run_stages` runs a staged protocol (round 2): rows become known as the choices
  made on validation data (``results/choices.json``) determine them.

A row whose ``results/<row>.json`` exists is done; an interrupted row resumes from its
checkpoint in ``runs/<row>``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tarlib import experiments
from tarlib.config import atomic_write, write_json
from tarlib.study.registry import Row, load_choices


def run_experiment(argv: list[str]) -> None:
    """``python -m tarlib.experiments ARGV`` in this process; a RuntimeError names the command if it fails."""
    try:
        status = experiments.main(argv)
    except SystemExit as err:  # argparse rejected the arguments
        status = err.code
    if status != 0:
        raise RuntimeError(f"run failed with exit status {status}: python -m tarlib.experiments {' '.join(argv)}")


def run_rows(rows: list[Row], runs: Path, results: Path, fast: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """Run every row whose ``results/<row>.json`` is missing (in the order given); return the rows run.

    A finished run's ``metrics.json`` becomes its record ``results/<row>.json``.
    """
    results.mkdir(parents=True, exist_ok=True)
    ran = []
    for row in rows:
        done = results / f"{row.name}.json"
        if done.exists():
            print(f"[reproduce] {row.name}: done ({done})", flush=True)
            continue
        print(f"[reproduce] {row.name}: {row.command(runs, fast, extra)}", flush=True)
        run_experiment(row.argv(runs, fast, extra))
        # atomic: a half-copied file must never mark a row as done
        atomic_write(done, (runs / row.name / "metrics.json").read_bytes())
        ran.append(row.name)
    return ran


def run_stages(
    listed: Callable[[dict[str, Any]], list[Row]],
    decide: Callable[[dict[str, Any]], dict[str, Any]],
    evaluate: Callable[[Row, dict[str, Any]], Any],
    runs: Path,
    results: Path,
    fast: bool = False,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run a staged protocol as far as its choices go (resumable); return the choices made.

    Repeatedly: ``decide(choices)`` makes every choice whose validation evidence is complete
    (saved to ``results/choices.json``), ``listed(choices)`` gives the rows those choices
    determine (each after the rows it starts from), and the first row without a record is
    trained (unless its run has finished) and then recorded by ``evaluate(row, choices)``,
    which writes ``results/<row>.json``.  Stops when every listed row has its record.
    """
    results.mkdir(parents=True, exist_ok=True)
    choices = load_choices(results)
    while True:
        new = decide(choices)
        if new != choices:
            choices = new
            write_json(results / "choices.json", choices)
        todo = [r for r in listed(choices) if not (results / f"{r.name}.json").is_file()]
        if not todo:
            return choices
        row = todo[0]
        if not (runs / row.name / "metrics.json").is_file():
            run_experiment(row.argv(runs, fast, extra))
        evaluate(row, choices)
