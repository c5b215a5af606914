"""Small figure helpers shared by the notebooks.

Every helper takes images as torch tensors or NumPy arrays of shape [H, W],
[1, H, W] or [1, 1, H, W] (a single channel) and returns the matplotlib
``Figure`` it drew, so a notebook can add to it or save it.

- :func:`show_images`    a grid of images with titles and optional colour bars
- :func:`show_sinograms` image x next to its data y = A(x) (angle × detector)
- :func:`show_overlay`   a segmentation mask drawn over an image
- :func:`interact`       sliders that redraw a figure (the course's cheap widgets)
- :func:`task_diagram`   our drawing of the paper's diagram (2) and of z → x → y
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

ImageLike = torch.Tensor | np.ndarray
MAX_WIDTH = 10.0  # inches: the widest figure that reads well in the book


def to_numpy_2d(image: ImageLike) -> np.ndarray:
    """Return a single-channel image [H, W] (or [1, H, W], [1, 1, H, W]) as a 2-D float array."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(image).__name__}")
    array = np.asarray(image, dtype=np.float32)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"expected one image [H, W], [1, H, W] or [1, 1, H, W], got shape {tuple(image.shape)}")
    return array


def _grid(n: int, ncols: int | None, size: float) -> tuple[Figure, list[Axes]]:
    if n < 1:
        raise ValueError("nothing to show: got an empty list of images")
    ncols = min(n, ncols or n)
    nrows = -(-n // ncols)
    side = min(size, MAX_WIDTH / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(side * ncols, side * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def show_images(
    images: Sequence[ImageLike] | torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = False,
    suptitle: str | None = None,
    size: float = 2.5,
    aspect: str | float = "equal",
    symmetric: bool = False,
) -> Figure:
    """Show images in a grid (``ncols`` per row), each with its title and optional colour bar.

    A batch tensor [B, 1, H, W] counts as B images.  ``vmin``/``vmax`` fix a common
    grey scale; leave them out to scale each image on its own.  ``symmetric=True``
    centres each image's scale at 0 (±max|image|, for signed images such as errors;
    pair it with a diverging ``cmap`` like ``"RdBu_r"``).  Use ``aspect="auto"`` for
    sinograms, whose pixels need not be square.
    """
    images = list(images)
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles")
    if symmetric and (vmin is not None or vmax is not None):
        raise ValueError("give either symmetric=True or vmin/vmax, not both")
    fig, axes = _grid(len(images), ncols, size)
    for i, (ax, image) in enumerate(zip(axes, images)):
        array = to_numpy_2d(image)
        if symmetric:
            vmax = float(np.abs(array).max()) or 1.0
            vmin = -vmax
        im = ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
        if colorbar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_sinograms(
    images: Sequence[ImageLike] | torch.Tensor,
    sinograms: Sequence[ImageLike] | torch.Tensor,
    titles: Sequence[str] | None = None,
    sinogram_label: str = "data y",
    angles: Sequence[float] | np.ndarray | None = None,
    size: float = 2.5,
) -> Figure:
    """Show each image x next to its sinogram y (rows: angles, columns: detector pixels).

    ``angles`` (radians) label the sinogram's vertical axis; without them the rows are
    numbered.  One row of the figure per (image, sinogram) pair.
    """
    images, sinograms = list(images), list(sinograms)
    if len(images) != len(sinograms):
        raise ValueError(f"got {len(images)} images but {len(sinograms)} sinograms")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} pairs but {len(titles)} titles")
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(min(2.6 * size, MAX_WIDTH), size * n), squeeze=False)
    for i, (x, y) in enumerate(zip(images, sinograms)):
        ax_x, ax_y = axes[i]
        ax_x.imshow(to_numpy_2d(x), cmap="gray")
        ax_x.set_xticks([])
        ax_x.set_yticks([])
        ax_x.set_title(titles[i] if titles is not None else "image x", fontsize=10)
        sino = to_numpy_2d(y)
        n_angles, n_det = sino.shape
        if angles is not None:
            degrees = np.degrees(np.asarray(angles, dtype=float))
            if degrees.shape != (n_angles,):
                raise ValueError(f"got {degrees.size} angles for a sinogram with {n_angles} rows")
            half = (degrees[-1] - degrees[0]) / (2 * max(n_angles - 1, 1)) if n_angles > 1 else 0.5
            extent = (-0.5, n_det - 0.5, degrees[-1] + half, degrees[0] - half)
        else:
            extent = (-0.5, n_det - 0.5, n_angles - 0.5, -0.5)
        im = ax_y.imshow(sino, cmap="gray", aspect="auto", extent=extent, interpolation="nearest")
        ax_y.set_xlabel("detector pixel")
        ax_y.set_ylabel("angle (degrees)" if angles is not None else "angle index")
        ax_y.set_title(sinogram_label, fontsize=10)
        fig.colorbar(im, ax=ax_y, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def overlay(ax: Axes, image: ImageLike, mask: ImageLike, color: str = "tab:red", alpha: float = 0.4) -> Axes:
    """Draw ``image`` in grey on ``ax`` and paint the pixels where ``mask`` > 0.5 in ``color``."""
    x, m = to_numpy_2d(image), to_numpy_2d(mask)
    if x.shape != m.shape:
        raise ValueError(f"image and mask must have the same shape, got {x.shape} and {m.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    ax.imshow(x, cmap="gray")
    ax.imshow(np.ma.masked_where(m <= 0.5, m), cmap=ListedColormap([color]), alpha=alpha, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def show_overlay(
    images: Sequence[ImageLike] | torch.Tensor,
    masks: Sequence[ImageLike] | torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    color: str = "tab:red",
    alpha: float = 0.4,
    size: float = 2.5,
) -> Figure:
    """Show each image with its mask painted over it (see :func:`overlay`), in a grid."""
    images, masks = list(images), list(masks)
    if len(images) != len(masks):
        raise ValueError(f"got {len(images)} images but {len(masks)} masks")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles")
    fig, axes = _grid(len(images), ncols, size)
    for i, (ax, x, m) in enumerate(zip(axes, images, masks)):
        overlay(ax, x, m, color=color, alpha=alpha)
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    fig.tight_layout()
    return fig


def interact(figure: Callable[..., Figure], controls: dict[str, widgets.Widget], per_row: int = 4) -> widgets.VBox:
    """A widget that redraws ``figure(**values)`` whenever one of ``controls`` (name → slider) changes.

    The figure goes into an ``Image`` as a PNG, not into an ``Output`` widget: nbclient (behind
    ``jupyter-book`` and ``nbconvert --execute``) copies an Output widget's outputs back to the
    kernel while it waits for the cell's reply, and that race can leave it idle until the cell
    timeout (jupyter/nbclient#312).  It needs a running kernel to redraw; notebooks draw the
    default figure above it for the book.
    """
    if not controls or per_row < 1:
        raise ValueError(f"need at least one control and per_row ≥ 1, got {len(controls)} and {per_row}")
    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))

    def redraw(change: object = None) -> None:
        fig = figure(**{name: control.value for name, control in controls.items()})
        image.value = _png(fig)
        plt.close(fig)

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    items = list(controls.values())
    rows = [widgets.HBox(items[i : i + per_row]) for i in range(0, len(items), per_row)]
    return widgets.VBox([*rows, image])


def _png(fig: Figure) -> bytes:
    """``fig`` as PNG bytes, trimmed as the notebook's inline figures are."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], label: str,
           dotted: bool = False, offset: tuple[float, float] = (0.0, 0.04)) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={
        "arrowstyle": "-|>", "lw": 1.5, "shrinkA": 16, "shrinkB": 16, "ls": ":" if dotted else "-"})
    middle = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
    ax.text(*middle, label, ha="center", va="center", fontsize=11)


def task_diagram() -> Figure:
    """Left: the paper's diagram (2), X → Y by A, X → D by T, and the wanted Y ⇢ D (dotted).
    Right: the random variables z → x → y; y depends on z only through x (z ⊥ y | x)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    nodes = {"X": (0.15, 0.75), "Y": (0.85, 0.75), "D": (0.5, 0.15)}
    for name, xy in nodes.items():
        left.text(*xy, f"${name}$", ha="center", va="center", fontsize=16,
                  bbox={"boxstyle": "circle", "fc": "white", "ec": "k"})
    _arrow(left, nodes["X"], nodes["Y"], "forward operator $A$")
    _arrow(left, nodes["X"], nodes["D"], "task $T$", offset=(-0.12, 0.0))
    _arrow(left, nodes["Y"], nodes["D"], "task-adapted\nreconstruction", dotted=True, offset=(0.17, 0.0))
    left.set_title("diagram (2): from data straight to a decision", fontsize=10)
    nodes = {"z": (0.1, 0.5), "x": (0.5, 0.5), "y": (0.9, 0.5)}
    for name, xy in nodes.items():
        right.text(*xy, f"${name}$", ha="center", va="center", fontsize=16,
                   bbox={"boxstyle": "circle", "fc": "white", "ec": "k"})
    _arrow(right, nodes["z"], nodes["x"], "$x \\sim P_z$ (eq. (5))", offset=(0.0, 0.12))
    _arrow(right, nodes["x"], nodes["y"], "$y \\sim M(x)$", offset=(0.0, 0.12))
    right.text(0.5, 0.12, "no arrow $z \\to y$: $P(y \\mid x, z) = P(y \\mid x)$", ha="center", fontsize=10)
    right.set_title("the joint law of section 4.3", fontsize=10)
    for ax in (left, right):
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.axis("off")
    fig.tight_layout()
    return fig
