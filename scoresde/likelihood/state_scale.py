"""The scaled state of the fixed-grid integrator: integrate `y = x / r(t)` instead of `x`.

Along the probability-flow ODE `dx/dt = F(x, t)` of an affine SDE the state grows with the
noise: for `x_t = alpha x_0 + sigma z` its scale is `r(t) = sqrt(alpha(t)^2 c^2 + sigma(t)^2)`
(`c^2`: the data's mean square per coordinate, so `r` is the marginal's scale when the data
are Gaussian). Under VE, `sigma` runs from 0.01 to 50, and once `sigma` exceeds the data's
size the flow is nearly `dx/dt = (r'/r) x`, an exponential growth that RK4 can only follow
with small steps. The same ODE written for `y = x / r`::

    dy/dt = G(y, t) = F(r y, t) / r - (d ln r / dt) y,

is nearly constant there (`G ~ 0`), so the same RK4 steps are much more accurate (the
exponential-integrator idea of Hochbruck & Ostermann 2010, here through a change of
variables, as in the `x / sqrt(sigma^2 + sigma_data^2)` input scaling of Karras et al. 2022).
The log-density is unchanged: it is still `int div_x F(x_t, t) dt` along the same path, with
`x = r y`. Under VP and sub-VP `r` stays near 1 and the change is neutral.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from solvers.protocol import DiffusionSDE

__all__ = ["StateScale", "marginal_state_scale", "ScaledField"]

StateScale = Callable[[float], tuple[float, float]]
"""`t -> (r(t), d ln r / dt)`: the scale of the state and its log-derivative."""


def marginal_state_scale(sde: DiffusionSDE, c2: float) -> StateScale:
    """`r(t) = sqrt(alpha(t)^2 c2 + sigma(t)^2)` and `d ln r/dt = k + g^2/(2 r^2)` (float64, exact).

    Args:
        sde: an affine SDE (`marginal_coeffs(t) -> (alpha, sigma)`).
        c2: the data's mean square per coordinate (positive).

    Returns:
        `scale(t: float) -> (r, dlogr_dt)` (Python floats), cached per time.

    Raises:
        ValueError: `c2` not positive and finite, or the SDE has no `marginal_coeffs`.
    """
    if not callable(getattr(sde, "marginal_coeffs", None)):
        raise ValueError(f"state_scale='marginal' needs the SDE's marginal_coeffs; {type(sde).__name__} "
                         "lacks it: pass state_scale='none'")
    if not (0.0 < c2 < float("inf")):
        raise ValueError(f"the data's mean square must be positive and finite, got {c2}")
    cache: dict[float, tuple[float, float]] = {}

    def scale(t: float) -> tuple[float, float]:
        if t not in cache:
            # Exact, from the affine SDE's own coefficients: with f(x, t) = k(t) x (k = d ln alpha/dt)
            # and dsigma^2/dt = g^2 + 2 k sigma^2, d(r^2)/dt = 2 k r^2 + g^2, so
            # d ln r/dt = k + g^2 / (2 r^2). No difference stencil, so no time outside [0, T].
            tt = torch.tensor([t], dtype=torch.float64)
            alpha, sigma = sde.marginal_coeffs(tt)
            r2 = float(alpha.double()[0] ** 2 * c2 + sigma.double()[0] ** 2)
            k = float(sde.drift(torch.ones(1, 1, dtype=torch.float64), tt).reshape(-1)[0])
            g2 = float(sde.diffusion(tt).double()[0] ** 2)
            cache[t] = (math.sqrt(r2), k + 0.5 * g2 / r2)
        return cache[t]

    return scale


class ScaledField:
    """The augmented field in the scaled state, for the adaptive pilot: `[y, l]`, `y = x / r(t)`.

    `field(t, [y, w l]) = [G(y, t), w div F(r y, t)]` with `G = F(r y, t) / r - (d ln r/dt) y`
    (`w`: the flow's `logp_scale`), so the pilot's step sizes are those the scaled state needs.

    Args:
        flow: an `AugmentedFlow` (its `velocity_and_divergence`, `dim`, `logp_scale`, `pack`,
            `unpack`).
        scale: `t -> (r, d ln r/dt)`.
    """

    def __init__(self, flow: Any, scale: StateScale) -> None:
        self.flow, self.scale = flow, scale

    def pack(self, x: Tensor, t: float) -> Tensor:
        """`(B, *D) -> (B, d + M)`: the state `[x / r(t), 0]`."""
        return self.flow.pack(x / self.scale(t)[0])

    def unpack(self, y: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """`(x: (B, *D), l: (B, M))` from a scaled state at time `t`."""
        x, l = self.flow.unpack(y)
        return x * self.scale(t)[0], l

    def answer_sensitivity(self, t: float, y: Tensor, k: Tensor) -> Tensor:
        """The flow's `answer_sensitivity` for the scaled state: ``r s`` (as ``x = r y``), and the
        log-density columns' weights unchanged."""
        r, dlog = self.scale(float(t))
        d = self.flow.dim
        y, k = y.detach(), k.detach()
        x = (r * y[:, :d]).reshape(y.shape[0], *self.flow.data_shape)
        velocity = (r * (k[:, :d] + dlog * y[:, :d])).reshape(x.shape)
        s = self.flow.score_from_velocity(x, velocity, t).reshape(y.shape[0], d)
        return torch.cat([r * s, self.flow.column_sensitivity(y)], dim=1)

    def __call__(self, t: float, y: Tensor) -> Tensor:
        r, dlog = self.scale(float(t))
        d = self.flow.dim
        yx = y[:, :d]
        f, div = self.flow.velocity_and_divergence((r * yx).reshape(y.shape[0], *self.flow.data_shape), t)
        return torch.cat([f.reshape(y.shape[0], -1) / r - dlog * yx, div * self.flow.logp_scale], dim=1)
