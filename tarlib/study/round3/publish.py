"""Round 3 published for the course: seed 0 of two cells' sequential and best-joint models, added to ``weights/``.

    python -m tarlib.study --round 3 --export-weights --runs DIR   # trains nothing

The published cells are rank 16 × CNN (a restricted R) and small × linear (a restricted T; the protocol
cut the full × linear cell that the round-3 issue named, see the protocol's deviations).  Round 2's entries
and files in ``weights/`` stay byte for byte as they are (:func:`tarlib.pretrained.export` replaces only the
entries of the round it exports), and the course's published round for Table 1 stays round 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tarlib import pretrained
from tarlib.study.registry import load_choices, load_record
from tarlib.study.round3 import protocol

PUBLISHED_CELLS = (("rank16", "cnn"), ("small", "linear"))


def published(choices: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Published name ``r3_<R>_<T>_<strategy>_s0`` → {part: the round-3 row whose R.pt / T.pt it is}.

    A sequential model is the pre-trained R_0 of its level with the T that sequential training gave it; the
    joint model is the run of the C chosen on validation for its cell (``best_C`` in choices.json).
    """
    out = {}
    for cell in PUBLISHED_CELLS:
        best = choices.get("best_C", {}).get("_".join(cell))
        if best is None:
            raise ValueError(f"round 3 has not chosen the best C of {cell[0]} × {cell[1]} yet (stage best_C)")
        prefix = f"r3_{cell[0]}_{cell[1]}"
        out[f"{prefix}_sequential_s0"] = {"R": protocol.pre_R(cell[0], 0, choices), "T": f"{prefix}_sequential_s0"}
        joint = protocol.finetune_row(cell, "joint", 0, choices, protocol.FULL, best["C"]).name
        out[f"{prefix}_joint_s0"] = {"R": joint, "T": joint}
    return out


def lineage(name: str, rows: dict[str, Any]) -> list[str]:
    """The rows that made row ``name``, in the order they ran: the rows it starts from (recursively), then itself."""
    row, out = rows[name], []
    for start in row.deps:
        if start in rows:
            out += [r for r in lineage(start, rows) if r not in out]
    return [*out, name]


def publish(runs: Path, results: Path = protocol.RESULTS, weights: Path | None = None, n_check: int = 1000) -> Path:
    """Add :func:`published` to ``weights/`` with their commands and test metrics; the manifest's path."""
    choices = load_choices(results)
    rows = {r.name: r for r in protocol.rows(choices)[0]}
    models = {}
    for name, parts in published(choices).items():
        record = load_record(results, parts["T"])
        if record is None or record["config"].get("fast"):
            raise ValueError(f"{name}: {results / parts['T']}.json is missing or from a --fast run: "
                             "only finished full runs are published")
        config = record["config"]
        models[name] = {
            "round": 3, "experiment": "mnist", "recon": config["recon"], "task_net": config["task_net"],
            "strategy": record["strategy"], "C": record["C"], "seed": 0, "balanced": False, "mu": config["mu"],
            "commands": [rows[r].command(Path("runs"))
                         for r in dict.fromkeys(r for part in parts.values() for r in lineage(part, rows))],
            "reproduce": "python -m tarlib.study --round 3 --runs RUNS, then --round 3 --export-weights",
            "metrics": record["metrics"]["test"], "files": parts,
        }
    return pretrained.export(models, runs, weights, n_check)
