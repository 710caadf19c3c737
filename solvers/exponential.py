"""Shared pieces of the exponential-integrator solvers (DDIM, DPM-Solver, DPM-Solver++, SDE-DPM-Solver++).

Every affine SDE (VP, sub-VP, VE, cosine, ...) has marginals ``x_t = alpha(t) x_0 + sigma(t) z``.
In the half log-SNR ``lambda(t) = log_snr(t) = ln(alpha(t)/sigma(t))`` (increasing as ``t`` decreases) the
probability-flow ODE has the exact "variation of constants" solutions (Lu et al. 2022,
"DPM-Solver", Prop. 3.1, eq. 3.4; Lu et al. 2022b, "DPM-Solver++", §4)::

    noise prediction:  x_t = (alpha_t/alpha_s) x_s - alpha_t int_{lambda_s}^{lambda_t} e^{-lambda} eps_hat(lambda) dlambda
    data prediction:   x_t = (sigma_t/sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^{lambda}  x0_hat(lambda) dlambda

so a solver only has to approximate the integral of the *prediction*; the linear part is
exact. With ``h = lambda_t - lambda_s > 0`` and Taylor-expanding the prediction in ``lambda`` the
integrals give the ``phi`` functions below (written with ``expm1`` for accuracy at small h).

Everything here works on scalars of one shared grid: `schedule_table` evaluates
``alpha, sigma, log_snr`` once per solve in float64 on the CPU,
`solvers.marginals.time_from_log_snr` inverts ``lambda -> t`` (batched bisection, for the intermediate points of singlestep
methods), and `ExponentialIntegrator` hands the table to the per-step code, so a step
costs a few tensor axpy's plus its score evaluations (no per-step host syncs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .base import FixedGridSolver, SolveContext
from .dynamics import ReverseDynamics
from .marginals import log_snr, marginals_of, time_from_log_snr
from .protocol import HasMarginals, MarginalSDE

__all__ = [
    "ScheduleTable",
    "schedule_table",
    "log_snr",
    "time_from_log_snr",
    "ExponentialIntegrator",
    "ScheduledSolver",
    "phi_data",
    "phi_noise",
    "phi_weights",
]

Prediction = Literal["data", "noise"]


@dataclass(frozen=True)
class ScheduleTable:
    """``t, alpha(t), sigma(t), log_snr(t)`` at the ``n + 1`` points of a grid, as Python floats."""

    t: list[float]
    alpha: list[float]
    sigma: list[float]
    log_snr: list[float]

    def __len__(self) -> int:
        return len(self.t)


def schedule_table(sde: HasMarginals, ts: Tensor) -> ScheduleTable:
    """Evaluate the schedule once on the grid ``ts: (n + 1,)`` (float64, CPU).

    Raises:
        ValueError: ``alpha`` or ``sigma`` not finite and positive on the grid.
    """
    tt = torch.as_tensor(ts, dtype=torch.float64).reshape(-1)
    alpha, sigma = sde.marginal_coeffs(tt)
    levels = log_snr(sde, tt)
    if not bool(torch.isfinite(levels).all()) or not bool((alpha > 0).all()) or not bool((sigma > 0).all()):
        raise ValueError(
            "alpha(t) and sigma(t) must be finite and positive on the grid (sigma(t) = 0 at t = 0: "
            "exponential integrators stop at eps > 0)"
        )
    return ScheduleTable(tt.tolist(), alpha.tolist(), sigma.tolist(), levels.tolist())


def _phi_series(h: float, k: int, sign: float) -> float:
    """``h sum_j (sign h)^j / (j + k)!``: the ``phi`` functions for small ``h`` (no cancellation)."""
    total, term = 0.0, 1.0 / math.factorial(k)
    for j in range(20):
        total += term
        term *= sign * h / (j + k + 1)
    return h * total


def phi_data(h: float, k: int) -> float:
    """``phi_k(h)`` of the data-prediction integral, ``k >= 1``.

    Defined by ``sigma_t int_0^h e^{lambda_s + u} u^{k-1}/(k-1)! du = alpha_t h^{k-1} phi_k(h)``,
    i.e. ``phi_k(h) = h sum_j (-h)^j/(j+k)!``. Closed forms (``E = expm1(-h)``):
    ``phi_1 = -E``, ``phi_2 = (h + E)/h``, ``phi_3 = (h^2/2 - h - E)/h^2``, and in general
    ``phi_{k+1} = 1/k! - phi_k/h`` (integration by parts); a series is used for ``h < 0.5``
    where these cancel.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"phi_data needs an integer k >= 1, got {k!r}")
    if abs(h) < 0.5:
        return _phi_series(h, k, -1.0)
    p = -math.expm1(-h)
    for j in range(1, k):
        p = 1.0 / math.factorial(j) - p / h
    return p


def phi_weights(nodes: Sequence[float], h: float) -> list[float]:
    """Weights ``w_j`` with ``sigma_t int_0^h e^{lambda_s + u} P(u) du = alpha_t sum_j w_j m_j``.

    ``P`` is the polynomial through ``(nodes[j], m_j)`` (``nodes`` are log-SNR offsets
    ``lambda_j - lambda_s``, distinct); writing ``P(u) = sum_k c_k u^k/k!`` the integral is
    ``alpha_t sum_k c_k h^k phi_{k+1}(h)`` (`phi_data`), and ``c = V^{-1} m`` with
    ``V_jk = u_j^k/k!``. This is the exact-coefficient exponential Adams rule: through past
    nodes it is a multistep predictor, with the node ``h`` an Adams–Moulton-type corrector.
    """
    q = len(nodes)
    vander = np.array([[u**k / math.factorial(k) for k in range(q)] for u in nodes], dtype=np.float64)
    g = np.array([h**k * phi_data(h, k + 1) for k in range(q)], dtype=np.float64)
    weights: list[float] = np.linalg.solve(vander.T, g).tolist()
    return weights


def phi_noise(h: float, k: int) -> float:
    """``psi_k(h)`` of the noise-prediction integral, ``k = 1, 2, 3``.

    Defined by ``alpha_t int_0^h e^{-(lambda_s + u)} u^{k-1}/(k-1)! du = sigma_t h^{k-1} psi_k(h)``,
    i.e. ``psi_k(h) = h sum_j h^j/(j+k)!``. Closed forms (``E = expm1(h)``): ``psi_1 = E``,
    ``psi_2 = (E - h)/h``, ``psi_3 = (E - h - h^2/2)/h^2``; a series is used for ``h < 0.5``.
    """
    if k not in (1, 2, 3):
        raise ValueError(f"phi_noise is implemented for k = 1, 2, 3, got {k}")
    if abs(h) < 0.5:
        return _phi_series(h, k, 1.0)
    e = math.expm1(h)
    if k == 1:
        return e
    if k == 2:
        return (e - h) / h
    return (e - h - 0.5 * h * h) / (h * h)


class ScheduledSolver(FixedGridSolver):
    """A fixed-grid solver that reads ``alpha, sigma, log_snr`` of its grid from a per-solve table.

    `prepare` evaluates the schedule once per solve into the context (``ctx.memory["table"]``,
    read with `schedule`), plus whatever `precompute` adds (``ctx.memory["extra"]``, e.g. the
    intermediate times of singlestep methods); steps then cost a few tensor axpy's plus their
    score evaluations.
    """

    needs_marginals: bool = True
    default_grid: str = "uniform"

    def prepare(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        sde = marginals_of(dynamics)
        table = schedule_table(sde, ctx.grid)
        ctx.memory["table"] = table
        ctx.memory["extra"] = self.precompute(sde, table)

    def precompute(self, sde: MarginalSDE, table: ScheduleTable) -> dict[str, Any]:
        """Per-solve precomputation from the grid's schedule; default: nothing."""
        return {}

    @staticmethod
    def schedule(ctx: SolveContext) -> ScheduleTable:
        """The schedule table of the current solve."""
        table: ScheduleTable = ctx.memory["table"]
        return table


class ExponentialIntegrator(ScheduledSolver):
    """Base of the solvers that integrate the linear part exactly in ``log_snr`` (default grid: logsnr)."""

    default_grid: str = "logsnr"
