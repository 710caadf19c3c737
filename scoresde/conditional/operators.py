"""Linear measurement operators ``y = A x`` on states ``x: (B, *D)``: a mask or a matrix.

Both give ``forward(x) -> (B, M)``, ``adjoint(v: (B, M)) -> (B, *D)`` and ``gram() = A A^T``
``(M, M)``, which is what the posterior-guidance scores (Song et al. 2023, ΠGDM; Chung et al.
2022, DPS) need; ``colorization_matrix`` builds the grayscale operator of Song et al. 2021
(App. I.3).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from solvers.inputs import as_count

from .checks import as_tensor, check_data_shape, check_mask, check_matrix

__all__ = ["MaskOperator", "MatrixOperator", "colorization_matrix", "as_operator"]


class MaskOperator:
    """``A x = x[mask]``: observing the coordinates (pixels) where ``mask`` is True.

    Args:
        mask: boolean of the data shape ``*D`` (some but not all True); 0/1 integers or floats too.
    """

    def __init__(self, mask: Any, data_shape: tuple[int, ...] | None = None) -> None:
        m = as_tensor(mask, "mask")
        self.mask = check_mask(m, tuple(m.shape) if data_shape is None else check_data_shape(data_shape))
        self.data_shape = tuple(self.mask.shape)
        self.m = int(self.mask.sum())

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *D) -> (B, M)``."""
        return x[:, self.mask.to(x.device)]

    def adjoint(self, v: Tensor) -> Tensor:
        """``(B, M) -> (B, *D)``, zeros off the mask."""
        out = torch.zeros((v.shape[0], *self.data_shape), dtype=v.dtype, device=v.device)
        out[:, self.mask.to(v.device)] = v
        return out

    def gram(self, like: Tensor) -> Tensor:
        """``A A^T = I_M``."""
        return torch.eye(self.m, dtype=like.dtype, device=like.device)


class MatrixOperator:
    """``A x`` for a matrix ``A: (M, prod(D))`` acting on the flattened state.

    Args:
        A: ``(M, D_flat)``.
        data_shape: ``*D`` of one state (default ``(D_flat,)``).

    Raises:
        TypeError: ``A`` not a numeric array, ``data_shape`` not a tuple of ints.
        ValueError: ``A`` not ``(M, prod(D))`` with ``M >= 1``, or with NaN / inf entries.
    """

    def __init__(self, A: Any, data_shape: tuple[int, ...] | None = None) -> None:
        a = as_tensor(A, "measurement matrix A", torch.float64)
        if data_shape is not None:
            data_shape = check_data_shape(data_shape)
        if a.ndim != 2:
            raise ValueError(f"measurement matrix A must have shape (M, D), got {tuple(a.shape)}")
        dim = a.shape[-1] if data_shape is None else int(torch.tensor(data_shape).prod())
        self.A, _ = check_matrix(a, dim)
        self.data_shape = (dim,) if data_shape is None else tuple(data_shape)
        self.m = self.A.shape[0]

    def forward(self, x: Tensor) -> Tensor:
        """``(B, *D) -> (B, M)``."""
        return x.reshape(x.shape[0], -1) @ self.A.to(x).T

    def adjoint(self, v: Tensor) -> Tensor:
        """``(B, M) -> (B, *D)``."""
        return (v @ self.A.to(v)).reshape(v.shape[0], *self.data_shape)

    def gram(self, like: Tensor) -> Tensor:
        """``A A^T``: ``(M, M)``."""
        a = self.A.to(like)
        return a @ a.T


def _is_mask(t: Tensor, data_shape: tuple[int, ...]) -> bool:
    """``t`` is a mask: boolean, or of the data shape ``*D`` with only 0 / 1 entries (as `check_mask`
    reads it) and not also a one-row matrix ``(1, prod(D))`` (data of shape ``(1, D)``, where
    a 0/1 array is ambiguous and stays a matrix: pass booleans for a mask)."""
    if t.dtype == torch.bool:
        return True
    if tuple(t.shape) != tuple(data_shape) or (t.ndim == 2 and t.shape[0] == 1):
        return False
    return bool(((t == 0) | (t == 1)).all())


def as_operator(A: Any, data_shape: tuple[int, ...]) -> MaskOperator | MatrixOperator:
    """A `MaskOperator` for a mask of the data shape (booleans, or 0/1 integers or floats, as
    `check_mask` accepts), else a `MatrixOperator` ``(M, prod(D))``."""
    if isinstance(A, MaskOperator | MatrixOperator):
        if A.data_shape != tuple(data_shape):
            raise ValueError(f"operator acts on data of shape {A.data_shape}, not {tuple(data_shape)}")
        return A
    t = as_tensor(A, "A (a mask or a measurement matrix)")
    if _is_mask(t, tuple(data_shape)):
        return MaskOperator(t, tuple(data_shape))
    return MatrixOperator(t, tuple(data_shape))


def colorization_matrix(height: int, width: int, channels: int = 3) -> Tensor:
    """The grayscale operator ``(H*W, C*H*W)``: each pixel's mean over channels.

    States are ``(C, H, W)`` flattened channel-first. Its rows are orthogonal, so in the
    orthonormal basis of Song et al. 2021 (App. I.3) colorization is imputation of one
    coordinate per pixel.

    Raises:
        NotAnIntegerError: a size that is not an integer. ValueError: a size below 1.
    """
    height, width = as_count(height, "height"), as_count(width, "width")
    channels = as_count(channels, "channels")
    hw = height * width
    eye = torch.eye(hw, dtype=torch.float64)
    return torch.cat([eye / channels] * channels, dim=1)
