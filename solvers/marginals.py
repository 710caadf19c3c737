"""Every formula built on the affine marginals ``x_t = alpha(t) x_0 + sigma(t) z``: one home.

For an SDE with `HasMarginals` (Song et al. 2021, eq. 29 and App. B):

* Tweedie's denoiser ``E[x_0 | x_t] = (x + sigma^2 s) / alpha`` and the noise prediction
  ``eps_hat = -sigma s`` (Efron 2011; Ho et al. 2020, eq. 11);
* the exact forward transition ``x_t = a x_s + b z`` between two times;
* the half log-SNR ``log_snr(t) = ln alpha - ln sigma`` (Lu et al. 2022, "DPM-Solver") and its
  inverse;
* the EDM noise level ``sigma_edm(t) = sigma / alpha`` (Karras et al. 2022, eq. 4) and its
  inverse.

Solvers, grids and (through re-exports) the models and likelihood code all use these.

The run's dtype. Every coefficient a solver reads goes through `marginal_coeffs_like` (the
functions here, and the SDE view `marginals_of` gives the steps): ``alpha(t), sigma(t)`` come
back in ``t``'s dtype and on its device, so an SDE that computes them in float64 (its own
table or buffers) cannot turn a float32 run into float64, as drift and diffusion cannot
(`solvers.dynamics.ReverseDynamics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, cast

import torch
from torch import Tensor

from .protocol import HasMarginals, MarginalSDE
from .utils import append_dims

__all__ = [
    "require_marginals",
    "marginals_of",
    "marginal_coeffs_like",
    "x0_from_score",
    "noise_from_score",
    "forward_transition",
    "log_snr",
    "time_from_log_snr",
    "edm_sigma",
    "time_from_edm_sigma",
    "invert_monotone",
]


class _HasSDE(Protocol):
    @property
    def sde(self) -> object: ...


def require_marginals(sde: object, who: str, fix: str | None = None) -> HasMarginals:
    """Return ``sde`` if it has ``marginal_coeffs``; otherwise raise a ``TypeError`` naming ``who``.

    ``fix``: the remedy the message suggests besides adding the method (default: a solver
    that does not need the marginals).

    Raises:
        TypeError: ``sde`` does not satisfy `HasMarginals`.
    """
    if not isinstance(sde, HasMarginals):
        raise TypeError(
            f"{who} needs the SDE's marginal_coeffs(t) -> (alpha(t), sigma(t)), which "
            f"{type(sde).__name__} does not define; add it or "
            + (fix or "pick a solver without needs_marginals (euler_maruyama, ode_*, torchsde_*, adaptive_sde)")
        )
    return sde


def marginal_coeffs_like(sde: HasMarginals, t: Tensor) -> tuple[Tensor, Tensor]:
    """``sde.marginal_coeffs(t)`` cast to ``t``'s dtype and device (a no-op when they match).

    The choke point of the run's dtype rule for the marginals: a custom SDE may compute
    ``(alpha, sigma)`` in float64; the run, whose times are in its dtype, gets its own.
    """
    alpha, sigma = sde.marginal_coeffs(t)
    if isinstance(alpha, Tensor) and (alpha.dtype != t.dtype or alpha.device != t.device):
        alpha = alpha.to(device=t.device, dtype=t.dtype)
    if isinstance(sigma, Tensor) and (sigma.dtype != t.dtype or sigma.device != t.device):
        sigma = sigma.to(device=t.device, dtype=t.dtype)
    return alpha, sigma


class _RunMarginals:
    """An SDE whose ``marginal_coeffs(t)`` returns ``t``'s dtype and device (`marginal_coeffs_like`).

    Every other attribute is the SDE's own.
    """

    __slots__ = ("_wrapped",)

    def __init__(self, sde: object) -> None:
        self._wrapped = sde

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return marginal_coeffs_like(cast(HasMarginals, self._wrapped), t)

    def __getattr__(self, name: str) -> object:
        if name == "_wrapped":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    def __repr__(self) -> str:
        return repr(self._wrapped)


def marginals_of(dynamics: _HasSDE) -> MarginalSDE:
    """``dynamics.sde`` as a `MarginalSDE`, for solvers whose ``needs_marginals`` was checked.

    `solvers.Solver.solve` checks the capability once per call (`require_marginals`); steps use
    this view so that no per-step check is paid. Its ``marginal_coeffs(t)`` returns ``t``'s
    dtype and device (`marginal_coeffs_like`); everything else is the SDE's.
    """
    sde = dynamics.sde
    if isinstance(sde, _RunMarginals):
        return cast(MarginalSDE, sde)
    return cast(MarginalSDE, _RunMarginals(sde))


def x0_from_score(sde: HasMarginals, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
    """Tweedie's denoiser ``E[x_0 | x_t] = (x + sigma(t)^2 s) / alpha(t)``.

    Args:
        sde: the marginals.
        x: state ``(B, *D)``.
        t: ``(B,)`` or ``(1,)`` (one time shared by the batch).
        score: ``s(x, t)``, shape of ``x``.
    """
    alpha, sigma = marginal_coeffs_like(sde, t)
    return (x + append_dims(sigma**2, x.ndim) * score) / append_dims(alpha, x.ndim)


def noise_from_score(sde: HasMarginals, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
    """Noise prediction ``eps_hat = -sigma(t) s`` for ``x, score: (B, *D)``, ``t: (B,)`` or ``(1,)``."""
    _, sigma = marginal_coeffs_like(sde, t)
    return -append_dims(sigma, x.ndim) * score


def forward_transition(sde: HasMarginals, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Exact forward transition ``x_t = a x_s + b z`` of an affine SDE, for ``s <= t``.

    ``a = alpha(t)/alpha(s)`` and ``b^2 = sigma(t)^2 - a^2 sigma(s)^2``: since
    ``d(sigma^2/alpha^2)/dt = g^2/alpha^2``, this equals the variance
    ``int_s^t (alpha(t)/alpha(u))^2 g(u)^2 du`` of the linear SDE. It gives VP's
    ``a = sqrt(1 - beta_i), b = sqrt(beta_i)`` and VE's ``a = 1, b^2 = sigma_t^2 - sigma_s^2``
    (Song et al. 2021, App. E/F) and is exact for sub-VP and cosine schedules too. ``s > t``
    is not checked here (a host sync per step); `scoresde.AffineSDE.transition` refuses it.

    Args:
        sde: the marginals.
        s: ``(B,)`` earlier times.
        t: ``(B,)`` later times.

    Returns:
        ``(a, b)``, each ``(B,)``.
    """
    alpha_s, sigma_s = marginal_coeffs_like(sde, s)
    alpha_t, sigma_t = marginal_coeffs_like(sde, t)
    a = alpha_t / alpha_s
    b2 = sigma_t**2 - (a * sigma_s) ** 2
    return a, torch.sqrt(torch.clamp(b2, min=0.0))


def invert_monotone(
    fn: Callable[[Tensor], Tensor], targets: Tensor, lo: float, hi: float, iters: int = 100
) -> Tensor:
    """Solve ``fn(t) = target`` for each of ``targets: (N,)`` by bisection on ``[lo, hi]``; ``fn`` monotone.

    Stops early once an iteration changes no bracket: every later one would repeat it, so the
    result is the one ``iters`` iterations give (float64 brackets stall after about 60).
    """
    lo_t = torch.full_like(targets, lo)
    hi_t = torch.full_like(targets, hi)
    ends = fn(torch.tensor([lo, hi], dtype=torch.float64))
    increasing = bool(ends[1] > ends[0])
    for _ in range(iters):
        mid = 0.5 * (lo_t + hi_t)
        above = fn(mid) > targets
        go_left = above if increasing else ~above
        new_hi = torch.where(go_left, mid, hi_t)
        new_lo = torch.where(go_left, lo_t, mid)
        if torch.equal(new_hi, hi_t) and torch.equal(new_lo, lo_t):
            break
        hi_t, lo_t = new_hi, new_lo
    return 0.5 * (lo_t + hi_t)


def log_snr(sde: HasMarginals, t: Tensor) -> Tensor:
    """Half log-SNR ``log_snr(t) = ln alpha(t) - ln sigma(t)`` for ``t: (N,)``; returns ``(N,)``."""
    alpha, sigma = marginal_coeffs_like(sde, t)
    return torch.log(alpha) - torch.log(sigma)


def time_from_log_snr(sde: MarginalSDE, target: Tensor | Sequence[float]) -> Tensor:
    """Times ``t: (N,)`` in ``[eps, T]`` with ``log_snr(t) = target`` (batched float64 bisection).

    ``log_snr`` is strictly monotone for every affine SDE; out-of-range targets clip to the ends.
    """
    values = torch.as_tensor(target, dtype=torch.float64).reshape(-1)
    return invert_monotone(lambda t: log_snr(sde, t), values, sde.eps, sde.T)


def edm_sigma(sde: HasMarginals, t: Tensor) -> Tensor:
    """EDM noise level ``sigma(t)/alpha(t)`` for ``t: (N,)``; returns ``(N,)``."""
    alpha, sigma = marginal_coeffs_like(sde, t)
    return sigma / alpha


def time_from_edm_sigma(sde: MarginalSDE, sigma_edm: Tensor | Sequence[float]) -> Tensor:
    """Times ``t: (N,)`` in ``[eps, T]`` with ``sigma(t)/alpha(t) = sigma_edm`` (batched bisection)."""
    values = torch.as_tensor(sigma_edm, dtype=torch.float64).reshape(-1)
    return invert_monotone(lambda t: edm_sigma(sde, t), values, sde.eps, sde.T)
