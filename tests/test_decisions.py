"""Tests for tarlib.decisions: τ, ℓ_D on decisions, logits → decisions, calibration, figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch

from tarlib import decisions, metrics


def _calibrated(n: int, k: int, sharpen: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from random probability vectors p; decisions p**(1/sharpen) renormalised.

    sharpen = 1 gives decisions that are calibrated by construction; sharpen < 1
    pushes mass onto the top label, i.e. over-confident decisions.
    """
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(2.0 * torch.randn(n, k, generator=g, dtype=torch.float64), dim=1)
    z = torch.multinomial(p, 1, generator=g)[:, 0]
    d = p ** (1.0 / sharpen)
    return d / d.sum(dim=1, keepdim=True), z


def test_tau_classification_is_one_hot() -> None:
    z = torch.tensor([3, 0, 9])
    d = decisions.tau(z, 10)
    assert d.shape == (3, 10) and d.dtype == torch.float32
    assert torch.equal(d.sum(dim=1), torch.ones(3))
    assert torch.equal(d.argmax(dim=1), z)


def test_tau_segmentation_is_pointwise_point_mass() -> None:
    z = torch.randint(0, 2, (2, 1, 5, 6), generator=torch.Generator().manual_seed(0))
    d = decisions.tau(z, 2)
    assert d.shape == (2, 2, 5, 6)
    assert torch.equal(d[:, 1].long(), z[:, 0]) and torch.equal(d.sum(dim=1), torch.ones(2, 5, 6))


@pytest.mark.parametrize("bad, k, error", [
    (torch.tensor([0.0, 1.0]), 10, TypeError),      # float labels
    (torch.tensor([0, 10]), 10, ValueError),        # label out of range
    (torch.zeros(2, 3, dtype=torch.long), 10, ValueError),  # wrong rank
    (torch.tensor([0, 1]), 1, ValueError),          # too few labels
])
def test_tau_rejects_bad_input(bad: torch.Tensor, k: int, error: type) -> None:
    with pytest.raises(error):
        decisions.tau(bad, k)


def test_cross_entropy_of_tau_reduces_to_minus_log_of_true_label() -> None:
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(16, 10, generator=g)
    z = torch.randint(0, 10, (16,), generator=g)
    d_prime = decisions.probabilities(logits)
    loss = decisions.decision_cross_entropy(decisions.tau(z, 10), d_prime)
    expected = -torch.log(d_prime[torch.arange(16), z])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, metrics.cross_entropy(logits, z), rtol=1e-5, atol=1e-5)


def test_segmentation_cross_entropy_is_integrated_over_omega() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 2, 8, 8, generator=g)
    z = torch.randint(0, 2, (3, 8, 8), generator=g)
    loss = decisions.decision_cross_entropy(decisions.tau(z, 2), decisions.probabilities(logits), cell_volume=0.25)
    torch.testing.assert_close(loss, metrics.pixelwise_cross_entropy(logits, z, cell_volume=0.25), rtol=1e-5, atol=1e-4)


def test_cross_entropy_is_smallest_at_the_truth() -> None:
    """Gibbs' inequality: ℓ_D(d, d′) ≥ ℓ_D(d, d) with equality only at d′ = d."""
    d = torch.tensor([[0.7, 0.2, 0.1]])
    other = torch.tensor([[0.5, 0.3, 0.2]])
    assert decisions.decision_cross_entropy(d, other) > decisions.decision_cross_entropy(d, d)
    one_hot = decisions.tau(torch.tensor([0]), 3)
    assert decisions.decision_cross_entropy(one_hot, one_hot) == 0


def test_decision_cross_entropy_rejects_logits() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        decisions.decision_cross_entropy(decisions.tau(torch.tensor([1]), 3), torch.tensor([[2.0, -1.0, 0.5]]))


def test_logits_to_decisions() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0], [5.0, 0.0, 0.0]])
    d = decisions.probabilities(logits)
    torch.testing.assert_close(d.sum(dim=1), torch.ones(2))
    assert torch.equal(decisions.argmax_label(d), torch.tensor([1, 0]))
    seg = decisions.probabilities(torch.tensor([[[[0.0, 1.0]], [[1.0, 0.0]]]]))  # [1, 2, 1, 2]
    assert torch.equal(decisions.threshold_mask(seg), torch.tensor([[[1, 0]]]))
    assert torch.equal(decisions.threshold_mask(seg, threshold=0.2), torch.tensor([[[1, 1]]]))
    with pytest.raises(ValueError):
        decisions.threshold_mask(seg, threshold=1.5)


def test_reliability_bins_count_every_sample() -> None:
    d, z = _calibrated(5000, 10, sharpen=1.0)
    rel = decisions.reliability(d, z, n_bins=15)
    assert int(rel.counts.sum()) == 5000
    assert rel.edges.shape == (16,) and rel.confidence.shape == rel.accuracy.shape == (15,)
    full = rel.counts > 0
    lower, upper = rel.edges[:-1][full], rel.edges[1:][full]
    assert bool(((rel.confidence[full] >= lower) & (rel.confidence[full] <= upper)).all())
    assert bool(rel.confidence[~full].isnan().all())


def test_reliability_counts_confidence_one_and_zero() -> None:
    d = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    rel = decisions.reliability(d, torch.tensor([0, 1]), n_bins=4)
    assert rel.counts.tolist() == [0, 1, 0, 1]
    assert rel.accuracy[3] == 1.0 and rel.accuracy[1] == 0.0  # tie: arg max picks label 0, truth is 1


def test_ece_of_calibrated_predictions_is_near_zero() -> None:
    d, z = _calibrated(200_000, 10, sharpen=1.0)
    assert decisions.expected_calibration_error(d, z, n_bins=15) < 0.01


def test_ece_of_overconfident_predictions_is_large() -> None:
    d, z = _calibrated(200_000, 10, sharpen=0.3)
    rel = decisions.reliability(d, z, n_bins=15)
    assert rel.ece > 0.1
    full = rel.counts > 50
    assert bool((rel.confidence[full] >= rel.accuracy[full] - 0.02).all())  # over-confident: conf ≥ acc


def test_ece_of_a_known_case() -> None:
    """Two samples at confidence 0.9, one right and one wrong: |0.5 − 0.9| = 0.4."""
    d = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    assert decisions.expected_calibration_error(d, torch.tensor([0, 1])) == pytest.approx(0.4)


def test_figures_draw() -> None:
    d, z = _calibrated(500, 10, sharpen=1.0)
    fig = decisions.plot_reliability(decisions.reliability(d.float(), z))
    assert len(fig.axes) == 2
    fig = decisions.plot_decisions(torch.rand(4, 1, 28, 28), d[:4].float(), z[:4], n=3)
    assert len(fig.axes) == 6
    seg = decisions.probabilities(torch.randn(2, 2, 16, 16))
    fig = decisions.plot_segmentations(torch.rand(2, 1, 16, 16), torch.randint(0, 2, (2, 1, 16, 16)), seg, n=2)
    assert len(fig.axes) >= 6
    plt.close("all")
