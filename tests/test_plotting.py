"""tarlib.plotting: the figure helpers draw what they are given and reject bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tarlib import plotting  # noqa: E402


def test_to_numpy_2d_accepts_single_images_only() -> None:
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    np.testing.assert_array_equal(plotting.to_numpy_2d(x), x[0, 0].numpy())
    assert plotting.to_numpy_2d(np.ones((1, 5, 5))).shape == (5, 5)
    with pytest.raises(ValueError, match="one image"):
        plotting.to_numpy_2d(torch.zeros(2, 1, 3, 3))
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        plotting.to_numpy_2d([[1.0]])


def test_show_images_grid_titles_and_scales() -> None:
    images = torch.randn(5, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    fig = plotting.show_images(images, titles=list("abcde"), ncols=3, colorbar=True, symmetric=True)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 5 and [ax.get_title() for ax in axes] == list("abcde")
    for ax, image in zip(axes, images):
        low, high = ax.images[0].get_clim()
        assert high == pytest.approx(image.abs().max().item()) and low == -high
    plt.close(fig)
    with pytest.raises(ValueError, match="titles"):
        plotting.show_images(images, titles=["only one"])
    with pytest.raises(ValueError, match="symmetric"):
        plotting.show_images(images, symmetric=True, vmax=1.0)


def test_show_sinograms_labels_angles_in_degrees() -> None:
    x, y = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 4, 11)
    angles = (np.arange(4) + 0.5) * np.pi / 4
    fig = plotting.show_sinograms(x, y, angles=angles)
    sino_ax = fig.axes[1]
    assert sino_ax.images[0].get_array().shape == (4, 11)
    top, bottom = sino_ax.get_ylim()[1], sino_ax.get_ylim()[0]
    assert (top, bottom) == pytest.approx((0.0, 180.0))  # cell edges of the 4 midpoints
    assert sino_ax.get_ylabel() == "angle (degrees)"
    plt.close(fig)
    with pytest.raises(ValueError, match="angles"):
        plotting.show_sinograms(x, y, angles=angles[:3])


def test_show_overlay_paints_only_the_mask() -> None:
    image = torch.zeros(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.int64)
    mask[0, 0, 1:3, 1:3] = 1
    fig = plotting.show_overlay(image, mask, titles=["grey matter"])
    painted = fig.axes[0].images[1].get_array()
    assert int((~painted.mask).sum()) == 4
    plt.close(fig)
    with pytest.raises(ValueError, match="same shape"):
        plotting.show_overlay(image, torch.zeros(1, 1, 3, 3))
