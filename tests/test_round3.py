"""Round 3 (results/round3/PROTOCOL.md): its rows, its budget, a smoke-size run through every stage,
its statistics on a constructed case, and the order of protocol and runs."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from tarlib import data, experiments, records
from tarlib.study import cli, evaluation
from tarlib.study.round3 import figures, protocol
from tarlib.study.round3 import tables as round3_tables

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "round3"
PROTOCOL = ROOT / "results" / "round3" / "PROTOCOL.md"


def _args(row) -> dict[str, str]:
    return dict(zip(row.args[::2], row.args[1::2]))


def test_rows_follow_the_protocol(tmp_path: Path, monkeypatch) -> None:
    _protocol_files(tmp_path, monkeypatch)  # the commands name their protocol files relative to the checkout
    rows = protocol.every_row()
    names = [r.name for r in rows]
    assert len(names) == len(set(names))
    for row in rows:
        for dep in row.deps:
            (tmp_path / dep).mkdir(exist_ok=True)
            (tmp_path / dep / ("R.pt" if "_R_" in dep or "rank16" in dep else "T.pt")).touch()
    for row in rows:  # every command is one the experiments CLI accepts
        experiments.parse_args(row.argv(tmp_path))
    finetune = [r for r in rows if r.name.startswith("r3_") and not r.name.startswith(("r3_pretrain", "r3_grid"))]
    for row in finetune:  # equal budgets, clipping and learning rates in every strategy of a T level
        a = _args(row)
        assert row.steps == 3000 and a["--clip"] == "separate" and a["--lr-R"] == "0.0003"
        assert a["--lr-T"] == "0.001"  # the CNN's is round 2's; every_row gives the linear T 1e-3 too
        assert a["--protocol"] == "results/round3/PROTOCOL.md" and a["--mu"] == "0.15"
    per_cell = {c: [r for r in finetune if r.name.startswith(f"r3_{c[0]}_{c[1]}_")] for c in protocol.CELLS}
    assert {c: len(v) for c, v in per_cell.items()} == {
        c: 4 + 2 + (3 if c != ("full", "cnn") else 0) + {("rank16", "cnn"): 3, ("full", "cnn"): 0}.get(c, 1)
        for c in protocol.CELLS}
    # cut before any run, to fit the budget: the full × linear cell and the full level's end-to-end row
    assert ("full", "linear") not in protocol.CELLS and not any(n.startswith("r3_full_linear") for n in names)
    assert "r3_full_cnn_end_to_end_s0" not in names and len(names) == 67
    # the full × CNN cell's sequential rows are round 2's; its R_s and T_s are round 2's pre-training
    assert protocol.row_name(("full", "cnn"), "sequential", 2) == "r2_sequential_s2"
    pre = [r.name for r in protocol.pretrain_rows(protocol.FULL)]
    assert {"r2_pretrain_R_mu0.15_s1", "r2_pretrain_T_s2"} <= set(pre) and "r2_pretrain_R_mu0.15_s0" not in pre
    assert names[-2:] == ["r3_rank16_cnn_end_to_end_s1", "r3_rank16_cnn_end_to_end_s2"], "cut first: listed last"
    # a row waits for the choices it needs
    early, pending = protocol.rows({})
    assert not any(n.startswith(("r3_rank16_", "r3_full_linear", "r3_small_linear")) for n in (r.name for r in early))
    assert len(pending) == 2 + 2  # lr_linear, rrr, and the best C of the two CNN cells that can start


def test_the_protocol_is_committed_only_with_an_estimate_within_85_percent() -> None:
    """The protocol states the estimate of ``--list`` (timed 50-step runs, step_times.json), which is at most
    85 % of the budget; without a measurement there is no protocol, and without a protocol no run."""
    if not (RESULTS / "step_times.json").is_file():
        assert not PROTOCOL.is_file() and not list(RESULTS.glob("r[23]_*.json"))
        return
    times = json.loads((RESULTS / "step_times.json").read_text())
    total = sum(protocol.estimate(r, times) for r in protocol.every_row())
    assert 0 < total <= 0.85 * protocol.BUDGET_S
    assert f"{total / 3600:.2f} h" in PROTOCOL.read_text(), "the protocol states the estimate"


def _protocol_files(tmp_path: Path, monkeypatch) -> None:
    """A checkout-like folder whose protocol files the rows' relative --protocol paths name."""
    monkeypatch.chdir(tmp_path)
    for path in (protocol.PROTOCOL_FILE, Path("results/PROTOCOL.md")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a protocol\n")


def test_fast_round3_runs_every_stage_decides_on_validation_and_resumes(tmp_path: Path, monkeypatch) -> None:
    _protocol_files(tmp_path, monkeypatch)
    monkeypatch.setattr(evaluation, "TEST_DRAWS", 2)
    monkeypatch.setattr(evaluation, "VAL_DRAWS", 2)
    runs, results = tmp_path / "runs", tmp_path / "round3"
    extra = ("--steps", "4", "--eval-every", "2", "--batch-size", "8", "--no-progress")
    choices = protocol.run(runs, results, fast=True, extra=extra)
    assert set(choices) == {"rrr", "lr_linear", "best_C"} and set(choices["best_C"]) == {"rank16_linear", "small_cnn"}
    assert choices["lr_linear"]["lr"] in (1e-3, 3e-4) and set(choices["rrr"]) == {"0", "1"}
    row = json.loads((results / "r3_rank16_linear_sequential_s1.json").read_text())
    assert row["config"]["recon"] == "rank16" and row["config"]["task_net"] == "linear"
    assert row["sittings"][0]["protocol_blob"] is not None and len(row["evaluation"]["test"]) == 2
    assert np.load(results / "predictions" / "r3_rank16_linear_sequential_s1.npz")["test"].shape == (2, 500)

    def no_run(argv: list[str]) -> int:
        raise AssertionError(f"finished row ran again: {argv}")

    monkeypatch.setattr(experiments, "main", no_run)
    assert protocol.run(runs, results, fast=True, extra=extra) == choices
    written = round3_tables.write_tables(results)
    assert results / "regime.png" in written
    regime = (results / "regime.md").read_text()
    assert f"So far 2 of {len(protocol.CELLS)} cells" in regime and regime.count("\n| ") == len(protocol.CELLS)
    assert "| 1. primary" in (results / "targets.md").read_text()


def _fake_round(results: Path, gains: dict[str, int], n: int = 400) -> None:
    """Records and predictions of a complete round 3 (on ``n`` test images, 2 draws) in which sequential gets
    a quarter of the images wrong and joint training gets ``gains[cell]`` of those right, in every seed and draw."""
    labels = data.load_mnist("test").labels.numpy()[:n]
    choices = {"rrr": {}, "lr_linear": {"lr": 1e-3, "warmup": 0},
               "best_C": {"_".join(c): {"C": 0.5} for c in protocol.CELLS}}
    (results / "predictions").mkdir(parents=True)
    (results / "choices.json").write_text(json.dumps(choices))
    taken_over = [f"r2_sequential_s{s}" for s in protocol.FULL.seeds] + [protocol.full_R(0), protocol.cnn_T(0)]
    for name in [r.name for r in protocol.rows(choices)[0]] + taken_over:
        pred = np.tile(labels, (2, 1)).astype(np.uint8)
        pred[:, : n // 4] = (pred[:, : n // 4] + 1) % 10
        gain = gains.get("_".join(name.split("_")[1:3]), 0) if "_joint_" in name else 0
        pred[:, :gain] = labels[:gain]
        np.savez_compressed(results / "predictions" / f"{name}.npz", test=pred)
        draws = {"val": [{"accuracy": 0.9, "l2": 10.0}] * 3, "test": [{"accuracy": 0.9, "l2": 10.0}] * 2,
                 "test_true_images": [{"accuracy": 0.99}]}
        (results / f"{name}.json").write_text(json.dumps({"config": {"fast": False}, "evaluation": draws,
                                                          "validation": [{"step": 1, "l2": 10.0}], "wall_time_s": 1.0}))


def test_statistics_of_a_constructed_round(tmp_path: Path) -> None:
    """Joint gains 40 of 400 images in the rank-16 × CNN cell and nothing elsewhere: Δ = 10 points there, a
    tie elsewhere, the R effect 10 points with a degenerate interval, every verdict as it must be."""
    results = tmp_path / "round3"
    _fake_round(results, {"rank16_cnn": 40})
    a = round3_tables.analysis(results)
    assert a["cells"]["rank16_cnn"]["delta"] == pytest.approx(0.1) and a["cells"]["full_cnn"]["delta"] == 0
    assert a["cells"]["rank16_cnn"]["per_seed"] == pytest.approx([0.1] * 3)
    primary = a["contrasts"][next(iter(round3_tables.CONTRASTS))]
    assert primary["estimate"] == pytest.approx(0.1) and primary["rejected"] and primary["interval"][0] > 0
    interaction = a["contrasts"]["interaction on {rank 16, small} × {CNN, linear}"]
    assert interaction["estimate"] == pytest.approx(-0.1)  # [0 − 0.1] − [0 − 0]
    targets = {t[:2]: v for t, _, v in round3_tables.targets(results, a)}
    assert targets["1."] is True and targets["2."] is True
    (results / "shared_sittings.json").write_text(json.dumps({"r3_x": [{"start_utc": "…", "reason": "tests beside it"}]}))
    time_row = [m for t, m, _ in round3_tables.targets(results, a) if t.startswith("4.")][0]
    assert "1 sitting(s) shared the cores with other work" in time_row  # flagged, as the protocol asks
    _fake_round(tmp_path / "tie", {})
    a = round3_tables.analysis(tmp_path / "tie")
    assert not a["contrasts"][next(iter(round3_tables.CONTRASTS))]["rejected"]
    assert {t[:2]: v for t, _, v in round3_tables.targets(tmp_path / "tie", a)}["1."] is False


def test_cell_verdicts_kinds_summary_and_readme_block(tmp_path: Path) -> None:
    """The course's rule per cell (Holm over the cells), the tie margin, the kind of a gain against T's
    ceiling, and the same numbers in summary.json, the course's reader and the README's block."""
    results = tmp_path / "round3"
    _fake_round(results, {"rank16_cnn": 40, "small_linear": 4})
    cells = round3_tables.analysis(results)["cells"]
    assert cells["rank16_cnn"]["verdict"] == "resolved: joint better"
    assert cells["rank16_cnn"]["kind"].startswith("within T's ceiling")  # 85 % against T's 99 % on true images
    assert cells["full_cnn"]["verdict"] == "not resolved; ties within ±0.15 pp" and cells["full_cnn"]["kind"] == "—"
    assert not cells["small_linear"]["ties"]  # +1 point: outside the tie margin
    for s in protocol.FULL.seeds:  # the CNN's ceiling drops to 80 %: the same gain now lies above it
        path = results / f"{protocol.pre_T('cnn', s)}.json"
        record = json.loads(path.read_text())
        record["evaluation"]["test_true_images"] = [{"accuracy": 0.8}]
        path.write_text(json.dumps(record))
    written = round3_tables.write_tables(results)
    summary = records.study_file("round3", "summary.json", tmp_path)
    assert results / "summary.json" in written
    assert summary["cells"]["rank16_cnn"]["kind"].startswith("above T's ceiling")
    assert summary["cells"]["rank16_cnn"]["above_ceiling"] == pytest.approx(0.05)
    assert "resolved: joint better" in records.study_file("round3", "regime.md", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{round3_tables.README_BEGIN}\nold\n{round3_tables.README_END}\nafter\n")
    assert cli.replace_block(readme, round3_tables.README_BEGIN, round3_tables.README_END,
                             round3_tables.readme_block(results))
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    row = next(line for line in text.splitlines() if line.startswith("| rank 16 | CNN |"))
    assert row.startswith("| rank 16 | CNN | 80.00 | 75.00 | 85.00 (C = 0.5) | +10.00 [+")
    assert row.endswith("| resolved: joint better | above T's ceiling: R does part of the classifying |")
    assert "| small | linear |" in text and "+1.00 [+" in text and "| not resolved | — |" in text  # Holm over 5 cells
    with pytest.raises(FileNotFoundError, match="python -m tarlib.study"):
        records.study_file("round3", "nothing.json", tmp_path)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def test_the_protocol_was_committed_before_every_sitting_of_the_round() -> None:
    """Every recorded sitting of a round-3 run started after the commit that added the protocol, from a
    checkout that contains it, with the protocol file of that checkout (no uncommitted edits)."""
    records = [json.loads(p.read_text()) for p in RESULTS.glob("r[23]_*.json")]
    added = _git("log", "--diff-filter=A", "--format=%H %cI", "--", "results/round3/PROTOCOL.md").split()
    if not added:
        assert not records, "a round-3 run exists, but its protocol was never committed"
        return
    assert len(added) == 2, "the protocol was added in one commit"
    commit, committed = added[0], datetime.fromisoformat(added[1])
    restored = RESULTS / protocol.RESTORED_FILE  # the restored R_0's evaluation is a sitting of its own
    evaluations = json.loads(restored.read_text()).values() if restored.is_file() else []
    records += [{"config": "restored", "protocol": {"path": "results/round3/PROTOCOL.md"}, "sittings": [e]} for e in evaluations]
    for record in records:
        assert record.get("sittings"), f"{record['config']}: every run of the round records its sittings"
        path = record["protocol"]["path"]
        for sitting in record["sittings"]:
            assert datetime.fromisoformat(sitting["start_utc"]) >= committed, sitting
            assert subprocess.run(["git", "merge-base", "--is-ancestor", commit, sitting["head"]], cwd=ROOT).returncode == 0
            assert sitting["protocol_blob"] == _git("rev-parse", f"{sitting['head']}:{path}"), sitting


def test_principal_angles_of_constructed_subspaces() -> None:
    """The same column space under another basis: all angles 0; orthogonal spaces: all 90 degrees."""
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(50, 6, dtype=torch.float64))[0]
    W = basis[:, :3] @ torch.randn(3, 20, dtype=torch.float64)
    mixed = basis[:, :3] @ torch.randn(3, 3, dtype=torch.float64) @ torch.randn(3, 20, dtype=torch.float64)
    assert np.allclose(figures.principal_angles(W, mixed, 3), 0, atol=1e-5)
    other = basis[:, 3:] @ torch.randn(3, 20, dtype=torch.float64)
    assert np.allclose(figures.principal_angles(W, other, 3), 90)
    half = basis[:, [0, 1, 3]] @ torch.randn(3, 20, dtype=torch.float64)
    assert np.allclose(sorted(figures.principal_angles(W, half, 3)), [0, 0, 90], atol=1e-5)


def test_subspaces_table_counts_angles_and_energy() -> None:
    """Angles 0, 20 and 60 degrees: one above 45°, two above 10°; singular values 2, 1, 1, 1, 1: 7 of 8 in the
    leading 4 directions."""
    found = {"rank16_cnn": {"principal_angles_deg": [0.0, 20.0, 60.0],
                            "singular_values": {"sequential": [2.0, 1.0, 1.0, 1.0, 1.0], "joint": [1.0] * 8}}}
    row = figures.subspaces_table(found).splitlines()[-1]
    assert row == "| rank 16 × CNN | 0.0 / 20.0 / 60.0 | 2 | 1 of 3 | 88 % / 50 % |"


def test_round2_sequential_rows_take_their_validation_l2_from_the_pretrained_R(tmp_path: Path) -> None:
    """Round 2's sequential rows have test draws only: their validation L2 is R_s's, from round 3's record of R_s
    or, for the restored R_0, from restored_evaluation.json; without either the tables say which row lacks it."""
    results = tmp_path / "round3"
    _fake_round(results, {})
    for name in [f"r2_sequential_s{s}" for s in protocol.FULL.seeds] + [protocol.full_R(0)]:
        record = json.loads((results / f"{name}.json").read_text())
        del record["evaluation"]["val"]
        (results / f"{name}.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="r2_sequential_s0 has no val L2 loss"):
        round3_tables.analysis(results)
    (results / protocol.RESTORED_FILE).write_text(json.dumps({protocol.full_R(0): {"val": [{"l2": 7.0}], "seconds": 20.0}}))
    cell = round3_tables.analysis(results)["cells"]["full_cnn"]
    assert cell["l2_sequential_val"] == pytest.approx((7 + 10 + 10) / 3)
    assert "| full | CNN | sequential | 0 | — | 90.00 | 7.00¹ | 10.00 | 1.00 |" in round3_tables.rows_table(
        results, round3_tables.analysis(results))
    assert round3_tables.seconds(results)[0] == pytest.approx(len(list(results.glob("r[23]_*.json"))) + 20.0)


def test_committed_tables_summary_and_readme_block_match_the_records() -> None:
    """The committed tables, summary.json and the README's round-3 block are what the records give now; the
    course's reader finds the same seed means in the saved predictions."""
    a = round3_tables.analysis(RESULTS)
    if not round3_tables.complete(RESULTS, a):
        pytest.skip("round 3's rows are not all recorded yet")
    for name, text in round3_tables.tables(RESULTS, a).items():
        assert (RESULTS / name).read_text() == text, f"{name} is stale: python -m tarlib.study --round 3 --tables-only"
    assert json.loads((RESULTS / "summary.json").read_text()) == json.loads(json.dumps(round3_tables.summary(RESULTS, a)))
    assert round3_tables.readme_block(RESULTS, a) in (ROOT / "README.md").read_text()
    seq = records.correct("r3_rank16_cnn_sequential", study="round3")
    assert seq.shape == (3, 5, 10_000) and seq.mean() == pytest.approx(a["cells"]["rank16_cnn"]["seq"])
