"""Time discretisations of ``[eps, T]``, returned in decreasing order ``T = t_0 > ... > t_n = eps``.

A grid is an argument of the solver, never a property of the SDE. All grids are float64
``(n + 1,)`` CPU tensors; solvers cast them. Grids that are uniform in a transformed time
(log-SNR, EDM sigma) invert the SDE's marginal coefficients numerically by bisection, so
they work for any :class:`~solvers.protocol.DiffusionSDE`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .protocol import DiffusionSDE

__all__ = [
    "uniform",
    "quadratic",
    "logsnr",
    "karras",
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


def invert_monotone(
    fn: Callable[[Tensor], Tensor], targets: Tensor, lo: float, hi: float, iters: int = 100
) -> Tensor:
    """Solve ``fn(t) = target`` for each target by bisection on ``[lo, hi]``; ``fn`` monotone."""
    lo_t = torch.full_like(targets, lo)
    hi_t = torch.full_like(targets, hi)
    increasing = bool(fn(torch.tensor([hi], dtype=torch.float64)) > fn(torch.tensor([lo], dtype=torch.float64)))
    for _ in range(iters):
        mid = 0.5 * (lo_t + hi_t)
        above = fn(mid) > targets
        go_left = above if increasing else ~above
        hi_t = torch.where(go_left, mid, hi_t)
        lo_t = torch.where(go_left, lo_t, mid)
    return 0.5 * (lo_t + hi_t)


def _pin_ends(ts: Tensor, sde: DiffusionSDE) -> Tensor:
    ts[0], ts[-1] = sde.T, sde.eps
    return ts


def uniform(sde: DiffusionSDE, n: int) -> Tensor:
    """``n`` equal steps from ``T`` to ``eps``."""
    return torch.linspace(sde.T, sde.eps, _check_n(n) + 1, dtype=torch.float64)


def quadratic(sde: DiffusionSDE, n: int) -> Tensor:
    """``t_i = eps + (T - eps) (1 - i/n)^2``: steps shrink quadratically towards ``eps``."""
    u = torch.linspace(1.0, 0.0, _check_n(n) + 1, dtype=torch.float64)
    return _pin_ends(sde.eps + (sde.T - sde.eps) * u**2, sde)


def log_snr(sde: DiffusionSDE, t: Tensor) -> Tensor:
    """Half log-SNR ``lambda(t) = ln alpha(t) - ln sigma(t)`` for ``t: (N,)``; returns ``(N,)``."""
    alpha, sigma = sde.marginal_coeffs(t)
    return torch.log(alpha) - torch.log(sigma)


def time_from_log_snr(sde: DiffusionSDE, lam: Tensor | Sequence[float]) -> Tensor:
    """Times ``t: (N,)`` in ``[eps, T]`` with ``lambda(t) = lam`` (batched float64 bisection;
    ``lambda`` is strictly monotone for every affine SDE; out-of-range values clip to the ends)."""
    lam = torch.as_tensor(lam, dtype=torch.float64).reshape(-1)
    return invert_monotone(lambda t: log_snr(sde, t), lam, sde.eps, sde.T)


def logsnr(sde: DiffusionSDE, n: int) -> Tensor:
    """Uniform in the half log-SNR ``lambda(t) = ln(alpha/sigma)`` (DPM-Solver's default)."""
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    lam_T, lam_eps = log_snr(sde, ends).tolist()
    lam = torch.linspace(lam_T, lam_eps, _check_n(n) + 1, dtype=torch.float64)
    return _pin_ends(time_from_log_snr(sde, lam), sde)


def edm_sigma(sde: DiffusionSDE, t: Tensor) -> Tensor:
    """EDM noise level ``sigma(t)/alpha(t)`` for ``t: (N,)``; returns ``(N,)``."""
    alpha, sigma = sde.marginal_coeffs(t)
    return sigma / alpha


def time_from_edm_sigma(sde: DiffusionSDE, sigma_edm: Tensor | Sequence[float]) -> Tensor:
    """Times ``t: (N,)`` in ``[eps, T]`` with ``sigma(t)/alpha(t) = sigma_edm`` (batched bisection)."""
    target = torch.as_tensor(sigma_edm, dtype=torch.float64).reshape(-1)
    return invert_monotone(lambda t: edm_sigma(sde, t), target, sde.eps, sde.T)


def karras(sde: DiffusionSDE, n: int, rho: float = 7.0) -> Tensor:
    """EDM grid (Karras et al. 2022, eq. 5): uniform in ``sigma_edm^(1/rho)``, ``sigma_edm = sigma/alpha``."""
    ends = torch.tensor([sde.T, sde.eps], dtype=torch.float64)
    s_max, s_min = edm_sigma(sde, ends).tolist()
    u = torch.linspace(0.0, 1.0, _check_n(n) + 1, dtype=torch.float64)
    sig = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return _pin_ends(time_from_edm_sigma(sde, sig), sde)


GRIDS: dict[str, Callable[..., Tensor]] = {
    "uniform": uniform,
    "quadratic": quadratic,
    "logsnr": logsnr,
    "karras": karras,
}


def get_grid(name: str) -> Callable[..., Tensor]:
    """Grid function by name; the error lists the valid names."""
    try:
        return GRIDS[name]
    except KeyError:
        raise ValueError(f"unknown grid {name!r}; valid grids: {', '.join(GRIDS)}") from None


def check_grid(ts: Tensor, sde: DiffusionSDE) -> Tensor:
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
