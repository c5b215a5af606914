"""The information probe (tarlib.study.probe): its rows and commands, its budget, a smoke-size probe that runs,
resumes and is tabulated under the course's rule, and its command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import tarlib
from tarlib import experiments, stats
from tarlib.study import cli, evaluation, probe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "probe"


def _args(row) -> dict[str, str]:
    return dict(zip(row.args[::2], row.args[1::2]))


def test_rows_and_their_commands(tmp_path: Path, monkeypatch) -> None:
    rows = probe.rows()
    assert len(rows) == len(probe.INPUTS) * 3 and [r.seed for r in rows[:5]] == [0] * 5  # whole seeds first
    for row in rows:
        a, input = _args(row), row.name[len("probe_"):].rsplit("_s", 1)[0]
        assert row.steps == probe.STEPS and a["--lr"] == "0.001" and a["--mu"] == "0.15"
        assert a["--protocol"] == str(probe.PLAN_FILE) and a["--validation"] == "stratified"
        assert a["--strategy"] == ("sequential" if input in probe.PUBLISHED else "end_to_end")
        assert row.init_task is None  # T starts from scratch on every input
    assert {_args(r)["--recon"] for r in rows} == {"adjoint", "fbp", "lgd", "none"}
    command = probe.row("R_end_to_end", 1).command(tmp_path)
    assert f"--init-reconstruction {tmp_path}/probe_published_R_mnist_end_to_end/R.pt" in command
    monkeypatch.chdir(ROOT)  # the plan the rows name
    parsed = experiments.parse_args(probe.row("aty", 0).argv(tmp_path))
    assert parsed.steps == probe.STEPS and parsed.recon == "adjoint" and parsed.eval_every == probe.STEPS
    with pytest.raises(ValueError, match="input must be one of"):
        probe.row("x", 0)
    for text in (probe.__doc__, probe.CAPTION):  # what a probe measures, and what it does not
        assert "lower bound" in text and "Prop. 1" in text and "R adds information" in text


def test_the_steps_fit_the_budget_at_the_measured_step_times() -> None:
    """STEPS is the largest multiple of 500 whose estimate fits one CPU-hour; the plan states it before any run."""
    times = json.loads((RESULTS / "step_times.json").read_text())
    total = probe.estimate(times)["total"]
    assert total <= probe.BUDGET_S < probe.estimate(times, probe.STEPS + 500)["total"]
    assert probe.largest_steps(times) == probe.STEPS and times["threads"] == 1
    plan = (RESULTS / "PLAN.md").read_text()
    assert f"{total / 3600:.2f} CPU-h" in plan and f"{probe.STEPS:,} steps" in plan
    for input, (label, _) in probe.INPUTS.items():  # the plan's table is the measurement's
        assert (f"| {label} | {times['train'][input]:.3f} | {times['train_wall'][input]:.3f} | "
                f"{times['draw'][input]:.1f} | {3 * probe.estimate(times)[input]:.0f} |") in plan


def test_smoke_probe_runs_resumes_and_compares_under_the_course_rule(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the rows name their plan relative to the checkout
    probe.PLAN_FILE.parent.mkdir(parents=True)
    probe.PLAN_FILE.write_text("a plan\n")
    runs, results = tmp_path / "runs", tmp_path / "results"
    extra = ("--steps", "4", "--eval-every", "2", "--batch-size", "8", "--no-progress")
    assert len(probe.run(runs, results, fast=True, extra=extra)) == 10
    row = json.loads((results / "probe_R_end_to_end_s1.json").read_text())
    assert row["config"]["init_reconstruction"].endswith("probe_published_R_mnist_end_to_end/R.pt")
    assert row["evaluation"]["test"][0]["seed"] == evaluation.draw_seed("test", 0)
    assert np.load(results / "predictions" / "probe_aty_s0.npz")["test"].shape == (1, 500)

    # an interrupted row (its checkpoint kept, no metrics yet) resumes; the finished ones do not run again
    (results / "probe_fbp_s1.json").unlink()
    (runs / "probe_fbp_s1" / "metrics.json").unlink()
    ran = []
    real_main = experiments.main
    monkeypatch.setattr(experiments, "main", lambda argv: ran.append(argv) or real_main(argv))
    assert probe.run(runs, results, fast=True, extra=extra) == ["probe_fbp_s1"] and len(ran) == 1
    assert len(json.loads((runs / "probe_fbp_s1" / "sittings.json").read_text())) == 2

    written = probe.write_tables(results)
    a = json.loads((results / "probe.json").read_text())
    assert len(a["pairs"]) == 10 and a["images"] == 500 and a["seeds"] == [0, 1]
    fbp, y = (np.stack([evaluation.correct(results, f"probe_{i}_s{s}") for s in (0, 1)]) for i in ("fbp", "y"))
    assert a["pairs"]["fbp − y"]["mean"] == pytest.approx(stats.compare(fbp, y).mean)
    family = {name: (np.stack([evaluation.correct(results, f"probe_{p['a']}_s{s}") for s in (0, 1)]),
                     np.stack([evaluation.correct(results, f"probe_{p['b']}_s{s}") for s in (0, 1)]))
              for name, p in a["pairs"].items()}
    assert a["pairs"]["fbp − y"]["resolved"] == stats.compare_family(family)["fbp − y"].resolved
    md = (results / "probe.md").read_text()
    assert probe.CAPTION in md and md.count(" against ") == 1 + 10 and written[0].name == "probe.md"  # heading + pairs


def test_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    assert cli.main(["--probe", "--list", "--fast", "--runs", str(tmp_path)], prog="python -m tarlib.study") == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("probe_") for line in lines) == 10  # smoke size: two seeds
    assert cli.main(["--probe", "--list", "--runs", str(tmp_path)], prog="python -m tarlib.study") == 0
    listed = sum(line.startswith("probe_") for line in capsys.readouterr().out.splitlines())
    assert listed == (10 if tarlib.fast_mode() else 15)  # without --fast: as TARLIB_FAST says
    monkeypatch.chdir(tmp_path)  # no plan here: no run
    assert cli.main(["--probe", "--runs", str(tmp_path / "runs")]) == 2
    assert "no run before its plan" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--probe", "--export-weights"])
    (tmp_path / "results" / "probe").mkdir(parents=True)
    shutil.copy(RESULTS / "step_times.json", tmp_path / "results" / "probe")
    assert cli.main(["--probe", "--tables-only"]) == 0
    assert "no input has all its seeds yet" in (tmp_path / "results" / "probe" / "probe.md").read_text()


def test_committed_probe_tables_match_its_records_and_keep_the_budget() -> None:
    """results/probe/probe.md and probe.json are what the records give now, and the probe kept its CPU-hour."""
    results = Path(__file__).resolve().parents[1] / "results" / "probe"
    if not (results / "probe.json").is_file():
        pytest.skip("the probe has not run yet")
    a = probe.analysis(results)
    assert (results / "probe.md").read_text() == probe.table(a), "python -m tarlib.study --probe --tables-only"
    assert json.loads((results / "probe.json").read_text()) == json.loads(json.dumps(a))
    seconds = sum(t for v in a["inputs"].values() for k in ("wall_time_s", "evaluation_time_s") for t in v[k])
    assert len(a["pairs"]) == 10 and seconds <= probe.BUDGET_S
