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

__all__ = ["evaluate_edm", "fit_gaussian_part", "informative"]

#: ``du`` carries information when ``|du|^2 > INFORMATIVE * (|u|^2 + |u_prev|^2)``.
INFORMATIVE = 1e-8


def evaluate_edm(dynamics: ReverseDynamics, x: Tensor, t: float, alpha: float, s_edm: float) -> tuple[Tensor, Tensor]:
    """One score evaluation as ``(D, u)``: ``D = E[x_0 | x_t]`` and ``u = (x/alpha - D)/S^2`` at ``S = s_edm``."""
    d = dynamics.x0_at(x, t)
    return d, (x / alpha - d) / s_edm**2


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
    """``(B,)`` bool: the two evaluations differ enough in ``u`` for `fit_gaussian_part` to mean something."""
    du = (u - u_prev).flatten(1).square().sum(1, dtype=torch.float64)
    scale = u.flatten(1).square().sum(1, dtype=torch.float64) + u_prev.flatten(1).square().sum(1, dtype=torch.float64)
    return du > INFORMATIVE * scale
