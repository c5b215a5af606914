"""Round 1 (``python -m tarlib.reproduce``): the row list, a real --fast run of a few rows, resuming, the tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tarlib import experiments, physics
from tarlib.study import cli, evaluation, registry, round1

REPO_RESULTS = Path(__file__).resolve().parents[1] / "results"


def _table_cells(markdown: str, label: str) -> list[str]:
    """The cells of the table line whose method column is ``label``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no line {label!r} in\n{markdown}")


def test_rows_are_consistent_and_parse_with_the_cli_parser(tmp_path: Path) -> None:
    rows, tables = round1.build_rows(seeds=3)
    names = [r.name for r in rows]
    assert len(names) == len(set(names)), "row names are unique"
    by_name = {r.name: r for r in rows}
    for row in rows:
        assert set(row.deps) <= set(names), f"{row.name} depends on a missing row"
        for dep in row.deps:  # the weights files the run will be given
            (tmp_path / dep).mkdir(exist_ok=True)
            (tmp_path / dep / ("R.pt" if dep.endswith("_R") else "T.pt")).touch()
    for row in rows:
        args = experiments.parse_args(row.argv(tmp_path, fast=True))
        assert args.experiment == row.experiment and args.seed == row.seed and args.out == tmp_path / row.name
    # every table entry names existing rows; the sweep reuses Table 1's joint rows
    entries = {t.name: {e.label: e for e in t.entries} for t in tables}
    assert all(set(e.rows) <= set(names) for t in tables for e in t.entries)
    assert [e.C for e in entries["sweep"].values()] == list(round1.C_SWEEP)
    assert entries["sweep"]["C = 0.5"].rows == entries["mnist"]["joint, C = 0.5 (eq. (20))"].rows
    assert len(entries["mnist"]["sequential (eq. (13))"].rows) == 3
    assert len(entries["mnist"]["joint, C = 0.999 (eq. (20))"].rows) == 1
    assert by_name["mnist_joint_C0.5_seed2"].seed == 2
    assert "mnist_joint_C0" not in by_name, "C = 0 is the end-to-end run; the sweep must not train it twice"
    assert {r.args[r.args.index("--C") + 1] for r in rows if r.experiment == "segmentation" and "--C" in r.args} == {
        "0", "0.1", "0.5", "0.99"
    }
    sino = by_name["mnist_sinogram_cnn"].args
    assert sino[sino.index("--recon") + 1] == "none"


def test_round1_keeps_the_mu_it_ran_with(tmp_path: Path) -> None:
    """Round 1 ran at μ = 0.1, the default of its time, and its files record no μ.  Since the
    default became round 2's 0.15, round 1's rows pin 0.1, its readers assume it, and its
    tables regenerate byte for byte (issue 22)."""
    assert physics.MNIST_MU == 0.15 and evaluation.ROUND1_MU == 0.1
    rows = [r for r in round1.build_rows()[0] if r.experiment == "mnist"]
    for row in rows:
        for dep in row.deps:
            (tmp_path / dep).mkdir(exist_ok=True)
            (tmp_path / dep / ("R.pt" if dep.endswith("_R") else "T.pt")).touch()
    assert {experiments.parse_args(r.argv(tmp_path)).mu for r in rows} == {0.1}
    records = [json.loads(p.read_text()) for p in REPO_RESULTS.glob("mnist_*.json")]
    assert records and all("mu" not in r["config"] for r in records)
    assert {evaluation.mu_of(r) for r in records} == {0.1}
    assert evaluation.mu_of({"config": {"mu": 0.15}}) == 0.15
    _check_in_sync(REPO_RESULTS)  # the committed round-1 tables, regenerated from their JSON files


def test_select_orders_dependencies_first_and_rejects_bad_names() -> None:
    rows, tables = round1.build_rows(seeds=2)
    order = [r.name for r in registry.select(rows, tables, only="sweep")]
    assert order[:2] == ["mnist_pretrain_R", "mnist_pretrain_T"]
    assert "mnist_joint_C0.5_seed1" in order and "mnist_sequential" not in order
    assert [r.name for r in registry.select(rows, tables, names=["seg_sequential", "seg_joint_C0.1"])] == [
        "seg_pretrain_R", "seg_sequential", "seg_joint_C0.1"
    ], "segmentation: joint training without pre-training (section 5.2)"
    with pytest.raises(ValueError, match="unknown rows"):
        registry.select(rows, tables, names=["mnist_joint_C0.42"])
    with pytest.raises(ValueError, match="must be one of"):
        registry.select(rows, tables, only="table2")
    loop = [registry.Row("a", "mnist", (), init_task="b"), registry.Row("b", "mnist", (), init_task="a")]
    with pytest.raises(ValueError, match="cycle"):
        registry.select(loop, [])
    with pytest.raises(ValueError, match="seeds"):
        round1.build_rows(seeds=0)


def test_fast_reproduction_of_a_few_rows_then_resume(tmp_path: Path, monkeypatch) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--rows", "mnist_sequential", "--fast", "--steps", "2", "--no-progress",
            "--runs", str(runs), "--results", str(results)]
    assert cli.main(argv) == 0
    names = ["mnist_pretrain_R", "mnist_pretrain_T", "mnist_sequential"]
    assert sorted(p.stem for p in results.glob("*.json")) == names
    runs_json = {n: json.loads((results / f"{n}.json").read_text()) for n in names}
    assert all(r["config"]["fast"] and r["config"]["steps"] == 2 for r in runs_json.values())
    assert runs_json["mnist_pretrain_T"]["config"]["init_reconstruction"] == str(runs / "mnist_pretrain_R" / "R.pt")
    assert runs_json["mnist_sequential"]["config"]["init_task"] == str(runs / "mnist_pretrain_T" / "T.pt")

    markdown = (results / "mnist.md").read_text()
    assert markdown == round1.tables_from_results(results)["mnist"]
    assert "--fast" in markdown and "python -m tarlib.reproduce --only mnist --fast" in markdown
    test = runs_json["mnist_sequential"]["metrics"]["test"]
    assert _table_cells(markdown, "sequential (eq. (13))") == [
        f"{100 * test['accuracy']:.2f}", f"{test['l2']:.2f}", f"{test['cross_entropy']:.3f}", f"{test['psnr']:.2f}", "1", "2"
    ]
    true = runs_json["mnist_pretrain_T"]["metrics"]["test_true_images"]
    assert _table_cells(markdown, "classifier on true images (eq. (5))")[:2] == [f"{100 * true['accuracy']:.2f}", "—"]
    assert _table_cells(markdown, "end-to-end (eq. (16))") == ["—", "—", "—", "—", "0", "—"]
    assert not (results / "sweep.md").exists() and not (results / "sweep.png").exists()

    # a second sitting: every row is done, nothing runs, nothing is rewritten but the tables
    stamps = {p: p.stat().st_mtime_ns for p in [*results.glob("*.json"), *runs.glob("*/metrics.json")]}

    def no_run(argv: list[str]) -> int:
        raise AssertionError(f"finished row ran again: {argv}")

    monkeypatch.setattr(experiments, "main", no_run)
    assert cli.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _fake_run(results: Path, name: str, fast: bool, **test: float) -> None:
    summary = {"config": {"fast": fast, "steps": 300 if fast else 8000}, "metrics": {"test": test}}
    (results / f"{name}.json").write_text(json.dumps(summary))


def test_tables_average_seeds_and_the_sweep_figure_needs_every_C(tmp_path: Path) -> None:
    for seed, (acc, l2) in enumerate([(0.90, 10.0), (0.92, 12.0), (0.94, 14.0)]):
        name = "mnist_joint_C0.5" if seed == 0 else f"mnist_joint_C0.5_seed{seed}"
        _fake_run(tmp_path, name, fast=False, accuracy=acc, l2=l2, cross_entropy=0.1, psnr=20.0)
    tables = round1.tables_from_results(tmp_path)
    assert set(tables) == {"mnist", "sweep", "comparison", "times", "targets"}, "segmentation has no runs, so no table"
    assert _table_cells(tables["targets"], "joint, C = 0.5: test accuracy ≥ 97.0 % (paper 97.00 %)") == [
        "92.00 % (mean of 3)", "**missed**"
    ]
    assert _table_cells(tables["targets"], "classifier on true images ≥ 99.0 %") == ["—", "not run yet"]
    assert _table_cells(tables["comparison"], "joint, C = 0.5 (eq. (20))") == [
        "97.00", "92.00 ± 2.00", "9.2", "12.00 ± 2.00", "0.100", "0.100 ± 0.000", "3"
    ], "the paper's Table 1 next to ours, accuracy in %"
    assert _table_cells(tables["mnist"], "joint, C = 0.5 (eq. (20))") == [
        "92.00 ± 2.00", "12.00 ± 2.00", "0.100 ± 0.000", "20.00 ± 0.00", "3", "8000"
    ]
    assert "full runs" in tables["sweep"] and "--fast" not in tables["sweep"]
    assert not round1.plot_sweep(tmp_path, tmp_path / "sweep.png")
    sweep = next(t for t in round1.TABLES if t.name == "sweep")
    for entry in sweep.entries:
        if entry.C != 0.5:
            C = entry.C
            _fake_run(tmp_path, entry.rows[0], fast=True, accuracy=0.5 + C / 4, l2=50.0 * (1 - C) + 5)
    assert "MIX" in round1.tables_from_results(tmp_path)["sweep"]
    written = round1.write_tables(tmp_path)
    assert tmp_path / "sweep.png" in written and (tmp_path / "sweep.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="must be a folder"):
        round1.tables_from_results(tmp_path / "missing")


def _check_in_sync(results: Path) -> None:
    """Every table in ``results`` equals the one regenerated from the JSON files next to it."""
    # PROTOCOL.md is written by hand before the runs; every other .md is a table of this module
    committed = {p.stem: p.read_text() for p in results.glob("*.md") if p.name != "PROTOCOL.md"}
    regenerated = round1.tables_from_results(results)
    assert set(committed) <= set(regenerated), (
        f"{results} has tables without JSON files behind them: {sorted(set(committed) - set(regenerated))}"
    )
    for name, markdown in committed.items():
        stale = f"{results}/{name}.md is stale: run python -m tarlib.reproduce --tables-only"
        assert markdown == regenerated[name], stale


def test_the_sync_check_catches_stale_and_orphan_tables(tmp_path: Path) -> None:
    _fake_run(tmp_path, "mnist_end_to_end", fast=True, accuracy=0.9, l2=20.0, cross_entropy=0.3, psnr=15.0)
    round1.write_tables(tmp_path)
    _check_in_sync(tmp_path)
    _fake_run(tmp_path, "mnist_end_to_end", fast=True, accuracy=0.8, l2=20.0, cross_entropy=0.3, psnr=15.0)
    with pytest.raises(AssertionError, match="stale"):
        _check_in_sync(tmp_path)
    (tmp_path / "mnist_end_to_end.json").unlink()
    with pytest.raises(AssertionError, match="without JSON files"):
        _check_in_sync(tmp_path)


def test_readme_block_is_replaced_between_its_markers(tmp_path: Path) -> None:
    _fake_run(tmp_path, "mnist_sequential", fast=False, accuracy=0.95, l2=9.5, cross_entropy=0.2, psnr=20.0)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{cli.README_BEGIN}\nold\n{cli.README_END}\n\n## next\n")
    assert cli.update_readme(readme, tmp_path, round=1)
    text = readme.read_text()
    assert "old" not in text and text.startswith("# title") and text.endswith("## next\n")
    assert _table_cells(text, "sequential (eq. (13))")[:2] == ["96.01", "95.00"]
    assert cli.readme_block(tmp_path, round=1) in text
    readme.write_text("no markers\n")
    assert not cli.update_readme(readme, tmp_path, round=1)


def test_committed_tables_are_in_sync_with_their_json_files() -> None:
    assert REPO_RESULTS.is_dir(), "results/ of the full runs is committed"
    _check_in_sync(REPO_RESULTS)
    readme = (REPO_RESULTS.parent / "README.md").read_text()
    assert cli.readme_block(REPO_RESULTS) in readme, (
        "README's results block is stale: python -m tarlib.reproduce --tables-only --readme README.md"
    )
    runs = [json.loads(p.read_text()) for p in REPO_RESULTS.glob("*.json")]
    assert runs and not any(r["config"]["fast"] for r in runs), "committed results come from full runs"


def test_segmentation_panel_needs_every_run_and_draws_them(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not round1.plot_segmentation_panel(runs, tmp_path / "figure3.png")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for row, _ in round1.FIGURE3:  # untrained full-size networks stand in for the runs
        recon = "fbp" if row == "seg_fbp_unet" else "lpd"
        model, _ = experiments.build_model("segmentation", recon)
        (runs / row).mkdir(parents=True)
        (runs / row / "config.json").write_text(json.dumps({"recon": recon}))
        torch.save(model.T.state_dict(), runs / row / "T.pt")
        if recon == "lpd":
            torch.save(model.R.state_dict(), runs / row / "R.pt")
    assert round1.plot_segmentation_panel(runs, tmp_path / "figure3.png")
    assert (tmp_path / "figure3.png").stat().st_size > 10_000


@pytest.mark.parametrize("module", ["tarlib.study", "tarlib.reproduce"])
def test_the_study_runs_as_a_program_under_both_names(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--list", "--only", "sweep", "--fast"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mnist_pretrain_R: python -m tarlib.experiments mnist --strategy pretrain_reconstruction")
