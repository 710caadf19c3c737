"""Step-size control shared by the adaptive solvers: error norms, PID controller, first step.

The scaled error of a step (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4, eq. 4.11)::

    err = RMS_i( |e_i| / (atol + rtol * max(|y_i|, |y_new_i|)) )

is compared with 1: a step is accepted when ``err <= 1``. The next step is
``h_new = h * clip(safety * err_n^(-b1) * err_{n-1}^(-b2) * err_{n-2}^(-b3), fmin, fmax)``
with ``b1 = (kP + kI + kD)/k``, ``b2 = -(kP + 2 kD)/k``, ``b3 = kD/k`` (Söderlind 2002/2003,
"Digital filters in adaptive time-stepping"; the parameterisation of diffrax's
``PIDController``) and ``k`` the error order (the order of the embedded estimate plus one).
``kI = 1, kP = kD = 0`` is the classic integral (elementary) controller.

`initial_step` chooses the first step (ibid., p. 169); `goal_squares` is the error of a goal
(a functional of the state, e.g. the likelihood's answer) that the step control also holds.

All norms here return a 0-d tensor; the caller turns it into a Python float once per step,
which is the only host synchronisation an adaptive step needs (the accept/reject decision).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .dynamics import NonFiniteScoreError

__all__ = [
    "PIDController",
    "ConstantStepSize",
    "MaxStepsExceeded",
    "StepSizeUnderflow",
    "check_tolerances",
    "check_max_steps",
    "check_first_step",
    "check_relative",
    "scaled_error",
    "scaled_error_norm",
    "sample_mean_squares",
    "rms_norm",
    "initial_step",
    "goal_squares",
    "GOAL_ROUNDING_ULPS",
]


class MaxStepsExceeded(RuntimeError):
    """An adaptive solve needed more than ``max_steps`` attempted steps."""


class StepSizeUnderflow(RuntimeError):
    """The step size fell below the floating-point resolution of the time variable."""


def check_tolerances(rtol: float, atol: float, *, positive: bool = False) -> tuple[float, float]:
    """Validate ``rtol, atol``: finite, non-negative, not both zero, ``rtol < 1``.

    Args:
        rtol, atol: the tolerances.
        positive: both must be strictly positive (SciPy's steppers need that).

    Raises:
        TypeError: not a number.
        ValueError: out of range.
    """
    for name, v in (("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(v).__name__}")
        if positive and not (math.isfinite(v) and v > 0):
            raise ValueError(f"rtol and atol must be positive and finite, got rtol={rtol}, atol={atol}")
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol cannot both be 0")
    if rtol >= 1:
        raise ValueError(f"rtol must be < 1 (a relative tolerance), got {rtol}")
    return float(rtol), float(atol)


def check_max_steps(max_steps: int) -> int:
    """Validate the step budget of an adaptive solver: a positive integer."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    return max_steps


def check_first_step(first_step: float | None) -> float | None:
    """Validate an optional initial step size: ``None`` or positive and finite."""
    if first_step is not None and not (math.isfinite(first_step) and first_step > 0):
        raise ValueError(f"first_step must be a positive finite step size, got {first_step}")
    return None if first_step is None else float(first_step)


def rms_norm(v: Tensor, *, per_sample: bool = False) -> Tensor:
    """Root mean square of ``v``, a 0-d tensor.

    ``per_sample=False``: RMS over every element of the batch. ``per_sample=True``: RMS over
    the non-batch dims of each sample ``v: (B, *D)``, then the maximum over the batch, so the
    step is accepted only if it is accurate enough for every sample (the batch still shares
    one step size).
    """
    if not per_sample:
        return v.pow(2).mean().sqrt()
    if v.ndim < 1:
        raise ValueError("per_sample error control needs a batch dimension (B, *D)")
    return v.reshape(v.shape[0], -1).pow(2).mean(dim=1).sqrt().max()


ROUNDING_ULPS = 4.0
"""A step's error in an entry held without a relative tolerance (`scaled_error`) is never asked
to be below this many units of the dtype's rounding (machine epsilon) of the entry: in float64
a no-op (8.9e-16 relative), in float32 it binds only where ``atol`` is below 4.8e-7 of the
entry's size (a log-density beyond 21 nats at ``atol = 1e-5``)."""


def scaled_error(
    err: Tensor, y: Tensor, y_new: Tensor, rtol: float, atol: float, *, relative: Tensor | None = None,
) -> Tensor:
    """``|err| / (atol + rtol * rel * max(|y|, |y_new|))`` entry by entry, the shape of ``err``.

    ``relative``: per-entry weight ``rel`` of the relative term, broadcastable to ``y``
    (``None``: 1 everywhere). An entry with weight 0 is held to ``atol`` alone, as a quadrature
    should be (an accumulated integral such as a log-density: its size says nothing about the
    error one step may add, and a relative bound on it lets every step add ``rtol |y|``),
    but never below `ROUNDING_ULPS` units of the dtype's rounding of the entry: the error
    estimate of a step cannot resolve less (a log-density of -4e5 at a far-off point moves by
    0.03 per float32 addition; held to ``atol = 1e-5`` the step size shrank until ``max_steps``).
    """
    mag = torch.maximum(y.abs(), y_new.abs())
    if relative is not None:
        floor = ROUNDING_ULPS * torch.finfo(mag.dtype).eps
        return err / (mag * (relative * rtol + floor)).add_(atol)
    return err / mag.mul_(rtol).add_(atol)


def scaled_error_norm(
    err: Tensor, y: Tensor, y_new: Tensor, rtol: float, atol: float, *, per_sample: bool = False,
    relative: Tensor | None = None,
) -> Tensor:
    """``RMS`` of `scaled_error` as a 0-d tensor (batch or per-sample, see `rms_norm`)."""
    return rms_norm(scaled_error(err, y, y_new, rtol, atol, relative=relative), per_sample=per_sample)


def sample_mean_squares(scaled: Tensor) -> Tensor:
    """Each sample's mean square of ``scaled: (B, *D)`` (a `scaled_error`), shape ``(B,)``.

    ``rms_norm(scaled, per_sample=True)`` is the square root of its maximum, and the batch norm
    the square root of its mean.
    """
    return scaled.reshape(scaled.shape[0], -1).pow(2).mean(dim=1)


def check_relative(relative: Tensor | None, y0: Tensor) -> Tensor | None:
    """Validate the per-entry weights of the relative tolerance (see `scaled_error_norm`).

    Returns them on ``y0``'s device and dtype, or ``None``.

    Raises:
        TypeError: not a tensor.
        ValueError: not broadcastable to ``y0``, or an entry negative or not finite.
    """
    if relative is None:
        return None
    if not isinstance(relative, Tensor):
        raise TypeError(f"relative must be a tensor broadcastable to y0 or None, got {type(relative).__name__}")
    if relative.ndim > y0.ndim:
        raise ValueError(f"relative of shape {tuple(relative.shape)} would enlarge y0's {tuple(y0.shape)}")
    trailing = y0.shape[y0.ndim - relative.ndim:]
    if any(r not in (1, n) for r, n in zip(relative.shape, trailing, strict=True)):
        raise ValueError(f"relative of shape {tuple(relative.shape)} does not broadcast to y0's "
                         f"{tuple(y0.shape)}")
    if not bool(torch.isfinite(relative).all()) or bool((relative < 0).any()):
        raise ValueError("relative weights must be finite and >= 0")
    return relative.to(device=y0.device, dtype=y0.dtype)


@dataclass(frozen=True)
class PIDController:
    """Söderlind's PID step-size controller (integral-only by default, as in diffrax).

    Args:
        pcoeff, icoeff, dcoeff: proportional / integral / derivative coefficients ``kP, kI, kD``.
            Defaults ``(0, 1, 0)`` give the elementary controller ``h * safety * err^(-1/k)``.
            Gustafsson's PI controller is roughly ``pcoeff=0.4, icoeff=0.3``; a PID choice
            that works well for non-stiff problems is ``pcoeff=0.2, icoeff=0.4, dcoeff=0``.
        safety: multiplicative safety factor (< 1).
        factor_min, factor_max: bounds of ``h_new / h``.
        max_step: upper bound of ``|h|`` (``None``: none).

    The controller itself is stateless; the solver keeps the error history
    (``err_{n-1}, err_{n-2}``, updated on accepted steps only).
    """

    pcoeff: float = 0.0
    icoeff: float = 1.0
    dcoeff: float = 0.0
    safety: float = 0.9
    factor_min: float = 0.2
    factor_max: float = 10.0
    max_step: float | None = None

    def __post_init__(self) -> None:
        if not (0.0 < self.safety <= 1.0):
            raise ValueError(f"safety must lie in (0, 1], got {self.safety}")
        if not (0.0 < self.factor_min < 1.0 < self.factor_max):
            raise ValueError(
                f"need 0 < factor_min < 1 < factor_max, got {self.factor_min}, {self.factor_max}"
            )
        if self.pcoeff + self.icoeff + self.dcoeff <= 0:
            raise ValueError("pcoeff + icoeff + dcoeff must be positive")
        if self.max_step is not None and not self.max_step > 0:
            raise ValueError(f"max_step must be positive, got {self.max_step}")

    def factor(
        self, err: float, prev_err: float, prev_prev_err: float, error_order: float, accept: bool
    ) -> float:
        """``h_new / h`` from the scaled errors of this and the two previous accepted steps.

        A non-finite ``err`` (the step blew up) gives ``factor_min``. After a rejection the
        factor is at most ``safety`` so the retry is strictly smaller.
        """
        if not math.isfinite(err):
            return self.factor_min
        tiny = 1e-10  # a zero error would give an infinite factor; factor_max clips it anyway
        b1 = (self.pcoeff + self.icoeff + self.dcoeff) / error_order
        b2 = -(self.pcoeff + 2.0 * self.dcoeff) / error_order
        b3 = self.dcoeff / error_order
        f: float = self.safety * max(err, tiny) ** (-b1)
        if b2 != 0.0:
            f *= max(prev_err, tiny) ** (-b2)
        if b3 != 0.0:
            f *= max(prev_prev_err, tiny) ** (-b3)
        hi = self.factor_max if accept else self.safety
        return min(max(f, self.factor_min), hi)


@dataclass(frozen=True)
class ConstantStepSize:
    """No error control: every step has the size ``first_step`` (the last one clipped).

    Used to measure the convergence order of a tableau; no error estimate is computed, so
    there is no host synchronisation per step.
    """


def initial_step(
    fn: Callable[[float, Tensor], Tensor],
    t0: float,
    y0: Tensor,
    f0: Tensor,
    direction: float,
    order: int,
    rtol: float,
    atol: float,
    *,
    max_h: float = math.inf,
    per_sample: bool = False,
    relative: Tensor | None = None,
) -> float:
    """Starting step size of Hairer, Nørsett & Wanner (*Solving ODEs I*, §II.4, p. 169).

    ``d0 = ||y0||, d1 = ||f0||`` in the scaled norm; ``h0 = 0.01 d0/d1`` (or ``1e-6``);
    ``h0`` is clipped to ``max_h`` (the length of the interval); one explicit Euler step gives ``d2 = ||f(t0 + h0, y0 + h0 f0) - f0|| / h0``, and
    ``h1 = (0.01 / max(d1, d2))^(1/(order+1))``; returns ``min(100 h0, h1)``.
    Costs one evaluation of ``fn``. ``relative``: per-entry weights of ``rtol`` (`scaled_error_norm`).
    """
    mag = y0.abs() if relative is None else y0.abs() * relative
    scale = mag.mul(rtol).add_(atol)
    d01 = torch.stack([rms_norm(y0 / scale, per_sample=per_sample), rms_norm(f0 / scale, per_sample=per_sample)])
    d0, d1 = d01.tolist()
    if not (math.isfinite(d0) and math.isfinite(d1)):
        # Finite entries whose squares overflow (a score of 1e30 in float32): no step size exists.
        big = float(torch.stack([y0.detach().abs().max(), f0.detach().abs().max()]).max())
        raise NonFiniteScoreError(
            f"the ODE's state or velocity at t = {t0:.4g} is too large for {y0.dtype} (largest entry "
            f"{big:.3g}; its norm overflows): the score returned huge values; check the model, the "
            "time range and the dtype")
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    # Never probe outside the integration interval (the field may be undefined there).
    h0 = min(h0, max_h)
    y1 = y0 + (direction * h0) * f0
    f1 = fn(t0 + direction * h0, y1)
    d2 = float(rms_norm((f1 - f0) / scale, per_sample=per_sample).detach()) / h0
    dmax = max(d1, d2)
    if dmax <= 1e-15 or not math.isfinite(dmax):
        h1 = max(1e-6, 1e-3 * h0)
    else:
        h1 = (0.01 / dmax) ** (1.0 / (order + 1))
    return min(100.0 * h0, h1, max_h)


GOAL_ROUNDING_ULPS = 1.0
"""Units of the dtype's rounding of ``||lambda y||`` below which `goal_squares` holds no goal."""


def goal_squares(local: Tensor, weights: Tensor, atol: float, y: Tensor | None = None) -> Tensor:
    """Each sample's squared goal error ``((sum_j lambda_j err_j) / tol)^2``, shape ``(B,)``.

    ``local``: the step's error estimate ``(B, *D)``; ``weights``: the goal's sensitivity
    ``lambda`` to the state, broadcastable to it (`solve_adaptive`'s ``goal``). ``tol`` is
    ``atol``, or with the state ``y`` at least `GOAL_ROUNDING_ULPS` units of rounding of
    ``||lambda y||`` (entrywise product): the estimate cannot resolve much less (at a point 100
    units from a mixture in float32 that is about 3e5, and a goal of 1e-5 shrank the steps
    until ``max_steps``). In float32 on ordinary data (a 32-D sharp mixture) the floor is
    about ``atol`` and the answers moved within their own error (1.64e-5 -> 1.72e-5 nats).
    """
    projected = (local * weights).reshape(local.shape[0], -1).sum(dim=1)
    if y is None:
        return (projected / atol).pow(2)
    size: Tensor = torch.linalg.vector_norm((y * weights).reshape(y.shape[0], -1), dim=1)
    tol = size.mul(GOAL_ROUNDING_ULPS * torch.finfo(size.dtype).eps).clamp(min=atol)
    return (projected / tol).pow(2)
