"""Euler–Maruyama on the reverse-time family (Kloeden & Platen 1992, §9.1)."""

from __future__ import annotations

from torch import Tensor

from .base import DynamicsKind, FixedGridSolver, SolveContext
from .defaults import sde_solver_grid
from .dynamics import ReverseDynamics
from .grids import get_grid
from .inputs import check_flag
from .noise import NoiseSource
from .stability import warn_if_unstable
from .utils import append_dims, batch_time

__all__ = ["EulerMaruyama", "em_update"]


def em_update(
    dynamics: ReverseDynamics,
    x: Tensor,
    t: float,
    t_next: float,
    drift: Tensor,
    noise: NoiseSource,
    *,
    add_noise: bool,
) -> Tensor:
    """One Euler–Maruyama step ``x' = x + F(x, t) (t' - t) + lam g(t) dW`` on ``x: (B, *D)``.

    ``drift = F(x, t) = f - (1 + lam^2)/2 g^2 s`` is the reverse drift of the dynamics,
    already evaluated, and ``dW ~ N(0, |t' - t| I)`` the noise source's increment over
    ``[t', t]``. Without ``add_noise`` (or on the ODE, ``lam = 0``) it returns the mean
    ``x + F (t' - t)``.
    """
    x_mean = x + drift * (t_next - t)
    if dynamics.is_ode or not add_noise:
        return x_mean
    dw = noise.increment(t, t_next, x)
    return x_mean + append_dims(dynamics.diffusion(batch_time(t, x)), x.ndim) * dw


class EulerMaruyama(FixedGridSolver):
    """Euler–Maruyama on the reverse-time dynamics (weak order 1; Euler on the PF-ODE).

    Step: ``x' = x + F(x, t) (t' - t) + lam g(t) dW`` with ``dW ~ N(0, |t' - t| I)`` and
    ``F = f - (1 + lam^2)/2 g^2 s`` the reverse drift (Song et al. 2021, eq. 6). Weak order 1;
    strong order 1 here because the noise is additive (``g`` does not depend on ``x``). On the
    probability-flow ODE (``lam = 0``) it is the explicit Euler method. Needs only the SDE's
    drift and diffusion.

    Args:
        final_noise: add noise on the last step too (default ``True``: the state at ``eps``
            samples ``p_eps``, which the default end-of-run step maps to ``p_0``; see
            docs/defaults.md). ``False`` returns the mean of the last step, the convention of
            Song et al.'s reference sampler.

    Default grid (`grid_for`): ``logsnr`` on VP / sub-VP, ``uniform_logsnr`` on VE (`solvers.defaults`).

    Explicit steps are conditionally stable: each step must span less than about one unit of
    log-SNR where the data is not yet resolved. With fewer steps (under VE about 11, under
    sub-VP about 14, under VP about 6 on the default grids) sharp data blows up (8 modes of std
    0.002 under VE: 1.8e3 times too wide at 10 steps); it warns then, naming the data width
    below which the grid is unstable (`solvers.stability`).
    """

    order: float = 1.0
    strong_order: float | None = 1.0
    dynamics_kind: DynamicsKind = "any"
    stochastic: bool = True

    def __init__(self, *, final_noise: bool = True) -> None:
        self.final_noise = check_flag(final_noise, "final_noise")

    def grid_for(self, sde: object) -> str:
        return sde_solver_grid(sde)

    def diagnose(self, dynamics: ReverseDynamics, ctx: SolveContext) -> None:
        """Warn when the grid's steps are outside the explicit step's stability region (`solvers.stability`)."""
        warn_if_unstable("euler_maruyama", dynamics.sde, ctx.grid, dynamics.lam, get_grid(self.grid_for(dynamics.sde)),
                         stacklevel=4)

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        drift = dynamics.drift(x, batch_time(t, x))
        add_noise = self.final_noise or not ctx.is_last
        return em_update(dynamics, x, t, t_next, drift, ctx.noise, add_noise=add_noise)
