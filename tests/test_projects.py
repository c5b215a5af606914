"""The reference solutions of notebook 11's projects (tarlib.study.projects) and their committed answers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tarlib import stats
from tarlib.study import cli, projects

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "projects"


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory) -> tuple[dict, Path, float]:
    out = tmp_path_factory.mktemp("projects")
    start = time.perf_counter()
    assert cli.main(["--projects", "--fast", "--out", str(out)], prog="python -m tarlib.study") == 0
    return json.loads((out / "answers.json").read_text()), out, time.perf_counter() - start


def _in_unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


def test_the_record_says_what_made_it(fast_run) -> None:
    record, out, seconds = fast_run
    assert record["command"] == "python -m tarlib.study --projects --fast" and record["fast"] is True
    assert record["sizes"] == projects.FAST and record["tarlib"] and record["date"].endswith("UTC")
    assert len(record["commit"]) == 40 or record["commit"] == "unknown"
    assert list(record["projects"]) == list("ABCDE")
    assert all(p["wall_s"] >= 0 and p["title"] == projects.TITLES[k] for k, p in record["projects"].items())
    assert (out / "answers.md").read_text() == projects.markdown(record)
    assert seconds < 60, f"the fast run took {seconds:.0f} s"  # about 20 s on one free thread


def test_comparisons_of_two_published_models_get_no_verdict(fast_run) -> None:
    answers = {k: p["answers"] for k, p in fast_run[0]["projects"].items()}
    for key in "AD":
        d = answers[key]["joint drop - sequential drop"]
        assert d["verdict"] == stats.ONE_SEED and d["low"] <= d["mean"] <= d["high"]
        assert d["interval"] in ("below 0: smaller drop", "above 0: larger drop", "contains 0")
        assert all(_in_unit(a) for accuracy in answers[key]["accuracy"].values() for a in accuracy.values())
    for photons, row in answers["E"].items():
        if photons != "n":
            assert row["ECE joint - sequential"]["verdict"] == stats.ONE_SEED
            assert all(_in_unit(row[m]["ECE"]) and _in_unit(min(row[m]["ECE 95% interval"])) for m in projects.PAIR)
            assert "cross-entropy as recorded" not in row[projects.PAIR[0]]  # checked at 10,000 digits only


def test_balance_point_ink_and_idx_round_trip(fast_run) -> None:
    answers = {k: p["answers"] for k, p in fast_run[0]["projects"].items()}
    for model in ("mnist_joint_C0.5", "seg_joint_C0.5"):
        b = answers["B"][model]
        assert b["task share at C_balance"] == pytest.approx(0.5, abs=1e-12)
        assert len(b["C_balance per batch"]) == 5 and all(0 < c < 1 for c in b["C_balance per batch"])
    assert all(0 < e < 1 for e in answers["C"]["relative RMS error"].values())
    assert answers["D"]["IDX round trip: largest change (grey levels)"] <= 0.5 + 1e-3
    assert answers["D"]["IDX round trip: labels kept"] is True


def test_full_size_text_says_pending_without_a_full_run(tmp_path, fast_run) -> None:
    record, out, _ = fast_run
    assert projects.full_size("A", tmp_path).startswith("Full-size run pending")
    (tmp_path / "projects").mkdir()
    (tmp_path / "projects" / "answers.json").write_text(json.dumps(record))  # a fast record is no full-size answer
    assert projects.full_size("A", tmp_path).startswith("Full-size run pending")
    (tmp_path / "projects" / "answers.json").write_text(json.dumps({**record, "fast": False}))
    assert projects.full_size("B", tmp_path).splitlines()[1:] == projects.lines(record["projects"]["B"]["answers"])
    with pytest.raises(ValueError, match="project must be one of"):
        projects.full_size("F", tmp_path)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="test digits"):
        projects.limited_angles(1)
    with pytest.raises(ValueError, match="n_batches"):
        projects.balance_point(n_batches=1)


@pytest.mark.skipif(not (COMMITTED / "answers.json").is_file(),
                    reason="no committed results/projects/answers.json yet: the full-size run "
                           "(python -m tarlib.study --projects) has not been recorded")
def test_committed_answers_md_is_generated_from_the_json() -> None:
    record = json.loads((COMMITTED / "answers.json").read_text())
    assert record["fast"] is False and record["sizes"] == projects.FULL, "the committed answers must be full size"
    assert (COMMITTED / "answers.md").read_text() == projects.markdown(record), (
        "results/projects/answers.md is not what projects.markdown makes of answers.json; rerun the command")
