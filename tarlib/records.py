"""The records of the reproduction rounds, read for the course: runs by course name, their test
metrics and the committed tables.

- :func:`results_dir`, :func:`load_results`  the full runs' JSON files in ``results/``
- :func:`published_round`  the round whose models ``weights/`` publishes (the one the notebooks show)
- :func:`course_name`, :func:`course_runs`, :func:`test_metrics`  a round's runs by course name
- :func:`course_tables`  Table 1 next to the paper's and the verdicts on the targets of a round
- :func:`choices`, :func:`correct`  round 2's choices on validation data, and a row's per-image
  correctness on its shared test draws (for paired comparisons, :func:`tarlib.stats.compare`)
- :func:`study_file`  a committed table or summary of a later study (round 3, the information probe)

This module only reads: the rounds themselves, and the tables it reads, are written by the
study (:mod:`tarlib.study`, ``python -m tarlib.reproduce``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tarlib import data, pretrained

ROUNDS = (1, 2)  # the reproduction rounds with results


def results_dir() -> Path:
    """``$TARLIB_RESULTS_DIR`` if set, else ``results/`` next to the package (a source checkout)."""
    return Path(os.environ.get("TARLIB_RESULTS_DIR") or Path(__file__).resolve().parents[1] / "results")


def load_results(prefix: str, directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The full runs' records ``results/<prefix>*.json`` by run name (e.g. ``"seg_"``), sorted by name."""
    folder = Path(directory or results_dir())
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder {folder}: `make reproduce` writes it (or set TARLIB_RESULTS_DIR)")
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob(f"{prefix}*.json"))}


def published_round(weights: str | Path | None = None) -> int:
    """The reproduction round (1 or 2) whose models ``weights/`` publishes for Table 1; the course shows its results.

    Round 3 adds models of its own study next to round 2's; they do not change the course's round.
    """
    return max(r for m in pretrained.manifest(weights).values() if (r := int(m.get("round", 1))) in ROUNDS)


def _round(round: int | None) -> int:
    round = published_round() if round is None else round
    if round not in ROUNDS:
        raise ValueError(f"round must be 1 or 2, got {round}")
    return round


_SEED_SUFFIX = re.compile(r"_(?:seed|s)(\d+)$")


def course_name(run: str) -> tuple[str, int]:
    """A result file's course name and seed, the same in both rounds.

    ``mnist_sequential`` and ``mnist_sequential_seed1`` (round 1) and ``r2_sequential_s1``
    (round 2) are all ``mnist_sequential``; ``r2_seg_joint_C0.5_s0`` is ``seg_joint_C0.5``.
    """
    match = _SEED_SUFFIX.search(run)
    name, seed = (run[: match.start()], int(match.group(1))) if match else (run, 0)
    if name.startswith("r2_"):
        name = name[3:] if name.startswith("r2_seg_") else "mnist_" + name[3:]
    return name, seed


def course_runs(prefix: str, results: str | Path | None = None, round: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """The records of a reproduction round by course name (:func:`course_name`), seed 0 first.

    ``round`` defaults to :func:`published_round`, so the notebooks show the results of the
    models they load; ``prefix`` is ``"mnist_"`` or ``"seg_"`` (or a longer name).
    """
    round = _round(round)
    folder = Path(results or results_dir()) / ("round2" if round == 2 else "")
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for run, record in load_results("r2_" if round == 2 else prefix, folder).items():
        name, seed = course_name(run)
        if name.startswith(prefix):
            groups.setdefault(name, []).append((seed, record))
    return {name: [run for _, run in sorted(seeds, key=lambda t: t[0])] for name, seeds in sorted(groups.items())}


def test_metrics(run: Mapping[str, Any]) -> dict[str, float]:
    """A record's test metrics: round 2's mean over the shared noise draws where it has them, else
    ``metrics["test"]`` (round 1, one draw)."""
    test = run.get("evaluation", {}).get("test")
    if isinstance(test, list):  # MNIST, round 2: one entry per noise draw
        return {k: float(np.mean([d[k] for d in test])) for k in test[0] if k not in ("seed", "n")}
    return dict(test) if isinstance(test, dict) else dict(run["metrics"]["test"])


def course_tables(results: str | Path | None = None, round: int | None = None) -> dict[str, str]:
    """Table 1 next to the paper's (``"comparison"``) and the verdicts on the targets (``"targets"``),
    as Markdown, of the round :func:`course_runs` reads; round 1 also has its measured ``"times"``
    (round 2's targets include them).

    These are the committed tables that ``python -m tarlib.reproduce --tables-only`` generates
    from the round's records (``results/*.md``, ``results/round2/*.md``); only those that exist.
    """
    round = _round(round)
    folder = Path(results or results_dir()) / ("round2" if round == 2 else "")
    names = ("comparison", "targets", "times") if round == 1 else ("comparison", "targets")
    return {name: (folder / f"{name}.md").read_text() for name in names if (folder / f"{name}.md").is_file()}


SEEDS = (0, 1, 2)  # the seeds of round 2's rows


def choices(results: str | Path | None = None) -> dict[str, Any]:
    """What round 2 chose on validation data (``results/round2/choices.json``): μ, learning rates, best C, …"""
    path = Path(results or results_dir()) / "round2" / "choices.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: round 2's records are not in this results folder")
    return json.loads(path.read_text())


def correct(row: str, results: str | Path | None = None, study: str = "round2") -> np.ndarray | None:
    """Per-image correctness [seeds, draws, images] of an MNIST row of ``study`` (round 2's ``"r2_sequential"``,
    ``"r2_joint_C0.01"``; round 3's ``"r3_rank16_cnn_sequential"`` with ``study="round3"``) on its shared test
    draws, from its saved predictions; None if any of its seeds 0, 1, 2 is missing."""
    folder = Path(results or results_dir()) / study / "predictions"
    paths = [folder / f"{row}_s{s}.npz" for s in SEEDS]
    if not all(p.is_file() for p in paths):
        return None
    labels = data.load_mnist("test").labels.numpy()
    return np.stack([np.load(p)["test"] == labels[None, :] for p in paths])


def study_file(study: str, name: str, results: str | Path | None = None) -> Any:
    """A committed output of a study in ``results/<study>/`` (``"round3"``, ``"probe"``): parsed JSON for a
    ``.json`` file (e.g. ``"summary.json"``), the text of a Markdown table (e.g. ``"regime.md"``)."""
    path = Path(results or results_dir()) / study / name
    if path.suffix not in (".json", ".md"):
        raise ValueError(f"study_file reads .json or .md files, got {name!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: `python -m tarlib.study` writes it when the study's runs are in")
    return json.loads(path.read_text()) if path.suffix == ".json" else path.read_text()
