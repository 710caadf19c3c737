"""Time discretisations of ``[eps, T]``, returned in decreasing order ``T = t_0 > ... > t_n = eps``.

A grid is an argument of the solver, never a property of the SDE. All grids are float64
``(n + 1,)`` CPU tensors; solvers cast them. Grids that are uniform in a transformed time
(log-SNR, EDM sigma; formulas in `solvers.marginals`) invert the SDE's marginal coefficients
numerically by bisection, so they work for any SDE with ``marginal_coeffs``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .marginals import (
    edm_sigma,
    invert_monotone,
    log_snr,
    time_from_edm_sigma,
    time_from_log_snr,
)
from .protocol import MarginalSDE, ReverseSDEParts
from .registry import lookup

__all__ = [
    "uniform",
    "quadratic",
    "logsnr",
    "karras",
    "uniform_logsnr",
    "LOGSNR_SHARE",
    "equidistribute",
    "GRIDS",
    "get_grid",
    "check_grid",
    "invert_monotone",
    "log_snr",
    "edm_sigma",
    "time_from_log_snr",
    "time_from_edm_sigma",
]


def _check_n(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"number of steps must be a positive integer, got {n!r}")
    return n


def _pin_ends(ts: Tensor, sde: ReverseSDEParts) -> Tensor:
    ts[0], ts[-1] = sde.T, sde.eps
    return ts


def uniform(sde: ReverseSDEParts, n: int) -> Tensor:
    """``n`` equal steps from ``T`` to ``eps``."""
    return torch.linspace(sde.T, sde.eps, _check_n(n) + 1, dtype=torch.float64)


def quadratic(sde: ReverseSDEParts, n: int) -> Tensor:
    """``t_i = eps + (T - eps) (1 - i/n)^2``: steps shrink quadratically towards ``eps``."""
    u = torch.linspace(1.0, 0.0, _check_n(n) + 1, dtype=torch.float64)
    return _pin_ends(sde.eps + (sde.T - sde.eps) * u**2, sde)


def logsnr(sde: MarginalSDE, n: int) -> Tensor:
    """Uniform in the half log-SNR ``lambda(t) = ln(alpha/sigma)`` (DPM-Solver's default)."""
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    top, bottom = log_snr(sde, ends).tolist()
    levels = torch.linspace(top, bottom, _check_n(n) + 1, dtype=torch.float64)
    return _pin_ends(time_from_log_snr(sde, levels), sde)


def karras(sde: MarginalSDE, n: int, rho: float = 7.0) -> Tensor:
    """EDM grid (Karras et al. 2022, eq. 5): uniform in ``sigma_edm^(1/rho)``, ``sigma_edm = sigma/alpha``."""
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    s_max, s_min = edm_sigma(sde, ends).tolist()
    u = torch.linspace(0.0, 1.0, _check_n(n) + 1, dtype=torch.float64)
    sig = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return _pin_ends(time_from_edm_sigma(sde, sig), sde)


def equidistribute(nodes: Tensor, mass: Tensor, n: int) -> Tensor:
    """``n + 1`` points splitting a piecewise-uniform mass into ``n`` equal parts.

    ``nodes: (K + 1,)`` are monotone points (in any variable) and ``mass: (K,)`` the
    non-negative mass of each interval between them (positive total), spread uniformly over
    the interval; the result runs from ``nodes[0]`` to ``nodes[-1]`` with the cumulative mass
    at ``i/n`` of the total, by linear interpolation inside each interval. Used by the
    density-shaped grids (`uniform_logsnr`, `solvers.auto_grid`).
    """
    cum = torch.cat([torch.zeros(1, dtype=mass.dtype, device=mass.device), mass.cumsum(0)])
    cum = cum / cum[-1]
    levels = torch.linspace(0.0, 1.0, _check_n(n) + 1, dtype=cum.dtype, device=cum.device)
    idx = torch.searchsorted(cum, levels, right=True).clamp(1, len(nodes) - 1)
    c0, c1 = cum[idx - 1], cum[idx]
    w = ((levels - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)
    return nodes[idx - 1] + w * (nodes[idx] - nodes[idx - 1])


LOGSNR_SHARE = 0.25
"""Floor of `uniform_logsnr`'s step density in the half log-SNR, as a fraction of the `logsnr` grid's."""


def uniform_logsnr(sde: MarginalSDE, n: int, share: float = LOGSNR_SHARE, resolution: int = 4096) -> Tensor:
    """Uniform in ``t`` with a floor on the step density in the half log-SNR ``lambda``.

    The grid equidistributes the step density (per unit ``t``, ``Lambda = lambda(eps) -
    lambda(T)``) ::

        rho(t) = max( 1/(T - eps),  share |d lambda/dt| / Lambda )

    i.e. the uniform grid's density wherever that puts at least ``share`` of the log-SNR grid's
    steps per unit ``lambda``, and ``share`` times the log-SNR grid's elsewhere. Under VE
    (``sigma(t) = sigma_min (sigma_max/sigma_min)^t``) the uniform grid is geometric in
    ``sigma`` down to about ``sigma_min``, but the marginal noise ``sigma/alpha`` then falls like
    ``sqrt(t)`` to its value at ``eps`` within the last few steps, so data finer than
    ``sigma_min`` stays unresolved at any practical budget; with the floor no step spans more
    than ``Lambda M / (share n)`` in ``lambda`` (``M >= 1`` the total mass of ``rho``, 1.06 under
    the default VE SDE at ``share = 0.25``), and the uniform steps elsewhere are only ``M``
    times longer (``M <= 1 + share``). ``share = 0`` is `uniform`.

    The cumulative density is integrated exactly between ``resolution`` points uniform in ``t``
    and ``resolution`` points geometric in ``t - eps`` (from ``1e-12 (T - eps)``; ``lambda``
    changes like ``ln(t - t_0)`` near the start of the SDE), and inverted by linear interpolation.

    Raises:
        ValueError: ``n < 1`` or ``share`` outside ``[0, 1]``.
    """
    n = _check_n(n)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share!r}")
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    top, bottom = log_snr(sde, ends).tolist()
    span = sde.T - sde.eps
    uniform_points = torch.linspace(0.0, 1.0, resolution + 1, dtype=torch.float64)
    geometric_points = torch.logspace(-12.0, 0.0, resolution + 1, dtype=torch.float64)
    offsets = torch.unique(torch.cat([uniform_points, geometric_points]))
    ts = (sde.eps + span * offsets).flip(0)  # decreasing, T ... eps
    ts[0], ts[-1] = sde.T, sde.eps
    lam = log_snr(sde, ts)
    mass = torch.maximum(-ts.diff() / span, share * lam.diff().abs() / (bottom - top))
    return _pin_ends(equidistribute(ts, mass, n), sde)


GRIDS: dict[str, Callable[..., Tensor]] = {
    "uniform": uniform,
    "quadratic": quadratic,
    "logsnr": logsnr,
    "karras": karras,
    "uniform_logsnr": uniform_logsnr,
}


def get_grid(name: str) -> Callable[..., Tensor]:
    """Grid function ``(sde, n) -> (n + 1,)`` by name.

    Raises:
        ValueError: unknown name (the message lists the valid names).
    """
    return lookup(GRIDS, name, "grid")


def check_grid(ts: Tensor, sde: ReverseSDEParts) -> Tensor:
    """Validate a user grid: 1-D, at least 2 points, strictly decreasing, inside ``[eps, T]``.

    Returns the grid as a float64 CPU tensor.
    """
    ts = torch.as_tensor(ts).detach().to("cpu", torch.float64)
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(f"time grid must be 1-D with at least 2 points, got shape {tuple(ts.shape)}")
    if not torch.isfinite(ts).all():
        raise ValueError("time grid contains non-finite values")
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError("time grid must be strictly decreasing (from T down to eps)")
    tol = 1e-7 * max(1.0, sde.T)
    lo, hi = float(ts[-1]), float(ts[0])
    if lo < sde.eps - tol or hi > sde.T + tol:
        raise ValueError(
            f"time grid must lie in [eps={sde.eps:g}, T={sde.T:g}], got [{lo:g}, {hi:g}]"
        )
    return ts
