"""Shared pieces of the exponential-integrator solvers (DDIM, DPM-Solver, DPM-Solver++, SDE-DPM-Solver++).

Every affine SDE (VP, sub-VP, VE, cosine, ...) has marginals ``x_t = alpha(t) x_0 + sigma(t) z``.
In the half log-SNR ``lambda(t) = ln(alpha(t)/sigma(t))`` (increasing as ``t`` decreases) the
probability-flow ODE has the exact "variation of constants" solutions (Lu et al. 2022,
"DPM-Solver", Prop. 3.1, eq. 3.4; Lu et al. 2022b, "DPM-Solver++", §4)::

    noise prediction:  x_t = (alpha_t/alpha_s) x_s - alpha_t int_{lam_s}^{lam_t} e^{-lam} eps_hat(lam) dlam
    data prediction:   x_t = (sigma_t/sigma_s) x_s + sigma_t int_{lam_s}^{lam_t} e^{lam}  x0_hat(lam) dlam

so a solver only has to approximate the integral of the *prediction*; the linear part is
exact. With ``h = lam_t - lam_s > 0`` and Taylor-expanding the prediction in ``lam`` the
integrals give the ``phi`` functions below (written with ``expm1`` for accuracy at small h).

Everything here works on scalars of one shared grid: :func:`schedule_table` evaluates
``alpha, sigma, lambda`` once per solve in float64 on the CPU, :func:`time_from_log_snr`
inverts ``lambda -> t`` (batched bisection, for the intermediate points of singlestep
methods), and :class:`ExponentialIntegrator` hands the table to the per-step code, so a step
costs a few tensor axpy's plus its score evaluations (no per-step host syncs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from .base import AfterStep, FixedGridSolver
from .dynamics import ReverseDynamics
from .grids import check_grid, log_snr, time_from_log_snr
from .noise import NoiseSource
from .protocol import DiffusionSDE
from .result import Solution
from .utils import batch_time

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
    "predict_eps",
    "predict_x0",
]

Prediction = Literal["data", "noise"]


@dataclass(frozen=True)
class ScheduleTable:
    """``t, alpha(t), sigma(t), lambda(t)`` at the ``n + 1`` points of a grid, as Python floats."""

    t: list[float]
    alpha: list[float]
    sigma: list[float]
    lam: list[float]

    def __len__(self) -> int:
        return len(self.t)


def schedule_table(sde: DiffusionSDE, ts: Tensor) -> ScheduleTable:
    """Evaluate the schedule once on the grid ``ts: (n + 1,)`` (float64, CPU)."""
    tt = torch.as_tensor(ts, dtype=torch.float64).reshape(-1)
    alpha, sigma = sde.marginal_coeffs(tt)
    lam = torch.log(alpha) - torch.log(sigma)
    if not bool(torch.isfinite(lam).all()) or not bool((alpha > 0).all()) or not bool((sigma > 0).all()):
        raise ValueError(
            "alpha(t) and sigma(t) must be finite and positive on the grid (sigma(t) = 0 at t = 0: "
            "exponential integrators stop at eps > 0)"
        )
    return ScheduleTable(tt.tolist(), alpha.tolist(), sigma.tolist(), lam.tolist())


def _phi_series(h: float, k: int, sign: float) -> float:
    """``h sum_j (sign h)^j / (j + k)!``: the ``phi`` functions for small ``h`` (no cancellation)."""
    total, term = 0.0, 1.0 / math.factorial(k)
    for j in range(20):
        total += term
        term *= sign * h / (j + k + 1)
    return h * total


def phi_data(h: float, k: int) -> float:
    """``phi_k(h)`` of the data-prediction integral, ``k >= 1``.

    Defined by ``sigma_t int_0^h e^{lam_s + u} u^{k-1}/(k-1)! du = alpha_t h^{k-1} phi_k(h)``,
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
    """Weights ``w_j`` with ``sigma_t int_0^h e^{lam_s + u} P(u) du = alpha_t sum_j w_j m_j``.

    ``P`` is the polynomial through ``(nodes[j], m_j)`` (``nodes`` are log-SNR offsets
    ``lambda_j - lambda_s``, distinct); writing ``P(u) = sum_k c_k u^k/k!`` the integral is
    ``alpha_t sum_k c_k h^k phi_{k+1}(h)`` (:func:`phi_data`), and ``c = V^{-1} m`` with
    ``V_jk = u_j^k/k!``. This is the exact-coefficient exponential Adams rule: through past
    nodes it is a multistep predictor, with the node ``h`` an Adams–Moulton-type corrector.
    """
    q = len(nodes)
    vander = np.array([[u**k / math.factorial(k) for k in range(q)] for u in nodes], dtype=np.float64)
    g = np.array([h**k * phi_data(h, k + 1) for k in range(q)], dtype=np.float64)
    return np.linalg.solve(vander.T, g).tolist()


def phi_noise(h: float, k: int) -> float:
    """``psi_k(h)`` of the noise-prediction integral, ``k = 1, 2, 3``.

    Defined by ``alpha_t int_0^h e^{-(lam_s + u)} u^{k-1}/(k-1)! du = sigma_t h^{k-1} psi_k(h)``,
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


def predict_x0(dynamics: ReverseDynamics, x: Tensor, t: float) -> Tensor:
    """``E[x_0 | x_t]`` for ``x: (B, *D)`` at the time ``t`` shared by the batch; one NFE.

    The score sees ``t`` as a ``(B,)`` tensor; Tweedie's conversion
    (:meth:`~solvers.dynamics.ReverseDynamics.x0_from_score`) gets a ``(1,)`` time, so the
    schedule is evaluated once instead of once per sample (the conversion broadcasts).
    """
    tt = batch_time(t, x)
    return dynamics.x0_from_score(x, tt[:1], dynamics.score(x, tt))


def predict_eps(dynamics: ReverseDynamics, x: Tensor, t: float) -> Tensor:
    """Noise prediction ``-sigma(t) score(x, t)`` for ``x: (B, *D)`` at a shared ``t``; one NFE."""
    tt = batch_time(t, x)
    return dynamics.eps_from_score(x, tt[:1], dynamics.score(x, tt))


class ScheduledSolver(FixedGridSolver):
    """A fixed-grid solver that reads ``alpha, sigma, lambda`` of its grid from a per-solve table.

    Subclasses implement :meth:`step` reading ``self.table`` (the schedule on the grid of the
    current solve) and may override :meth:`prepare` to precompute more per-solve data in
    ``self.extra`` (e.g. intermediate times of singlestep methods). Both live on the solver
    object for the duration of one :meth:`solve` call: do not share one instance between threads.
    """

    needs_marginals: ClassVar[bool] = True
    default_grid: ClassVar[str] = "uniform"

    table: ScheduleTable
    extra: dict[str, Any]

    def prepare(self, sde: DiffusionSDE, table: ScheduleTable) -> dict[str, Any]:
        """Per-solve precomputation from the grid's schedule; default: nothing."""
        return {}

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
        self.check_dynamics(dynamics)
        grid = check_grid(ts, dynamics.sde)
        try:
            self.table = schedule_table(dynamics.sde, grid)
            self.extra = self.prepare(dynamics.sde, self.table)
            return super().solve(
                dynamics,
                x,
                grid,
                noise=noise,
                generator=generator,
                keep_trajectory=keep_trajectory,
                max_frames=max_frames,
                after_step=after_step,
            )
        finally:
            # Per-solve state only: drop it even when the solve fails.
            self.__dict__.pop("table", None)
            self.__dict__.pop("extra", None)

    def __repr__(self) -> str:
        opts = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k not in ("table", "extra")
        )
        return f"{type(self).__name__}({opts})"


class ExponentialIntegrator(ScheduledSolver):
    """Base of the solvers that integrate the linear part exactly in ``lambda`` (default grid: logsnr)."""

    default_grid: ClassVar[str] = "logsnr"
