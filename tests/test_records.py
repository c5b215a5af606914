"""tarlib.records: the rounds' records by course name, and the committed tables the course reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tarlib import records
from tarlib.study import cli

ROOT = Path(__file__).resolve().parents[1]


def test_results_of_round_1() -> None:
    runs = records.load_results("seg_")
    assert runs and all(name.startswith("seg_") for name in runs)
    with pytest.raises(FileNotFoundError, match="results folder"):
        records.load_results("seg_", ROOT / "no_such_folder")
    course = records.course_runs("seg_", round=1)
    assert set(course) == set(runs) and all(len(seeds) == 1 for seeds in course.values())


def test_course_names_are_the_same_in_both_rounds() -> None:
    assert records.course_name("mnist_sequential") == ("mnist_sequential", 0)
    assert records.course_name("mnist_sequential_seed2") == ("mnist_sequential", 2)
    assert records.course_name("r2_sequential_s2") == ("mnist_sequential", 2)
    assert records.course_name("r2_seg_joint_C0.5_s1") == ("seg_joint_C0.5", 1)
    assert records.course_name("r2_fbp_classifier") == ("mnist_fbp_classifier", 0)
    assert records.course_name("r2_grid_joint_lr0.001_w300") == ("mnist_grid_joint_lr0.001_w300", 0)
    assert records.published_round() in (1, 2)


def test_course_runs_group_the_seeds_and_average_the_draws(tmp_path) -> None:
    """Round 2: one record per seed, seed 0 first; the test metrics are the mean over the shared draws."""
    folder = tmp_path / "round2"
    folder.mkdir()
    for seed, accuracies in ((1, [0.90, 0.92]), (0, [0.95, 0.97])):
        draws = [{"seed": d, "accuracy": a, "l2": 8.0, "n": 10} for d, a in enumerate(accuracies)]
        (folder / f"r2_sequential_s{seed}.json").write_text(
            json.dumps({"seed": seed, "metrics": {"test": {"accuracy": 0.0}}, "evaluation": {"test": draws}}))
    (folder / "r2_seg_joint_C0.1_s0.json").write_text(
        json.dumps({"evaluation": {"test": {"dice": 0.9}, "test_per_slice": {"dice": [0.9]}}}))
    runs = records.course_runs("mnist_", tmp_path, round=2)
    assert list(runs) == ["mnist_sequential"] and [r["seed"] for r in runs["mnist_sequential"]] == [0, 1]
    assert records.test_metrics(runs["mnist_sequential"][0]) == pytest.approx({"accuracy": 0.96, "l2": 8.0})
    (seg,) = records.course_runs("seg_", tmp_path, round=2)["seg_joint_C0.1"]
    assert records.test_metrics(seg) == {"dice": 0.9}
    assert records.test_metrics({"metrics": {"test": {"accuracy": 0.5}}}) == {"accuracy": 0.5}  # round 1
    with pytest.raises(ValueError, match="round must be 1 or 2"):
        records.course_runs("mnist_", tmp_path, round=3)


def test_course_tables_put_table1_next_to_the_paper() -> None:
    for round in (1, 2):
        tables = records.course_tables(round=round)
        assert "accuracy (%), paper" in tables["comparison"] and "| 96.01 |" in tables["comparison"]
        assert tables["targets"].startswith("| target | measured | verdict |")


def test_course_tables_are_the_committed_copies_of_the_round_tables() -> None:
    """The course reads the tables that the study computes from the JSON records (and commits)."""
    for round in records.ROUNDS:
        assert records.course_tables(round=round) == cli.round_tables(ROOT / "results", round)
    assert records.course_tables(ROOT / "no_such_folder", round=2) == {}
