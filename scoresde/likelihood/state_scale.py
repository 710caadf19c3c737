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

import torch

from solvers.protocol import DiffusionSDE

__all__ = ["StateScale", "marginal_state_scale"]

StateScale = Callable[[float], tuple[float, float]]
"""`t -> (r(t), d ln r / dt)`: the scale of the state and its log-derivative."""


def marginal_state_scale(sde: DiffusionSDE, c2: float) -> StateScale:
    """`r(t) = sqrt(alpha(t)^2 c2 + sigma(t)^2)` and `d ln r/dt` (exact, by autograd in float64).

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
            with torch.enable_grad():
                tt = torch.tensor([t], dtype=torch.float64, requires_grad=True)
                alpha, sigma = sde.marginal_coeffs(tt)
                log_r = 0.5 * torch.log(alpha.double() ** 2 * c2 + sigma.double() ** 2).sum()
                (dlog,) = torch.autograd.grad(log_r, tt)
            cache[t] = (math.exp(log_r.item()), dlog.item())
        return cache[t]

    return scale
