"""The linear-Gaussian C trade-off toy (tarlib.tradeoff): exact risks, Bayes bounds, and the claim
that joint training beats sequential training only when R is restricted."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from tarlib import tradeoff


@pytest.fixture(scope="module")
def toy() -> tradeoff.Toy:
    return tradeoff.toy()


def test_exact_risks_match_monte_carlo(toy) -> None:
    g = torch.Generator().manual_seed(3)
    B = torch.randn(2, 6, 6, dtype=torch.float64, generator=g)
    a = torch.randn(2, 6, dtype=torch.float64, generator=g)
    b = torch.tensor([0.3, -0.2], dtype=torch.float64)
    x, y, z = toy.sample(200_000, g)
    x_hat = torch.einsum("gnk,mk->gmn", B, y)
    l_X = (x_hat - x).pow(2).sum(-1).mean(-1)
    logits = torch.einsum("gmn,gn->gm", x_hat, a) + b[:, None]
    l_D = F.binary_cross_entropy_with_logits(logits, z.expand_as(logits), reduction="none").mean(-1)
    assert torch.allclose(toy.reconstruction_risk(B), l_X, rtol=0.01)
    assert torch.allclose(toy.task_risk(B, a, b), l_D, rtol=0.01)


def test_bayes_bounds(toy) -> None:
    # the posterior mean reaches the Bayes ℓ_X; the Bayes accuracy is the probability that the sign is right
    assert toy.reconstruction_risk(toy.problem.K).item() == pytest.approx(toy.bayes_reconstruction_risk(), rel=1e-9)
    x, y, _ = toy.sample(200_000, torch.Generator().manual_seed(1))
    right = (torch.sign(y @ toy.problem.K.T @ toy.w) == torch.sign(x @ toy.w)).double().mean().item()
    assert toy.bayes_accuracy() == pytest.approx(right, abs=0.005)
    assert toy.bayes_task_risk() < math.log(2)
    # no logistic T ∘ linear R beats the Bayes task risk: the best one (a probit fit) comes close
    a = toy.w * 1.7 / math.sqrt(float(toy.w @ toy.problem.posterior_covariance() @ toy.w))
    risk = toy.task_risk(toy.problem.K, a, torch.tensor(0.0, dtype=torch.float64)).item()
    assert toy.bayes_task_risk() <= risk < toy.bayes_task_risk() + 0.01


def test_joint_beats_sequential_only_when_R_is_restricted(toy) -> None:
    """Over 3 seeds: joint (C = 0.1) wins clearly at rank 2; at full rank its advantage is ≤ 10 % of that."""
    restricted = tradeoff.joint_advantage(toy, 2, 0.1, seeds=range(3), steps=800)
    full = tradeoff.joint_advantage(toy, toy.problem.n, 0.1, seeds=range(3), steps=800)
    assert (restricted > 0.1).all(), restricted
    assert full.abs().max() <= 0.1 * restricted.mean(), (full, restricted)


def test_small_C_pins_the_reconstruction_that_C_0_leaves_free(toy) -> None:
    fits = [tradeoff.train(toy, 6, [0.0, 0.1], seed=s, steps=800, init_scale=2.0) for s in range(3)]
    l_X = torch.stack([f.l_X for f in fits])
    l_D = torch.stack([f.l_D for f in fits])
    assert (l_D - toy.bayes_task_risk()).abs().max() < 0.01  # both solve the task
    assert l_X[:, 0].min() > 5 * l_X[:, 1].max()  # but only C > 0 asks for a reconstruction


def test_sequential_rank_r_drops_the_task_coordinate(toy) -> None:
    fit = tradeoff.train(toy, 2, strategy="sequential", steps=400)
    assert fit.l_D.item() == pytest.approx(math.log(2), abs=0.01)  # chance
    assert torch.isnan(fit.C).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0, "Cs": [0.5]}, "rank"),
        ({"rank": 2, "Cs": [1.5]}, r"\[0, 1\]"),
        ({"rank": 2, "Cs": []}, "non-empty"),
        ({"rank": 2, "Cs": [0.5], "strategy": "sequential"}, "no C"),
        ({"rank": 2, "Cs": [0.5], "strategy": "other"}, "strategy"),
        ({"rank": 2, "Cs": [0.5], "steps": 0}, "steps"),
    ],
)
def test_train_rejects_bad_arguments(toy, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        tradeoff.train(toy, **kwargs)


def test_toy_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n must"):
        tradeoff.toy(n=1)
    with pytest.raises(ValueError, match="smallest"):
        tradeoff.toy(smallest=2.0)
