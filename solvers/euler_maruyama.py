"""Euler–Maruyama on the reverse-time family (Kloeden & Platen 1992, §9.1)."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor

from .base import FixedGridSolver, StepContext
from .dynamics import ReverseDynamics
from .utils import append_dims, batch_time

__all__ = ["EulerMaruyama"]


class EulerMaruyama(FixedGridSolver):
    """Euler–Maruyama on the reverse-time dynamics (weak order 1; Euler on the PF-ODE).

    Step: ``x' = x + F(x, t) (t' - t) + lam g(t) dW`` with ``dW ~ N(0, |t' - t| I)``.
    ``F = f - (1 + lam^2)/2 g^2 s`` is the reverse drift of the dynamics. Weak order 1;
    strong order 1 here because the noise is additive (``g`` does not depend on ``x``).
    On the probability-flow ODE (``lam = 0``) it is the explicit Euler method.

    Args:
        final_noise: add noise on the last step too. ``False`` (default) returns the mean of
            the last step, the convention of Song et al.'s reference sampler.
    """

    order: ClassVar[float] = 1.0
    strong_order: ClassVar[float | None] = 1.0
    dynamics_kind: ClassVar[Literal["ode", "sde", "any"]] = "any"
    stochastic: ClassVar[bool] = True

    def __init__(self, *, final_noise: bool = False) -> None:
        self.final_noise = final_noise

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: StepContext) -> Tensor:
        tt = batch_time(t, x)
        # Euler step of the drift.
        x_mean = x + dynamics.drift(x, tt) * (t_next - t)
        if dynamics.is_ode or (ctx.is_last and not self.final_noise):
            return x_mean
        # Brownian increment, scaled by the reverse diffusion lam * g(t).
        dw = ctx.noise.increment(t, t_next, x)
        return x_mean + append_dims(dynamics.diffusion(tt), x.ndim) * dw
