"""Round 2 (``python -m tarlib.reproduce --round 2``): its protocol file, its choices and its statistics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tarlib import data, experiments, losses, records, training
from tarlib.config import git_blob
from tarlib.study import cli, evaluation
from tarlib.study.round2 import protocol, publish
from tarlib.study.round2 import tables as round2_tables

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "results" / "PROTOCOL.md"
RESULTS = ROOT / "results" / "round2"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def _protocol_set(pattern: str) -> list[float]:
    """The numbers of a set written like ``C ∈ {0.001, 0.003, …}`` in PROTOCOL.md."""
    match = re.search(pattern + r"\s*∈\s*\{([^}]*)\}", PROTOCOL.read_text())
    assert match, f"PROTOCOL.md has no set for {pattern!r}"
    return [float(v) for v in match.group(1).replace(" ", "").split(",")]


def test_protocol_sets_match_the_code() -> None:
    assert _protocol_set(r"Candidates: μ") == list(protocol.MU_CANDIDATES)
    assert _protocol_set(r"joint C sweep, C") == list(protocol.C_SWEEP)
    assert _protocol_set(r"balanced joint, C") == list(protocol.C_BALANCED)
    assert sorted({lr for lr, _ in protocol.LR_GRID}) == _protocol_set(r"from\s+lr")
    assert "seed 20261130" in PROTOCOL.read_text() and data.MNIST_VALIDATION_SEED == 20261130
    assert f"SeedSequence([{evaluation.DRAW_SEED}, 1, d])" in PROTOCOL.read_text()


def test_list_shows_the_protocol_rows(tmp_path: Path, capsys) -> None:
    """``--round 2 --list``: the μ stage first; with every choice made, exactly the protocol's rows."""
    results = tmp_path / "round2"
    assert cli.main(["--round", "2", "--list", "--only", "mnist", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()[:4]] == [r.name for r in protocol.mu_stage_rows()]
    assert "--stop-at 2000" in out and "--mu 0.15" in out and "further rows wait for the choice of μ" in out

    results.mkdir()
    choices = {"mu": {"chosen": 0.2}, "lr": {"sequential": {"lr": 3e-4, "warmup": 0},
                                           "joint": {"lr": 1e-4, "warmup": 300}}, "best_C": {"C": 0.03}}
    (results / "choices.json").write_text(json.dumps(choices))
    assert cli.main(["--round", "2", "--list", "--only", "mnist", "--results", str(tmp_path)]) == 0
    names = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    expected = {f"r2_{kind}_s{s}" for kind in ("pretrain_T", "sequential", "end_to_end", "joint_C0.5", "joint_C0.03")
                for s in (0, 1, 2)} | {f"r2_pretrain_R_mu0.2_s{s}" for s in (0, 1, 2)}
    expected |= {f"r2_joint_C{C:g}_s0" for C in _protocol_set(r"joint C sweep, C")}
    expected |= {f"r2_balanced_C{C:g}_s0" for C in _protocol_set(r"balanced joint, C")}
    expected |= {f"r2_grid_{s}_lr{lr:g}_w{w}" for s in ("sequential", "joint") for lr, w in protocol.LR_GRID}
    expected |= {"r2_fbp_classifier", "r2_sinogram_cnn"}
    assert set(names) == expected and len(names) == len(expected)
    assert names.index("r2_joint_C0.03_s2") < names.index("r2_balanced_C0.1_s0"), "the balanced sweep is cut first"


def test_every_round2_result_names_a_protocol_committed_before_it() -> None:
    files = sorted(RESULTS.glob("r2_*.json")) if RESULTS.is_dir() else []  # one file per run
    for path in files:
        protocol = json.loads(path.read_text()).get("protocol")
        assert protocol and protocol["path"] == "results/PROTOCOL.md", f"{path.name} names no protocol"
        first = _git("log", "--reverse", "--format=%H", "--find-object", protocol["blob"], "--", "results/PROTOCOL.md")
        assert first, f"{path.name}: its protocol version {protocol['blob']} was never committed"
        added = _git("log", "--diff-filter=A", "--format=%H", "--", str(path.relative_to(ROOT)))
        if added:  # committed: the protocol version must be an ancestor of the commit that added the result
            proto_commit = first.splitlines()[0]
            assert subprocess.run(["git", "merge-base", "--is-ancestor", proto_commit, added.splitlines()[-1]],
                                  cwd=ROOT).returncode == 0, f"{path.name} was committed before its protocol"


def test_protocol_has_its_own_commit() -> None:
    """The commit that added PROTOCOL.md changed nothing else (pre-registration)."""
    first = _git("log", "--diff-filter=A", "--format=%H", "--", "results/PROTOCOL.md").splitlines()[-1]
    assert _git("show", "--name-only", "--format=", first).split() == ["results/PROTOCOL.md"]
    assert git_blob(PROTOCOL) == _git("hash-object", str(PROTOCOL))


def test_choose_mu_extrapolates_by_the_written_rule() -> None:
    def history(a: float, b: float) -> list[dict[str, float]]:
        return [{"step": t, "l2": a + b / np.sqrt(t)} for t in range(250, 2001, 250)]

    choice = protocol.choose_mu({0.1: history(11.0, 40.0), 0.2: history(8.5, 40.0), 0.3: history(7.0, 40.0)})
    fits = choice["fits"]
    assert fits["0.2"]["l2_at_8000"] == pytest.approx(8.5 + 40 / np.sqrt(8000))
    assert fits["0.1"]["a"] == pytest.approx(11.0) and fits["0.1"]["b"] == pytest.approx(40.0)
    assert choice["chosen"] == 0.2  # 8.5 + 0.45 = 8.95 is closest to 9.0
    tie = protocol.choose_mu({0.15: history(9.0 - 40 / np.sqrt(8000) + 0.05, 40.0),
                            0.3: history(9.0 - 40 / np.sqrt(8000) - 0.02, 40.0)})
    assert tie["chosen"] == 0.15, "within 0.1 of the best distance the smaller μ wins"
    with pytest.raises(ValueError, match="evaluations"):
        protocol.choose_mu({0.1: history(1, 1)[:2]})


def test_choose_lr_and_best_C_rules() -> None:
    accuracy = {k: 0.95 for k in protocol.LR_GRID} | {(1e-3, 0): 0.9605, (3e-4, 300): 0.9600}
    assert protocol.choose_lr(accuracy)[("lr")] == 3e-4  # within 0.1 pp of the best: the smaller lr
    with pytest.raises(ValueError, match="every grid point"):
        protocol.choose_lr({(1e-3, 0): 0.9})
    best = protocol.choose_best_C({0.0: 0.99, 0.01: 0.960, 0.1: 0.9604, 0.5: 0.9590, 1.0: 0.99})
    assert best["C"] == 0.1  # C = 0 and 1 are other strategies; 0.1 is within 0.05 pp and larger than 0.01
    assert protocol.evaluation_plan("r2_sequential_s1", {}) == {"test": [0, 1, 2, 3, 4]}
    assert protocol.evaluation_plan("r2_joint_C0.3_s0", {}) == {"test": [0], "val": [0, 1, 2]}
    assert protocol.evaluation_plan("r2_joint_C0.3_s0", {"best_C": {"C": 0.3}})["test"] == [0, 1, 2, 3, 4]
    assert evaluation.draw_seed("test", 0) != evaluation.draw_seed("val", 0) != evaluation.draw_seed("val", 1)


def test_validation_split_is_stratified_disjoint_and_fixed() -> None:
    labels = torch.arange(10).repeat_interleave(torch.tensor([50, 60, 70, 80, 90, 100, 110, 120, 130, 190]))
    train, val = data.mnist_validation_split(labels, n_val=200, n_check=50)
    assert len(val) == 200 and len(set(val.tolist()) | set(train.tolist())) == len(labels) == len(train) + 200
    counts = torch.bincount(labels[val], minlength=10)
    assert (counts - 200 * torch.bincount(labels) / len(labels)).abs().max() < 1
    assert (torch.bincount(labels[val[:50]], minlength=10) - 50 * torch.bincount(labels) / len(labels)).abs().max() < 1
    assert torch.equal(val, data.mnist_validation_split(labels, n_val=200, n_check=50)[1])
    with pytest.raises(ValueError, match="n_check"):
        data.mnist_validation_split(labels, n_val=10, n_check=20)


def test_balanced_joint_loss_gives_C_its_share_of_Rs_gradient() -> None:
    """With the balanced loss, ℓ_X's share of R's gradient on the measured batch is C."""
    torch.manual_seed(0)
    R = torch.nn.Linear(8, 8)
    T = torch.nn.Linear(8, 3)
    y, x, z = torch.randn(16, 8), torch.randn(16, 8), torch.randint(0, 3, (16,))
    loss = losses.JointLoss(0.3, losses.cross_entropy, lambda xh, x: 100 * ((xh - x) ** 2).sum(1).mean(), balanced=True)
    terms = loss.terms(R(y), T(R(y)), x, z)
    loss.update_scales(losses.gradient_norms(terms, R.parameters()))
    total, _ = loss(R(y), T(R(y)), x, z)
    weighted = {k: losses.gradient_norms({k: w * terms[k]}, R.parameters())[k] for k, w in loss.weights().items()}
    assert weighted["reconstruction"] / sum(weighted.values()) == pytest.approx(0.3, rel=1e-6)
    with pytest.raises(ValueError, match="0 < C < 1"):
        losses.JointLoss(1.0, losses.cross_entropy, balanced=True)
    with pytest.raises(RuntimeError, match="update_scales"):
        losses.JointLoss(0.5, losses.cross_entropy, balanced=True)(R(y), T(R(y)), x, z)


def test_separate_clipping_keeps_T_step_independent_of_lX() -> None:
    """Clipping R and T separately: T's gradient after clipping does not shrink when ℓ_X grows."""
    from tarlib.nets import TaskAdapted

    def T_grad_norm(clip: str, scale: float) -> float:
        torch.manual_seed(0)
        model = TaskAdapted(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
        batch = (torch.randn(8, 4) * scale, torch.randn(8, 4), torch.randint(0, 2, (8,)))
        seen = []
        training.train(model, [batch], "joint", C=0.5, steps=1, clip=clip, progress=False,
                       callback=lambda *_: seen.append(float(torch.cat([p.grad.flatten() for p in model.T.parameters()]).norm())))
        return seen[0]

    assert T_grad_norm("separate", 100.0) == pytest.approx(T_grad_norm("separate", 1.0), rel=0.5)
    assert T_grad_norm("joint", 100.0) < 0.1 * T_grad_norm("joint", 1.0)


def test_fast_round2_pipeline_makes_its_choices_on_validation_and_resumes(tmp_path: Path, monkeypatch) -> None:
    """A smoke-size round 2 (fewer candidates): stage by stage, choices on validation, evaluated draws, resume."""
    for name, value in {"MU_CANDIDATES": (0.1, 0.2), "MU_STOP": 6, "MU_FIT_FROM": 2, "LR_GRID": ((1e-3, 0),),
                        "C_SWEEP": (0.5, 1.0), "C_BALANCED": (0.5,), "SEEDS": (0, 1), "TEST_DRAWS": 2}.items():
        monkeypatch.setattr(evaluation if name == "TEST_DRAWS" else protocol, name, value)
    runs, results = tmp_path / "runs", tmp_path / "round2"
    extra = ("--steps", "8", "--pretrain-steps", "8", "--eval-every", "2", "--batch-size", "8", "--no-progress")
    choices = protocol.run(runs, results, fast=True, extra=extra, parts=("mnist",))
    assert set(choices) == {"mu", "lr", "best_C"} and choices["best_C"]["C"] == 0.5
    assert choices["mu"]["chosen"] in (0.1, 0.2) and set(choices["mu"]["fits"]) == {"0.1", "0.2"}
    assert json.loads((results / "choices.json").read_text()) == choices
    seq = json.loads((results / "r2_sequential_s1.json").read_text())
    assert len(seq["evaluation"]["test"]) == 2 and seq["protocol"]["blob"] == git_blob(PROTOCOL)
    assert seq["config"]["init_task"].endswith("r2_pretrain_T_s1/T.pt") and seq["gradient_balance"]["g_task"] > 0
    predictions = np.load(results / "predictions" / "r2_sequential_s1.npz")
    assert predictions["test"].shape == (2, 500) and predictions["test"].dtype == np.uint8
    joint = json.loads((results / "r2_joint_C0.5_s0.json").read_text())
    assert len(joint["evaluation"]["val"]) == 3 and joint["config"]["clip"] == "separate"
    balanced = json.loads((results / "r2_balanced_C0.5_s0.json").read_text())
    assert balanced["config"]["balanced"] and "loss_scales" in balanced["gradient_balance"]
    true = json.loads((results / "r2_pretrain_T_s0.json").read_text())["evaluation"]["test_true_images"]
    assert len(true) == 1

    def no_run(argv: list[str]) -> int:
        raise AssertionError(f"finished row ran again: {argv}")

    monkeypatch.setattr(experiments, "main", no_run)
    assert protocol.run(runs, results, fast=True, extra=extra, parts=("mnist",)) == choices

    written = round2_tables.write_tables(results)
    assert results / "sweep.png" in written
    table = (results / "table1.md").read_text()
    seq_acc = np.mean([d["accuracy"] for d in seq["evaluation"]["test"]])
    seq_accs = [np.mean([d["accuracy"] for d in json.loads((results / f"r2_sequential_s{s}.json").read_text())
                         ["evaluation"]["test"]]) for s in (0, 1)]
    assert f"| sequential (eq. (13)) | {100 * np.mean(seq_accs):.2f} ± {100 * np.std(seq_accs, ddof=1):.2f} |" in table
    assert seq_acc in seq_accs
    balanced_steps = [p["s_per_step"] for p in round2_tables.sweep_points(results, "r2_balanced_C", protocol.C_BALANCED)]
    assert balanced_steps and f"{np.median(balanced_steps):.3f} s with the balanced loss" in (results / "balanced.md").read_text()
    ranges = [100 * np.ptp([d["accuracy"] for d in json.loads((results / f"r2_sequential_s{s}.json").read_text())
                            ["evaluation"]["test"]]) for s in (0, 1)]
    sequential_line = next(line for line in table.splitlines() if line.startswith("| sequential"))
    assert sequential_line.endswith(f"| 2 | {max(ranges):.2f} |")  # two seeds, largest range over draws
    targets = (results / "targets.md").read_text()
    assert "| 1. best joint C beats sequential" in targets and ("met" in targets or "missed" in targets)
    paired = (results / "paired.md").read_text().splitlines()
    e2e, joint = (next(line for line in paired if line.startswith(f"| {label} against sequential |"))
                  for label in ("end-to-end", "joint, C = 0.5"))
    assert "[" in e2e and e2e.endswith("| no |") and joint.endswith("| yes |")  # best C = 0.5: the pre-registered line
    assert len(paired) == 4 and "| 96.01 |" in (results / "comparison.md").read_text()


def test_a_run_started_before_an_option_existed_still_resumes(tmp_path: Path) -> None:
    args = experiments.parse_args(["mnist", "--strategy", "pretrain_reconstruction", "--fast", "--out", str(tmp_path)])
    assert experiments._check_out(args) is None
    config = json.loads((tmp_path / "config.json").read_text())
    del config["unet_norm"]  # as written by a run that started before --unet-norm was added
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert experiments._check_out(args) is None
    other = experiments.parse_args(["mnist", "--strategy", "pretrain_reconstruction", "--fast", "--mu", "0.3",
                                    "--out", str(tmp_path)])
    assert "other settings" in experiments._check_out(other)


def test_segmentation_steps_rule_and_rows() -> None:
    def curve(values: list[float]) -> list[dict[str, float]]:
        return [{"step": 100 * (k + 1), "dice": v} for k, v in enumerate(values)]

    rising = curve([0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.89, 0.891, 0.892, 0.892, 0.891, 0.892])
    flat_early = curve([0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    choice = protocol.choose_seg_steps([rising, flat_early])
    m = np.convolve([e["dice"] for e in rising], np.ones(3) / 3, mode="valid")
    k = next(k for k in range(len(m)) if (m[k + 1:] - m[k] <= protocol.SEG_PLATEAU).all())
    assert choice["plateaus"][0] == rising[k + 2]["step"] and choice["plateaus"][1] == 400
    assert choice["steps"] == min(max(choice["plateaus"]), protocol.SEG_MAX_STEPS)
    with pytest.raises(ValueError, match="≥ 4"):
        protocol.choose_seg_steps([curve([0.5, 0.6])])
    first, pending = protocol.seg_rows({})
    assert [r.name for r in first] == ["r2_seg_pretrain_R_s0", "r2_seg_sequential_s0", "r2_seg_joint_C0.5_s0"]
    assert all(r.steps == protocol.SEG_FIRST_STEPS and "group" in r.args for r in first) and pending
    rows, pending = protocol.seg_rows({"seg_steps": {"steps": 600}, "seg_best_C": {"C": 0.9}})
    names = {r.name for r in rows}
    assert not pending and {f"r2_seg_joint_C{C:g}_s0" for C in protocol.SEG_C} <= names
    assert {f"r2_seg_{k}_s{s}" for k in ("sequential", "fbp_unet", "joint_C0.9") for s in (0, 1, 2)} <= names
    assert all(r.steps == 600 for r in rows if r.name not in {f.name for f in first})


def test_a_resumed_run_reports_the_time_of_every_sitting(tmp_path: Path) -> None:
    argv = ["mnist", "--strategy", "pretrain_reconstruction", "--fast", "--steps", "4", "--eval-every", "2",
            "--batch-size", "8", "--no-progress", "--out", str(tmp_path)]
    assert experiments.main([*argv, "--stop-at", "2"]) == 0
    first = json.loads((tmp_path / "partial.json").read_text())["wall_time_s"]
    assert json.loads((tmp_path / "elapsed.json").read_text())["seconds"] == first > 0
    assert experiments.main(argv) == 0
    total = json.loads((tmp_path / "metrics.json").read_text())["wall_time_s"]
    assert total > first


def test_committed_round2_tables_are_in_sync_with_their_json_files() -> None:
    if not (RESULTS / "choices.json").is_file():
        pytest.skip("round 2 has made no choice yet")
    expected = round2_tables.tables(RESULTS)
    assert set(expected) >= {"mu.md", "lr.md", "table1.md", "comparison.md", "paired.md", "sweep.md", "balanced.md", "segmentation.md", "targets.md"}
    for name, text in expected.items():
        assert (RESULTS / name).read_text() == text, f"results/round2/{name} is stale: python -m tarlib.reproduce --round 2 --tables-only"


def _fake_run(runs: Path, results: Path, name: str, experiment: str, recon: str, strategy: str,
              C: float | None = None, mu: float | None = None) -> None:
    """A finished full-size run folder and its results JSON, with freshly initialised networks."""
    model, _ = experiments.build_model(experiment, recon, mu=mu, norm="group" if experiment != "mnist" else "batch")
    (runs / name).mkdir(parents=True)
    for part in ("R", "T"):
        if getattr(model, part) is not None and any(True for _ in getattr(model, part).parameters()):
            torch.save(getattr(model, part).state_dict(), runs / name / f"{part}.pt")
    summary = {"experiment": experiment, "strategy": strategy, "C": C, "seed": 0,
               "config": {"recon": recon, "fast": False, "mu": mu, "unet_norm": "group", "balanced": False,
                          "init_reconstruction": None},
               "metrics": {"test": {"accuracy": 0.1}}}
    for path in (runs / name / "metrics.json", results / f"{name}.json"):
        path.write_text(json.dumps(summary))


def test_publish_exports_the_course_models_their_data_model_and_the_figures(tmp_path: Path, monkeypatch) -> None:
    """publish.publish on finished (here: untrained, full-size) runs: weights with μ, seg outputs, two panels."""
    runs, results, weights = tmp_path / "runs", tmp_path / "round2", tmp_path / "weights"
    results.mkdir()
    lr = {"lr": 3e-4, "warmup": 300}
    choices = {"mu": {"chosen": 0.15}, "lr": {"sequential": lr, "joint": lr}, "best_C": {"C": 0.03},
               "seg_steps": {"steps": 600}, "seg_best_C": {"C": 0.9}}
    (results / "choices.json").write_text(json.dumps(choices))
    monkeypatch.setattr(publish, "FLOAT16", ())  # untrained U-Nets are near ties everywhere: float16 is tested apart
    torch.manual_seed(0)
    published = publish.published(choices)
    assert published["mnist_joint_best"] == {"R": "r2_joint_C0.03_s0", "T": "r2_joint_C0.03_s0"}
    rows = {row for parts in published.values() for row in parts.values()} | set(publish.SEG_OUTPUT_ROWS)
    for row in sorted(rows):
        seg = row.startswith("r2_seg_")
        recon = "fbp" if "fbp" in row else "none" if "sinogram" in row else "lpd" if seg else "lgd"
        C = float(row.split("_C")[1].split("_")[0]) if "_C" in row else None
        _fake_run(runs, results, row, "segmentation" if seg else "mnist", recon, "joint" if C is not None else "x",
                  C, None if seg else 0.15)
    weights.mkdir()
    (weights / "mnist_joint_C0.7.T.pt").write_bytes(b"an earlier export's file")
    written = publish.publish(runs, results, weights, n_check=50)
    assert {p.name for p in written} == {"manifest.json", "seg_outputs.npz", "figure2.png", "figure3.png"}
    from tarlib import analysis, pretrained

    manifest = pretrained.manifest(weights)
    assert set(manifest) == set(published)
    assert {p.name for p in weights.glob("*.pt")} == {f["path"] for m in manifest.values() for f in m["files"].values()}
    assert manifest["mnist_sequential"]["mu"] == 0.15 and manifest["seg_pretrain_T"]["norm"] == "group"
    assert all(c.startswith("python -m tarlib.experiments") for m in manifest.values() for c in m["commands"])
    assert pretrained.data_model("mnist_joint_best", weights).noise.mu == 0.15
    outputs = analysis.read_seg_outputs(results / "seg_outputs.npz")
    assert outputs["rows"] == [records.course_name(r)[0] for r in publish.SEG_OUTPUT_ROWS]
    assert outputs["rows"][:3] == ["seg_sequential", "seg_fbp_unet", "seg_joint_C0"]
    assert np.isnan(outputs["C"]["seg_sequential"]) and outputs["C"]["seg_joint_C0.5"] == 0.5
    # the course reads the published round: notebook 07 looks up each row of the file by its course name
    assert records.published_round(weights) == 2
    assert set(outputs["rows"]) <= set(records.course_runs("seg_", tmp_path, round=2))
    with pytest.raises(ValueError, match="best joint C"):
        publish.published({"mu": {"chosen": 0.15}})


def test_a_partial_segmentation_table_does_not_name_a_winner_of_the_round(tmp_path: Path) -> None:
    """'Highest mean test Dice' carries 'so far' until every row has all its seeds and the best C is chosen."""
    record = (RESULTS / "r2_seg_sequential_s0.json").read_text()
    (tmp_path / "r2_seg_sequential_s0.json").write_text(record)
    partial = round2_tables.seg_table(tmp_path, {})
    assert "so far (1 of 9 rows have results; the best C is not chosen yet)" in partial
    # seed 0's last validation Dice (what chooses the best C); sequential gives R no gradient from ℓ_D: no share
    assert f"| {json.loads(record)['validation'][-1]['dice']:.3f} | — |" in partial
    choices = {"seg_best_C": {"C": 0.5}}
    names = [n for _, row in round2_tables.seg_table_rows(choices) for n in row]
    for name in names:
        (tmp_path / f"{name}.json").write_text(record)
    complete = round2_tables.seg_table(tmp_path, choices)
    assert "Highest mean test Dice: **" in complete and "so far" not in complete
    (tmp_path / "r2_seg_sequential_s2.json").unlink()  # every row still has results, one seed is missing
    assert "so far (9 of 9 rows have results)" in round2_tables.seg_table(tmp_path, choices)


def test_round2_export_publishes_and_never_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--round 2 --export-weights`` mid-round must not start the missing rows (they may be running elsewhere)."""
    calls = []
    monkeypatch.setattr(protocol, "run", lambda *a, **k: calls.append("run"))
    monkeypatch.setattr(round2_tables, "write_tables", lambda results: [])
    monkeypatch.setattr(publish, "publish", lambda runs, results, weights: calls.append("publish") or [])
    (tmp_path / "round2").mkdir()
    argv = ["--round", "2", "--export-weights", "--runs", str(tmp_path / "runs"), "--results", str(tmp_path)]
    assert cli.main(argv) == 0
    assert calls == ["publish"]


def test_old_rounds_keep_the_clipping_they_ran_with(tmp_path: Path, monkeypatch) -> None:
    """v0.3.0 made ``clip="separate"`` the default of ``training.train`` and of the experiments CLI.  Rows of
    rounds 1 and 2 that name no clipping ran with "joint": they pin it, so that every regenerated command
    parses to the clipping its record holds (round 1's records hold none: the old default)."""
    import inspect

    from tarlib.study import round1
    from tarlib.study.registry import load_choices, load_record

    assert inspect.signature(training.train).parameters["clip"].default == "separate"
    assert experiments.parse_args(["mnist", "--out", str(tmp_path / "x")]).clip == "separate"
    monkeypatch.chdir(tmp_path)  # the rows' --protocol files, relative to the checkout
    for path in (protocol.PROTOCOL_FILE, Path("results/round3/PROTOCOL.md")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a protocol\n")
    choices = load_choices(RESULTS)
    old = {"round 2": (protocol.rows(choices)[0] + protocol.seg_rows(choices)[0] + protocol.mu_stage_rows(), RESULTS),
           "round 1": (round1.build_rows()[0], ROOT / "results")}
    checked = 0
    for label, (rows, folder) in old.items():
        for row in rows:
            for dep in row.deps:
                (tmp_path / dep).mkdir(exist_ok=True)
                for part in ("R.pt", "T.pt"):
                    (tmp_path / dep / part).touch()
            clip = experiments.parse_args(row.argv(tmp_path)).clip
            record = load_record(folder, row.name)
            if record is not None:
                assert clip == record["config"].get("clip", evaluation.OLD_CLIP), (label, row.name)
                checked += 1
            if label == "round 1":
                assert clip == "joint", row.name
    assert checked >= 60, checked  # round 2's 63 records and round 1's
