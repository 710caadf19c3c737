"""The likelihood integrators: one name table, one lookup, one function that integrates a chunk.

Names (case-insensitive; the solver-style spellings `ode_rk45`, `RK45`, `ode_dopri5`, ... are
accepted too):

* `dopri5`, `bosh3`: torch-native embedded Runge–Kutta with error control
  (`solvers.adaptive_ode.solve_adaptive`).
* `rk45`, `dop853`, `rk23`: SciPy's explicit methods (`solvers.scipy_ode.solve_ivp_torch`);
  `rk45` at `1e-5` is the reference code's integrator (Song et al. 2021).
* `rk4_simpson`, `rk4`, `heun`, `euler`: fixed grids. `rk4_simpson`
  (`integrate_rk4_simpson`: RK4 path, Simpson log-density, half the divergences) and
  `solvers.ode.integrate_fixed`'s methods on the augmented state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from solvers.adaptive_ode import solve_adaptive
from solvers.ode import integrate_fixed
from solvers.registry import lookup
from solvers.scipy_ode import solve_ivp_torch
from solvers.step_control import PIDController

from .flow import AugmentedFlow
from .simpson import rk4_simpson_with_path_error
from .state_scale import StateScale

__all__ = ["IntegratorSpec", "INTEGRATOR_TABLE", "resolve_integrator", "integrate_chunk"]

Kind = Literal["adaptive", "scipy", "fixed"]


@dataclass(frozen=True)
class IntegratorSpec:
    """One likelihood integrator.

    Attributes:
        name: canonical name (`"dopri5"`, `"rk45"`, `"rk4_simpson"`, ...).
        kind: `"adaptive"` (torch, error control), `"scipy"` (NumPy, error control) or
            `"fixed"` (a time grid of `steps` intervals).
        method: the backend's name of the method (`"RK45"` for SciPy, `"dopri5"`, `"rk4"`).
        order: global order (fixed grids: the rate `choose_steps` extrapolates with).
    """

    name: str
    kind: Kind
    method: str
    order: int


INTEGRATOR_TABLE: dict[str, IntegratorSpec] = {
    spec.name: spec
    for spec in (
        IntegratorSpec("dopri5", "adaptive", "dopri5", 5),
        IntegratorSpec("bosh3", "adaptive", "bosh3", 3),
        IntegratorSpec("rk45", "scipy", "RK45", 5),
        IntegratorSpec("dop853", "scipy", "DOP853", 8),
        IntegratorSpec("rk23", "scipy", "RK23", 3),
        IntegratorSpec("rk4_simpson", "fixed", "rk4_simpson", 4),
        IntegratorSpec("rk4", "fixed", "rk4", 4),
        IntegratorSpec("heun", "fixed", "heun", 2),
        IntegratorSpec("euler", "fixed", "euler", 1),
    )
}
"""Canonical name -> `IntegratorSpec`, the only list of likelihood integrators."""


def resolve_integrator(name: str) -> IntegratorSpec:
    """The integrator called `name`: canonical (`"rk45"`) or solver-style (`"ode_rk45"`, `"RK45"`).

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    key = name.strip().lower().removeprefix("ode_").removeprefix("scipy_") if isinstance(name, str) else name
    return lookup(INTEGRATOR_TABLE, key, "integrator",
                  hint="solver-style spellings such as 'ode_rk45' or 'RK45' are accepted too")


def integrate_chunk(
    flow: AugmentedFlow, x: Tensor, spec: IntegratorSpec, lo: float, hi: float, ts: Tensor | None,
    tol: tuple[float, float], per_sample: bool = False, controller: PIDController | None = None,
    scale: StateScale | None = None, max_steps: int | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Integrate one chunk `x: (B, *D)` from `lo` to `hi`.

    `scale`: `rk4_simpson` integrates the scaled state `x / r(t)` (`state_scale`).
    `max_steps`: step budget of the adaptive and SciPy integrators (`None`: their defaults).

    Returns:
        `(x_T: (B, *D), l: (B, M), info)` with `l = int_lo^hi div F dt` (unweighted) and the
        integrator's information (accepted/rejected steps, times; for `rk4_simpson` also
        `path_error: (B,)`, its per-sample error indicator, `rk4_simpson_with_path_error`; for
        the torch adaptive pairs `sample_error_rms: (B,)` and `sample_error_max: (B,)`, each
        sample's scaled local error, RMS over the path and largest on one step,
        `solve_adaptive`'s `sample_errors`).
    """
    if spec.kind == "fixed" and ts is None:
        raise ValueError(f"integrator {spec.name!r} needs a time grid")
    if spec.name == "rk4_simpson":
        assert ts is not None
        x_T, delta, path_error = rk4_simpson_with_path_error(flow, x, ts, scale)
        return x_T, delta, {"steps": ts.numel() - 1, "t": ts, "path_error": path_error}
    y0 = flow.pack(x)
    info: dict[str, Any]
    budget: dict[str, Any] = {} if max_steps is None else {"max_steps": max_steps}
    if spec.kind == "adaptive":
        y1, out = solve_adaptive(flow, y0, lo, hi, method=spec.method,  # type: ignore[arg-type]
                                 rtol=tol[0], atol=tol[1], per_sample=per_sample, controller=controller,
                                 relative=flow.relative_weights(y0), sample_errors=True,
                                 goal=flow.answer_sensitivity, **budget)
        info = {k: out[k] for k in ("accepted", "rejected", "t", "sample_error_rms", "sample_error_max")}
    elif spec.kind == "scipy":
        y1, out = solve_ivp_torch(flow, y0, lo, hi, method=spec.method,  # type: ignore[arg-type]
                                  rtol=tol[0], atol=tol[1], **budget)
        info = {k: out[k] for k in ("accepted", "t")}
    else:
        assert ts is not None
        y1 = integrate_fixed(flow, y0, ts, method=spec.method)  # type: ignore[arg-type]
        info = {"steps": ts.numel() - 1, "t": ts}
    x_T, delta = flow.unpack(y1)
    return x_T, delta, info
