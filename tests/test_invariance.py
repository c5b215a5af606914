"""Non-uniqueness of end-to-end training (tarlib.invariance): (B⁻¹ ∘ R, T ∘ B) decides as (R, T) does."""

from __future__ import annotations

import pytest
import torch

from tarlib import experiments, invariance, nets, physics, pretrained

MAPS = {
    "mixing": lambda: invariance.OrthogonalMixing((1, 28, 28), seed=0),
    "permutation": lambda: invariance.PixelPermutation((1, 28, 28), seed=0),
    "contrast": invariance.ContrastInversion,
}


@pytest.mark.parametrize("name", MAPS)
def test_maps_are_inverted_exactly(name) -> None:
    B = MAPS[name]()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(B.inverse(B(x)), x, atol=1e-6)
    assert torch.allclose(B(B.inverse(x)), x, atol=1e-6)
    assert not torch.allclose(B(x), x)


@pytest.fixture(scope="module")
def end_to_end():
    model = pretrained.load("mnist_end_to_end")
    batch = experiments.test_batches("mnist", physics.mnist_data_model(), seed=0, n=128)
    x, y, _ = (torch.cat(t) for t in zip(*batch))
    return model, x, y


@pytest.mark.parametrize("name", MAPS)
def test_published_end_to_end_model_decides_the_same_under_every_B(end_to_end, name) -> None:
    model, x, y = end_to_end
    with torch.no_grad():
        x_hat, logits = model(y)
        x_b, logits_b = invariance.wrap(model, MAPS[name]())(y)
    assert (logits_b.softmax(1) - logits.softmax(1)).abs().max().item() <= 1e-5
    l2 = lambda r: (r - x).pow(2).flatten(1).sum(1).mean().item()
    assert l2(x_b) > 5 * l2(x_hat)  # the "reconstruction" is far from x


def test_wrap_and_maps_reject_bad_input() -> None:
    T = nets.Classifier()
    with pytest.raises(ValueError, match="reconstruction R"):
        invariance.wrap(nets.TaskAdapted(None, T), invariance.ContrastInversion())
    with pytest.raises(TypeError, match="PixelMap"):
        invariance.wrap(nets.TaskAdapted(torch.nn.Identity(), T), torch.nn.Identity())
    with pytest.raises(ValueError, match="784 pixels"):
        invariance.PixelPermutation((1, 28, 28))(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        invariance.ContrastInversion()(torch.zeros(28, 28))
    with pytest.raises(ValueError, match="seed"):
        invariance.OrthogonalMixing((1, 4, 4), seed=-1)
