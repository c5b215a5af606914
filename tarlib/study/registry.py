"""The run registry: the rows of a round, the tables made of them, and their order.

A :class:`Row` is one command of ``python -m tarlib.experiments`` with its own run
directory ``runs/<row>`` and its own record ``results/<row>.json``; an :class:`Entry` is
one line of a results table over the rows of its seeds; a :class:`Table` is a results
table.  :func:`select` orders rows so that every row runs after the rows it starts from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def number(value: float) -> str:
    """A number as row names and command lines write it: ``0.5``, ``0.001``, ``1``."""
    return f"{value:g}"


@dataclass(frozen=True)
class Row:
    """One run of ``python -m tarlib.experiments``, recorded as ``results/<name>.json``.

    ``init_reconstruction`` / ``init_task`` name earlier rows whose ``R.pt`` / ``T.pt``
    this run starts from; they are its dependencies.
    """

    name: str
    experiment: str
    args: tuple[str, ...]
    seed: int = 0
    init_reconstruction: str | None = None
    init_task: str | None = None
    steps: int | None = None  # the training budget of a full run; --fast runs use their own sizes
    eval_every: int | None = None  # validation every N steps (default: every fifth of the run)

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(d for d in (self.init_reconstruction, self.init_task) if d is not None)

    def pinned(self, option: str, value: str) -> Row:
        """This row with ``option value`` added unless it names ``option``: a default that changed since the
        row's round ran stays what it was when it ran (e.g. ``--clip joint`` for rounds 1 and 2)."""
        return self if option in self.args else replace(self, args=(*self.args, option, value))

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

    def command(self, runs: Path, fast: bool = False, extra: tuple[str, ...] = ()) -> str:
        """This row as a shell command: ``python -m tarlib.experiments ...``."""
        return " ".join(["python -m tarlib.experiments", *self.argv(runs, fast, extra)])


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


def load_record(results: Path, name: str) -> dict[str, Any] | None:
    """The record ``results/<name>.json`` of a finished row, or None."""
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_choices(results: Path) -> dict[str, Any]:
    """The choices a staged protocol has made so far (``results/choices.json``), or {}."""
    path = results / "choices.json"
    return json.loads(path.read_text()) if path.is_file() else {}
