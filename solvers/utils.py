"""Small tensor helpers shared by every solver (and re-used by `scoresde`)."""

from __future__ import annotations

import torch
from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a per-sample ``v: (B,)`` broadcasts against ``(B, *D)``.

    ``append_dims(v, x.ndim) * x`` is the one broadcasting idiom used across the project;
    it works for any data shape (vectors, images, ...). A 0-d ``v`` is returned unchanged.
    """
    if v.ndim == 0:
        return v
    extra = ndim - v.ndim
    if extra < 0:
        raise ValueError(f"cannot broadcast a tensor of {v.ndim} dims to {ndim} dims")
    return v.reshape(*v.shape, *([1] * extra))


def batch_time(t: float | Tensor, x: Tensor) -> Tensor:
    """Return ``t`` as a ``(B,)`` tensor on the device and dtype of ``x: (B, *D)``."""
    if isinstance(t, Tensor):
        t = t.to(device=x.device, dtype=x.dtype)
        if t.ndim == 0:
            return t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
        return t
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)


def flat_norm(x: Tensor) -> Tensor:
    """Per-sample Euclidean norm over all non-batch dims: ``(B, *D) -> (B,)``."""
    out: Tensor = torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1)
    return out


def coeff_time(t: float, like: Tensor) -> Tensor:
    """``t`` as a ``(1,)`` tensor on the device and dtype of ``like``.

    Fixed-grid steps share one time across the batch, so schedule coefficients are computed
    once on a ``(1,)`` tensor (``append_dims`` broadcasts them against ``(B, *D)``) instead of
    ``B`` times; the score still gets ``batch_time(t, x)``.
    """
    return torch.full((1,), float(t), dtype=like.dtype, device=like.device)
