"""nbval's checks on the notebooks that the book build executed, so that CI runs each notebook once.

``make book`` executes every notebook (fast mode, ``raise_on_error``: a cell that raises
fails the build) and myst-nb keeps each executed copy in ``_build/jupyter_execute/``.
This test then does what ``pytest --nbval-lax`` does with its outputs: every cell whose
source starts with ``# NBVAL_CHECK_OUTPUT`` must give the committed output, compared the
way nbval compares (streams merged, images, metadata and stderr left out, the same
sanitizers from nbval_sanitize.cfg).  Together the two give nbval's verdict without a
second execution.  ``make test`` still runs nbval itself.  And no notebook may idle: the
build records each cell's timestamps, and a pause between two cells must stay within
``MAX_IDLE_S`` (book/_ext/tarlib_book.py).
"""

from __future__ import annotations

import configparser
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import coalesce_streams, transform_streams_for_comparison

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from tarlib_book import MAX_IDLE_S, idle_gaps  # noqa: E402

from tools import notebook_times  # noqa: E402

EXECUTED = ROOT / "_build" / "jupyter_execute" / "notebooks"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"
# nbval's own skip list in --nbval-lax mode without nbdime, plus stderr (conftest.py)
SKIP = {"metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
        "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg", "stderr"}


def _sanitizers() -> list[tuple[str, str]]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "nbval_sanitize.cfg")
    return [(parser[s]["regex"], parser[s]["replace"]) for s in parser.sections()]


def _sanitize(value, patterns):
    if isinstance(value, str):
        for regex, replace in patterns:
            value = re.sub(regex, replace, value)
    return value


def comparable(outputs: list, patterns: list[tuple[str, str]]) -> dict[str, list]:
    """nbval's view of a cell's outputs: each kept key (MIME types flattened) with its sanitized values."""
    flat = defaultdict(list)
    for output in transform_streams_for_comparison(coalesce_streams([nbformat.from_dict(o) for o in outputs])):
        for key, value in output.items():
            if key in SKIP:
                continue
            items = value.items() if key == "data" else [(key, value)]
            for k, v in items:
                if k not in SKIP:
                    flat[k].append(_sanitize(v, patterns))
    return dict(flat)


@pytest.mark.book
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_notebook_matches_the_checked_outputs(nb: Path) -> None:
    executed = EXECUTED / nb.name
    assert executed.is_file(), f"no {executed}: run `make book` first (it executes every notebook)"
    committed = nbformat.read(nb, as_version=4)["cells"]  # multi-line strings joined, as nbval reads them
    ran = nbformat.read(executed, as_version=4)["cells"]
    assert [c.get("id") for c in ran] == [c.get("id") for c in committed], f"{executed} is not from this {nb.name}"
    patterns = _sanitizers()
    checked = 0
    for i, (mine, theirs) in enumerate(zip(committed, ran)):
        if mine["cell_type"] != "code":
            continue
        errors = [o for o in theirs.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{nb.name} cell {i} raised {errors[0].get('ename')}"
        if mine["source"].lstrip().startswith(CHECK):
            checked += 1
            want, got = comparable(mine["outputs"], patterns), comparable(theirs["outputs"], patterns)
            assert got == want, f"{nb.name} cell {i}: output differs from the committed one"
    assert checked == sum(CHECK in c["source"] for c in committed if c["cell_type"] == "code")


@pytest.mark.book
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_notebook_never_idles(nb: Path) -> None:
    executed = nbformat.read(EXECUTED / nb.name, as_version=4)
    untimed = [i for i, c in enumerate(executed.cells) if c.cell_type == "code" and c.source.strip()
               and "iopub.status.busy" not in c.metadata.get("execution", {})]
    assert not untimed, f"{nb.name}: cells {untimed} carry no execution timestamps (tarlib_book.record_cell_timing)"
    pauses = [(i, round(s, 1)) for i, s in idle_gaps(executed) if s > MAX_IDLE_S]
    assert not pauses, f"{nb.name}: (cell, seconds idle before it) {pauses}, over {MAX_IDLE_S} s"


def test_idle_gaps_measures_end_to_start() -> None:
    def cell(busy: str, idle: str) -> dict:
        stamps = {"iopub.status.busy": f"2026-12-03T10:{busy}Z", "iopub.status.idle": f"2026-12-03T10:{idle}Z"}
        return {"cell_type": "code", "metadata": {"execution": stamps}}

    markdown = {"cell_type": "markdown", "metadata": {}}
    notebook = {"cells": [cell("00:00.0", "00:05.0"), markdown, cell("00:05.5", "00:09.0"), cell("01:39.0", "01:40.0")]}
    assert idle_gaps(notebook) == [(2, 0.5), (3, 90.0)]


def test_comparison_sees_a_changed_number() -> None:
    patterns = _sanitizers()
    out = [{"output_type": "stream", "name": "stdout", "text": "accuracy 0.91\n"}]
    assert comparable(out, patterns) == comparable([dict(out[0])], patterns)
    assert comparable(out, patterns) != comparable([{**out[0], "text": "accuracy 0.92\n"}], patterns)
    timed = [{"output_type": "stream", "name": "stdout", "text": "took 3.2 s\n"}]
    assert comparable(timed, patterns) == comparable([{**timed[0], "text": "took 9.1 s\n"}], patterns)
    assert comparable([{"output_type": "stream", "name": "stderr", "text": "50%|##"}], patterns) == {}


@pytest.fixture
def times():
    """tools/notebook_times.py."""
    return notebook_times


def test_notebook_times_report_sums_and_flags_the_budget(times) -> None:
    within = times.report({"00_a": 30.0, "01_b": 45.5})
    assert "75.5 s" in within and "within the 600 s budget" in within and "OVER" not in within
    over = times.report({"00_a": 130.0, "01_b": 500.0})
    assert "OVER 2 min" in over and "OVER the 600 s budget" in over
    assert times.over_budget({"00_a": 30.0, "01_b": 45.5}) == []
    assert times.over_budget({"00_a": 130.0, "01_b": 500.0}) == [
        "00_a took 130.0 s, over the budget of 120 s per notebook",
        "01_b took 500.0 s, over the budget of 120 s per notebook",
        "all 2 notebooks took 630.0 s, over the budget of 600 s in all"]
    assert times.over_budget({f"{i:02d}_x": 100.0 for i in range(7)}) == [
        "all 7 notebooks took 700.0 s, over the budget of 600 s in all"]


def test_notebook_times_fail_over_budget(times, tmp_path, capsys) -> None:
    """python tools/notebook_times.py check exits with 1 (CI fails) when a notebook or the sum is over budget."""
    path, committed = tmp_path / "t.json", tmp_path / "committed.json"
    committed.write_text('{"fast": {"notebooks": {"00_a": 1.0, "01_b": 100.0}}}')
    path.write_text('{"source": "test", "notebooks": {"notebooks/00_a": {"seconds": 1.0, "succeeded": true}}}')
    assert times.main(["check", str(path), "--committed", str(committed)]) == 0
    assert "failed" not in capsys.readouterr().err
    path.write_text('{"source": "test", "notebooks": {"00_a": {"seconds": 1.0}, "01_b": {"seconds": 121.5}}}')
    assert times.main(["check", str(path), "--committed", str(committed)]) == 1
    assert "01_b took 121.5 s, over the budget of 120 s per notebook" in capsys.readouterr().err
    assert times.main(["check", str(tmp_path / "missing.json")]) == 1


def test_notebook_times_fail_when_a_notebook_is_half_again_slower_than_committed(times, tmp_path, capsys) -> None:
    """A notebook over 1.5 times its committed fast-mode time (and over 5 s more), or without one, fails the check."""
    committed = {"00_a": 20.0, "01_b": 40.0, "03_d": 4.0}
    assert times.slower_than_committed({"00_a": 30.0, "01_b": 20.0, "03_d": 9.0}, committed) == []  # 03_d: +5 s
    slower = times.slower_than_committed({"00_a": 30.2, "01_b": 40.0, "02_c": 1.0}, committed)
    assert len(slower) == 2 and slower[0].startswith("00_a took 30.2 s, 1.51 times its committed 20.0 s")
    assert "02_c has no committed fast-mode time" in slower[1]
    path, file = tmp_path / "t.json", tmp_path / "committed.json"
    file.write_text(json.dumps({"fast": {"notebooks": committed}}))
    path.write_text('{"source": "test", "notebooks": {"notebooks/00_a": {"seconds": 32.0}}}')
    assert times.main(["check", str(path), "--committed", str(file)]) == 1
    assert "1.60 times its committed" in capsys.readouterr().err


def test_the_committed_notebook_times_cover_every_notebook_in_both_modes(times) -> None:
    """book/notebook_times.json (`make times`) has a fast and a full time for every notebook, with date and commit."""
    record = json.loads(times.COMMITTED.read_text())
    names = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    for mode in ("fast", "full"):
        assert set(record[mode]["notebooks"]) == names, mode
        assert record[mode]["date"] and record[mode]["commit"] and all(s > 0 for s in record[mode]["notebooks"].values())
