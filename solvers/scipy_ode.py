"""Adaptive explicit Runge–Kutta through SciPy (RK45, DOP853, RK23) on a torch state.

* `solve_ivp_torch` integrates any vector field ``fn(t: float, y: Tensor) -> Tensor``
  with the stepper classes behind ``scipy.integrate.solve_ivp`` (``RK45`` = Dormand–Prince
  5(4), ``DOP853`` = Dormand–Prince 8(5,3), ``RK23`` = Bogacki–Shampine 3(2)). The whole batch
  is flattened into one system of ``B * prod(D)`` equations and integrated in float64 NumPy;
  ``fn`` sees tensors of ``y0``'s shape, dtype and device. Stepping the solver object
  ourselves (exactly what ``solve_ivp`` does internally) lets us record states only when
  asked and apply a per-step hook; the visited times and the result equal ``solve_ivp``'s.
* `ScipyODE` (``ode_rk45``; ``ode_dop853`` with ``method="DOP853"``) integrates the
  probability-flow ODE ``dx/dt = f - g^2 s / 2`` (Song et al. 2021, eq. 13) from ``T`` to
  ``eps``; this is the sampler of Song et al.'s reference code (``solve_ivp``, RK45,
  ``rtol = atol = 1e-5``).

The batch shares one step size, chosen by SciPy's error norm ``RMS(err / (atol + rtol |y|))``
over all ``B * prod(D)`` components. NFE is the number of calls of ``fn`` actually made
(SciPy's ``nfev``): RK45 uses 1 + 1 (initial step selection) + 6 per attempted step, DOP853
1 + 1 + 12. Every call is a host round trip (the state lives in NumPy on the CPU), so this
backend suits small and medium states; `solvers.adaptive_ode` is the torch-native one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from .base import DynamicsKind, SolveContext, Solver
from .dynamics import ReverseDynamics
from .inputs import as_real
from .registry import lookup
from .step_control import check_first_step, check_max_steps, check_tolerances

if TYPE_CHECKING:  # imported where a stepper is first needed: `import solvers` stays free of SciPy
    import scipy.integrate

__all__ = ["SCIPY_METHODS", "solve_ivp_torch", "ScipyODE"]

VectorField = Callable[[float, Tensor], Tensor]
Callback = Callable[[float, Tensor], "Tensor | None"]

_ORDERS: Mapping[str, int] = {"RK45": 5, "DOP853": 8, "RK23": 3}


class _Methods(Mapping[str, "tuple[type[scipy.integrate.OdeSolver], int]"]):
    """`SCIPY_METHODS`: imports ``scipy.integrate`` at the first look-up of a stepper class."""

    def __getitem__(self, method: str) -> tuple[type[scipy.integrate.OdeSolver], int]:
        order = _ORDERS[method]
        import scipy.integrate

        classes: dict[str, type[scipy.integrate.OdeSolver]] = {
            "RK45": scipy.integrate.RK45, "DOP853": scipy.integrate.DOP853, "RK23": scipy.integrate.RK23,
        }
        return classes[method], order

    def __iter__(self) -> Iterator[str]:
        return iter(_ORDERS)

    def __len__(self) -> int:
        return len(_ORDERS)


SCIPY_METHODS: Mapping[str, tuple[type[scipy.integrate.OdeSolver], int]] = _Methods()
"""The explicit SciPy methods accepted -> (stepper class, order). Implicit ones (Radau, BDF,
LSODA) are refused: their finite-difference Jacobian would cost ``B * prod(D)`` score
evaluations per step."""

_HINT = "implicit methods need a Jacobian of the whole batch"


def _method(method: str) -> tuple[type[scipy.integrate.OdeSolver], int]:
    return lookup(SCIPY_METHODS, method, "scipy method", hint=_HINT)


def _order(method: str) -> int:
    """The order of ``method`` (same check and message as `_method`), without importing SciPy."""
    return lookup(_ORDERS, method, "scipy method", hint=_HINT)


class _Flat:
    """The torch vector field seen by SciPy: a flat float64 NumPy state, counted calls."""

    def __init__(self, fn: VectorField, like: Tensor) -> None:
        self.fn, self.shape, self.dtype, self.device = fn, like.shape, like.dtype, like.device
        self.nfe = 0

    def to_torch(self, y_np: np.ndarray) -> Tensor:
        # Copy: SciPy re-uses its buffers, the tensor handed to fn must not alias them.
        y = torch.tensor(y_np, dtype=torch.float64).reshape(self.shape)
        return y.to(dtype=self.dtype, device=self.device)

    @staticmethod
    def to_numpy(y: Tensor) -> np.ndarray:
        out: np.ndarray = y.detach().reshape(-1).to("cpu", torch.float64).numpy().copy()
        return out

    def __call__(self, t: float, y_np: np.ndarray) -> np.ndarray:
        self.nfe += 1
        dy = self.fn(float(t), self.to_torch(y_np))
        if not isinstance(dy, Tensor) or dy.shape != self.shape:
            got = tuple(dy.shape) if isinstance(dy, Tensor) else type(dy).__name__
            raise ValueError(f"fn returned shape {got}, expected {tuple(self.shape)}")
        out: np.ndarray = dy.detach().reshape(-1).to("cpu", torch.float64).numpy()
        return out


def solve_ivp_torch(
    fn: VectorField,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    method: Literal["RK45", "DOP853", "RK23"] = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    first_step: float | None = None,
    max_step: float = math.inf,
    max_steps: int = 100_000,
    callback: Callback | None = None,
) -> tuple[Tensor, dict[str, object]]:
    """Integrate ``dy/dt = fn(t, y)`` from ``t0`` to ``t1`` with a SciPy explicit RK method.

    Args:
        fn: vector field ``fn(t: float, y: Tensor) -> Tensor``; ``y`` has the shape, dtype and
            device of ``y0``.
        y0: initial state of any shape (``(B, *D)``), any floating dtype and device.
        t0, t1: start and end times; ``t1 < t0`` integrates backwards.
        method: ``"RK45"``, ``"DOP853"`` or ``"RK23"``.
        rtol, atol: SciPy's relative and absolute tolerances (per component of the flat state).
        first_step: initial ``|h|`` (``None``: SciPy's selection, one extra evaluation).
        max_step: largest allowed ``|h|``.
        max_steps: raise ``RuntimeError`` after this many accepted steps.
        callback: ``callback(t, y)`` after every accepted step (``y`` a tensor like ``y0``).
            If it returns a different tensor, that tensor becomes the state and SciPy's
            solver restarts from it with the last step size (one extra evaluation).

    Returns:
        ``(y1, info)``: the state at ``t1`` (shape, dtype, device of ``y0``) and a dict with
        ``nfe`` (calls of ``fn`` made), ``accepted`` and ``rejected`` (steps) and ``t`` (float64
        tensor of the accepted times, ``t0`` first, ``t1`` last).
    """
    solver_cls, _ = _method(method)
    rtol, atol = check_tolerances(rtol, atol, positive=True)
    if not isinstance(y0, Tensor) or not y0.is_floating_point():
        raise TypeError("y0 must be a floating-point tensor")
    t0, t1 = float(t0), float(t1)
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"t0 and t1 must be finite and distinct, got {t0}, {t1}")
    check_max_steps(max_steps)
    check_first_step(first_step)
    fun = _Flat(fn, y0)

    def start(t: float, y_np: np.ndarray, h: float | None) -> scipy.integrate.OdeSolver:
        # a first step longer than what is left is that step (SciPy refuses it; the torch ones clip too)
        h = None if h is None else min(h, abs(t1 - t))
        return solver_cls(fun, t, y_np, t1, max_step=max_step, rtol=rtol, atol=atol, first_step=h)

    solver = start(t0, fun.to_numpy(y0), first_step)
    times = [t0]
    rejected = 0
    while solver.status == "running":
        if len(times) > max_steps:
            raise RuntimeError(
                f"scipy {method}: max_steps={max_steps} reached at t={solver.t:.6g} of "
                f"[{t0:g}, {t1:g}]; loosen rtol/atol or raise max_steps"
            )
        calls = fun.nfe
        message = solver.step()
        # An attempt makes n_stages calls (FSAL: the last stage's is the next step's first), and
        # one step() makes attempts until one is accepted.
        rejected += max(0, (fun.nfe - calls) // solver_cls.n_stages - 1)
        if solver.status == "failed":
            raise RuntimeError(f"scipy {method} failed at t={solver.t:.6g}: {message}")
        times.append(float(solver.t))
        if callback is None:
            continue
        y_t = fun.to_torch(solver.y)
        new = callback(float(solver.t), y_t)
        if new is not None and new is not y_t and solver.status == "running":
            # The hook replaced the state: restart the integrator from it with the last
            # step size (shortened to the rest of the interval).
            h_next = min(abs(times[-1] - times[-2]), abs(t1 - times[-1]))
            solver = start(times[-1], fun.to_numpy(new), h_next)
        elif new is not None and new is not y_t:
            # Last step: the replaced state is the result.
            solver.y = fun.to_numpy(new)
    info: dict[str, object] = {
        "nfe": fun.nfe,
        "accepted": len(times) - 1,
        "rejected": rejected,
        "t": torch.tensor(times, dtype=torch.float64),
    }
    return fun.to_torch(solver.y), info


class ScipyODE(Solver):
    """Adaptive RK45 (Dormand–Prince 5(4), scipy) on the probability-flow ODE.

    Integrates ``dx/dt = f(x, t) - g(t)^2 s(x, t) / 2`` (Song et al. 2021, eq. 13) from
    ``ts[0]`` to ``ts[-1]`` with `solve_ivp_torch`; the grid gives only the end points.
    ``Solution.times`` holds the accepted times (``T`` first, ``eps`` last),
    ``Solution.stats``: ``integrator_nfe`` (the ODE solve's calls, without the end-of-run step's;
    ``Solution.nfe`` counts every evaluation), ``accepted`` and ``rejected`` steps. The
    trajectory holds the accepted states.
    ``after_step`` restarts SciPy's integrator at every accepted step (+1 NFE each).

    Args:
        method: ``"RK45"`` (default; order 5, 6 NFE per attempted step), ``"DOP853"``
            (Dormand–Prince 8(5,3); order 8, 12 NFE per attempted step, pays off at tight
            tolerances) or ``"RK23"`` (order 3). Sets ``order``.
        rtol, atol: SciPy tolerances (reference code: ``1e-5`` each).
        first_step: initial step size (``None``: SciPy's selection, one extra NFE).
        max_step: largest step size.
        max_steps: maximum number of accepted steps.
    """

    order: float = 5.0
    dynamics_kind: DynamicsKind = "ode"
    adaptive: bool = True

    def __init__(
        self,
        method: Literal["RK45", "DOP853", "RK23"] = "RK45",
        *,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        first_step: float | None = None,
        max_step: float = math.inf,
        max_steps: int = 100_000,
    ) -> None:
        order = _order(method)
        self.method = method
        self.order = float(order)
        self.rtol, self.atol = check_tolerances(rtol, atol, positive=True)
        check_first_step(first_step)
        self.first_step = first_step
        max_step = as_real(max_step, "max_step")
        if not max_step > 0:
            raise ValueError(f"max_step must be positive, got {max_step}")
        self.max_step = float(max_step)
        check_max_steps(max_steps)
        self.max_steps = max_steps

    def diagnose(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        """Import ``scipy.integrate`` (about 2 s the first time in a process) before the solve's
        clock starts, so that ``Solution.seconds`` times the solve, not the import."""
        super().diagnose(dynamics, ctx)
        SCIPY_METHODS[self.method]

    def integrate(self, dynamics: ReverseDynamics, x: Tensor, ctx: SolveContext) -> Tensor:
        """Integrate the PF-ODE from ``x: (B, *D)`` at ``ctx.t_start`` to ``ctx.t_end``."""

        y, info = solve_ivp_torch(
            dynamics.velocity,
            x,
            ctx.t_start,
            ctx.t_end,
            method=self.method,
            rtol=self.rtol,
            atol=self.atol,
            first_step=self.first_step,
            max_step=self.max_step,
            max_steps=self.max_steps,
            callback=ctx.accept if ctx.watches_states else None,
        )
        ctx.visited = info["t"]  # type: ignore[assignment]
        ctx.stats.update(integrator_nfe=info["nfe"], accepted=info["accepted"], rejected=info["rejected"],
                         method=self.method)
        return y
