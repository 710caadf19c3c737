"""Embedded Runge–Kutta pairs with error control, in torch: Dormand–Prince 5(4) and Bogacki–Shampine 3(2).

Two levels:

* :func:`solve_adaptive` integrates any vector field ``fn(t: float, y: Tensor) -> Tensor``
  from ``t0`` to ``t1`` (either direction); the sampling solver and the likelihood code
  (augmented state) both use it.
* :class:`AdaptiveODE` (registered as ``ode_dopri5``) and :class:`AdaptiveBosh3`
  (``ode_bosh3``) integrate the probability-flow ODE from ``T`` to ``eps``.

Both tableaus are FSAL ("first same as last"): the last stage is evaluated at the new
state, so it is the first stage of the next step. Counting evaluations of ``fn``::

    nfe = 1 (f(t0, y0)) + 1 (initial step selection, only when first_step is None)
          + (stages - 1) * (accepted + rejected)  [+ 1 per accepted step whose state a
          callback replaced]

i.e. 6 per attempted step for dopri5 and 3 for bosh3 (a rejected step re-uses ``f(t, y)``).
Dormand & Prince (1980), "A family of embedded Runge–Kutta formulae"; Bogacki & Shampine
(1989), "A 3(2) pair of Runge–Kutta formulas". Step control: :mod:`solvers.step_control`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from .base import AfterStep, Solver, TrajectoryRecorder
from .dynamics import ReverseDynamics
from .grids import check_grid
from .noise import NoiseSource
from .result import Solution
from .step_control import (
    ConstantStepSize,
    MaxStepsExceeded,
    PIDController,
    StepSizeUnderflow,
    check_first_step,
    check_max_steps,
    check_tolerances,
    initial_step,
    scaled_error_norm,
)
from .utils import batch_time

__all__ = [
    "ButcherTableau",
    "DOPRI5",
    "BOSH3",
    "TABLEAUS",
    "solve_adaptive",
    "AdaptiveODE",
    "AdaptiveBosh3",
]

VectorField = Callable[[float, Tensor], Tensor]
Callback = Callable[[float, Tensor], "Tensor | None"]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit FSAL embedded pair.

    Attributes:
        c: ``(s,)`` nodes.
        a: lower-triangular rows ``a[i] = (a_i0, ..., a_i,i-1)``; the last row equals ``b``
            (FSAL: the last stage is ``f`` at the new state).
        b: ``(s,)`` weights of the propagated (higher-order) solution.
        e: ``(s,)`` ``b - b_hat``: the error estimate is ``h * sum_i e_i k_i``.
        order: order of the propagated solution.
        error_order: order of the embedded solution plus one (the exponent ``1/k`` of the
            step-size controller).
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    order: int
    error_order: int

    @property
    def stages(self) -> int:
        return len(self.c)


def _pair(name: str, c, a, b, b_hat, order: int, error_order: int) -> ButcherTableau:
    e = tuple(bi - bh for bi, bh in zip(b, b_hat, strict=True))
    tab = ButcherTableau(name, tuple(c), tuple(tuple(r) for r in a), tuple(b), e, order, error_order)
    assert tab.a[-1] == tuple(b[:-1]), "FSAL tableau: last row of a must equal b"
    return tab


# Dormand & Prince (1980), Table 2 (RK5(4)7M); also Hairer–Nørsett–Wanner I, Table II.5.2.
DOPRI5 = _pair(
    "dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    b_hat=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    order=5,
    error_order=5,
)

# Bogacki & Shampine (1989): third-order solution, second-order embedded estimate.
BOSH3 = _pair(
    "bosh3",
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_hat=(7 / 24, 1 / 4, 1 / 3, 1 / 8),
    order=3,
    error_order=3,
)

TABLEAUS: dict[str, ButcherTableau] = {"dopri5": DOPRI5, "bosh3": BOSH3}


def _get_tableau(method: str | ButcherTableau) -> ButcherTableau:
    if isinstance(method, ButcherTableau):
        return method
    try:
        return TABLEAUS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(TABLEAUS)}") from None


def _combine(y: Tensor, coeffs: tuple[float, ...], ks: list[Tensor], dt: float) -> Tensor:
    """``y + dt * sum_j coeffs_j k_j`` (zero coefficients skipped); ``y`` is not modified."""
    out: Tensor | None = None
    for cj, kj in zip(coeffs, ks, strict=False):
        if cj == 0.0:
            continue
        out = torch.add(y, kj, alpha=dt * cj) if out is None else out.add_(kj, alpha=dt * cj)
    return y.clone() if out is None else out


def _weighted_sum(coeffs: tuple[float, ...], ks: list[Tensor], dt: float) -> Tensor:
    """``dt * sum_j coeffs_j k_j``."""
    out: Tensor | None = None
    for cj, kj in zip(coeffs, ks, strict=True):
        if cj == 0.0:
            continue
        out = kj * (dt * cj) if out is None else out.add_(kj, alpha=dt * cj)
    assert out is not None
    return out


def solve_adaptive(
    fn: VectorField,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    method: Literal["dopri5", "bosh3"] | ButcherTableau = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    first_step: float | None = None,
    max_steps: int = 10_000,
    controller: PIDController | ConstantStepSize | None = None,
    per_sample: bool = False,
    callback: Callback | None = None,
) -> tuple[Tensor, dict[str, object]]:
    """Integrate ``dy/dt = fn(t, y)`` from ``t0`` to ``t1`` with an embedded RK pair.

    Args:
        fn: vector field ``fn(t: float, y: Tensor) -> Tensor`` of the shape of ``y``.
        y0: initial state, any shape (``(B, *D)`` for ``per_sample=True``), any float dtype.
        t0, t1: start and end times; ``t1 < t0`` integrates backwards.
        method: ``"dopri5"`` (5th order, 7 FSAL stages) or ``"bosh3"`` (3rd order, 4 stages).
        rtol, atol: tolerances of the scaled error
            ``RMS(|err| / (atol + rtol * max(|y|, |y_new|)))`` (accepted when ``<= 1``).
        first_step: initial ``|h|``; ``None`` selects it as Hairer–Wanner (one extra NFE).
            Required for :class:`~solvers.step_control.ConstantStepSize`.
        max_steps: raise :class:`~solvers.step_control.MaxStepsExceeded` after this many
            attempted (accepted + rejected) steps.
        controller: :class:`~solvers.step_control.PIDController` (default: integral-only,
            safety 0.9, factors in [0.2, 10]) or ``ConstantStepSize()`` (no error control).
        per_sample: error norm per sample (RMS over the non-batch dims of ``(B, *D)``), then
            the maximum over the batch, instead of one RMS over the whole batch. The batch
            shares the step either way; per-sample control keeps one hard sample from being
            averaged away by many easy ones.
        callback: ``callback(t, y)`` after every accepted step (and at ``t0``). If it returns
            a tensor, that tensor replaces the state and ``fn`` is re-evaluated (+1 NFE).

    Returns:
        ``(y1, info)``: the state at ``t1`` and a dict with ``nfe`` (evaluations of ``fn``),
        ``accepted``, ``rejected``, ``t`` (float64 tensor of accepted times, ``t0`` first,
        ``t1`` last) and ``h`` (float64 tensor of accepted step sizes, signed).

    One host synchronisation per attempted step (the accept/reject decision); none with
    ``ConstantStepSize``. Differentiable through the tensors if ``fn`` is (the step sizes
    are treated as constants).
    """
    tab = _get_tableau(method)
    rtol, atol = check_tolerances(rtol, atol)
    if not isinstance(y0, Tensor) or not y0.is_floating_point():
        raise TypeError("y0 must be a floating-point tensor")
    t0, t1 = float(t0), float(t1)
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"t0 and t1 must be finite, got {t0}, {t1}")
    check_max_steps(max_steps)
    check_first_step(first_step)
    controller = PIDController() if controller is None else controller
    if not isinstance(controller, (PIDController, ConstantStepSize)):
        raise TypeError(f"controller must be a PIDController or ConstantStepSize, got {controller!r}")
    fixed = isinstance(controller, ConstantStepSize)
    if fixed and first_step is None:
        raise ValueError("ConstantStepSize needs first_step (the step size)")
    if per_sample and y0.ndim < 1:
        raise ValueError("per_sample error control needs y0 of shape (B, *D)")

    nfe = 0

    def f(t: float, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return fn(t, y)

    ts, hs = [t0], []
    if t0 == t1:
        return y0, {"nfe": 0, "accepted": 0, "rejected": 0, "t": torch.tensor(ts, dtype=torch.float64),
                    "h": torch.zeros(0, dtype=torch.float64)}
    direction = 1.0 if t1 > t0 else -1.0
    max_step = None if fixed else controller.max_step  # type: ignore[union-attr]

    y = y0
    if callback is not None:
        new = callback(t0, y)
        y = y if new is None else new
    k1 = f(t0, y)
    if first_step is None:
        h = initial_step(
            f, t0, y, k1, direction, tab.order, rtol, atol,
            max_h=abs(t1 - t0) if max_step is None else min(abs(t1 - t0), max_step),
            per_sample=per_sample,
        )
    else:
        h = float(first_step)
    if max_step is not None:
        h = min(h, max_step)

    t = t0
    accepted = rejected = 0
    err_prev = err_prev2 = 1.0
    while True:
        # Clip the step so that it lands exactly on t1 (a step within a relative 1e-9 of
        # the rest is stretched to it, so rounding never leaves a sliver of an interval).
        remaining = abs(t1 - t)
        last = h * (1.0 + 1e-9) >= remaining
        if last:
            h = remaining
        if h <= 4.0 * math.ulp(max(abs(t), abs(t1))):
            raise StepSizeUnderflow(
                f"step size {h:.3g} underflowed at t={t:.6g} (after {accepted} accepted and "
                f"{rejected} rejected steps); the problem may be stiff or fn non-finite"
            )
        if accepted + rejected >= max_steps:
            raise MaxStepsExceeded(
                f"max_steps={max_steps} reached at t={t:.6g} of [{t0:g}, {t1:g}] "
                f"({accepted} accepted, {rejected} rejected); loosen rtol/atol or raise max_steps"
            )
        dt = direction * h
        t_new = t1 if last else t + dt

        # Runge–Kutta stages; the last stage input is the new state (FSAL).
        ks = [k1]
        for i in range(1, tab.stages):
            yi = _combine(y, tab.a[i], ks, dt)
            ti = t_new if i == tab.stages - 1 else t + tab.c[i] * dt
            if i == tab.stages - 1:
                y_new = yi
            ks.append(f(ti, yi))

        if fixed:
            accept, factor = True, 1.0
        else:
            # Error estimate of the embedded pair and the accept/reject decision (one sync).
            err_vec = _weighted_sum(tab.e, ks, dt)
            err = float(scaled_error_norm(err_vec, y, y_new, rtol, atol, per_sample=per_sample))
            accept = math.isfinite(err) and err <= 1.0
            factor = controller.factor(  # type: ignore[union-attr]
                err, err_prev, err_prev2, tab.error_order, accept
            )

        if accept:
            accepted += 1
            t, y, k1 = t_new, y_new, ks[-1]
            ts.append(t)
            hs.append(dt)
            if not fixed:
                err_prev2, err_prev = err_prev, max(err, 1e-10)
            if callback is not None:
                new = callback(t, y)
                if new is not None and new is not y:
                    y = new
                    if not last:
                        k1 = f(t, y)
            if last:
                break
        else:
            rejected += 1
        if not fixed:
            h = h * factor
            if max_step is not None:
                h = min(h, max_step)
        if not (h > 0 and math.isfinite(h)):
            raise StepSizeUnderflow(f"step size became {h} at t={t:.6g}")

    info: dict[str, object] = {
        "nfe": nfe,
        "accepted": accepted,
        "rejected": rejected,
        "t": torch.tensor(ts, dtype=torch.float64),
        "h": torch.tensor(hs, dtype=torch.float64),
    }
    return y, info


class AdaptiveODE(Solver):
    """Adaptive Dormand–Prince 5(4) on the probability-flow ODE with PID step control.

    Integrates ``dx/dt = f(x, t) - g(t)^2 s(x, t) / 2`` (Song et al. 2021, eq. 13) from
    ``ts[0]`` down to ``ts[-1]`` with :func:`solve_adaptive`; the grid gives only the end
    points. ``Solution.times`` holds the accepted times, ``Solution.stats`` the counts
    ``accepted``, ``rejected`` and the accepted step sizes ``h``.

    Args:
        method: ``"dopri5"`` (default here) or ``"bosh3"``. The class attribute ``order``
            describes the class's default method; ``solver.tableau.order`` the instance's.
        rtol, atol: tolerances of the mixed error norm (see :func:`solve_adaptive`).
        per_sample: per-sample error norms (max over the batch) instead of one batch RMS.
        controller: a :class:`~solvers.step_control.PIDController` (default integral-only).
        first_step: initial step size (``None``: Hairer–Wanner selection, one extra NFE).
        max_steps: maximum number of attempted steps.
    """

    order: ClassVar[float] = 5.0
    dynamics_kind: ClassVar[Literal["ode", "sde", "any"]] = "ode"
    adaptive: ClassVar[bool] = True

    def __init__(
        self,
        method: Literal["dopri5", "bosh3"] = "dopri5",
        *,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        per_sample: bool = False,
        controller: PIDController | None = None,
        first_step: float | None = None,
        max_steps: int = 10_000,
    ) -> None:
        self.method = method
        self.tableau = _get_tableau(method)
        self.rtol, self.atol = check_tolerances(rtol, atol)
        self.per_sample = bool(per_sample)
        if controller is not None and not isinstance(controller, PIDController):
            raise TypeError(f"controller must be a PIDController, got {type(controller).__name__}")
        self.controller = controller
        check_first_step(first_step)
        self.first_step = first_step
        check_max_steps(max_steps)
        self.max_steps = max_steps

    def solve(
        self,
        dynamics: ReverseDynamics,
        x: Tensor,
        ts: Tensor,
        *,
        noise: NoiseSource | None = None,
        generator: torch.Generator | None = None,
        keep_trajectory: bool = False,
        max_frames: int | None = 101,
        after_step: AfterStep | None = None,
    ) -> Solution:
        """Integrate the PF-ODE from ``x: (B, *D)`` at ``ts[0]`` to ``ts[-1]`` (``noise`` unused)."""
        self.check_dynamics(dynamics)
        grid = check_grid(ts, dynamics.sde)
        t_start, t_end = float(grid[0]), float(grid[-1])
        rec = TrajectoryRecorder(keep_trajectory, None, None)
        frame = [0]

        def field(t: float, y: Tensor) -> Tensor:
            # Reverse drift F(x, t) = f - g^2 s / 2 at one time for the whole batch.
            return dynamics.drift(y, batch_time(t, y))

        def callback(t: float, y: Tensor) -> Tensor | None:
            if after_step is not None and t != t_start:
                y = after_step(y, batch_time(t, y))
            rec.add(frame[0], t, y)
            frame[0] += 1
            return y

        use_cb = keep_trajectory or after_step is not None
        nfe0 = dynamics.nfe
        start = time.perf_counter()
        with torch.no_grad():
            y, info = solve_adaptive(
                field,
                x,
                t_start,
                t_end,
                method=self.tableau,
                rtol=self.rtol,
                atol=self.atol,
                first_step=self.first_step,
                max_steps=self.max_steps,
                controller=self.controller,
                per_sample=self.per_sample,
                callback=callback if use_cb else None,
            )
        if y.is_cuda:
            torch.cuda.synchronize(y.device)
        seconds = time.perf_counter() - start
        traj, traj_t = rec.result()
        if traj is not None and max_frames is not None and traj.shape[0] > max_frames:
            if max_frames < 2:
                raise ValueError("max_frames must be at least 2")
            keep = torch.linspace(0, traj.shape[0] - 1, max_frames).round().long()
            traj, traj_t = traj[keep], traj_t[keep] if traj_t is not None else None
        return Solution(
            samples=y,
            nfe=dynamics.nfe - nfe0,
            times=info["t"],  # type: ignore[arg-type]
            trajectory=traj,
            trajectory_times=traj_t,
            seconds=seconds,
            stats={
                "accepted": info["accepted"],
                "rejected": info["rejected"],
                "h": info["h"],
                "method": self.tableau.name,
            },
        )


class AdaptiveBosh3(AdaptiveODE):
    """Adaptive Bogacki–Shampine 3(2) on the probability-flow ODE with PID step control.

    :class:`AdaptiveODE` with ``method="bosh3"`` as default: 3rd order, 4 FSAL stages
    (3 NFE per attempted step). Cheaper per step than dopri5 at loose tolerances.
    """

    order: ClassVar[float] = 3.0

    def __init__(
        self,
        method: Literal["dopri5", "bosh3"] = "bosh3",
        *,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        per_sample: bool = False,
        controller: PIDController | None = None,
        first_step: float | None = None,
        max_steps: int = 10_000,
    ) -> None:
        super().__init__(
            method,
            rtol=rtol,
            atol=atol,
            per_sample=per_sample,
            controller=controller,
            first_step=first_step,
            max_steps=max_steps,
        )
