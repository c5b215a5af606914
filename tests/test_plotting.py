"""tarlib.plotting: the figure helpers draw what they are given and reject bad input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
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


def _tree(widget: widgets.Widget) -> list[widgets.Widget]:
    return [widget, *(w for child in getattr(widget, "children", ()) for w in _tree(child))]


def test_interact_draws_a_png_and_redraws_on_change() -> None:
    open_figures = plt.get_fignums()
    slider = widgets.IntSlider(value=1, min=1, max=3)
    box = plotting.interact(lambda width: plt.subplots(figsize=(width, 1))[0], {"width": slider})
    image = box.children[-1]
    assert isinstance(image, widgets.Image) and bytes(image.value).startswith(b"\x89PNG")
    first = bytes(image.value)
    slider.value = 3
    assert bytes(image.value) != first and plt.get_fignums() == open_figures  # redrawn, none left open
    assert not any(isinstance(w, widgets.Output) for w in _tree(box))
    with pytest.raises(ValueError, match="control"):
        plotting.interact(lambda: None, {})


# Cell 1: the course's widget; cell 2: the pattern that idled notebook 07 in the book build.
BATCH_CELLS = [
    "import ipywidgets as widgets\nimport matplotlib.pyplot as plt\nfrom tarlib import plotting",
    "plotting.interact(lambda n: plt.subplots(figsize=(n, 1))[0], {'n': widgets.IntSlider(value=2, min=1, max=3)})",
    "def show(n):\n    plt.subplots(figsize=(n, 1))\n    plt.show()\n\n\nwidgets.interact(show, n=(1, 3));",
]


def test_a_notebook_runner_has_no_output_widget_to_mirror(monkeypatch) -> None:
    """nbclient (jupyter-book, nbconvert) mirrors an Output widget: it sends the widget's outputs
    to the kernel on the shell channel while it waits there for the cell's reply.  That race
    (jupyter/nbclient#312) idled notebook 07 until the 600 s cell timeout.  The course's widget
    must give nbclient nothing to send; ``ipywidgets.interact`` with ``plt.show`` does."""
    from nbclient import NotebookClient
    from nbclient.output_widget import OutputWidget

    sent: list[int] = []
    monkeypatch.setattr(OutputWidget, "send", lambda self, *args, **kwargs: sent.append(1))
    per_cell: list[int] = []
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in BATCH_CELLS])
    client = NotebookClient(nb, timeout=60, kernel_name="python3",
                            on_cell_executed=lambda **kwargs: per_cell.append(len(sent)))
    client.execute()
    assert per_cell[1] == 0, "the course's interact routed a figure through an Output widget"
    assert per_cell[2] > per_cell[1], "the check no longer sees ipywidgets.interact's Output widget"
