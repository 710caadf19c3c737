"""Choosing the VE noise scale from the data (Song & Ermon 2020, "Improved techniques", technique 1).

For a VE SDE the prior ``N(0, sigma_max^2 I)`` must cover the data: the largest noise level
should be about as large as the maximum Euclidean distance between two training points, so
that the reverse process can move a prior draw to any data point.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["suggest_sigma_max", "max_pairwise_distance"]


def max_pairwise_distance(x: Tensor, *, chunk: int = 1024) -> float:
    """``max_{i,j} ||x_i - x_j||`` over the rows of ``x: (N, *D)`` (exact, in chunks of rows)."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    best = 0.0
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i:i + chunk], x)
        best = max(best, float(d.max()))
    return best


def suggest_sigma_max(data: Any, *, n: int = 5000, seed: int = 0) -> float:
    """``sigma_max`` for a VE SDE: the largest pairwise distance of (up to ``n``) data points.

    Song & Ermon (2020), technique 1: choose ``sigma_1`` as large as the maximum Euclidean
    distance between all pairs of training points.

    Args:
        data: ``(N, *D)`` tensor/array, or a source with ``sample(n, generator=g)``
            (anything `scoresde.data.load_data` returns).
        n: points used (a random subset of an array, or ``n`` draws of a sampler); the exact
            maximum of that set is returned (a subset can only underestimate it).
        seed: seed of the subset / draws.

    Returns:
        The suggested ``sigma_max`` (a float; round it up as you like).
    """
    g = torch.Generator().manual_seed(seed)
    if hasattr(data, "sample") and not isinstance(data, Tensor):
        held = getattr(data, "data", None)
        held = held if isinstance(held, Tensor) else getattr(data, "images", None)
        x = held if isinstance(held, Tensor) else data.sample(n, generator=g)
    else:
        x = torch.as_tensor(data)
    if x.shape[0] > n:
        x = x[torch.randperm(x.shape[0], generator=g)[:n]]
    if x.shape[0] < 2:
        raise ValueError("suggest_sigma_max needs at least 2 data points")
    return max_pairwise_distance(x)
