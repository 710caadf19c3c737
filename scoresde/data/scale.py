"""Choosing the VE noise scale from the data (Song & Ermon 2020, "Improved techniques", technique 1).

For a VE SDE the prior ``N(0, sigma_max^2 I)`` must cover the data: the largest noise level
should be about as large as the maximum Euclidean distance between two training points, so
that the reverse process can move a prior draw to any data point.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from solvers.inputs import as_count, as_integer, check_seed

from .arrays import as_tensor_data

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

    Raises:
        TypeError: ``data`` is a name or path (load it with `load_data` first), or not an
            array / sampler; `NotAnIntegerError`: ``n`` or ``seed`` not an integer.
        DataError: the points are not numeric, have fewer than 2 dimensions ``(N, *D)``, or
            contain NaN / infinite values (a distance from them would be meaningless).
        ValueError: ``n < 2``, or fewer than 2 data points.
    """
    n = as_count(n, "n")
    if n < 2:
        raise ValueError(f"n must be at least 2 (a distance needs two points), got {n}")
    g = torch.Generator().manual_seed(check_seed(as_integer(seed, "seed")))
    if isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        raise TypeError(f"data must be an array or a sampler, got {data!r}; load it with "
                        "scoresde.data.load_data first")
    if hasattr(data, "sample") and not isinstance(data, Tensor):
        held = getattr(data, "data", None)
        held = held if isinstance(held, Tensor) else getattr(data, "images", None)
        x = held if isinstance(held, Tensor) else data.sample(n, generator=g)
    else:
        x = data if isinstance(data, (Tensor, np.ndarray)) else np.asarray(data)
    x = as_tensor_data(x, "data")
    if x.shape[0] > n:
        x = x[torch.randperm(x.shape[0], generator=g)[:n]]
    if x.shape[0] < 2:
        raise ValueError("suggest_sigma_max needs at least 2 data points")
    return max_pairwise_distance(x)
