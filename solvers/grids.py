"""Time discretisations of ``[eps, T]``, returned in decreasing order ``T = t_0 > ... > t_n = eps``.

A grid is an argument of the solver, never a property of the SDE. All grids are float64
``(n + 1,)`` CPU tensors; solvers cast them. Grids that are uniform in a transformed time
(log-SNR, EDM sigma; formulas in `solvers.marginals`) invert the SDE's marginal coefficients
numerically by bisection, so they work for any SDE with ``marginal_coeffs``.
"""

from __future__ import annotations

import math
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
from .sde_checks import check_time_range

__all__ = [
    "uniform",
    "quadratic",
    "logsnr",
    "logsnr_long_first",
    "LONG_FIRST_STEP",
    "LONG_FIRST_FLOOR",
    "karras",
    "uniform_logsnr",
    "uniform_or_logsnr",
    "LOGSNR_SHARE",
    "equidistribute",
    "GRIDS",
    "GRIDS_WITHOUT_MARGINALS",
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
    ts[0], ts[-1] = float(sde.T), float(sde.eps)  # NumPy / 0-d tensor ends too
    return ts


def uniform(sde: ReverseSDEParts, n: int) -> Tensor:
    """``n`` equal steps from ``T`` to ``eps``."""
    return torch.linspace(sde.T, sde.eps, _check_n(n) + 1, dtype=torch.float64)


def quadratic(sde: ReverseSDEParts, n: int) -> Tensor:
    """``t_i = eps + (T - eps) (1 - i/n)^2``: steps shrink quadratically towards ``eps``."""
    u = torch.linspace(1.0, 0.0, _check_n(n) + 1, dtype=torch.float64)
    return _pin_ends(sde.eps + (sde.T - sde.eps) * u**2, sde)


def logsnr(sde: MarginalSDE, n: int, first_step: float = 1.0) -> Tensor:
    """Uniform in the half log-SNR ``lambda(t) = ln(alpha/sigma)`` (DPM-Solver's default).

    ``first_step``: the first interval, from ``T``, spans that many of the others in
    ``lambda``: with ``L = lambda(eps) - lambda(T)``, ``h = L / (n - 1 + first_step)`` and
    ``lambda_i = lambda(T) + (first_step + i - 1) h`` for ``i >= 1``. ``1``: uniform.
    """
    if not (isinstance(first_step, (int, float)) and not isinstance(first_step, bool)
            and math.isfinite(first_step) and first_step > 0):
        raise ValueError(f"first_step must be a positive number, got {first_step!r}")
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    top, bottom = log_snr(sde, ends).tolist()
    n = _check_n(n)
    levels = torch.linspace(top, bottom, n + 1, dtype=torch.float64)
    if first_step != 1:
        h = (bottom - top) / (n - 1 + first_step)
        levels[1:] = top + h * (first_step + torch.arange(n, dtype=torch.float64))
    return _pin_ends(time_from_log_snr(sde, levels), sde)


LONG_FIRST_STEP = 3.0
"""``first_step`` of `logsnr_long_first`."""
LONG_FIRST_FLOOR = 8.0
"""`logsnr_long_first`'s first step ends no lower than ``sigma/alpha`` = this."""


def logsnr_long_first(sde: MarginalSDE, n: int) -> Tensor:
    """The log-SNR grid whose first interval, from the prior, spans `LONG_FIRST_STEP` (3) of the others.

    While ``S = sigma/alpha`` is far above the data's scale, the denoiser ``D = E[x_0 | x_t]``
    hardly changes (by about ``C/S^2`` of ``y - m`` for data of covariance ``C`` and mean
    ``m``), and an exponential integrator's step is exact for constant ``D``; the uniform grid
    spends about a third of its steps there under VP (``S`` from 152 down to 5). Here that
    stretch gets one long step and the rest of the budget goes below it. The first step ends
    no lower than ``S = 8`` (`LONG_FIRST_FLOOR`: eight times the unit scale that the
    ``N(0, I)`` prior of VP-type SDEs presumes of the data, where ``D`` moves by about 1/64 of
    ``y - m``), and never spans less than a uniform step; without the floor it is
    ``3 L / (n + 2)`` in ``lambda`` (``L`` the grid's whole span), which vanishes as ``n`` grows,
    so the grid converges. An option, not a default: it helps ``gaussian_2m`` on Gaussian
    mixtures with their exact score, but not with trained networks, whose error in ``D`` grows
    like ``S`` and which one long step from the prior carries whole (docs/defaults.md, "Tried: a long first
    step").
    """
    n = _check_n(n)
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    top, bottom = log_snr(sde, ends).tolist()
    span = bottom - top
    first = LONG_FIRST_STEP * span / (n - 1 + LONG_FIRST_STEP)
    to_floor = -math.log(LONG_FIRST_FLOOR) - top  # lambda = -ln S
    first = max(min(first, to_floor), span / n)
    if n == 1 or first <= span / n:
        return logsnr(sde, n)
    return logsnr(sde, n, first_step=first * (n - 1) / (span - first))


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
    ts[0], ts[-1] = float(sde.T), float(sde.eps)
    lam = log_snr(sde, ts)
    mass = torch.maximum(-ts.diff() / span, share * lam.diff().abs() / (bottom - top))
    return _pin_ends(equidistribute(ts, mass, n), sde)


def uniform_or_logsnr(sde: MarginalSDE, n: int) -> Tensor:
    """The denser of the uniform grid's and the log-SNR grid's step densities: `uniform_logsnr`
    with ``share = 1``.

    Under VE it is the uniform grid (geometric in Song et al.'s ``sigma(t)``) above about
    ``sigma_min`` and the log-SNR grid below, where the marginal noise falls like ``sqrt(t)``:
    there a step of an explicit integrator in ``t`` is stable only if it spans a bounded
    factor of ``sigma/alpha``, which the uniform grid's last step (a factor ``sqrt(t_1/eps)``)
    does not. With the floor at the log-SNR grid's full density (not a fraction of it) a
    second-order step in ``t`` gets closer to modes narrower than ``sigma_min`` as the steps
    grow (measured from about 30 NFE on; below that no grid resolves them), at the price of
    about 1.3x longer steps above ``sigma_min`` (``ode_heun`` / ``ode_rk4`` under VE;
    `solvers.defaults.classic_ode_grid`, docs/defaults.md).

    Raises:
        ValueError: ``n < 1``.
    """
    return uniform_logsnr(sde, n, share=1.0)


GRIDS: dict[str, Callable[..., Tensor]] = {
    "uniform": uniform,
    "quadratic": quadratic,
    "logsnr": logsnr,
    "logsnr_long_first": logsnr_long_first,
    "karras": karras,
    "uniform_logsnr": uniform_logsnr,
    "uniform_or_logsnr": uniform_or_logsnr,
}

GRIDS_WITHOUT_MARGINALS = frozenset({"uniform", "quadratic"})
"""Grids built from ``T`` and ``eps`` alone; the others invert ``marginal_coeffs``."""


def get_grid(name: str) -> Callable[..., Tensor]:
    """Grid function ``(sde, n) -> (n + 1,)`` by name.

    Raises:
        ValueError: unknown name (the message lists the valid names).
    """
    return lookup(GRIDS, name, "grid", hint="or 'auto', a prototype: solvers.auto_grid")


def check_grid(ts: Tensor, sde: ReverseSDEParts) -> Tensor:
    """Validate a user grid: 1-D, at least 2 points, strictly decreasing, inside ``[eps, T]``
    (``0 < eps < T``, `solvers.sde_checks.check_time_range`).

    Returns the grid as a float64 CPU tensor.
    """
    T, eps = check_time_range(sde)
    ts = torch.as_tensor(ts).detach().to("cpu", torch.float64)
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(f"time grid must be 1-D with at least 2 points, got shape {tuple(ts.shape)}")
    if not torch.isfinite(ts).all():
        raise ValueError("time grid contains non-finite values")
    if not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError("time grid must be strictly decreasing (from T down to eps)")
    tol = 1e-7 * max(1.0, T)
    lo, hi = float(ts[-1]), float(ts[0])
    if lo < eps - tol or hi > T + tol:
        raise ValueError(
            f"time grid must lie in [eps={eps:g}, T={T:g}], got [{lo:g}, {hi:g}]"
        )
    return ts
