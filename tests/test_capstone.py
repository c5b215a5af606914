"""The capstone of notebook 12 (tarlib.study.capstone): its rows and C, the pairing check of
tarlib.stats.paired_scores, the course's rule on constructed cases with known answers, the estimate from
make bench, and a smoke-size run that records, pairs, summarises and resumes."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tarlib import data, experiments, stats, training
from tarlib.study import capstone, cli, evaluation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_checkout(monkeypatch):
    monkeypatch.chdir(ROOT)  # results/round3/choices.json, which fixes C


def _args(row) -> dict[str, str]:
    return dict(zip(row.args[::2], row.args[1::2]))


def test_rows_share_their_pretraining_and_differ_only_in_the_strategy(in_checkout, tmp_path: Path) -> None:
    C = capstone.fixed_C()
    assert C == json.loads((ROOT / "results/round3/choices.json").read_text())["best_C"]["rank16_cnn"]["C"]
    rows = capstone.rows()
    assert [r.name for r in rows[:4]] == ["cap_pretrain_R_s0", "cap_pretrain_T_s0", "cap_sequential_s0", "cap_joint_s0"]
    assert len(rows) == 4 * len(capstone.FULL.seeds)
    by_name = {r.name: r for r in rows}
    for s in capstone.FULL.seeds:
        seq, joint = by_name[f"cap_sequential_s{s}"], by_name[f"cap_joint_s{s}"]
        assert seq.deps == joint.deps == (f"cap_pretrain_R_s{s}", f"cap_pretrain_T_s{s}") and seq.steps == joint.steps
        a, b = _args(seq), _args(joint)
        assert {k: v for k, v in b.items() if k not in ("--strategy", "--C")} == {k: v for k, v in a.items() if k != "--strategy"}
        assert (a["--strategy"], b["--strategy"], float(b["--C"])) == ("sequential", "joint", C)
        assert (a["--recon"], a["--task-net"], float(a["--lr-R"]), float(a["--lr-T"])) == ("rank16", "cnn", 3e-4, 1e-3)
    argv = by_name["cap_joint_s1"].argv(tmp_path)
    assert argv[argv.index("--steps") + 1] == str(capstone.FULL.steps["finetune"]) and "--fast" not in argv
    assert argv[argv.index("--init-task") + 1] == str(tmp_path / "cap_pretrain_T_s1" / "T.pt")
    with pytest.raises(ValueError, match="no best C"):
        capstone.fixed_C(tmp_path / "choices.json")


def _runs(seeds=(0, 1, 2), draws=(0, 1), n=6, rng=None) -> list[stats.RunScores]:
    rng = rng or np.random.default_rng(0)
    return [stats.RunScores(what, s, draws, tuple(range(n)), rng.integers(0, 2, (len(draws), n)))
            for what in ("joint", "sequential") for s in seeds]


def test_paired_scores_builds_seeds_draws_images_and_refuses_what_is_not_paired() -> None:
    runs = _runs()
    a, b = stats.paired_scores(runs[::-1], "joint", "sequential")  # any order of runs: seeds come out sorted
    assert a.shape == b.shape == (3, 2, 6)
    assert np.array_equal(a[1], runs[1].scores) and np.array_equal(b[2], runs[5].scores)

    shuffled = dataclasses.replace(runs[4], images=(1, 0, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="another order; sort both runs by image index"):
        stats.paired_scores([*runs[:4], shuffled, runs[5]], "joint", "sequential")
    with pytest.raises(ValueError, match=r"not paired: joint has seeds \[0, 1, 2\], sequential has seeds \[0, 2\]"):
        stats.paired_scores([r for r in runs if (r.strategy, r.seed) != ("sequential", 1)], "joint", "sequential")
    other_draw = dataclasses.replace(runs[3], draws=(0, 2))
    with pytest.raises(ValueError, match=r"draws \[0, 2\] against \[0, 1\]"):
        stats.paired_scores([*runs[:3], other_draw, *runs[4:]], "joint", "sequential")
    other_images = dataclasses.replace(runs[5], images=tuple(range(1, 7)))
    with pytest.raises(ValueError, match="different test images"):
        stats.paired_scores([*runs[:5], other_images], "joint", "sequential")
    with pytest.raises(ValueError, match="two runs of joint with seed 0"):
        stats.paired_scores([*runs, runs[0]], "joint", "sequential")
    with pytest.raises(ValueError, match="no run of strategy 'end_to_end'"):
        stats.paired_scores(runs, "end_to_end", "sequential")
    with pytest.raises(ValueError, match=r"shaped \[draws, images\]"):
        stats.paired_scores([dataclasses.replace(runs[0], scores=np.ones((2, 5))), *runs[1:]], "joint", "sequential")


def _constructed(extra_right: dict[int, int], n: int = 2000, draws: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """B right on a random 90 % of the images (the same in every draw); A right on the same images and, in seed s,
    on ``extra_right[s]`` of B's wrong ones (negative: A wrong on that many of B's right ones)."""
    rng = np.random.default_rng(seed)
    b = np.repeat(rng.random((len(extra_right), 1, n)) < 0.9, draws, axis=1).astype(float)
    a = b.copy()
    for s, k in extra_right.items():
        flip = np.flatnonzero(b[s, 0] == (0 if k > 0 else 1))[: abs(k)]
        a[s][:, flip] = 1.0 if k > 0 else 0.0
    return a, b


def test_the_rule_on_constructed_cases_with_known_answers() -> None:
    a, b = _constructed({0: 60, 1: 60, 2: 60})  # A right on 60 more images in every seed and draw
    v = stats.compare(a, b)
    assert v.resolved and v.describe("joint", "sequential") == "resolved: joint better"
    assert v.low > 0 and np.allclose(v.per_seed, 60 / 2000) and np.isclose(v.mean, 60 / 2000)
    v = stats.compare(b, a)
    assert v.resolved and v.describe("joint", "sequential") == "resolved: sequential better"
    v = stats.compare(b, b.copy())  # equal: no difference at all
    assert not v.resolved and v.mean == 0 and v.describe() == "not resolved"
    a, b = _constructed({0: 120, 1: 120, 2: -10})  # the interval excludes 0, but one seed disagrees
    v = stats.compare(a, b)
    assert v.low > 0 and v.per_seed[2] < 0 and not v.resolved
    assert stats.compare(a[:1], b[:1]).resolved is None  # one seed: no verdict


def test_seconds_per_step_times_real_training_steps() -> None:
    model, M = experiments.build_model("mnist", capstone.RECON)
    images = data.load_mnist("train")
    loader = data.TaskLoader(images.images[:128], images.labels[:128], M, batch_size=32, seed=0)
    before = [p.clone() for p in model.T.parameters()]
    cpu, wall = training.seconds_per_step(model, loader, "joint", steps=2, warmup=1)
    assert cpu > 0 and wall > 0 and any(not torch.equal(a, b) for a, b in zip(before, model.T.parameters()))
    with pytest.raises(ValueError, match="steps ≥ 1 and warmup ≥ 1"):
        training.seconds_per_step(model, loader, "joint", steps=0)


def test_the_bench_estimate_fits_the_budget_and_names_its_device() -> None:
    bench = json.loads((ROOT / "results" / "capstone" / capstone.BENCH_FILE).read_text())
    assert bench["device"] == "cpu, 2 threads" and bench["gpu"] == "not measured" and bench["date"]
    assert bench["full_steps"] == capstone.FULL.steps and bench["seeds"] == list(capstone.FULL.seeds)
    assert np.isclose(bench["estimate_s"], capstone.full_estimate(bench)) and bench["estimate_s"] <= capstone.BUDGET_S
    idle = capstone.full_estimate(capstone.round3_times())  # round 3's times: 2 threads on the idle machine
    assert np.isclose(bench["estimate_round3_times_s"], idle) and idle <= capstone.BUDGET_S
    assert set(bench["train"]) == {"pretrain_R", "pretrain_T", "sequential", "joint"}


def test_smoke_capstone_runs_pairs_summarises_and_resumes(in_checkout, tmp_path: Path, monkeypatch, capsys) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    start = time.perf_counter()
    assert len(capstone.run(runs, results, fast=True, extra=("--no-progress",))) == 4 * len(capstone.FAST.seeds)
    print(f"smoke capstone: {time.perf_counter() - start:.1f} s")
    C = capstone.fixed_C()
    for s in capstone.FAST.seeds:
        for what in capstone.STRATEGIES:
            record = json.loads((results / f"cap_{what}_s{s}.json").read_text())
            assert record["command"].startswith("python -m tarlib.experiments mnist") and "git_commit" in record
            assert record["wall_time_s"] > 0 and record["seed"] == s and record["config"]["fast"]
            assert [d["seed"] for d in record["evaluation"]["test"]] == [evaluation.draw_seed("test", d)
                                                                      for d in capstone.TEST_DRAWS]
            assert record["config"]["init_task"].endswith(f"cap_pretrain_T_s{s}/T.pt")
            assert np.load(results / record["predictions"])["test"].shape == (len(capstone.TEST_DRAWS), 500)
            assert record["C"] == (C if what == "joint" else None)
    summary = json.loads((results / "summary.json").read_text())
    assert summary["rows_recorded"] == summary["rows"] == 12 and summary["C"] == C and summary["fast"]
    assert summary["verdict"]["text"] in ("not resolved", "resolved: joint better", "resolved: sequential better")
    assert summary["detectable_effect"] > 0 and len(summary["verdict"]["per_seed"]) == 3
    assert "smoke size" in (results / "summary.md").read_text()

    # an interrupted row (its run folder kept, no metrics yet) resumes; the finished ones do not run again
    (results / "cap_joint_s1.json").unlink()
    (runs / "cap_joint_s1" / "metrics.json").unlink()
    ran = []
    real_main = experiments.main
    monkeypatch.setattr(experiments, "main", lambda argv: ran.append(argv) or real_main(argv))
    assert capstone.run(runs, results, fast=True, extra=("--no-progress",)) == ["cap_joint_s1"] and len(ran) == 1
    assert len(json.loads((runs / "cap_joint_s1" / "sittings.json").read_text())) == 2

    with pytest.raises(ValueError, match="holds smoke-size records"):  # a full run never mixes with smoke-size rows
        capstone.run(runs, results, fast=False)
    assert cli.main(["--capstone", "--fast", "--list", "--runs", str(runs)]) == 0
    assert "cap_joint_s2: python -m tarlib.experiments mnist --strategy joint" in capsys.readouterr().out
