"""Linear stability of explicit reverse-SDE steps on a grid, and the warnings for grids too coarse.

An explicit step of the reverse family ``dx = [f - (1 + lam^2)/2 g^2 s] dt + lam g dW_bar``
(`solvers.euler_maruyama`) is only conditionally stable. Its stiffest case is data
concentrated at a point: ``p_t = N(alpha mu, sigma(t)^2 I)``, score ``-(x - alpha mu) /
sigma^2``. With ``f = f'(t) x`` (affine marginals) the deviation ``e = x - alpha mu`` then
follows ``de = -A(t) e d(-t) + lam g dW_bar`` with ``A = f'(t) + (1 + lam^2)/2 g^2/sigma^2``,
and one Euler-Maruyama step from ``t`` to ``t - h`` maps it to::

    e' = (1 - z) e + lam g(t) sqrt(h) xi,        z = h A(t),

so the variance follows ``v' = (1 - z)^2 v + lam^2 g^2 h`` from ``v = sigma(T)^2``, while the
exact process ends at ``sigma(eps)^2``. `point_mass_amplification` returns
``sqrt(v_N) / sigma(t_{N-1})``: the spread the run leaves on a point mass, in units of the
noise level where its last step starts (about 1 to 1.4 for a stable grid, whatever the step
count). Where ``z`` exceeds 2 the factor ``|1 - z|`` exceeds 1, and where it is near 2 the
deviation is hardly damped while each step injects noise of the current, larger level; the
ratio then grows by orders of magnitude. A mode of std ``s`` caps the stiffness at
``1 / (alpha^2 s^2 + sigma^2)``, so real data fares better the wider its modes: the ratio is
what data far narrower than ``sigma(eps)`` would see.

torchsde's other explicit methods are linear on the same problem too, ``e' = R e + noise``,
with (``A_c = A(t - c h)``, ``g_c = g(t - c h)``, ``W ~ N(0, h)``, ``H ~ N(0, h/12)`` the
space-time Lévy area, independent of ``W``; the stage times of each method as torchsde
evaluates them)::

    euler, milstein:  R = 1 - h A_0,                                   noise = lam g_0 W
    euler_heun:       R = 1 - h A_0,                                   noise = lam (g_0 + g_1)/2 W
    midpoint:         R = 1 - h A_m (1 - h A_0/2),                     noise = lam (g_m - h A_m g_0/2) W    (m = 1/2)
    heun:             R = 1 - h (A_0 + A_1)/2 + h^2 A_0 A_1/2,         noise = lam ((g_0 + g_1)/2 - h A_1 g_0/2) W
    srk (SRA1):       R = 1 - h A_0/3 - 2/3 h A_q (1 - 3/4 h A_0),     noise = lam ((g_1 + c/2) W + c H),
                      c = g_0 - g_1 - h A_q g_1                                                             (q = 3/4)

(Rößler 2010's SRA1 tableau: drift stages at ``0`` and ``3/4``, diffusion at ``1`` and ``0``,
``U = h (W/2 + H)``.) With ``A`` constant the three two-stage methods share
``R = 1 - z + z^2/2``, stable for ``0 < z < 2`` like Euler's ``1 - z``, but it damps less
inside that interval (``R >= 1/2``) and grows as ``z^2/2`` beyond it; the recursion evaluates
each method on the actual grid, with ``A`` changing within the step.

Measured with the exact score of 8 modes on a circle, Euler–Maruyama at its default grids
(within-mode spread, 1 = exact, one seed; the ratio in brackets):

* std 0.002 (a fifth of VE's ``sigma_min``), VE: 1.4e5 at 8 steps [2e4], 1.8e3 at 10 [752],
  50 at 11 [85], 14 at 12 [8.7], 5.6 at 13 [2.5], 2.7 at 15 [1.3];
* std 0.002, sub-VP: 227 at 8 [1.1e4], 21 at 12 [291], 3.8 at 13 [86], 2.0 at 15 [5.8];
* std 0.05, VE: 1.3e3 at 8, 28 at 10, 1.4 at 11, 1.1 at 12.

`warn_if_unstable` warns above `AMPLIFICATION_LIMIT` and names the smallest step count of
the same grid family that stays below it.

Deterministic higher-order steps have a coarse-grid limit too, measured rather than derived
(noise-prediction DPM-Solver, EDM's Heun correction, explicit RK in ``t`` under VE; the
mechanisms in docs/defaults.md): each solver states its limit (`FixedGridSolver.fewest_steps`)
and `warn_if_too_coarse` warns below it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .protocol import HasMarginals, ReverseSDEParts
from .warning_types import CoarseGridWarning, warn

__all__ = [
    "AMPLIFICATION_LIMIT",
    "EXPLICIT_METHODS",
    "point_mass_amplification",
    "stable_steps",
    "unstable_below",
    "warn_if_unstable",
    "COARSE_GRID_MEASURE",
    "warn_if_too_coarse",
]

AMPLIFICATION_LIMIT = 10.0
"""`warn_if_unstable` warns when `point_mass_amplification` exceeds this."""

UNIT_MODE_STDS = (0.3, 1.0)
"""Mode stds (data units) of the second test of `warn_if_unstable`: modes on the scale that a
VP prior ``N(0, I)`` presumes. A point mass can stay within `AMPLIFICATION_LIMIT` while such a
mode comes out too wide: the cosine VP SDE at 8 Euler-Maruyama steps, point mass 4.0, a mode
of std 0.3 measured 2.62x too wide (`point_mass_amplification` with ``std=0.3``: 2.61)."""

MODE_AMPLIFICATION_LIMIT = 2.0
"""`warn_if_unstable` also warns when a mode of a `UNIT_MODE_STDS` std would come out wider than this."""

EXPLICIT_METHODS = ("euler", "milstein", "euler_heun", "midpoint", "heun", "srk")
"""Step rules `point_mass_amplification` knows (torchsde's names; ``euler`` is Euler–Maruyama)."""


def _stiffness(sde: ReverseSDEParts, t: Tensor, lam: float, std: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(A(t), g(t), alpha^2 std^2 + sigma^2)`` at the times ``t`` (float64), module docstring."""
    alpha, sigma = sde.marginal_coeffs(t)  # type: ignore[attr-defined]
    var = (alpha.to(torch.float64) * std) ** 2 + sigma.to(torch.float64) ** 2
    g = sde.diffusion(t).to(torch.float64)
    ones = torch.ones(len(t), 1, dtype=t.dtype)
    slope = (sde.drift(ones, t) - sde.drift(0 * ones, t))[:, 0].to(torch.float64)
    return slope + 0.5 * (1 + lam * lam) * g**2 / var, g, var


def _step_maps(sde: ReverseSDEParts, t: Tensor, lam: float, std: float, method: str) -> tuple[Tensor, Tensor, Tensor]:
    """Per step of the grid ``t``: the factor ``R``, the added noise variance, and the variance at each step's start."""
    start, h = t[:-1], t[:-1] - t[1:]
    a0, g0, var = _stiffness(sde, start, lam, std)
    if method in ("euler", "milstein", "euler_heun"):
        r = 1 - h * a0
        if method == "euler_heun":
            _, g1, _ = _stiffness(sde, t[1:], lam, std)
            return r, (lam * 0.5 * (g0 + g1)) ** 2 * h, var
        return r, (lam * g0) ** 2 * h, var
    if method == "midpoint":
        am, gm, _ = _stiffness(sde, start - 0.5 * h, lam, std)
        return 1 - h * am * (1 - 0.5 * h * a0), (lam * (gm - 0.5 * h * am * g0)) ** 2 * h, var
    if method == "heun":
        a1, g1, _ = _stiffness(sde, t[1:], lam, std)
        r = 1 - 0.5 * h * (a0 + a1) + 0.5 * h * h * a0 * a1
        return r, (lam * (0.5 * (g0 + g1) - 0.5 * h * a1 * g0)) ** 2 * h, var
    if method == "srk":
        aq, _, _ = _stiffness(sde, start - 0.75 * h, lam, std)
        _, g1, _ = _stiffness(sde, t[1:], lam, std)
        c = g0 - g1 - h * aq * g1
        r = 1 - h * a0 / 3 - (2.0 / 3.0) * h * aq * (1 - 0.75 * h * a0)
        return r, lam * lam * ((g1 + 0.5 * c) ** 2 * h + c * c * h / 12), var
    raise ValueError(f"unknown step rule {method!r}; expected one of {', '.join(EXPLICIT_METHODS)}")


def point_mass_amplification(sde: ReverseSDEParts, ts: Tensor, lam: float = 1.0, std: float = 0.0,
                             method: str = "euler") -> float:
    """``sqrt(v_N) / sigma(t_{N-1})`` of an explicit step rule on a point mass (module docstring).

    With ``std > 0`` the data is one Gaussian mode of that std (in data units) instead: the
    stiffness becomes ``g^2 / (alpha^2 std^2 + sigma^2)``, the run starts from variance
    ``alpha(T)^2 std^2 + sigma(T)^2`` and the result is in units of
    ``sqrt(alpha^2 std^2 + sigma^2)`` at ``t_{N-1}``.

    Args:
        sde: an SDE with ``marginal_coeffs`` (affine marginals, linear drift).
        ts: the decreasing grid ``(N + 1,)`` from ``T`` to ``eps``.
        lam: the noise level of the reverse family (1: reverse SDE, 0: probability-flow ODE).
        std: the mode's standard deviation (0: a point mass).
        method: the step rule, one of `EXPLICIT_METHODS` (default Euler–Maruyama).

    Returns ``nan`` for an SDE without marginals.
    """
    if method not in EXPLICIT_METHODS:
        raise ValueError(f"unknown step rule {method!r}; expected one of {', '.join(EXPLICIT_METHODS)}")
    if not isinstance(sde, HasMarginals):
        return math.nan
    t = ts.detach().to("cpu", torch.float64)
    r, noise, var = _step_maps(sde, t, lam, std, method)
    v = float(var[0])
    for rk, nk in zip(r.tolist(), noise.tolist(), strict=True):  # one pass over the grid, in floats
        v = rk * rk * v + nk
    return math.sqrt(v / float(var[-1]))


def unstable_below(sde: ReverseSDEParts, ts: Tensor, lam: float = 1.0, method: str = "euler") -> float:
    """The widest mode std (data units) whose amplification on ``ts`` exceeds `AMPLIFICATION_LIMIT`.

    Bisection in ``log std`` on ``[1e-8, 1e2]`` (narrower modes are stiffer); 0 when even a point
    mass stays within the limit.
    """
    if not point_mass_amplification(sde, ts, lam, method=method) > AMPLIFICATION_LIMIT:
        return 0.0
    lo, hi = math.log(1e-8), math.log(1e2)
    if point_mass_amplification(sde, ts, lam, math.exp(hi), method) > AMPLIFICATION_LIMIT:
        return math.exp(hi)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if point_mass_amplification(sde, ts, lam, math.exp(mid), method) > AMPLIFICATION_LIMIT:
            lo = mid
        else:
            hi = mid
    return math.exp(lo)


def stable_steps(sde: ReverseSDEParts, grid: Callable[[ReverseSDEParts, int], Tensor], lam: float = 1.0,
                 start: int = 1, limit: int = 4096, method: str = "euler") -> int | None:
    """The smallest ``n >= start`` whose ``grid(sde, n)`` keeps the amplification within the limits."""
    n = max(1, start)
    while n <= limit:
        ts = grid(sde, n)
        if (point_mass_amplification(sde, ts, lam, method=method) <= AMPLIFICATION_LIMIT
                and _mode_amplification(sde, ts, lam, method)[1] <= MODE_AMPLIFICATION_LIMIT):
            return n
        n = n + 1 if n < 64 else int(n * 1.25)
    return None


_RULE_NAMES = {
    "euler": "explicit Euler-Maruyama",
    "milstein": "explicit Euler-Maruyama",
    "euler_heun": "the explicit Euler-Heun step",
    "midpoint": "the explicit stochastic midpoint step",
    "heun": "the explicit stochastic Heun step",
    "srk": "the explicit SRA1 Runge-Kutta step",
}


WIDE_MODE_NOTE = 1.1
"""The point-mass warning also lists the `UNIT_MODE_STDS` modes that come out wider than this
(sub-VP, Euler-Maruyama, 10 steps: narrower than 0.025 unstable, but std 0.3 came out 2.0x and
std 1 1.3x as wide, as the recursion predicts to 0.3%)."""


def warn_if_unstable(name: str, sde: ReverseSDEParts, ts: Tensor, lam: float,
                     grid: Callable[[ReverseSDEParts, int], Tensor] | None, method: str = "euler",
                     stacklevel: int = 5) -> None:
    """Warn when ``ts`` puts the explicit step rule ``method`` outside its stability region (module docstring).

    ``grid`` is the solver's default grid family, used to name a step count that is stable.
    ``stacklevel`` is ignored (kept for callers): the warning names the first line outside the
    package (`solvers.warning_types.warn`).
    """
    ratio = point_mass_amplification(sde, ts, lam, method=method)
    modes = _mode_amplifications(sde, ts, lam, method)
    mode_std, mode_ratio = _widest(modes)
    if not (ratio > AMPLIFICATION_LIMIT or mode_ratio > MODE_AMPLIFICATION_LIMIT):  # also False for nan
        return
    steps = len(ts) - 1
    advice = ""
    if grid is not None:
        enough = stable_steps(sde, grid, lam, start=steps + 1, method=method)
        if enough is not None:
            advice = f"take at least {enough} steps of the default grid, or "
    if ratio > AMPLIFICATION_LIMIT:
        what = (f"for data with modes narrower than about {unstable_below(sde, ts, lam, method):.2g} (data "
                f"units; a point mass would come out {ratio:.3g}x as wide as the noise at the last step, "
                f"sharp mixtures measured up to 1e5x; solvers.stability)")
        # wider modes are damped, not spared: say how wide unit-scale ones come out
        listed = ", ".join(f"std {std:g} {r:.3g}x" for std, r in modes if r > WIDE_MODE_NOTE)
        if listed:
            what += f", and wider modes come out too wide as well ({listed} their width)"
    else:
        what = (f"for modes on the unit scale (one of std {mode_std:g} would come "
                f"out {mode_ratio:.3g}x too wide; solvers.stability)")
    warn(
        f"{name} with {steps} steps: steps this long are outside {_RULE_NAMES[method]}'s stability "
        f"region {what}; {advice}use reverse_diffusion, "
        "ancestral, gaussian_ancestral or sde_dpmpp_2m, whose steps are stable at any size",
        CoarseGridWarning,
    )


def _mode_amplifications(sde: ReverseSDEParts, ts: Tensor, lam: float, method: str) -> list[tuple[float, float]]:
    """``(std, ratio)`` for each `UNIT_MODE_STDS` mode: how wide it comes out on ``ts``."""
    return [(std, point_mass_amplification(sde, ts, lam, std, method)) for std in UNIT_MODE_STDS]


def _widest(modes: list[tuple[float, float]]) -> tuple[float, float]:
    """The ``(std, ratio)`` of `_mode_amplifications` that comes out widest (nan, no marginals, last)."""
    return max(modes, key=lambda m: m[1] if m[1] == m[1] else -math.inf)


def _mode_amplification(sde: ReverseSDEParts, ts: Tensor, lam: float, method: str) -> tuple[float, float]:
    """``(std, ratio)``: the `UNIT_MODE_STDS` mode that comes out widest on ``ts``, and how wide."""
    return _widest(_mode_amplifications(sde, ts, lam, method))


COARSE_GRID_MEASURE = (
    "measured with the exact score of 8 modes on a circle (std 0.05 and 0.15) under VP, sub-VP "
    "and VE on the default grids: below it the samples' median distance from the centre exceeds "
    "1.5 times the data's"
)
"""How the `FixedGridSolver.fewest_steps` limits were measured (quoted in the warning)."""

TRAINED_COARSE_GRID_MEASURE = (
    "measured with exact mixture scores and with score networks trained on 2-D toy data "
    "(checkerboard, two moons, eight Gaussians) under VP, sub-VP, VE and EDM on the default grids: "
    "below it the samples' median distance from the centre exceeds 1.5 times the data's for some "
    "of the networks, whose scores far from the data are less exact"
)
"""The measure quoted for the limits set by trained networks (`solvers.DPMSolver` of order 3, the
reverse-diffusion predictor under VE, `solvers.Heun` and `solvers.RK4` on Song et al.'s VE SDE):
they throw or spread samples out at more steps than exact scores do."""

REVERSE_DIFFUSION_FIRST_STEP = 1.45
"""Longest first step, in ``ln(sigma/alpha)``, for the reverse-diffusion predictor on a VE SDE
(`reverse_diffusion_fewest_steps`). Median distance from the centre over the data's, networks
trained on checkerboard / two moons (2000 steps, `scoresde.train.train_toy`), 2 seeds, default
grids (benchmarks/coarse_trained.py): VE first step 2.25 / 1.80 / 1.50 / 1.29 (4-7 steps):
3.8 / 1.63 / 1.48 / 1.31; EDM 2.12 / 1.77 / 1.51 / 1.32 (5-8 steps): 2.20 / 1.70 / 1.52 / 1.39."""


def reverse_diffusion_fewest_steps(sde: object, grid: Callable[[Any, int], Tensor], most: int = 64) -> int:
    """Fewest steps of ``grid`` whose first step spans at most `REVERSE_DIFFUSION_FIRST_STEP` in
    ``ln(sigma/alpha)`` on ``sde`` (at least 3; ``most`` if none up to it does).

    That first step re-injects forward noise of variance ``sigma(T)^2 - sigma(t_1)^2``; the
    later steps must remove it, and a network's score far from the data (where that noise puts
    the samples) is not exact, so the limit grows with the SDE's noise range: 7 steps on
    `scoresde.VESDE` (sigma 0.01-50), 8 on `scoresde.EDMSDE` (0.002-80).
    """
    coeffs = getattr(sde, "marginal_coeffs", None)
    if coeffs is None:
        return 3
    # Building the grids costs tens of ms each (the VE grid equidistributes a density): once per
    # SDE configuration, not once per solve or chunk.
    config = getattr(sde, "config", None)
    key = None
    if callable(config):
        key = (type(sde), repr(sorted(config().items())), float(getattr(sde, "T", 0.0)),
               float(getattr(sde, "eps", 0.0)), getattr(grid, "__qualname__", repr(grid)), most)
        if key in _FIRST_STEP_LIMITS:
            return _FIRST_STEP_LIMITS[key]
    limit = most
    for n in range(3, most):
        ts = grid(sde, n)[:2].to(torch.float64)
        alpha, sigma = coeffs(ts)
        first = float(torch.log(sigma[0] / alpha[0]) - torch.log(sigma[1] / alpha[1]))
        if first <= REVERSE_DIFFUSION_FIRST_STEP:
            limit = n
            break
    if key is not None:
        if len(_FIRST_STEP_LIMITS) >= 256:
            _FIRST_STEP_LIMITS.clear()
        _FIRST_STEP_LIMITS[key] = limit
    return limit


_FIRST_STEP_LIMITS: dict[tuple[Any, ...], int] = {}
"""`reverse_diffusion_fewest_steps`' answers by SDE class, configuration, ends and grid."""


HIGHER_ORDER_TOO_COARSE = (
    "its higher-order correction across steps this long can throw samples past the data",
    "dpmpp_2m, unipc or ddim",
)
"""``(why, instead)`` of the coarse-grid warning for the higher-order ODE solvers."""

NOISE_TOO_COARSE = (
    "its first step re-injects the forward noise of the whole step (std about sigma_max under VE), "
    "which too few later steps cannot remove",
    "ancestral, gaussian_ancestral or sde_dpmpp_2m",
)
"""``(why, instead)`` of the coarse-grid warning for the reverse-diffusion predictor under VE."""


def warn_if_too_coarse(name: str, limit: int, steps: int,
                       reason: tuple[str, str] = HIGHER_ORDER_TOO_COARSE,
                       measure: str = COARSE_GRID_MEASURE) -> None:
    """Warn when a grid of ``steps`` steps is below solver ``name``'s ``limit``
    (`FixedGridSolver.fewest_steps`): a step that spans most of the noise range throws samples
    past the data (docs/defaults.md, "Higher-order ODE steps on very coarse grids").
    ``reason = (why, instead)``: what goes wrong, and the solvers that stay inside the data at
    any step count (`HIGHER_ORDER_TOO_COARSE`, `NOISE_TOO_COARSE`); ``measure``: how the limit
    was measured (`COARSE_GRID_MEASURE`, `TRAINED_COARSE_GRID_MEASURE`)."""
    if steps < limit:
        why, instead = reason
        warn(
            f"{name} with {steps} step(s): {why} (fewer than {limit} steps, {measure}); "
            f"take at least {limit} steps, or use {instead}, which stay inside the data at any "
            "step count",
            CoarseGridWarning,
        )
