"""Linear stability of explicit Euler–Maruyama steps on a grid, and the warning built on it.

An explicit step of the reverse family ``dx = [f - (1 + lam^2)/2 g^2 s] dt + lam g dW_bar``
(`solvers.euler_maruyama`) is only conditionally stable. Its stiffest case is data
concentrated at a point: ``p_t = N(alpha mu, sigma(t)^2 I)``, score ``-(x - alpha mu) /
sigma^2``. With ``f = f'(t) x`` (affine marginals) one step from ``t`` to ``t - h`` maps the
deviation ``e = x - alpha mu`` to::

    e' = (1 - z) e + lam g(t) sqrt(h) xi,        z = h (f'(t) + (1 + lam^2)/2 g(t)^2 / sigma(t)^2),

so the variance follows ``v' = (1 - z)^2 v + lam^2 g^2 h`` from ``v = sigma(T)^2``, while the
exact process ends at ``sigma(eps)^2``. `point_mass_amplification` returns
``sqrt(v_N) / sigma(t_{N-1})``: the spread the run leaves on a point mass, in units of the
noise level where its last step starts (about 1 to 1.4 for a stable grid, whatever the step
count). Where ``z`` exceeds 2 the factor ``|1 - z|`` exceeds 1, and where it is near 2 the
deviation is hardly damped while each step injects noise of the current, larger level; the
ratio then grows by orders of magnitude. A mode of std ``s`` caps the stiffness at
``1 / (alpha^2 s^2 + sigma^2)``, so real data fares better the wider its modes: the ratio is
what data far narrower than ``sigma(eps)`` would see.

Measured with the exact score of 8 modes on a circle, Euler–Maruyama at its default grids
(within-mode spread, 1 = exact, one seed; the ratio in brackets):

* std 0.002 (a fifth of VE's ``sigma_min``), VE: 1.4e5 at 8 steps [2e4], 1.8e3 at 10 [752],
  50 at 11 [85], 14 at 12 [8.7], 5.6 at 13 [2.5], 2.7 at 15 [1.3];
* std 0.002, sub-VP: 227 at 8 [1.1e4], 21 at 12 [291], 3.8 at 13 [86], 2.0 at 15 [5.8];
* std 0.05, VE: 1.3e3 at 8, 28 at 10, 1.4 at 11, 1.1 at 12.

`warn_if_unstable` warns above `AMPLIFICATION_LIMIT` and names the smallest step count of
the same grid family that stays below it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from .protocol import HasMarginals, ReverseSDEParts

__all__ = ["AMPLIFICATION_LIMIT", "point_mass_amplification", "stable_steps", "unstable_below", "warn_if_unstable"]

AMPLIFICATION_LIMIT = 10.0
"""`warn_if_unstable` warns when `point_mass_amplification` exceeds this."""


def point_mass_amplification(sde: ReverseSDEParts, ts: Tensor, lam: float = 1.0, std: float = 0.0) -> float:
    """``sqrt(v_N) / sigma(t_{N-1})`` of explicit Euler–Maruyama on a point mass (module docstring).

    With ``std > 0`` the data is one Gaussian mode of that std (in data units) instead: the
    stiffness becomes ``g^2 / (alpha^2 std^2 + sigma^2)``, the run starts from variance
    ``alpha(T)^2 std^2 + sigma(T)^2`` and the result is in units of
    ``sqrt(alpha^2 std^2 + sigma^2)`` at ``t_{N-1}``.

    Args:
        sde: an SDE with ``marginal_coeffs`` (affine marginals, linear drift).
        ts: the decreasing grid ``(N + 1,)`` from ``T`` to ``eps``.
        lam: the noise level of the reverse family (1: reverse SDE, 0: probability-flow ODE).
        std: the mode's standard deviation (0: a point mass).

    Returns ``nan`` for an SDE without marginals.
    """
    if not isinstance(sde, HasMarginals):
        return math.nan
    t = ts.detach().to("cpu", torch.float64)
    start, h = t[:-1], t[:-1] - t[1:]
    alpha, sigma = sde.marginal_coeffs(start)
    var = (alpha.to(torch.float64) * std) ** 2 + sigma.to(torch.float64) ** 2
    g = sde.diffusion(start).to(torch.float64)
    ones = torch.ones(len(start), 1, dtype=torch.float64)
    slope = (sde.drift(ones, start) - sde.drift(0 * ones, start))[:, 0].to(torch.float64)
    z = h * (slope + 0.5 * (1 + lam * lam) * g**2 / var)
    noise = lam * lam * g**2 * h
    v = float(var[0])
    for zk, nk in zip(z.tolist(), noise.tolist(), strict=True):  # one pass over the grid, in floats
        v = (1.0 - zk) ** 2 * v + nk
    return math.sqrt(v / float(var[-1]))


def unstable_below(sde: ReverseSDEParts, ts: Tensor, lam: float = 1.0) -> float:
    """The widest mode std (data units) whose amplification on ``ts`` exceeds `AMPLIFICATION_LIMIT`.

    Bisection in ``log std`` on ``[1e-8, 1e2]`` (narrower modes are stiffer); 0 when even a point
    mass stays within the limit.
    """
    if not point_mass_amplification(sde, ts, lam) > AMPLIFICATION_LIMIT:
        return 0.0
    lo, hi = math.log(1e-8), math.log(1e2)
    if point_mass_amplification(sde, ts, lam, math.exp(hi)) > AMPLIFICATION_LIMIT:
        return math.exp(hi)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if point_mass_amplification(sde, ts, lam, math.exp(mid)) > AMPLIFICATION_LIMIT:
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


def stable_steps(sde: ReverseSDEParts, grid: Callable[[ReverseSDEParts, int], Tensor], lam: float = 1.0,
                 start: int = 1, limit: int = 4096) -> int | None:
    """The smallest ``n >= start`` whose ``grid(sde, n)`` keeps the amplification within the limit."""
    n = max(1, start)
    while n <= limit:
        if point_mass_amplification(sde, grid(sde, n), lam) <= AMPLIFICATION_LIMIT:
            return n
        n = n + 1 if n < 64 else int(n * 1.25)
    return None


def warn_if_unstable(name: str, sde: ReverseSDEParts, ts: Tensor, lam: float,
                     grid: Callable[[ReverseSDEParts, int], Tensor] | None) -> None:
    """Warn when ``ts`` puts explicit Euler–Maruyama outside its stability region (module docstring).

    ``grid`` is the solver's default grid family, used to name a step count that is stable.
    """
    ratio = point_mass_amplification(sde, ts, lam)
    if not ratio > AMPLIFICATION_LIMIT:  # also False for nan
        return
    steps = len(ts) - 1
    advice = ""
    if grid is not None:
        enough = stable_steps(sde, grid, lam, start=steps + 1)
        if enough is not None:
            advice = f"take at least {enough} steps of the default grid, or "
    warnings.warn(
        f"{name} with {steps} steps: steps this long are outside explicit Euler-Maruyama's stability "
        f"region for data with modes narrower than about {unstable_below(sde, ts, lam):.2g} (data "
        f"units; a point mass would come out {ratio:.3g}x as wide as the noise at the last step, "
        f"sharp mixtures measured up to 1e5x; solvers.stability); {advice}use reverse_diffusion, "
        "ancestral or sde_dpmpp_2m, whose steps are stable at any size",
        stacklevel=5,
    )
