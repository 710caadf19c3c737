"""Time embeddings for score networks: Gaussian Fourier features and sinusoidal features.

Both map a batch of times ``t: (B,)`` to features ``(B, dim)``:

* `GaussianFourierEmbedding` (Tancik et al. 2020; used by Song et al. 2021's NCSN++):
  ``[sin(2 pi W t), cos(2 pi W t)]`` with fixed random frequencies ``W ~ N(0, scale^2)``.
* `SinusoidalEmbedding` (Vaswani et al. 2017; DDPM, Ho et al. 2020):
  ``[sin(k t / f_i), cos(k t / f_i)]`` with geometric frequencies ``f_i = max_period^(i/half)``
  and ``k = time_scale`` (1000 maps ``t in [0, 1]`` onto DDPM's step indices).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GaussianFourierEmbedding", "SinusoidalEmbedding", "make_time_embedding", "EMBEDDINGS"]


def _check_dim(dim: int) -> None:
    if not isinstance(dim, int) or dim < 2 or dim % 2:
        raise ValueError(f"embedding dim must be an even integer >= 2, got {dim!r}")


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features ``[sin(2 pi W t), cos(2 pi W t)]``, ``W ~ N(0, scale^2)`` fixed.

    The frequencies are a persistent buffer (saved in checkpoints), drawn from ``seed`` so that
    building the same config twice gives the same network.

    Shapes: ``t: (B,) -> (B, dim)``.
    """

    def __init__(self, dim: int, *, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        _check_dim(dim)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        g = torch.Generator().manual_seed(int(seed))
        self.register_buffer("W", torch.randn(dim // 2, generator=g) * scale)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        t = _as_float_time(t, self.W)
        proj = 2.0 * math.pi * t[:, None] * self.W.to(t.dtype)[None, :]
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def _as_float_time(t: Tensor, like: Tensor) -> Tensor:
    """``t`` as a floating tensor: an integer ``t`` (``torch.full((B,), 1)``) would round every
    frequency to an integer when cast to its dtype; it takes the frequencies' dtype instead."""
    return t if t.is_floating_point() else t.to(like.dtype)


class SinusoidalEmbedding(nn.Module):
    """Transformer/DDPM sinusoidal features of ``time_scale * t`` with geometric frequencies.

    Shapes: ``t: (B,) -> (B, dim)``.
    """

    def __init__(self, dim: int, *, time_scale: float = 1000.0, max_period: float = 10_000.0) -> None:
        super().__init__()
        _check_dim(dim)
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", freqs.float(), persistent=False)
        self.time_scale = float(time_scale)
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        t = _as_float_time(t, self.freqs)
        arg = (self.time_scale * t)[:, None] * self.freqs.to(t.dtype)[None, :]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


EMBEDDINGS = ("fourier", "sinusoidal")


def make_time_embedding(kind: str, dim: int, *, fourier_scale: float = 16.0, seed: int = 0) -> nn.Module:
    """Build a time embedding by name: ``"fourier"`` or ``"sinusoidal"``."""
    if kind == "fourier":
        return GaussianFourierEmbedding(dim, scale=fourier_scale, seed=seed)
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim)
    raise ValueError(f"unknown time embedding {kind!r}; valid: {', '.join(EMBEDDINGS)}")
