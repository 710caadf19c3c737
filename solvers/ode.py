"""Fixed-step integrators of the probability-flow ODE: explicit Euler, Heun, classic RK4.

Two levels, sharing one implementation of each step:

* function level: `euler_step`, `heun_step`, `rk4_step` advance any vector
  field ``fn(t: float, y: Tensor) -> Tensor`` (``dy/dt``, the shape of ``y``) from ``t`` to
  ``t_next``, and `integrate_fixed` walks a grid of times. Times may decrease
  (sampling, ``T -> eps``) or increase (likelihood, ``eps -> T``).
* solver level: `ODEEuler`, `Heun`, `RK4` (registered as ``ode_euler``,
  ``ode_heun``, ``ode_rk4``) integrate the probability-flow ODE of Song et al. 2021, eq. 13,
  ``dx/dt = F(x, t) = f(x, t) - g(t)^2 s(x, t) / 2``, along a decreasing grid.

With ``h = t_next - t`` and ``k_i`` evaluations of the field, the methods are (Hairer,
Nørsett & Wanner, *Solving ODEs I*, §II.1)::

    Euler (order 1): y' = y + h k1,                              k1 = fn(t, y)
    Heun  (order 2): y' = y + h (k1 + k2) / 2,                   k2 = fn(t + h, y + h k1)
    RK4   (order 4): y' = y + h (k1 + 2 k2 + 2 k3 + k4) / 6,     k2 = fn(t + h/2, y + h k1/2),
                     k3 = fn(t + h/2, y + h k2/2),               k4 = fn(t + h, y + h k3)

Costs: 1, 2 and 4 evaluations per step. Heun is the explicit trapezoidal rule ("improved
Euler"), the 2nd-order sampler of Karras et al. 2022, Alg. 1 (without its ``sigma = 0`` special
case: the grid stops at ``eps > 0``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar, Literal

from torch import Tensor

from .base import DynamicsKind, FixedGridSolver, SolveContext
from .defaults import (
    classic_ode_grid,
    has_geometric_noise,
    is_variance_exploding,
    is_variance_preserving,
    sde_solver_grid,
)
from .dynamics import ReverseDynamics
from .protocol import HasMarginals
from .registry import lookup
from .stability import COARSE_GRID_MEASURE, TRAINED_COARSE_GRID_MEASURE
from .warning_types import CoarseGridWarning, warn

__all__ = [
    "VectorField",
    "StepFn",
    "euler_step",
    "heun_step",
    "rk4_step",
    "STEPS",
    "integrate_fixed",
    "ODEEuler",
    "Heun",
    "RK4",
]

VectorField = Callable[[float, Tensor], Tensor]
"""``fn(t: float, y: Tensor) -> dy/dt`` with the shape of ``y``."""

StepFn = Callable[[VectorField, float, Tensor, float], Tensor]
"""``step(fn, t, y, t_next) -> y_next``."""


def euler_step(fn: VectorField, t: float, y: Tensor, t_next: float) -> Tensor:
    """One explicit Euler step ``y + h fn(t, y)``, ``h = t_next - t`` (1 evaluation)."""
    h = t_next - t
    return y + h * fn(t, y)


def heun_step(fn: VectorField, t: float, y: Tensor, t_next: float) -> Tensor:
    """One Heun (explicit trapezoidal) step, order 2 (2 evaluations).

    ``k1 = fn(t, y)``, ``k2 = fn(t_next, y + h k1)``, ``y' = y + h (k1 + k2) / 2``.
    """
    h = t_next - t
    # Euler predictor.
    k1 = fn(t, y)
    y_pred = y + h * k1
    # Trapezoidal corrector: average the slopes at both ends.
    k2 = fn(t_next, y_pred)
    return y + (0.5 * h) * (k1 + k2)


def rk4_step(fn: VectorField, t: float, y: Tensor, t_next: float) -> Tensor:
    """One classic Runge–Kutta step, order 4 (4 evaluations).

    ``y' = y + h (k1 + 2 k2 + 2 k3 + k4) / 6`` with the stages at ``t``, ``t + h/2`` (twice)
    and ``t_next``.
    """
    h = t_next - t
    t_mid = t + 0.5 * h
    # Slopes at the start, twice at the midpoint, and at the end.
    k1 = fn(t, y)
    k2 = fn(t_mid, y + (0.5 * h) * k1)
    k3 = fn(t_mid, y + (0.5 * h) * k2)
    k4 = fn(t_next, y + h * k3)
    # Simpson-like weighting of the four slopes.
    return y + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)


STEPS: Mapping[str, StepFn] = {"euler": euler_step, "heun": heun_step, "rk4": rk4_step}
"""Method name -> step function, as accepted by `integrate_fixed`."""


def _get_step(method: str) -> StepFn:
    return lookup(STEPS, method, "method")


def integrate_fixed(
    fn: VectorField,
    y0: Tensor,
    ts: Tensor | Sequence[float],
    *,
    method: Literal["heun", "euler", "rk4"] = "heun",
) -> Tensor:
    """Integrate ``dy/dt = fn(t, y)`` from ``ts[0]`` through every time of ``ts``; return ``y(ts[-1])``.

    Args:
        fn: vector field ``fn(t: float, y) -> dy/dt`` (same shape as ``y``).
        y0: state at ``ts[0]``, any shape and floating dtype.
        ts: ``(n + 1,)`` strictly monotone times (increasing or decreasing), ``n >= 1``.
        method: ``"euler"`` (order 1), ``"heun"`` (order 2) or ``"rk4"`` (order 4).

    Returns:
        The state at ``ts[-1]``, shape of ``y0``. Differentiable through ``fn`` if ``fn`` is.
    """
    step = _get_step(method)
    if not isinstance(y0, Tensor) or not y0.is_floating_point():
        raise TypeError("y0 must be a floating-point tensor")
    times = [float(t) for t in (ts.detach().reshape(-1).tolist() if isinstance(ts, Tensor) else ts)]
    if len(times) < 2:
        raise ValueError(f"ts must hold at least 2 times, got {len(times)}")
    if not all(math.isfinite(t) for t in times):
        raise ValueError("ts contains non-finite values")
    diffs = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    if not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise ValueError("ts must be strictly monotone (all increasing or all decreasing)")
    y = y0
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        y = step(fn, t, y, t_next)
    return y


class _FixedStepODE(FixedGridSolver):
    """Shared PF-ODE stepping: the field is the reverse drift ``F = f - g^2 s / 2`` at ``lam = 0``."""

    dynamics_kind: DynamicsKind = "ode"
    method: ClassVar[str] = "euler"
    sub_vp_grid: ClassVar[str] = "uniform"
    """Default grid on sub-VP (`solvers.defaults.classic_ode_grid`'s ``sub_vp``)."""

    def grid_for(self, sde: object) -> str:
        """``logsnr`` on variance-preserving SDEs (VP, cosine), ``uniform_or_logsnr`` on VE, `sub_vp_grid` on sub-VP.

        Under VP the uniform grid in ``t`` crosses the last stretch, where ``sigma/alpha`` falls
        from a few times a mode's std to ``sigma(eps)/alpha(eps) = 0.0105``, in one or two steps:
        with the exact score of 8 modes of std 0.005 (1/230 of their spacing) ``ode_rk4`` left
        the within-mode spread at 0.26 of exact at 197 NFE and 0.98 at 997, ``ode_heun`` 0.22
        at 199 NFE; on the log-SNR grid both are converged by 200 NFE. VE takes
        ``uniform_or_logsnr`` (the uniform grid's last step is as stiff there on modes narrower
        than ``sigma_min``), and sub-VP takes `sub_vp_grid` (``uniform`` here, ``logsnr`` for
        `Heun` and `RK4`; `solvers.defaults.classic_ode_grid`, docs/defaults.md). `ODEEuler`
        overrides this with the first-order samplers' rule.
        """
        return classic_ode_grid(sde, sub_vp=self.sub_vp_grid)

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        # Probability-flow velocity F = f - g^2 s / 2 as a field (t, y) -> F(y, t).
        return STEPS[self.method](dynamics.velocity, t, x, t_next)


EULER_VE_STEPS = 4000
"""Below this many steps `ODEEuler` was measured not to reach ``p_0`` on a VE SDE (it warns)."""


class ODEEuler(_FixedStepODE):
    """Explicit Euler on the probability-flow ODE (order 1, 1 NFE per step).

    ``x' = x + (t' - t) F(x, t)`` with ``F = f - g^2 s / 2`` (Song et al. 2021, eq. 13).

    Its O(h) bias is large next to the exponential integrators' (``ddim`` is first order too,
    but exact on the linear part of the drift). With the exact score of ``sharp_8`` (mode std
    0.05) the within-mode spread at 1000 steps is 1.005 on VP and 1.000 on sub-VP (log-SNR
    grid), but 0.985 on VE (uniform grid; the log-SNR and Karras grids give 0.98, the
    default ``uniform_logsnr`` 0.984), 0.992 at
    2000 steps and 0.996 at 4000 (`benchmarks/sharp.py`); narrower modes fare worse (0.966-0.977
    at 1000 steps on 3-D clusters of std 1/40 of their spacing and on a mode of std 0.02 beside a
    wide one). On a VE SDE it therefore warns
    below `EULER_VE_STEPS` steps; use ``ddim`` or ``dpmpp_2m`` there.
    """

    order: float = 1.0
    method: ClassVar[str] = "euler"

    def grid_for(self, sde: object) -> str:
        """``logsnr`` on VP / sub-VP, ``uniform_logsnr`` on VE (`solvers.defaults.sde_solver_grid`).

        A first-order step on the uniform grid in ``t`` is too coarse in ``ln sigma`` near
        ``t = 0`` under VP: at 1000 steps it over-shrinks a mode of std 0.05 by 0.75% (spread
        0.9925 on ``sharp_8``), against 1.0046 on the log-SNR grid (``benchmarks/sharp.py``).
        """
        return sde_solver_grid(sde)

    def prepare(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        """Warn on a VE SDE with fewer than `EULER_VE_STEPS` steps (measured bias; class docstring)."""
        steps = len(ctx.times) - 1
        if steps < EULER_VE_STEPS and is_variance_exploding(dynamics.sde):
            warn(
                f"ode_euler on a variance-exploding SDE with {steps} steps: explicit Euler's O(h) bias "
                f"over-shrinks sharp modes here (within-mode spread 0.966-0.985 at 1000 steps on sharp "
                f"mixtures, 0.996 at {EULER_VE_STEPS} on sharp_8; docs/defaults.md); use ddim or dpmpp_2m, "
                "or more steps",
                CoarseGridWarning,
            )


class Heun(_FixedStepODE):
    """Heun's method (explicit trapezoid) on the probability-flow ODE (order 2, 2 NFE per step).

    ``x~ = x + h F(x, t)``, ``x' = x + h (F(x, t) + F(x~, t')) / 2``, ``h = t' - t``,
    ``F = f - g^2 s / 2`` (Song et al. 2021, eq. 13; Karras et al. 2022, Alg. 1).
    """

    order: float = 2.0
    method: ClassVar[str] = "heun"
    sub_vp_grid: ClassVar[str] = "logsnr"
    """``logsnr`` on sub-VP too. On sub-VP's uniform grid its quality got worse as steps grew,
    beyond seed noise: with the exact score of 8 modes of std 0.015 (1/77 of their spacing) the
    combined metric read 3.03, 2.20, 10.52, 8.70, 4.19, 2.20 at 21, 41, 61, 81, 121, 241 NFE
    (modes 17% too wide at 61), and a 7-mode ring with unequal weights (std 1/100 of the
    spacing) 2.57 -> 10.50 from 41 to 61 NFE. The log-SNR grid is monotone on both and on
    ``sharp_25``, ``eight_gaussians`` and ``high_dim_16`` (22.68, 10.94, 5.05, 2.85, 2.22, 1.39
    on the first), at the price of the low budgets on broad data (``high_dim_16`` at 21 NFE:
    7.44 against 1.39). `RK4` showed no such rise on those targets, but takes ``logsnr`` on
    sub-VP too since narrower modes (std 0.002-0.005) came out too narrow on the uniform grid
    (`RK4.sub_vp_grid`, docs/defaults.md)."""

    def fewest_steps(self, sde: object) -> int:
        """11 on a VE SDE, 5 on sub-VP (any SDE with marginals that is neither VP nor VE), else 4
        (`FixedGridSolver.fewest_steps`): the explicit trapezoid in ``t`` across the VE flow's
        stiff end, and across the last decade of noise where a narrow mode's flow is stiff.
        Samples' median norm over the data's, under VE on its ``uniform_or_logsnr`` grid: one
        Gaussian at (0.3, -0.2) of std 1e-3 / 0.01 / 0.05 1.01 / 1.14 / 1.66 at 10 steps, at most
        1.28 from 11 on (8 modes of std 0.05 / 0.15: 1.30 / 1.44 at 9 steps, at most 1.24 from
        11; on the uniform grid, before, 1.30 / 1.43 at 7, but the Gaussian of std 1e-3 68x at
        7 and 3.6x at 9). Under VP 8 modes of std 0.05 / 0.15 read 4.8 / 1.15 at 1 step, at most
        1.24 / 1.37 from 2 on; under sub-VP (its log-SNR grid) 1.41 / 1.74 at 2 steps, at most
        1.29 / 1.25 from 3 on. One Gaussian at (0.3, -0.2) of std 1e-3 / 0.01 / 0.05: under VP
        1.14 / 2.25 / 2.81 at 3 steps, at most 1.05 from 4 on (cosine VP: 1.76 / 1.22 / 2.38,
        then at most 1.12); under sub-VP 5.18 / 2.92 / 1.76 at 4 steps, at most 1.23 at 5.
        On Song et al.'s VE SDE (geometric noise) the limit is 13: networks trained on 2-D toys
        spread samples further at 11-12 steps (checkerboard / two moons, 2000 training steps:
        1.54 / 1.70 at 11, 1.44 / 1.57 at 12, 1.37 / 1.49 at 13; 600 steps: 1.37 / 1.45 at 13;
        benchmarks/coarse_trained.py)."""
        if has_geometric_noise(sde):
            return 13
        if is_variance_exploding(sde):
            return 11
        return 5 if isinstance(sde, HasMarginals) and not is_variance_preserving(sde) else 4

    def coarse_grid_measure(self, sde: object) -> str:
        return TRAINED_COARSE_GRID_MEASURE if has_geometric_noise(sde) else COARSE_GRID_MEASURE


class RK4(_FixedStepODE):
    """Classic 4th-order Runge–Kutta on the probability-flow ODE (order 4, 4 NFE per step).

    Stages at ``t``, ``t + h/2`` (twice), ``t'``; ``x' = x + h (k1 + 2 k2 + 2 k3 + k4) / 6``
    with ``k = F = f - g^2 s / 2`` (Song et al. 2021, eq. 13).
    """

    order: float = 4.0
    method: ClassVar[str] = "rk4"
    sub_vp_grid: ClassVar[str] = "logsnr"
    """``logsnr`` on sub-VP too, as `Heun`. On sub-VP's uniform grid (sigma/alpha falls like ``t``
    near 0, so the last step spans a factor ``t_1/eps`` of it) the within-mode spread of 8 modes
    of std 0.002 read 9.96, 2.59, 0.69 at 57, 97, 197 NFE and of std 0.005 4.00, 0.35, 1.006 at
    57, 97, 197 (2 seeds): modes 31% / 65% too narrow at budgets where every other SDE is
    converged, and no warning. On the log-SNR grid: 1.06, 1.003, 0.994 and 1.04, 1.002, 0.994;
    on broad targets level from 100 NFE on (``high_dim_16`` at 57 NFE: 1.89 against 1.24 on
    the combined metric; docs/defaults.md)."""

    def fewest_steps(self, sde: object) -> int:
        """6 on a VE SDE, else 3 (`FixedGridSolver.fewest_steps`). Samples' median norm over the
        data's under VE (its ``uniform_or_logsnr`` grid): one Gaussian at (0.3, -0.2) of std
        1e-3 / 0.01 / 0.05 1.03 / 1.04 / 4.32 at 5 steps, at most 1.23 from 6 on (8 modes of std
        0.05 / 0.15: 1.43 / 1.45 at 4 steps, at most 1.09 from 5; on the uniform grid, before,
        1.27 / 1.24 at 4, but the Gaussian of std 1e-3 21x at 4 and 2.9x at 5). Under VP 8 modes
        of std 0.05 / 0.15 read 1.68 / 0.82 at 1 step, at most 1.0 from 2 on. One Gaussian at
        (0.3, -0.2) of std 1e-3 / 0.01: 2.04 / 7.12 at 2 steps under VP (cosine VP 2.04 / 3.11),
        at most 1.10 at 3 and 4 steps; under sub-VP, on its log-SNR grid, at most 1.21 from 2
        steps on (3.31 at 2 steps on the uniform grid it had before). On Song et al.'s VE SDE
        (geometric noise) the limit is 7: networks trained on 2-D toys read 1.47 / 1.58 at 6 steps
        (checkerboard / two moons, 2000 training steps; 1.45 / 1.56 after 600), at most 1.25 from
        7 on (benchmarks/coarse_trained.py)."""
        if has_geometric_noise(sde):
            return 7
        return 6 if is_variance_exploding(sde) else 3

    def coarse_grid_measure(self, sde: object) -> str:
        return TRAINED_COARSE_GRID_MEASURE if has_geometric_noise(sde) else COARSE_GRID_MEASURE
