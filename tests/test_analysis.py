"""tarlib.analysis: loss scales, clipped steps, Figure 2/3 helpers and the seg_outputs.npz format."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from tarlib import analysis, data, experiments, losses, pretrained, records

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_small():
    torch.manual_seed(0)
    model, M = experiments.build_model("mnist", fast=True)
    images, labels = data.load_mnist("test")
    loader = data.TaskLoader(images[:16], labels[:16], M, batch_size=16, seed=0, shuffle=False)
    return model.eval(), next(iter(loader))


def test_loss_scales_agree_with_gradient_norms_and_task_share(mnist_small) -> None:
    model, batch = mnist_small
    s = analysis.loss_scales(model, batch, "classification")
    x, y, z = batch
    x_hat, logits = model(y)
    assert s["l_X"] == pytest.approx(losses.l2_loss(x_hat, x).item(), rel=1e-6)
    assert s["l_D"] == pytest.approx(losses.cross_entropy(logits, z).item(), rel=1e-6)
    assert s["ratio"] == pytest.approx(s["g_D"] / s["g_X"])
    assert losses.task_share(s["C_balance"], s["g_D"], s["g_X"]) == pytest.approx(0.5)


def test_clipped_task_step(mnist_small) -> None:
    model, batch = mnist_small
    near_one = analysis.clipped_task_step(model, batch, 0.999, "classification")
    half = analysis.clipped_task_step(model, batch, 0.5, "classification")
    assert near_one["task_rms"] < half["task_rms"]
    assert 0 <= near_one["adam_factor"] <= half["adam_factor"] <= 1
    assert near_one["norm"] > 0


def test_seg_outputs_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    models = {"a": experiments.build_model("segmentation", fast=True)[0],
              "b": experiments.build_model("segmentation", fast=True)[0]}
    path = analysis.write_seg_outputs(models, {"a": None, "b": 0.1}, tmp_path / "out.npz", slices=[0, 5])
    assert path.stat().st_size <= analysis.SEG_OUTPUTS_MAX_BYTES
    with np.load(path) as f:
        assert f["x"].dtype == np.float16 and f["x"].shape == (2, 128, 128)
        assert f["z"].dtype == np.uint8 and set(np.unique(f["z"])) <= {0, 1}
        assert f["recon_a"].dtype == f["prob_b"].dtype == np.float16
    out = analysis.read_seg_outputs(path)
    assert out["rows"] == ["a", "b"] and math.isnan(out["C"]["a"]) and out["C"]["b"] == 0.1
    assert ((out["prob"]["b"] >= 0) & (out["prob"]["b"] <= 1)).all()
    assert isinstance(analysis.plot_seg_panel(out, 1), matplotlib.figure.Figure)
    with pytest.raises(ValueError, match="no C given"):
        analysis.write_seg_outputs(models, {"a": None}, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="slices"):
        analysis.write_seg_outputs(models, {"a": None, "b": 0.1}, tmp_path / "x.npz", slices=[99])


def test_committed_seg_outputs_hold_published_models() -> None:
    out = analysis.read_seg_outputs(ROOT / "results" / "round2" / "seg_outputs.npz")
    assert (ROOT / "results" / "round2" / "seg_outputs.npz").stat().st_size <= analysis.SEG_OUTPUTS_MAX_BYTES
    assert out["rows"] and out["x"].shape[1:] == (128, 128)
    for row in out["rows"]:
        assert out["recon"][row].shape == out["prob"][row].shape == out["x"].shape
    manifest = pretrained.manifest()
    for row in set(out["rows"]) & set(manifest):  # a published row: C as in its manifest entry
        C = manifest[row]["C"]
        assert (math.isnan(out["C"][row]) if C is None else out["C"][row] == C)


def test_contrast_helpers() -> None:
    x = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    z = (x < 0.5).astype(np.uint8)
    assert analysis.grey_white_contrast(x, x, z) == pytest.approx(1.0)
    assert analysis.grey_white_contrast(1 - x, x, z) == pytest.approx(-1.0)
    vmin, vmax = analysis.contrast_window(x)
    assert 0 < vmin < 0.02 and 0.98 < vmax < 1
    with pytest.raises(ValueError, match="low"):
        analysis.contrast_window(x, 50, 10)
    with pytest.raises(ValueError, match="one shape"):
        analysis.grey_white_contrast(x, x[:4], z)
    # the contrast-to-noise ratio ignores shifts and positive scales, which the relative difference does not
    noisy = x + np.random.default_rng(0).normal(0, 0.05, x.shape)
    cnr = analysis.grey_white_cnr(noisy, x, z)
    assert cnr > 0 and analysis.grey_white_cnr(3 * noisy + 7, x, z) == pytest.approx(cnr)
    assert analysis.grey_white_cnr(-noisy, x, z) == pytest.approx(-cnr)
    assert analysis.grey_white_contrast(3 * noisy + 7, x, z) == pytest.approx(3 * analysis.grey_white_contrast(noisy, x, z))
    with pytest.raises(ValueError, match="one shape"):
        analysis.grey_white_cnr(x, x[:4], z)


def test_plot_seg_metrics() -> None:
    assert isinstance(analysis.plot_seg_metrics(records.course_runs("seg_", round=1)), matplotlib.figure.Figure)


def test_plot_strategies_and_inference_time(mnist_small) -> None:
    model, (x, y, z) = mnist_small
    with torch.no_grad():
        x_hat, logits = model(y[:2])
    fig = analysis.plot_strategies(x[:2], y[:2], {"s": x_hat}, {"s": logits.softmax(1)}, labels=z[:2])
    assert len(fig.axes) == 2 * 4
    with pytest.raises(ValueError, match="same strategies"):
        analysis.plot_strategies(x[:2], y[:2], {"s": x_hat}, {"t": logits}, labels=z[:2])
    assert analysis.inference_time(model, y, batch_size=4, repeats=1) > 0
    with pytest.raises(ValueError, match="batch_size"):
        analysis.inference_time(model, y, batch_size=0)


def test_figure2_shows_the_first_digit_and_the_least_confident_ones() -> None:
    prob = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.99, 0.01], [0.55, 0.45]])
    assert analysis.figure2_digits(prob, 3).tolist() == [0, 4, 2]
    assert analysis.figure2_digits(prob, 1).tolist() == [0]
    with pytest.raises(ValueError, match="n must lie in"):
        analysis.figure2_digits(prob, 6)
