"""tarlib.study.robustness: moving published models to other data models, verdicts, committed results."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tarlib import nets, pretrained, stats
from tarlib.study import robustness
from tarlib.study.robustness import TRAINED, Condition

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "round2"


@pytest.fixture(scope="module")
def committed() -> dict:
    return robustness.load(RESULTS)


def test_committed_results_used_the_published_weights(committed) -> None:
    # fails after a re-export of weights/: rerun `python -m tarlib.robustness` and commit its outputs
    assert robustness.stale_weights(committed, ROOT / "weights") == []
    manifest = pretrained.manifest(ROOT / "weights")
    needed = {f["path"] for m in committed["labels"] for f in manifest[m]["files"].values()}
    assert set(committed["weights"]) == needed


def test_a_re_exported_weights_file_is_detected(committed, tmp_path) -> None:
    shutil.copy(ROOT / "weights" / "manifest.json", tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    file = manifest["models"][0]["files"]["T"]
    file["sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    if file["path"] in committed["weights"]:
        assert file["path"] in robustness.stale_weights(committed, tmp_path)
    results = {"weights": {file["path"]: "1" * 64}}
    assert robustness.stale_weights(results, tmp_path) == [file["path"]]


def test_committed_results_are_the_full_command_and_its_tables(committed) -> None:
    assert committed["command"].startswith("python -m tarlib.robustness")
    # the recorded command, run in the checkout, writes these files where they are committed
    args = robustness.build_parser().parse_args(shlex.split(committed["command"])[3:])
    assert (ROOT / args.results).resolve() == RESULTS
    assert not committed["fast_mode"] and committed["n_images"] == 10_000
    assert 0 < committed["evaluation_cpu_s"] <= 3600  # the budget: one CPU-hour
    conds = {(c["photons"], c["angles"]) for c in committed["conditions"]}
    assert conds == {(c.photons, c.angles) for c in robustness.conditions()}
    assert (RESULTS / "robustness.md").read_text() == robustness.markdown(committed)
    assert (RESULTS / "robustness.png").is_file()
    for row in committed["drop_vs_sequential"] + committed["overall"]:
        assert row["low"] <= row["difference"] <= row["high"]
        assert row["verdict"] == robustness.verdict(row["low"], row["high"])
    # the sinogram CNN has no entry with another number of angles
    assert all(a["angles"] == 5 for a in committed["accuracy"] if a["model"] == "mnist_sinogram_cnn")


def test_conditions_are_two_sweeps_through_the_training_condition() -> None:
    conds = robustness.conditions()
    assert len(conds) == 9 and conds.count(TRAINED) == 1
    assert all(c.angles == 5 or c.photons == 60 for c in conds)
    for doses, angles in (((0.0,), (5,)), ((60,), (2.5,)), ((60,), (0,))):
        with pytest.raises(ValueError, match="doses must be > 0"):
            robustness.conditions(doses, angles)


def test_data_model_of_a_condition() -> None:
    M = robustness.data_model(Condition(120, 8))
    assert M.A.range_shape == (8, 25) and M.noise.photons_per_line == 120
    x = torch.zeros(2, 1, 28, 28)
    y = robustness.counts(x, Condition(120, 8), seed=3)
    assert y.shape == (2, 1, 8, 25) and torch.equal(y, robustness.counts(x, Condition(120, 8), seed=3))
    assert abs(y.mean().item() - 120) < 10  # an empty image lets every photon through


@pytest.fixture(scope="module")
def sequential() -> nets.TaskAdapted:
    return pretrained.load("mnist_sequential")


def test_rebuilt_and_trained_gradient_scales(sequential) -> None:
    M = robustness.data_model(Condition(240, 5))
    rebuilt = robustness.with_data_model(sequential, M, "rebuilt")
    trained = robustness.with_data_model(sequential, M, "trained")
    assert rebuilt.R.grad_scale == pytest.approx(1 / nets.nll_curvature(M))
    assert trained.R.grad_scale == sequential.R.grad_scale
    assert rebuilt.R.grad_scale == pytest.approx(sequential.R.grad_scale / 4, rel=0.01)  # curvature ∝ I0
    assert rebuilt.T is sequential.T and rebuilt.R.M is M and sequential.R.M is not M
    for p, q in zip(rebuilt.R.parameters(), sequential.R.parameters()):
        assert torch.equal(p, q)


def test_rebuilt_model_at_the_training_condition_is_the_published_model(sequential) -> None:
    x = robustness.data.load_mnist("test").images[:8]
    y = robustness.counts(x, TRAINED)
    moved = robustness.with_data_model(sequential, robustness.data_model(TRAINED), "rebuilt")
    with torch.no_grad():
        torch.testing.assert_close(moved(y)[1], sequential(y)[1])


def test_models_that_cannot_move_say_why(sequential) -> None:
    sinogram = pretrained.load("mnist_sinogram_cnn")
    M3 = robustness.data_model(Condition(60, 3))
    assert not robustness.accepts(sinogram, Condition(60, 3)) and robustness.accepts(sinogram, Condition(15, 5))
    with pytest.raises(ValueError, match="cannot take another number of angles"):
        robustness.with_data_model(sinogram, M3, robustness.NO_POLICY)
    with pytest.raises(ValueError, match="needs a policy"):
        robustness.with_data_model(sequential, M3, robustness.NO_POLICY)
    with pytest.raises(ValueError, match="learned gradient descent only"):
        robustness.with_data_model(sinogram, robustness.data_model(TRAINED), "rebuilt")
    with pytest.raises(ValueError, match="policy must be one of"):
        robustness.with_data_model(sequential, M3, "other")
    fbp = pretrained.load("mnist_fbp_classifier")
    assert robustness.with_data_model(fbp, M3, robustness.NO_POLICY).R.A.range_shape == (3, 25)


def test_verdicts_read_a_paired_interval_of_drop_differences() -> None:
    """The intervals are :func:`tarlib.stats.paired_bootstrap`'s, over test images."""
    rng = np.random.default_rng(1)
    shifted = stats.paired_bootstrap(rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.6, 0.3], size=4000), 500)  # mean 0.2
    assert shifted["low"] < 0.2 < shifted["high"] and shifted["high"] - shifted["low"] < 0.05
    assert robustness.verdict(shifted["low"], shifted["high"]) == "above 0: larger drop"
    assert robustness.verdict(-shifted["high"], -shifted["low"]) == "below 0: smaller drop"
    centred = rng.choice([-1.0, 0.0, 1.0], size=4000)
    centred = stats.paired_bootstrap(centred - centred.mean(), 500)
    assert robustness.verdict(centred["low"], centred["high"]) == "contains 0"


def test_evaluate_and_summarise_at_toy_size(tmp_path) -> None:
    models = ("mnist_sequential", "mnist_fbp_classifier", "mnist_sinogram_cnn")
    lines: list[str] = []
    evaluation = robustness.evaluate(models, doses=(30, 60), angles=(4, 5), n=40, cache=tmp_path, log=lines.append)
    assert set(evaluation["conditions"]) == {TRAINED, Condition(30, 5), Condition(60, 4)}
    assert ("mnist_sinogram_cnn", "-", Condition(60, 4)) not in evaluation["entries"]
    assert ("mnist_sequential", "trained", TRAINED) in evaluation["entries"]
    assert len(lines) == 5 + 3 + 2  # sequential: 1 + 2 policies × 2 shifted conditions; FBP 3; sinogram 2
    again = robustness.evaluate(models, doses=(30, 60), angles=(4, 5), n=40, cache=tmp_path, log=lines.append)
    assert len(lines) == 10  # all from the cache
    for key, value in evaluation["entries"].items():
        assert torch.equal(value["correct"], again["entries"][key]["correct"])
    assert again["cost"] == evaluation["cost"] and evaluation["cost"]["cpu_s"] > 0
    results = robustness.summarise(evaluation, n_boot=200)
    fbp_dose = [d for d in results["drop_vs_sequential"] if d["model"] == "mnist_fbp_classifier" and d["angles"] == 5]
    assert len(fbp_dose) == 1 and fbp_dose[0]["reference_policy"] == "rebuilt"
    acc = {(a["model"], a["policy"], a["photons"], a["angles"]): a["accuracy"] for a in results["accuracy"]}
    d = fbp_dose[0]
    expected = (acc["mnist_fbp_classifier", "-", 60, 5] - acc["mnist_fbp_classifier", "-", 30, 5]) - (
        acc["mnist_sequential", "rebuilt", 60, 5] - acc["mnist_sequential", "rebuilt", 30, 5])
    assert d["difference"] == pytest.approx(expected)
    results["command"] = "python -m tarlib.robustness --n 40"
    paths = robustness.write(results, tmp_path / "out")
    assert [p.name for p in paths] == ["robustness.json", "robustness.md", "robustness.png"]
    assert "sinogram CNN" in paths[1].read_text()


def test_evaluate_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="reference"):
        robustness.evaluate(("mnist_joint_C0.5",), n=10)
    with pytest.raises(ValueError, match="not a published MNIST model"):
        robustness.evaluate(("mnist_sequential", "seg_sequential"), n=10)
    with pytest.raises(ValueError, match="n must lie"):
        robustness.evaluate(("mnist_sequential",), n=1)


def test_data_models_keep_the_published_models_mu() -> None:
    """Only dose and angles change: μ is the published models' (their manifest's), unless given."""
    assert robustness.trained_mu() == pretrained.data_model(robustness.REFERENCE).noise.mu
    assert robustness.data_model(robustness.Condition(30, 4)).noise.mu == robustness.trained_mu()
    assert robustness.data_model(robustness.Condition(30, 4), mu=0.3).noise.mu == 0.3
