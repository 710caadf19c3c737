"""The local Gaussian fit shared by `gaussian_2m`, `gaussian_ancestral` and the end-of-run step.

In the EDM variables (``y = x/alpha``, ``S = sigma/alpha``, Karras et al. 2022) write
``u = (y - D)/S^2`` with ``D = E[x_0 | x_t]``. If ``p_0`` is ``N(mu, s^2 I)`` near a sample then
``D = mu + s^2/(s^2 + S^2) (y - mu)``, i.e. ``D = mu + s^2 u`` at every ``y`` and ``S``. Two
evaluations of one sample (at any two noise levels or states in that mode) therefore give
``s^2`` from ``dD = s^2 du``; `fit_gaussian_part` solves it per sample in least squares.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dynamics import ReverseDynamics
from .marginals import marginals_of, x0_from_score
from .utils import batch_time

__all__ = ["edm_u", "evaluate_edm", "fit_gaussian_part", "informative"]

#: In float32, ``du`` carries information when ``|du|^2 > INFORMATIVE * (|u|^2 + |u_prev|^2)``;
#: other dtypes scale it by their squared machine epsilon (`informative`).
INFORMATIVE = 1e-8


def evaluate_edm(dynamics: ReverseDynamics, x: Tensor, t: float, alpha: float, s_edm: float) -> tuple[Tensor, Tensor]:
    """One score evaluation as ``(D, u)``: ``D = E[x_0 | x_t]`` and ``u = (x/alpha - D)/S^2`` at ``S = s_edm``.

    ``u`` is computed as ``-alpha s(x, t)``, its value in exact arithmetic (`edm_u`); ``s_edm``
    is kept for the callers' symmetry with the step's other noise levels.
    """
    tt = batch_time(t, x)
    score = dynamics.score(x, tt)
    return x0_from_score(marginals_of(dynamics), x, tt[:1], score), edm_u(score, alpha)


def edm_u(score: Tensor, alpha: Tensor | float) -> Tensor:
    """``u = (y - D)/S^2 = -alpha s`` for ``score: (B, *D)`` and ``alpha``: a float or ``(B,)``.

    With ``y = x/alpha``, ``D = (x + sigma^2 s)/alpha`` and ``S = sigma/alpha`` the difference
    ``y - D`` is ``-sigma^2 s/alpha`` exactly, so ``u`` needs no subtraction. Forming ``y - D``
    in floating point loses ``|y|/|y - D|`` of the precision (``S^2/s^2`` relative on a mode
    of std ``s`` once ``S << s``; 1e-4 at the default VP end on a mode of std 1), which on
    fine grids swamped the change in ``u`` the fit reads.
    """
    if isinstance(alpha, Tensor):
        alpha = alpha.reshape((-1,) + (1,) * (score.ndim - 1))
    return -alpha * score


def fit_gaussian_part(d: Tensor, d_prev: Tensor, u: Tensor, u_prev: Tensor) -> Tensor:
    """Per-sample ``s^2 = max(0, <dD, du>/<du, du>)`` over all non-batch coordinates, ``(B,)`` float64.

    ``0`` where ``du = 0`` (nothing to fit). Inputs are ``(B, *D)``.
    """
    # Products in the state's dtype, sums accumulated in float64 (no float64 copies of the state).
    dd = (d - d_prev).flatten(1)
    du = (u - u_prev).flatten(1)
    num = (dd * du).sum(1, dtype=torch.float64)
    den = du.square().sum(1, dtype=torch.float64)
    s2 = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))
    return s2.clamp_min(0.0)


def informative(u: Tensor, u_prev: Tensor) -> Tensor:
    """``(B,)`` bool: the two evaluations differ enough in ``u`` for `fit_gaussian_part` to mean something.

    The bar is ``|du| > 1e-4 |u|`` in float32, about 840 units in the last place of ``u``, and
    the same number of units in other dtypes (``|du| > 1.9e-13 |u|`` in float64): a float64
    run on a fine grid, whose last step changes ``u`` by 1e-4 of itself or less, fits instead
    of falling back to the trapezoid. ``u`` must be formed without cancellation (`edm_u`).
    """
    du = (u - u_prev).flatten(1).square().sum(1, dtype=torch.float64)
    scale = u.flatten(1).square().sum(1, dtype=torch.float64) + u_prev.flatten(1).square().sum(1, dtype=torch.float64)
    ulps = torch.finfo(u.dtype).eps / torch.finfo(torch.float32).eps
    return du > INFORMATIVE * ulps**2 * scale
