"""Ancestral sampling with a fitted posterior variance: exact on Gaussian data at any step size.

In the EDM variables of Karras et al. 2022 (``y = x/alpha``, ``S = sigma/alpha``) the forward
process is ``y_S = x_0 + S eps``, a Brownian motion in ``S^2`` started at the data. Given
``x_0``, the bridge from ``y_S`` back to a lower level ``S' < S`` is Gaussian::

    y_S' | y_S, x_0  ~  N(x_0 + (S'^2/S^2) (y_S - x_0),  S'^2 (S^2 - S'^2)/S^2 I)

so the exact reverse transition, for any data, has the moments (``D = E[x_0 | y_S]``,
``u = (y_S - D)/S^2``, ``C = Cov(x_0 | y_S)``)::

    E[y_S' | y_S]   = D + S'^2 u
    Cov(y_S' | y_S) = S'^2 (S^2 - S'^2)/S^2 I + (1 - S'^2/S^2)^2 C

Ancestral sampling (DDPM, Ho et al. 2020; SMLD's ancestral step, Song et al. 2021, App. F)
takes this mean, which is exact, with ``C = 0``: the posterior of ``x_0`` collapsed to its
mean. That drops variance at every step, so modes come out too narrow by O(h) (docs/defaults.md).
Bao et al. 2022 (Analytic-DPM) give the optimal *scalar* ``C`` per step from data statistics.
Here ``C`` is fitted per sample from the trajectory, with the local Gaussian of `gaussian_2m`
and the end-of-run step (`solvers.gaussian_fit`): if ``p_0`` is ``N(mu, s^2 I)`` near the
sample then ``D = mu + s^2 u`` and ``C = s^2 S^2/(s^2 + S^2) I``; the two most recent
evaluations give ``s^2``, and the step draws::

    y_S' = D + S'^2 u + sqrt((s^2 + S'^2)(S^2 - S'^2)/(s^2 + S^2)) z

which is the exact transition of the reverse SDE for Gaussian data (at ``s^2 = 0`` it is the
ancestral step). So on a Gaussian mode every step after the first is exact, whatever its
size (tested to sampling error at 3 steps). On a mixture ``p(x_0 | y_S)`` is not Gaussian
while trajectories choose a mode, and the fit returns an average of the mode's variances on
an anisotropic mode; as the steps shrink both corrections vanish and the sampler converges to
the reverse SDE's marginals like the ancestral one (weak order 1). Measured against
`ancestral` and `sde_dpmpp_2m`: docs/defaults.md, "`gaussian_ancestral`".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import DynamicsKind, SolveContext
from .dynamics import ReverseDynamics
from .exponential import ExponentialIntegrator
from .gaussian_fit import evaluate_edm, fit_gaussian_part, informative

__all__ = ["GaussianAncestral", "gaussian_transition_variance"]


def gaussian_transition_variance(s2: Tensor, s_from: float, s_to: float) -> Tensor:
    """``(s^2 + S'^2)(S^2 - S'^2)/(s^2 + S^2)`` per sample: the reverse transition's variance for ``N(mu, s^2 I)`` data.

    ``s2: (B,)`` (float64), ``s_from = S > s_to = S' > 0`` in ``y = x/alpha`` units; returns ``(B,)`` float64.
    """
    if not (s_from > s_to > 0.0):
        raise ValueError(f"a reverse transition needs S_from > S_to > 0, got {s_from} -> {s_to}")
    s2 = s2.to(torch.float64)
    return (s2 + s_to**2) * (s_from**2 - s_to**2) / (s2 + s_from**2)


class GaussianAncestral(ExponentialIntegrator):
    """Ancestral steps with a per-sample fitted posterior variance of the data; 1 NFE per step.

    The mean of each step is the ancestral one, ``D + S'^2 u`` (the exact conditional mean of
    the reverse transition for any data), and its variance adds ``(1 - S'^2/S^2)^2 C`` with
    ``C = s^2 S^2/(s^2 + S^2)``, the posterior covariance of ``x_0`` of a local Gaussian
    ``N(mu, s^2 I)`` fitted per sample to this evaluation and the previous one (module
    docstring). Exact on isotropic Gaussian data at any step size after the first step; the
    first step, and samples whose two evaluations do not differ enough to fit, take the plain
    ancestral step. Reverse SDE only (``lam = 1``). Default grid: log-SNR. Noise is added on
    every step, the last included; the end-of-run step (`solvers.end`) maps ``p_eps`` to
    ``p_0``.

    The fitted variance is one number per sample: on a mode much narrower in some directions
    than in others it is an average, so the narrow directions get too much noise and the wide
    ones too little until the steps are short (measured in docs/defaults.md).
    """

    order: float = 1.0
    strong_order: float | None = None
    dynamics_kind: DynamicsKind = "sde"
    stochastic: bool = True

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        i, tab = ctx.index, self.schedule(ctx)
        a_s, a_t = tab.alpha[i], tab.alpha[i + 1]
        s_from, s_to = tab.sigma[i] / a_s, tab.sigma[i + 1] / a_t
        d, u = evaluate_edm(dynamics, x, t, a_s, s_from)
        prev = ctx.memory.get("gaussian_prev")
        ctx.memory["gaussian_prev"] = (d, u)
        if prev is None:
            s2 = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        else:
            d_prev, u_prev = prev
            s2 = fit_gaussian_part(d, d_prev, u, u_prev)
            s2 = torch.where(informative(u, u_prev), s2, torch.zeros_like(s2))
        std = gaussian_transition_variance(s2, s_from, s_to).sqrt().to(x.dtype)
        z = ctx.noise.increment(t, t_next, x) / math.sqrt(t - t_next)
        y_next = d + s_to**2 * u + std.reshape((-1,) + (1,) * (x.ndim - 1)) * z
        return a_t * y_next
