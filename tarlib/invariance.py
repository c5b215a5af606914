"""Why end-to-end training does not determine the reconstruction (the remark after eq. (18)).

For any invertible map B : X → X the pair (B⁻¹ ∘ R, T ∘ B) computes the same decisions as
(R, T), because (T ∘ B) ∘ (B⁻¹ ∘ R) = T ∘ R.  The end-to-end loss of eq. (14) only sees
T ∘ R, so it cannot prefer one pair over the other, while the "reconstruction" B⁻¹(R(y))
can be anything.  This module builds such B on images [N, 1, H, W]:

- :class:`OrthogonalMixing`: x ↦ Q x for a random orthogonal Q on all pixels;
- :class:`PixelPermutation`: the pixels shuffled by a fixed random permutation;
- :class:`ContrastInversion`: x ↦ 1 − x (its own inverse; still an image, but a wrong one).

:func:`wrap` returns the pair (B⁻¹ ∘ R, T ∘ B) as a :class:`tarlib.nets.TaskAdapted`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tarlib.nets import TaskAdapted


class PixelMap(nn.Module):
    """An invertible map B of images [N, C, H, W]; ``forward`` is B, :meth:`inverse` is B⁻¹."""

    def inverse(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _check(self, x: Tensor, n_pixels: int | None = None) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__} expects images [N, C, H, W], got {got}")
        if n_pixels is not None and x[0].numel() != n_pixels:
            raise ValueError(f"{type(self).__name__} was built for {n_pixels} pixels per image, got {tuple(x.shape[1:])}")


def _generator(seed: int) -> torch.Generator:
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return torch.Generator().manual_seed(seed)


class OrthogonalMixing(PixelMap):
    """B x = Q x with Q a random orthogonal matrix on the flattened pixels (QR of a Gaussian matrix).

    The product Q Qᵀ is the identity up to round-off, which the float64 matrix keeps at ~1e-15.
    """

    def __init__(self, shape: tuple[int, int, int], seed: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        n = int(torch.tensor(self.shape).prod())
        q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=_generator(seed)))
        self.register_buffer("Q", q * torch.sign(torch.diagonal(r)))

    def _mix(self, x: Tensor, matrix: Tensor) -> Tensor:
        self._check(x, matrix.shape[0])
        flat = x.reshape(len(x), -1).to(torch.float64) @ matrix.T
        return flat.to(x.dtype).reshape(x.shape)

    def forward(self, x: Tensor) -> Tensor:
        return self._mix(x, self.Q)

    def inverse(self, x: Tensor) -> Tensor:
        return self._mix(x, self.Q.T)


class PixelPermutation(PixelMap):
    """B x = x with its pixels reordered by a fixed random permutation (exactly invertible)."""

    def __init__(self, shape: tuple[int, int, int], seed: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        n = int(torch.tensor(self.shape).prod())
        order = torch.randperm(n, generator=_generator(seed))
        self.register_buffer("order", order)
        self.register_buffer("undo", torch.argsort(order))

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, len(self.order))
        return x.reshape(len(x), -1)[:, self.order].reshape(x.shape)

    def inverse(self, x: Tensor) -> Tensor:
        self._check(x, len(self.order))
        return x.reshape(len(x), -1)[:, self.undo].reshape(x.shape)


class ContrastInversion(PixelMap):
    """B x = 1 − x: dark becomes bright.  B⁻¹ = B."""

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        return 1.0 - x

    def inverse(self, x: Tensor) -> Tensor:
        return self.forward(x)


class _Inverse(nn.Module):
    def __init__(self, B: PixelMap):
        super().__init__()
        self.B = B

    def forward(self, x: Tensor) -> Tensor:
        return self.B.inverse(x)


def wrap(model: TaskAdapted, B: PixelMap) -> TaskAdapted:
    """The pair (B⁻¹ ∘ R, T ∘ B): the same T ∘ R, hence the same decisions and the same ℓ_D.

    The networks of ``model`` are shared, not copied.
    """
    if not isinstance(model, TaskAdapted) or model.R is None:
        raise ValueError(f"wrap needs a TaskAdapted model with a reconstruction R, got {type(model).__name__}")
    if not isinstance(B, PixelMap):
        raise TypeError(f"B must be a PixelMap (OrthogonalMixing, PixelPermutation, ...), got {type(B).__name__}")
    return TaskAdapted(nn.Sequential(model.R, _Inverse(B)), nn.Sequential(B, model.T)).eval()


__all__ = ["ContrastInversion", "OrthogonalMixing", "PixelMap", "PixelPermutation", "wrap"]
