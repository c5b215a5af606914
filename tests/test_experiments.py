"""The command line ``python -m tarlib.experiments``: arguments, smoke runs, resume, accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tarlib import data, experiments, nets, training

QUIET = ["--fast", "--no-progress"]


def _run(argv: list[str]) -> int:
    return experiments.main([str(a) for a in argv])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mnist", "--C", "1.5"], "must lie in [0, 1]"),
        (["mnist", "--strategy", "sequential", "--C", "0.5"], "--C applies to --strategy joint only"),
        (["mnist", "--strategy", "alternating"], "invalid choice"),
        (["mnist", "--steps", "0"], "--steps must be ≥ 1"),
        (["mnist", "--batch-size", "-4"], "--batch-size must be ≥ 1"),
        (["segmentation", "--recon", "none", "--strategy", "end_to_end"], "for mnist only"),
        (["mnist", "--recon", "none"], "only with --strategy end_to_end"),
        (["mnist", "--init-task", "no/such/T.pt"], "does not exist"),
        (["mnist", "--steps", "ten"], "invalid int value"),
        (["segmentation", "--recon", "rank16", "--strategy", "end_to_end"], "for mnist only"),
        (["segmentation", "--task-net", "linear"], "--task-net linear is for mnist with a reconstruction"),
        (["mnist", "--lr-T", "0"], "--lr-R and --lr-T must be > 0"),
    ],
)
def test_bad_arguments_exit_with_status_2(argv, message, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        _run([*argv, "--out", tmp_path / "run", *QUIET])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists(), "nothing is written for bad arguments"


def test_missing_out_and_bad_data_folder_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        _run(["mnist", "--fast"])
    assert info.value.code == 2 and "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        _run(["mnist", "--data", tmp_path, "--out", tmp_path / "run", *QUIET])
    assert info.value.code == 2 and "no train-images-idx3-ubyte" in capsys.readouterr().err


def test_the_module_runs_as_a_program_and_exits_2_on_bad_arguments(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tarlib.experiments", "mnist", "--C", "-1", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "--C must lie in [0, 1]" in result.stderr


@pytest.mark.parametrize("experiment", ["mnist", "segmentation"])
@pytest.mark.parametrize("strategy", training.STRATEGIES)
def test_smoke_run_of_every_strategy(experiment: str, strategy: str, tmp_path) -> None:
    out = tmp_path / "run"
    assert _run([experiment, "--strategy", strategy, "--steps", 2, "--pretrain-steps", 1, "--out", out, *QUIET]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["strategy"] == strategy and summary["config"]["steps"] == 2 and summary["seed"] == 0
    assert {"git_commit", "device", "wall_time_s", "versions"} <= set(summary)
    key = "test_true_images" if strategy == "pretrain_task" else "test"
    test = summary["metrics"][key]
    assert test["n"] == (500 if experiment == "mnist" else 13)
    if strategy != "pretrain_reconstruction":
        assert 0.0 <= test["accuracy" if experiment == "mnist" else "dice"] <= 1.0
    if strategy != "pretrain_task":
        assert test["l2"] > 0 and "psnr" in test
    assert (out / "checkpoint.pt").is_file()
    assert (out / "T.pt").is_file() == (strategy != "pretrain_reconstruction")
    assert (out / "R.pt").is_file() == (strategy != "pretrain_task")
    assert (out / "pretrained_R.pt").is_file() == (strategy in ("sequential", "end_to_end"))
    torch.load(out / "checkpoint.pt", weights_only=True)


def test_pretrained_weights_feed_later_runs_and_reruns_resume(tmp_path, capsys) -> None:
    pre = tmp_path / "pre"
    assert _run(["mnist", "--strategy", "pretrain_reconstruction", "--steps", 2, "--out", pre, *QUIET]) == 0
    seq = tmp_path / "seq"
    init = ["--init-reconstruction", pre / "R.pt"]
    argv = ["mnist", "--strategy", "sequential", "--steps", 3, *init, "--out", seq, *QUIET]
    assert _run(argv) == 0
    first = json.loads((seq / "metrics.json").read_text())
    assert first["notes"] == [] and not (seq / "pretrained_R.pt").exists()
    # sequential keeps R fixed: it is exactly the pre-trained one
    R_pre, R_seq = training.load_checkpoint(pre / "R.pt"), training.load_checkpoint(seq / "R.pt")
    assert all(torch.equal(R_pre[k], R_seq[k]) for k in R_pre)

    capsys.readouterr()
    assert _run(argv) == 0  # metrics.json exists: done
    assert "this run is done" in capsys.readouterr().out

    (seq / "metrics.json").unlink()  # as if killed after the last checkpoint: resumes, trains nothing more
    assert _run(argv) == 0
    again = json.loads((seq / "metrics.json").read_text())
    assert again["metrics"] == first["metrics"]

    with pytest.raises(SystemExit) as info:  # same --out, other settings
        _run([*argv[:4], 4, *argv[5:]])
    assert info.value.code == 2 and "other settings" in capsys.readouterr().err


@pytest.mark.parametrize("recon, task_net", [("rank16", "linear"), ("lgd_small", "cnn")])
def test_restricted_networks_with_their_own_learning_rates_record_every_sitting(recon, task_net, tmp_path) -> None:
    """Round 3's networks from the command line; each sitting (start, stop, resume) is recorded when it starts."""
    protocol = tmp_path / "PROTOCOL.md"
    protocol.write_text("a protocol\n")
    out = tmp_path / "run"
    argv = ["mnist", "--strategy", "joint", "--C", "0.1", "--recon", recon, "--task-net", task_net, "--lr-R", "3e-4",
            "--lr-T", "1e-3", "--clip", "separate", "--steps", 4, "--protocol", protocol, "--out", out, *QUIET]
    assert _run([*argv, "--stop-at", 2]) == 0
    first = json.loads((out / "sittings.json").read_text())
    assert len(first) == 1 and first[0]["protocol_blob"] is not None and first[0]["start_utc"].endswith("+00:00")
    assert _run(argv) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert len(summary["sittings"]) == 2 and summary["sittings"][0] == first[0]
    assert summary["config"]["recon"] == recon and summary["config"]["task_net"] == task_net
    assert (summary["config"]["lr_R"], summary["config"]["lr_T"]) == (3e-4, 1e-3)
    model, _ = experiments.build_model("mnist", recon, task_net=task_net)
    assert summary["n_parameters"] == {"R": sum(p.numel() for p in model.R.parameters()),
                                       "T": sum(p.numel() for p in model.T.parameters())}
    assert isinstance(model.T, nets.LinearClassifier if task_net == "linear" else nets.Classifier)


def test_mnist_from_an_idx_folder(tmp_path) -> None:
    images, labels = data.load_mnist("test")
    folder = tmp_path / "idx"
    data.write_idx(folder, "train", images[:300], labels[:300])
    data.write_idx(folder, "test", images[300:400], labels[300:400])
    out = tmp_path / "run"
    assert _run(["mnist", "--data", folder, "--steps", 2, "--out", out, *QUIET]) == 0
    assert json.loads((out / "metrics.json").read_text())["metrics"]["test"]["n"] == 100


def test_mnist_joint_smoke_run_beats_chance_clearly(tmp_path: Path) -> None:
    """The default --fast joint run (C = 0.5, a few hundred steps) must clearly learn."""
    out = tmp_path / "run"
    assert _run(["mnist", "--strategy", "joint", "--out", out, *QUIET]) == 0
    test = json.loads((out / "metrics.json").read_text())["metrics"]["test"]
    assert test["accuracy"] >= 0.60, f"accuracy {test['accuracy']:.3f} after the fast joint run (chance: 0.10)"
    assert test["l2"] < 40.0, "with C = 0.5 the reconstruction must also improve (0-image: about 100)"
