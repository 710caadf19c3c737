"""RK4 for the state, Simpson's rule for the log-density: half the divergences of classic RK4.

In the augmented system of `AugmentedFlow` the state obeys
``dx/dt = F(x, t)`` on its own and the log-density is a plain integral along the path,
``l(T) = int_eps^T div F(x_t, t) dt``. Classic RK4 on ``[x, l]`` pays a divergence at each of
its four stages; but only the path needs the stages, and any accurate quadrature of
``div F`` along the path will do for ``l``. On a grid ``t_0 < ... < t_n`` with
``h = t_{i+1} - t_i`` this integrator does, per step::

    k1 = F(x_i, t_i)                       (with div F: reused from the previous step)
    k2 = F(x_i + h k1/2, t_i + h/2)        (velocity only)
    k3 = F(x_i + h k2/2, t_i + h/2)        (velocity only)
    k4 = F(x_i + h k3,   t_i + h)          (velocity only)
    x_{i+1} = x_i + h (k1 + 2 k2 + 2 k3 + k4)/6                     (classic RK4)
    F_{i+1}, div_{i+1} at (x_{i+1}, t_{i+1})                         (k1 of the next step)
    x_m = (x_i + x_{i+1})/2 + h (k1 - F_{i+1})/8                     (cubic Hermite midpoint)
    l_{i+1} = l_i + h (div_i + 4 div F(x_m, t_i + h/2) + div_{i+1})/6   (Simpson)

The Hermite midpoint is fourth-order accurate (it interpolates positions and velocities at
both ends), Simpson's rule is exact for cubics, so ``l`` keeps RK4's global order 4
(measured by refinement in ``tests/scoresde/likelihood/test_likelihood.py``). Cost per step: four score
evaluations as RK4, but two divergences (node and midpoint) instead of four, i.e. with the
exact divergence ``2 D`` backward passes instead of ``4 D`` and no autograd graph for three
of the stages. Unbiasedness of Hutchinson estimates is kept: ``l`` is a fixed linear
combination of per-evaluation estimates at points that do not depend on the probes.

References: Simpson's rule and cubic Hermite interpolation, e.g. Hairer, Nørsett & Wanner,
*Solving ODEs I*, §II.1 and §II.6 (dense output); the instantaneous change of variables,
Chen et al. 2018, Thm. 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .flow import AugmentedFlow
from .state_scale import StateScale

__all__ = ["integrate_rk4_simpson", "rk4_simpson_with_path_error"]


def integrate_rk4_simpson(
    flow: AugmentedFlow, x: Tensor, ts: Tensor | Sequence[float], scale: StateScale | None = None,
) -> tuple[Tensor, Tensor]:
    """Integrate ``x`` and ``l = int div F dt`` along the increasing grid ``ts``.

    ``(x_T, l)`` of `rk4_simpson_with_path_error` (which see for the arguments).
    """
    x_T, log_det, _ = rk4_simpson_with_path_error(flow, x, ts, scale)
    return x_T, log_det


def rk4_simpson_with_path_error(
    flow: AugmentedFlow, x: Tensor, ts: Tensor | Sequence[float], scale: StateScale | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Integrate ``x`` and ``l = int div F dt`` along ``ts``, with a per-sample error indicator.

    The indicator is free: ``F(x_{i+1})``, the next step's ``k1``, is also the fifth stage of
    the embedded third-order solution ``x_i + h (k1 + 2 k2 + 2 k3 + F(x_{i+1}))/6`` (it meets
    the four order-3 conditions; an FSAL pair as in Hairer, Nørsett & Wanner, *Solving ODEs I*,
    §II.4), so ``h |F(x_{i+1}) - k4| / 6`` estimates the local error of a step at no extra
    evaluation. Summed over the steps it ranks the samples by how badly the fixed grid fits
    their paths: on sharp 2-D and 16-D mixtures its rank correlation with the log-density's
    actual error was 0.5-0.9 over the samples, and the ten worst samples were all among the
    5% with the largest indicator (VE, 24 steps on the pilot's grid).

    With ``scale`` (``t -> (r, d ln r/dt)``, see ``state_scale``) RK4 and the Hermite
    midpoint act on ``y = x / r(t)`` with the field ``G(y, t) = F(r y, t)/r - (d ln r/dt) y``;
    the divergences are still those of ``F`` at ``x = r y``, so ``l`` is the same integral.

    Args:
        flow: the augmented probability-flow field (its ``velocity`` and
            ``velocity_and_divergence``); ``flow.nfe`` counts ``4 n + 1`` score evaluations
            for ``n`` intervals plus ``n`` at the midpoints.
        x: ``(B, *D)`` states at ``ts[0]``.
        ts: ``(n + 1,)`` strictly increasing times (float64 recommended).
        scale: optional state scale (``None``: RK4 on ``x`` itself).

    Returns:
        ``(x_T: (B, *D), l: (B, M), path_error: (B,))`` at ``ts[-1]``; ``l`` is unweighted
        (no ``logp_scale``), one column per divergence estimate (``M = 1`` for the exact
        divergence); ``path_error`` is the sum over the steps of the RMS over the (scaled) state
        of ``h (F(x_{i+1}) - k4) / 6``.
    """
    grid = torch.as_tensor(ts, dtype=torch.float64).reshape(-1).tolist()
    if len(grid) < 2 or any(b <= a for a, b in zip(grid[:-1], grid[1:], strict=False)):
        raise ValueError("the grid must be strictly increasing with at least 2 times")
    if scale is None:
        def field(y: Tensor, t: float) -> Tensor:
            return flow.velocity(y, t)

        def field_div(y: Tensor, t: float) -> tuple[Tensor, Tensor]:
            return flow.velocity_and_divergence(y, t)
    else:
        def field(y: Tensor, t: float) -> Tensor:
            r, dlog = scale(t)
            return flow.velocity(r * y, t).div(r).sub_(y, alpha=dlog)

        def field_div(y: Tensor, t: float) -> tuple[Tensor, Tensor]:
            r, dlog = scale(t)
            f, d = flow.velocity_and_divergence(r * y, t)
            return f.div(r).sub_(y, alpha=dlog), d

        x = x / scale(grid[0])[0]
    k1, div = field_div(x, grid[0])
    log_det = torch.zeros_like(div)
    path_error = x.new_zeros(x.shape[0])
    for t, t_next in zip(grid[:-1], grid[1:], strict=True):
        h = t_next - t
        half = t + 0.5 * h
        k2 = field(x + (0.5 * h) * k1, half)
        k3 = field(x + (0.5 * h) * k2, half)
        k4 = field(x + h * k3, t_next)
        x_next = x + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
        f_next, div_next = field_div(x_next, t_next)
        x_mid = 0.5 * (x + x_next) + (h / 8.0) * (k1 - f_next)
        _, div_mid = field_div(x_mid, half)
        log_det = log_det + (h / 6.0) * (div + 4.0 * div_mid + div_next)
        path_error = path_error + (abs(h) / 6.0) * (f_next - k4).detach().flatten(1).pow(2).mean(1).sqrt()
        x, k1, div = x_next, f_next, div_next
    if scale is not None:
        x = x * scale(grid[-1])[0]
    return x, log_det, path_error
