"""Time grids of the fixed-step likelihood integrators: named, resampled from a pilot, sized by error.

* `time_grid`: a named grid of `solvers.grids` on ``[eps, T]``, increasing, or an
  explicit one (checked).
* `resample_grid`: ``n`` steps with the step-size profile of another grid (the accepted
  times of an adaptive pilot solve: the ``grid="auto"`` of `likelihood`).
* `choose_steps`: the step count whose measured error meets a target
  (``steps="auto"``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from solvers.grids import get_grid
from solvers.protocol import DiffusionSDE

__all__ = ["time_grid", "resample_grid", "choose_steps"]


class _Window:
    """``sde`` seen on ``[eps, T]``: forwards everything, overrides ``eps`` and ``T`` (for grids)."""

    def __init__(self, sde: DiffusionSDE, eps: float, T: float) -> None:
        self._sde, self.eps, self.T = sde, eps, T

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sde, name)


def time_grid(
    sde: DiffusionSDE, steps: int, grid: str | Tensor | Sequence[float] = "quadratic", *,
    eps: float | None = None, T: float | None = None,
) -> Tensor:
    """Increasing float64 grid ``eps = t_0 < ... < t_n = T`` for the fixed-step integrators.

    ``grid`` names a grid of `solvers.grids` (``uniform``, ``quadratic``, ``logsnr``,
    ``karras``; they are built from ``T`` down and reversed here) or is an explicit increasing
    sequence from ``eps`` to ``T``. (`likelihood`'s default ``grid="auto"`` is built
    from a pilot solve instead, see `resample_grid`.)
    """
    lo = sde.eps if eps is None else float(eps)
    hi = sde.T if T is None else float(T)
    if isinstance(grid, str):
        return get_grid(grid)(_Window(sde, lo, hi), steps).flip(0).contiguous()
    ts = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
    if ts.numel() < 2 or not bool((ts[1:] > ts[:-1]).all()):
        raise ValueError("an explicit grid must be increasing with at least 2 times")
    if abs(float(ts[0]) - lo) > 1e-9 * max(1.0, hi) or abs(float(ts[-1]) - hi) > 1e-9 * max(1.0, hi):
        raise ValueError(f"an explicit grid must run from eps={lo:g} to T={hi:g}")
    return ts


def resample_grid(ts: Tensor, steps: int) -> Tensor:
    """``steps`` intervals distributed like those of the increasing grid ``ts``: ``(steps + 1,)``.

    The map ``k -> t_k`` of the given grid (e.g. the accepted times of an adaptive solve) is
    interpolated piecewise linearly at ``steps + 1`` equally spaced indices, so the new grid
    has the same step-size profile with a different number of steps (float64).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    ts = torch.as_tensor(ts, dtype=torch.float64).reshape(-1)
    if ts.numel() < 2 or not bool((ts[1:] > ts[:-1]).all()):
        raise ValueError("the grid to resample must be increasing with at least 2 times")
    k = ts.numel() - 1
    u = torch.linspace(0.0, float(k), steps + 1, dtype=torch.float64)
    i = u.floor().long().clamp(max=k - 1)
    out = ts[i] + (u - i) * (ts[i + 1] - ts[i])
    out[0], out[-1] = ts[0], ts[-1]
    return out


def choose_steps(
    trial: Callable[[int], tuple[Tensor, int]],
    reference: Tensor,
    target_error: float,
    *,
    order: int = 4,
    first: int = 8,
    max_steps: int = 512,
    then: Callable[[int, float], str] | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Fewest steps (roughly) whose measured error is at most ``target_error``.

    ``trial(n) -> (log p: (P,), nfe)`` solves the pilot's ``P`` samples on an ``n``-step grid;
    ``reference: (P,)`` is their adaptive solution. Starting at ``first`` steps, the mean
    absolute error ``e(n)`` is measured and, while above the target, ``n`` grows by the
    factor ``1.1 (e / target)^(1/order)`` that the integrator's order predicts (at least
    ×1.25, so a pre-asymptotic estimate cannot stall). The accepted ``n`` is one whose error
    was measured, not predicted. Returns ``(n, history)`` with one
    ``{"steps", "error", "nfe"}`` per trial.

    Warns (``RuntimeWarning``) and stops early when the measured error stalls: if ``n`` grew
    by ≥ 25% and the error fell by less than 30% (order ``p`` predicts ``1 - 0.8^p``), what is
    measured is the reference's own error, and the pilot's tolerance must be tightened. Also
    warns and returns ``max_steps`` if the target is not reached there. ``then(n, error)`` ends
    both warnings: what the caller does with a count that missed the target (default: that it
    is used). Whether the target was met is ``history[-1]["error"] <= target_error``.
    """
    history: list[dict[str, Any]] = []
    n = int(first)

    def consequence(err: float) -> str:
        return f"using {n} steps" if then is None else then(n, err)

    previous = math.inf
    while True:
        lp, used = trial(n)
        err = float((lp.double() - reference.double()).abs().mean())
        history.append({"steps": n, "error": err, "nfe": used})
        if err <= target_error:
            return n, history
        if math.isfinite(previous) and err > 0.7 * previous:
            warnings.warn(
                f"steps='auto': the measured error stalls at {err:.2e} (was {previous:.2e} with "
                f"fewer steps) above target_error={target_error:.2e}: the pilot's own error limits "
                f"the measurement (tighten the pilot's rtol/atol), or some of its samples need far more "
                f"steps than the rest; {consequence(err)}",
                RuntimeWarning,
                stacklevel=3,
            )
            return n, history
        previous = err
        if n >= max_steps:
            warnings.warn(
                f"steps='auto': {max_steps} steps still give a mean error of {err:.2e} > "
                f"target_error={target_error:.2e} on the pilot; {consequence(err)}",
                RuntimeWarning,
                stacklevel=3,
            )
            return n, history
        grow = max(1.25, 1.1 * (err / target_error) ** (1.0 / order)) if math.isfinite(err) else 2.0
        n = min(max_steps, math.ceil(n * grow))
