"""Choosing the VE noise scale from the data (Song & Ermon 2020, "Improved techniques", technique 1).

For a VE SDE the prior ``N(0, sigma_max^2 I)`` must cover the data: the largest noise level
should be about as large as the maximum Euclidean distance between two training points, so
that the reverse process can move a prior draw to any data point. The prior is centred at the
origin, so the origin counts as one more point: for data far from the origin the suggestion
is their largest distance from it, and `suggest_sigma_max` warns that the data are
off-centre (centring them is the fix; see `OFF_CENTRE_RATIO`).

The prior must also have nearly ``p_T``'s variance, ``Var(x_0) + sigma_max^2`` per coordinate:
the probability-flow ODE carries the ratio to the samples, whose spread along a coordinate of
variance ``v`` comes out ``sigma_max / sqrt(sigma_max^2 + v)`` of the data's. In few dimensions
the largest distance between points can be too small for that (an arc of variance 4.6 along one
axis: 7.3, which leaves the samples 4% too narrow there, and `solvers.sample` warns), so the
suggestion is at least the level that keeps this within `SPREAD_SHARE` of the limit the
samplers warn at (`solvers.prior_match.PRIOR_SPREAD_LIMIT`).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from solvers.inputs import as_count, as_integer, check_seed
from solvers.prior_match import PRIOR_SHIFT_LIMIT, PRIOR_SPREAD_LIMIT

from .arrays import as_tensor_data

__all__ = ["suggest_sigma_max", "max_pairwise_distance", "largest_variance", "spread_sigma_max", "OFF_CENTRE_RATIO",
           "SPREAD_SHARE"]

OFF_CENTRE_RATIO = 1.0
"""`suggest_sigma_max` warns when the data's mean lies farther from the origin than this many
times their spread about the mean (root-mean-square distance from the mean)."""


SPREAD_SHARE = 0.5
"""`suggest_sigma_max` keeps the samples' spread error from the prior's variance within this share
of `solvers.prior_match.PRIOR_SPREAD_LIMIT` (the rest is left to a network's own error at ``T``)."""


POWER_ITERATIONS = 200
"""Iterations of the power method for the data's largest variance (`largest_variance`) in many
dimensions."""


def largest_variance(x: Tensor) -> float:
    """The largest variance of ``x: (N, D)`` along any direction: the top eigenvalue of its
    covariance (exact for ``D <= 512``; else the power method on the centred rows, which never
    forms the ``D x D`` matrix and can only underestimate it, by well under 1% here)."""
    if x.shape[0] < 2:
        return 0.0
    c = x.to(torch.float64)
    c = c - c.mean(dim=0)
    n, d = c.shape
    if d <= 512:
        return float(torch.linalg.eigvalsh(c.T @ c / (n - 1))[-1].clamp(min=0.0))
    v = c.var(dim=0)
    u = torch.zeros(d, dtype=torch.float64)
    u[int(v.argmax())] = 1.0
    u = u + 1e-3 * c[0] / max(float(c[0].norm()), 1e-300)  # off any single axis
    u = u / u.norm()
    value = 0.0
    for _ in range(POWER_ITERATIONS):
        w = c.T @ (c @ u) / (n - 1)
        norm = float(w.norm())
        if norm == 0.0:
            return 0.0
        u, previous, value = w / norm, value, float(u @ w)
        if abs(value - previous) <= 1e-8 * value:
            break
    return max(value, float(v.max()))


def spread_sigma_max(x: Tensor, limit: float = SPREAD_SHARE * PRIOR_SPREAD_LIMIT) -> float:
    """The least ``sigma_max`` whose prior leaves the samples' spread within ``limit`` (relative) of
    the data's along every direction of ``x: (N, D)``: ``sigma / sqrt(sigma^2 + v_max) >= 1 - limit``,
    i.e. ``sigma = sqrt(v_max) (1 - limit) / sqrt(1 - (1 - limit)^2)`` with ``v_max`` the data's
    largest variance along a direction (`largest_variance`; 6.3 standard deviations at the default
    ``limit``, 1.25%). The widest direction, not the widest coordinate: the same data rotated
    give the same suggestion (along the diagonal of 10-D, the widest coordinate's variance is a
    tenth of the principal one, and samples came out 2.5% too narrow with mode weights off)."""
    return math.sqrt(largest_variance(x)) * _stds_for(limit)


def _stds_for(limit: float) -> float:
    """Standard deviations of the data that ``sigma_max`` must reach for a spread error of ``limit``:
    ``(1 - limit) / sqrt(1 - (1 - limit)^2)``."""
    keep = 1.0 - limit
    return keep / math.sqrt(1.0 - keep * keep)


def max_pairwise_distance(x: Tensor, *, chunk: int = 1024) -> float:
    """``max_{i,j} ||x_i - x_j||`` over the rows of ``x: (N, *D)`` (exact, in chunks of rows)."""
    x = x.reshape(x.shape[0], -1).to(torch.float64)
    best = 0.0
    for i in range(0, x.shape[0], chunk):
        d = torch.cdist(x[i:i + chunk], x)
        best = max(best, float(d.max()))
    return best


def suggest_sigma_max(data: Any, *, n: int = 5000, seed: int = 0, warn: bool = True) -> float:
    """``sigma_max`` for a VE SDE: the largest distance among (up to ``n``) data points and the
    origin, or the level that gives the prior ``p_T``'s variance (`spread_sigma_max`), whichever is larger.

    Song & Ermon (2020), technique 1: choose ``sigma_1`` as large as the maximum Euclidean
    distance between all pairs of training points. The VE prior ``N(0, sigma_max^2 I)`` is
    centred at the origin, so the origin counts as a point too: for data around the origin
    this is the largest pairwise distance, for data far from it their largest distance from
    the origin. In few dimensions that distance can leave the prior's variance short of
    ``p_T``'s, which narrows the samples (module docstring); the suggestion is then
    `spread_sigma_max` of the points instead (in many dimensions, e.g. images, the distance
    is the larger). Off-centre data (mean farther from the origin than `OFF_CENTRE_RATIO`
    times their spread) get a warning: no ``sigma_max`` of the data's size makes ``p_T``
    match the prior there (`scoresde.check_prior` reports the mismatch); centre the data instead.

    Args:
        data: ``(N, *D)`` tensor/array, or a source with ``sample(n, generator=g)``
            (anything `scoresde.data.load_data` returns).
        n: points used (a random subset of an array, or ``n`` draws of a sampler); the exact
            maximum of that set is returned (a subset can only underestimate it).
        seed: seed of the subset / draws.
        warn: warn when the data are off-centre (see above).

    Returns:
        The suggested ``sigma_max`` (a float; round it up as you like).

    Raises:
        TypeError: ``data`` is a name or path (load it with `load_data` first), or not an
            array / sampler; `NotAnIntegerError`: ``n`` or ``seed`` not an integer.
        DataError: the points are not numeric, have fewer than 2 dimensions ``(N, *D)``, or
            contain NaN / infinite values (a distance from them would be meaningless).
        ValueError: ``n < 2``, fewer than 2 data points, or points that all coincide.
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
    flat = x.reshape(x.shape[0], -1).to(torch.float64)
    if not bool((flat != flat[0]).any()):
        raise ValueError("all the data points coincide: there is no spread to choose a noise scale from")
    sigma_max = max(max_pairwise_distance(flat), float(flat.norm(dim=1).max()))
    # The widest direction's variance is at most the total: skip its eigen-solve (a power method
    # over thousands of pixels) where even the total cannot beat the distance, as for images.
    if math.sqrt(float(flat.var(dim=0).sum())) * _stds_for(SPREAD_SHARE * PRIOR_SPREAD_LIMIT) > sigma_max:
        sigma_max = max(sigma_max, spread_sigma_max(flat))
    if warn:
        warn_off_centre(flat, sigma_max, which="the suggested")
    return sigma_max


def warn_off_centre(x: Tensor, sigma_max: float, *, which: str = "the suggested", stacklevel: int = 3) -> None:
    """Warn when the mean of ``x: (N, D)`` is far from the origin, where the VE prior is centred:
    beyond `OFF_CENTRE_RATIO` times the data's spread, or so far that the probability-flow ODE
    would carry a shift above `solvers.prior_match.PRIOR_SHIFT_LIMIT` per coordinate to the
    samples (``offset / (sigma_max sqrt(D))``; `solvers.sample` warns about that too, later).

    ``which`` names the ``sigma_max`` the figures are for (``"the suggested"``, or ``"the
    chosen"`` when a training run checks the value it uses).

    ``p_T`` is then the data shifted by the mean plus ``N(0, sigma_max^2 I)``, and its mismatch
    with the prior is about ``rms^2 / (2 sigma_max^2)`` nats per dimension (``rms``: root mean
    square of the coordinates about the origin), which no ``sigma_max`` near the data's size
    makes small.
    """
    offset = float(x.mean(dim=0).norm())
    spread = float((x - x.mean(dim=0)).pow(2).sum(dim=1).mean().sqrt())
    # the per-coordinate shift the probability-flow ODE carries to samples (solvers.prior_match),
    # about offset / (sigma_max sqrt(D)) for an offset along one direction
    carried = offset / (sigma_max * math.sqrt(x.shape[1])) if sigma_max > 0 else math.inf
    if offset <= OFF_CENTRE_RATIO * spread and carried <= PRIOR_SHIFT_LIMIT:
        return
    rms = float(x.pow(2).mean().sqrt())
    kl = rms * rms / (2 * sigma_max * sigma_max)
    warnings.warn(
        f"the data are off-centre: their mean lies {offset:.3g} from the origin, {offset / spread:.2g}x "
        f"their spread about it ({spread:.3g}), while the VE prior N(0, sigma_max^2 I) is centred at the "
        f"origin. With {which} sigma_max = {sigma_max:.3g}, p_T stays off the prior by about "
        f"{kl:.2g} nats per dimension (scoresde.check_prior), and the probability-flow ODE's samples "
        f"come out shifted by about {carried:.2g} of the data's std per coordinate (solvers.sample "
        f"warns above {PRIOR_SHIFT_LIMIT}). Likelihoods are biased by it, and "
        "samplers that start from the prior inherit it: the probability-flow ODE solvers (ode_*, "
        "dpmpp_*, ddim, ...) carry part of the offset into the samples, the reverse-SDE ones much less. "
        "Centre the data (subtract their mean, and add it back to samples) before training",
        UserWarning, stacklevel=stacklevel)
