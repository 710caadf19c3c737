"""Embedded Runge–Kutta pairs with error control, in torch (tableaus in `solvers.tableaus`).

Two levels:

* `solve_adaptive` integrates any vector field ``fn(t: float, y: Tensor) -> Tensor`` from ``t0``
  to ``t1`` (either direction); the sampling solver and the likelihood code (augmented state)
  both use it.
* `AdaptiveODE` (registered as ``ode_dopri5`` and, with ``method="bosh3"``, ``ode_bosh3``)
  integrates the probability-flow ODE from ``T`` to ``eps``.

Counting evaluations of ``fn`` (both tableaus are FSAL)::

    nfe = 1 (f(t0, y0)) + 1 (initial step selection, only when first_step is None)
          + (stages - 1) * (accepted + rejected)  [+ 1 per accepted step whose state a
          callback replaced]

i.e. 6 per attempted step for dopri5 and 3 for bosh3 (a rejected step re-uses ``f(t, y)``).
Step control (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4): `solvers.step_control`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .base import DynamicsKind, SolveContext, Solver
from .dynamics import ReverseDynamics
from .inputs import check_flag
from .step_control import (
    ConstantStepSize,
    MaxStepsExceeded,
    PIDController,
    StepSizeUnderflow,
    check_first_step,
    check_max_steps,
    check_relative,
    check_tolerances,
    goal_squares,
    initial_step,
    rms_norm,
    sample_mean_squares,
    scaled_error,
)
from .tableaus import BOSH3, DOPRI5, TABLEAUS, ButcherTableau, combine, get_tableau, weighted_sum

__all__ = ["ButcherTableau", "DOPRI5", "BOSH3", "TABLEAUS", "solve_adaptive", "AdaptiveODE"]

VectorField = Callable[[float, Tensor], Tensor]
Callback = Callable[[float, Tensor], "Tensor | None"]
Sensitivity = Callable[[float, Tensor, Tensor], Tensor]
"""``goal(t, y, k) -> lambda``: a goal's sensitivity to the state (`solve_adaptive`'s ``goal``)."""


@dataclass
class _Walk:
    """Mutable state of one `solve_adaptive` run."""

    t: float
    y: Tensor
    k1: Tensor
    h: float
    nfe: int = 0
    accepted: int = 0
    rejected: int = 0
    err_prev: float = 1.0
    err_prev2: float = 1.0
    ts: list[float] = field(default_factory=list)
    hs: list[float] = field(default_factory=list)
    sample_squares: Tensor | None = None  # (B,) sum over accepted steps of each sample's MS error
    sample_peak: Tensor | None = None  # (B,) largest over accepted steps of each sample's MS error


def _rk_stages(
    f: VectorField, tab: ButcherTableau, y: Tensor, k1: Tensor, t: float, dt: float, t_new: float
) -> tuple[Tensor, list[Tensor]]:
    """The stages of one attempted step; the last stage input is the new state (FSAL)."""
    ks = [k1]
    y_new = y
    for i in range(1, tab.stages):
        yi = combine(y, tab.a[i], ks, dt)
        last_stage = i == tab.stages - 1
        if last_stage:
            y_new = yi
        ks.append(f(t_new if last_stage else t + tab.c[i] * dt, yi))
    return y_new, ks


def _check_inputs(
    y0: Tensor, t0: float, t1: float, controller: PIDController | ConstantStepSize | None,
    first_step: float | None, max_steps: int, per_sample: bool,
) -> PIDController | ConstantStepSize:
    if not isinstance(y0, Tensor) or not y0.is_floating_point():
        raise TypeError("y0 must be a floating-point tensor")
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"t0 and t1 must be finite, got {t0}, {t1}")
    check_max_steps(max_steps)
    check_first_step(first_step)
    controller = PIDController() if controller is None else controller
    if not isinstance(controller, (PIDController, ConstantStepSize)):
        raise TypeError(f"controller must be a PIDController or ConstantStepSize, got {controller!r}")
    if isinstance(controller, ConstantStepSize) and first_step is None:
        raise ValueError("ConstantStepSize needs first_step (the step size)")
    if per_sample and y0.ndim < 1:
        raise ValueError("per_sample error control needs y0 of shape (B, *D)")
    return controller


def _guard(w: _Walk, h: float, t1: float, t0: float, max_steps: int) -> None:
    if h <= 4.0 * math.ulp(max(abs(w.t), abs(t1))):
        raise StepSizeUnderflow(
            f"step size {h:.3g} underflowed at t={w.t:.6g} (after {w.accepted} accepted and "
            f"{w.rejected} rejected steps); the problem may be stiff or fn non-finite"
        )
    if w.accepted + w.rejected >= max_steps:
        raise MaxStepsExceeded(
            f"max_steps={max_steps} reached at t={w.t:.6g} of [{t0:g}, {t1:g}] "
            f"({w.accepted} accepted, {w.rejected} rejected); loosen rtol/atol or raise max_steps"
        )


def _walk(
    w: _Walk, f: VectorField, tab: ButcherTableau, t0: float, t1: float, pid: PIDController | None,
    max_steps: int, tol: tuple[float, float, bool, Tensor | None, bool], callback: Callback | None,
    goal: Sensitivity | None = None,
) -> None:
    """Attempt steps until the walk lands on ``t1`` (accepting, rejecting, resizing ``h``)."""
    rtol, atol, per_sample, relative, track = tol
    weights: tuple[float, Tensor] | None = None  # the goal's sensitivity at the step's start
    direction = 1.0 if t1 > t0 else -1.0
    max_step = None if pid is None else pid.max_step
    while True:
        # Clip the step so that it lands exactly on t1 (a step within a relative 1e-9 of
        # the rest is stretched to it, so rounding never leaves a sliver of an interval).
        remaining = abs(t1 - w.t)
        last = w.h * (1.0 + 1e-9) >= remaining
        if last:
            w.h = remaining
        _guard(w, w.h, t1, t0, max_steps)
        dt = direction * w.h
        t_new = t1 if last else w.t + dt
        y_new, ks = _rk_stages(f, tab, w.y, w.k1, w.t, dt, t_new)
        err, accept, factor = math.nan, True, 1.0
        if pid is not None:
            # Error estimate of the embedded pair and the accept/reject decision (one sync).
            local = weighted_sum(tab.e, ks, dt)
            scaled = scaled_error(local, w.y, y_new, rtol, atol, relative=relative)
            norm = rms_norm(scaled, per_sample=per_sample)
            goal_sq = None
            if goal is not None:
                if weights is None or weights[0] != w.t:
                    weights = (w.t, goal(w.t, w.y, w.k1))
                goal_sq = goal_squares(local, weights[1], atol, w.y)
                norm = torch.maximum(norm, (goal_sq.max() if per_sample else goal_sq.mean()).sqrt())
            err = float(norm.detach())  # the step's one host synchronisation
            accept = math.isfinite(err) and err <= 1.0
            factor = pid.factor(err, w.err_prev, w.err_prev2, tab.error_order, accept)
            if accept and track:
                sq = sample_mean_squares(scaled.detach())
                if goal_sq is not None:
                    sq = torch.maximum(sq, goal_sq.detach())
                w.sample_squares = sq if w.sample_squares is None else w.sample_squares + sq
                w.sample_peak = sq if w.sample_peak is None else torch.maximum(w.sample_peak, sq)
        if accept:
            _accept(w, t_new, dt, y_new, ks[-1], err, pid is not None, callback, f, last)
            if last:
                return
        else:
            w.rejected += 1
        if pid is not None:
            w.h = w.h * factor if max_step is None else min(w.h * factor, max_step)
        if not (w.h > 0 and math.isfinite(w.h)):
            raise StepSizeUnderflow(f"step size became {w.h} at t={w.t:.6g}")


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
    relative: Tensor | None = None,
    sample_errors: bool = False,
    goal: Sensitivity | None = None,
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
            Required for `ConstantStepSize`.
        max_steps: raise `MaxStepsExceeded` after this many
            attempted (accepted + rejected) steps.
        controller: `PIDController` (default: integral-only,
            safety 0.9, factors in [0.2, 10]) or ``ConstantStepSize()`` (no error control).
        per_sample: error norm per sample (RMS over the non-batch dims of ``(B, *D)``), then
            the maximum over the batch, instead of one RMS over the whole batch. The batch
            shares the step either way; per-sample control keeps one hard sample from being
            averaged away by many easy ones.
        callback: ``callback(t, y)`` after every accepted step (and at ``t0``). If it returns
            a tensor, that tensor replaces the state and ``fn`` is re-evaluated (+1 NFE).
        relative: per-entry weights of ``rtol``, broadcastable to ``y0`` without enlarging it
            (``None``: 1). Entries of weight 0 are held to ``atol`` alone: quadratures, i.e.
            integrals carried along in the state (the log-density of a likelihood solve),
            whose accumulated size says nothing about the error one step may add (SUNDIALS'
            CVODES keeps such variables under tolerances of their own for this reason).
        sample_errors: also return each sample's error over the path, ``info["sample_error_rms"]``
            of shape ``(B,)``: the RMS over the accepted steps of its scaled error norm (RMS
            over its own entries, as ``per_sample`` measures it). Under the batch norm one
            sample may take up to ``sqrt(B)`` times the tolerance on a step while the others are
            exact; this says which samples did, and by how much (needs ``y0: (B, *D)``).
            ``info["sample_error_max"]``, ``(B,)``: the largest of that norm over the accepted
            steps (at most ``sqrt(B)``; a sample near it held a step's whole error norm).
        goal: goal-oriented error control for a solve that serves one scalar per sample
            (Cao & Petzold 2004; the dual-weighted residual of Becker & Rannacher 2001).
            ``goal(t, y, k) -> lambda``, with ``k = fn(t, y)`` and ``lambda`` broadcastable
            to ``y: (B, *D)``: the sensitivity of each sample's scalar to the state at ``t``
            (the adjoint). A step's local error ``err`` changes that scalar by
            ``e = sum(lambda * err)`` over each sample's entries, and the step is accepted
            only if also ``RMS_B(e) <= atol`` (the largest ``|e|`` with ``per_sample``): the
            error norm is the larger of the two. Evaluated once per accepted step, from its
            start (no extra evaluations of ``fn``); it enters ``sample_error_rms`` and
            ``sample_error_max`` the same way (the larger of the two per step). The
            likelihood uses it with the score as ``lambda``: ``rtol |x|`` on the state is loose
            where the density is much narrower than ``|x|``.

    Returns:
        ``(y1, info)``: the state at ``t1`` and a dict with ``nfe`` (evaluations of ``fn``),
        ``accepted``, ``rejected``, ``t`` (float64 tensor of accepted times, ``t0`` first,
        ``t1`` last), ``h`` (float64 tensor of accepted step sizes, signed) and, with
        ``sample_errors=True``, ``sample_error_rms`` and ``sample_error_max``.

    One host synchronisation per attempted step (the accept/reject decision); none with
    ``ConstantStepSize``. Differentiable through the tensors if ``fn`` is (the step sizes
    are treated as constants).
    """
    tab = get_tableau(method)
    rtol, atol = check_tolerances(rtol, atol)
    t0, t1 = float(t0), float(t1)
    control = _check_inputs(y0, t0, t1, controller, first_step, max_steps, per_sample)
    relative = check_relative(relative, y0)
    pid = control if isinstance(control, PIDController) else None
    if sample_errors and y0.ndim < 1:
        raise ValueError("sample_errors needs y0 of shape (B, *D)")
    if goal is not None and (not callable(goal) or y0.ndim < 1):
        raise ValueError("goal must be a callable goal(t, y, k) -> weights, with y0 of shape (B, *D)")
    if t0 == t1:
        return y0, {"nfe": 0, "accepted": 0, "rejected": 0, "t": torch.tensor([t0], dtype=torch.float64),
                    "h": torch.zeros(0, dtype=torch.float64),
                    **({"sample_error_rms": y0.new_zeros(y0.shape[0]),
                         "sample_error_max": y0.new_zeros(y0.shape[0])} if sample_errors else {})}
    direction = 1.0 if t1 > t0 else -1.0
    max_step = None if pid is None else pid.max_step
    count = [0]  # evaluations of fn

    def f(t: float, y: Tensor) -> Tensor:
        count[0] += 1
        return fn(t, y)

    y = y0
    if callback is not None:
        new = callback(t0, y)
        y = y if new is None else new
    k1 = f(t0, y)
    span = abs(t1 - t0) if max_step is None else min(abs(t1 - t0), max_step)
    h = (initial_step(f, t0, y, k1, direction, tab.order, rtol, atol, max_h=span, per_sample=per_sample,
                      relative=relative) if first_step is None else float(first_step))
    w = _Walk(t=t0, y=y, k1=k1, h=h if max_step is None else min(h, max_step), ts=[t0])
    _walk(w, f, tab, t0, t1, pid, max_steps, (rtol, atol, per_sample, relative, sample_errors), callback, goal)
    info: dict[str, object] = {
        "nfe": count[0],
        "accepted": w.accepted,
        "rejected": w.rejected,
        "t": torch.tensor(w.ts, dtype=torch.float64),
        "h": torch.tensor(w.hs, dtype=torch.float64),
    }
    if sample_errors:
        # Without error control (ConstantStepSize) nothing was measured: zeros.
        sq = w.sample_squares if w.sample_squares is not None else y0.new_zeros(y0.shape[0])
        info["sample_error_rms"] = (sq / max(w.accepted, 1)).sqrt()
        peak = w.sample_peak if w.sample_peak is not None else y0.new_zeros(y0.shape[0])
        info["sample_error_max"] = peak.sqrt()
    return w.y, info


def _accept(
    w: _Walk, t_new: float, dt: float, y_new: Tensor, k_new: Tensor, err: float, controlled: bool,
    callback: Callback | None, f: VectorField, last: bool,
) -> None:
    """Move the walk to the accepted step; a callback that replaces the state re-evaluates ``f``."""
    w.accepted += 1
    w.t, w.y, w.k1 = t_new, y_new, k_new
    w.ts.append(t_new)
    w.hs.append(dt)
    if controlled:
        w.err_prev2, w.err_prev = w.err_prev, max(err, 1e-10)
    if callback is not None:
        new = callback(t_new, w.y)
        if new is not None and new is not w.y:
            w.y = new
            if not last:
                w.k1 = f(t_new, w.y)


class AdaptiveODE(Solver):
    """Adaptive embedded Runge–Kutta (Dormand–Prince 5(4) by default) on the probability-flow ODE.

    Integrates ``dx/dt = f(x, t) - g(t)^2 s(x, t) / 2`` (Song et al. 2021, eq. 13) from
    ``ts[0]`` down to ``ts[-1]`` with `solve_adaptive` and PID step control; the grid gives only
    the end points. ``Solution.times`` holds the accepted times, ``Solution.stats`` the counts
    ``accepted``, ``rejected`` and the accepted step sizes ``h``. Needs only the SDE's drift and
    diffusion.

    Args:
        method: ``"dopri5"`` (default; order 5, 6 NFE per attempted step) or ``"bosh3"``
            (Bogacki–Shampine 3(2); order 3, 3 NFE per attempted step, cheaper at loose
            tolerances). Sets ``order``.
        rtol, atol: tolerances of the mixed error norm (see `solve_adaptive`).
        per_sample: per-sample error norms (max over the batch) instead of one batch RMS.
        controller: a `solvers.step_control.PIDController` (default integral-only).
        first_step: initial step size (``None``: Hairer–Wanner selection, one extra NFE).
        max_steps: maximum number of attempted steps.
    """

    order: float = 5.0
    dynamics_kind: DynamicsKind = "ode"
    adaptive: bool = True

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
        self.tableau = get_tableau(method)
        self.order = float(self.tableau.order)
        self.rtol, self.atol = check_tolerances(rtol, atol)
        self.per_sample = check_flag(per_sample, "per_sample")
        if controller is not None and not isinstance(controller, PIDController):
            raise TypeError(f"controller must be a PIDController, got {type(controller).__name__}")
        self.controller = controller
        check_first_step(first_step)
        self.first_step = first_step
        check_max_steps(max_steps)
        self.max_steps = max_steps

    def integrate(self, dynamics: ReverseDynamics, x: Tensor, ctx: SolveContext) -> Tensor:
        """Integrate the PF-ODE from ``x: (B, *D)`` at ``ctx.t_start`` to ``ctx.t_end``."""

        def callback(t: float, y: Tensor) -> Tensor | None:
            # The start state is recorded by Solver.solve; every accepted step goes to ctx.
            return None if t == ctx.t_start else ctx.accept(t, y)

        y, info = solve_adaptive(
            dynamics.velocity,
            x,
            ctx.t_start,
            ctx.t_end,
            method=self.tableau,
            rtol=self.rtol,
            atol=self.atol,
            first_step=self.first_step,
            max_steps=self.max_steps,
            controller=self.controller,
            per_sample=self.per_sample,
            callback=callback if ctx.watches_states else None,
        )
        ctx.visited = info["t"]  # type: ignore[assignment]
        ctx.stats.update(
            accepted=info["accepted"], rejected=info["rejected"], h=info["h"], method=self.tableau.name
        )
        return y
