"""DDIM (Song, Meng & Ermon 2021a, eq. 12) for any affine SDE, deterministic (eta = 0) or stochastic."""

from __future__ import annotations

import math

from torch import Tensor

from .base import DynamicsKind, SolveContext
from .dynamics import ReverseDynamics
from .exponential import ExponentialIntegrator
from .inputs import as_real

__all__ = ["DDIM"]


class DDIM(ExponentialIntegrator):
    """DDIM: first-order exponential integrator; eta=0 deterministic, eta>0 adds fresh noise.

    One step from ``s`` to ``t < s`` with ``x0 = E[x_0 | x_s]`` (Tweedie) and
    ``eps_hat = (x_s - alpha_s x0)/sigma_s`` (Song et al. 2021a, eq. 12, written with
    ``alpha = sqrt(alpha_bar)`` and ``h = lambda_t - lambda_s``)::

        c   = eta * sigma_t * sqrt(1 - e^{-2h})
        x_t = alpha_t x0 + sqrt(sigma_t^2 - c^2) eps_hat + c z,      z ~ N(0, I)

    ``eta = 0`` is exactly DPM-Solver-1 (Lu et al. 2022, eq. 3.7), the exponential Euler
    step of the probability-flow ODE, order 1 in ``h``. For any ``eta`` the step keeps the
    marginal ``N(alpha_t x_0, sigma_t^2)`` of a point mass exact, so every ``eta`` targets
    the same marginals ``p_t``. In the continuous limit ``c^2 -> 2 eta^2 sigma^2 dlambda =
    eta^2 g^2 dt`` (since ``g^2 = -2 sigma^2 dlambda/dt``): DDIM with ``eta`` is a first-order
    discretisation of the reverse family with ``lam = eta``; ``eta = 1`` is the ancestral
    DDPM step, identical to SDE-DPM-Solver-1 (Lu et al. 2022b). The dynamics must be the
    probability-flow ODE, which supplies the score and ``alpha, sigma``; ``eta`` chooses the
    member of the family. Noise is added on every step, the last included, so the output
    is distributed as ``p_eps``.

    Args:
        eta: noise level in ``[0, 1]`` (0: deterministic DDIM, 1: DDPM-like).

    NFE: one score evaluation per step.
    """

    order: float = 1.0
    strong_order: float | None = None
    dynamics_kind: DynamicsKind = "ode"
    stochastic: bool = True

    def __init__(self, *, eta: float = 0.0) -> None:
        eta = as_real(eta, "eta")
        if not (0.0 <= eta <= 1.0):
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        self.eta = eta
        self.stochastic = eta > 0.0  # eta = 0: deterministic DDIM

    def reverse_level(self, lam: float, sde: object = None, ts: Tensor | None = None) -> float:
        """DDIM with ``eta`` discretises the reverse family at ``lam = eta`` (class docstring)."""
        return self.eta

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        i, tab = ctx.index, self.schedule(ctx)
        s_s = tab.sigma[i]
        a_t, s_t = tab.alpha[i + 1], tab.sigma[i + 1]
        h = tab.log_snr[i + 1] - tab.log_snr[i]
        x0 = dynamics.x0_at(x, t, (tab.alpha[i], s_s))
        if self.eta == 0.0:
            # Exponential Euler step in data prediction: x_t = (sigma_t/sigma_s) x + alpha_t (1 - e^{-h}) x0.
            return (s_t / s_s) * x + (-a_t * math.expm1(-h)) * x0
        # Keep the fraction sqrt(1 - eta^2 (1 - e^{-2h})) of the predicted noise, add the rest fresh.
        log_keep = 0.5 * math.log1p(self.eta**2 * math.expm1(-2.0 * h))
        k = (s_t / s_s) * math.exp(log_keep)
        c = self.eta * s_t * math.sqrt(-math.expm1(-2.0 * h))
        # alpha_t - k alpha_s = alpha_t (1 - e^{-h} keep), written with expm1 for small h.
        x_t = k * x + (-a_t * math.expm1(-h + log_keep)) * x0
        z = ctx.noise.increment(t, t_next, x) / math.sqrt(t - t_next)
        return x_t + c * z
