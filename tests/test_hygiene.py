"""Notebook and book hygiene: stripped outputs, ordering, table of contents, structure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK = "NBVAL_CHECK_OUTPUT"


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _toc_files(node) -> list[str]:
    """All `file:` entries of a jb-book _toc.yml, recursively."""
    files = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for value in node.values():
            files += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            files += _toc_files(item)
    return files


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no .ipynb"


def test_notebook_names_are_ordered() -> None:
    numbers = []
    for nb in NOTEBOOKS:
        match = re.fullmatch(r"(\d\d)_[a-z0-9_]+\.ipynb", nb.name)
        assert match, f"{nb.name}: expected NN_topic.ipynb (lower case, underscores)"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(len(numbers))), f"notebook numbers must run 00, 01, ...; got {numbers}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stripped(nb: Path) -> None:
    for i, cell in enumerate(_cells(nb)):
        if cell["cell_type"] != "code":
            continue
        if CHECK in _source(cell):
            assert cell.get("outputs"), f"{nb.name} cell {i}: marked {CHECK} but has no output to check"
            continue
        assert not cell.get("outputs"), f"{nb.name} cell {i}: committed with outputs; strip them"
        assert cell.get("execution_count") is None, f"{nb.name} cell {i}: execution_count not cleared"
    metadata = json.loads(nb.read_text())["metadata"]
    assert "widgets" not in metadata, f"{nb.name}: saved widget state (progress bars) in the metadata; strip it"


# ipywidgets' own interact and Output route a figure through an Output widget, which nbclient
# (the book build, nbconvert) mirrors by writing to the kernel while it waits for the cell's
# reply: a race that idled notebook 07 for the whole cell timeout.  tarlib.plotting.interact does not.
OUTPUT_WIDGET = re.compile(r"\b(?:(?:ipy)?widgets\.(?:interact|interact_manual|interactive|interactive_output|Output)\b"
                           r"|from ipywidgets import [^\n]*\b(?:interact|Output)\b)")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_widgets_use_tarlib_interact(nb: Path) -> None:
    found = [(i, m.group(0)) for i, cell in enumerate(_cells(nb))
             if cell["cell_type"] == "code" and (m := OUTPUT_WIDGET.search(_source(cell)))]
    assert not found, f"{nb.name} (cell, call): {found}; use tarlib.plotting.interact (an Image, no Output)"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_cells_hold_no_progress_or_timing(nb: Path) -> None:
    for i, cell in enumerate(_cells(nb)):
        if cell["cell_type"] == "code" and CHECK in _source(cell):
            text = json.dumps(cell["outputs"])
            assert "it/s" not in text and "%|" not in text, f"{nb.name} cell {i}: progress bar in a checked cell"
            assert "stderr" not in text, f"{nb.name} cell {i}: stderr in a checked cell"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_structure_goals_summary_exercises(nb: Path) -> None:
    markdown = [_source(c) for c in _cells(nb) if c["cell_type"] == "markdown"]
    assert markdown and re.search(r"learning goals", markdown[0], re.I), f"{nb.name}: first cell must state learning goals"
    sections = [line for text in markdown for line in text.splitlines() if line.startswith("## ")]
    assert sections[-3:] == ["## Summary", "## Self-check", "## Exercises"], (
        f"{nb.name}: must end with the sections Summary, Self-check and Exercises, ends with {sections[-3:]}")


def test_every_notebook_is_in_the_toc() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = set(_toc_files(toc))
    missing = [nb.name for nb in NOTEBOOKS if f"notebooks/{nb.stem}" not in listed]
    assert not missing, f"notebooks missing from _toc.yml: {missing}"
    for entry in listed:
        candidates = [ROOT / f"{entry}{ext}" for ext in ("", ".md", ".rst", ".ipynb")]
        assert any(c.is_file() for c in candidates), f"_toc.yml lists {entry!r}, which does not exist"
