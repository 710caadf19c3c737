"""SDE-DPM-Solver++(2M): a multistep exponential integrator of the reverse SDE (Lu et al. 2022b, App.).

Derivation, for the whole reverse family ``dx = [f - (1+l^2)/2 g^2 s] dt + l g dW_bar`` of an
affine SDE. With ``f = (ln alpha)' x``, ``g^2 = -2 sigma^2 lambda'(t)`` and the score written
through the data prediction, ``s = -(x - alpha d)/sigma^2``, the drift is linear in ``x`` plus
a term in ``d``::

    dx = [((ln sigma)' - l^2 lambda') x + (1 + l^2) lambda' alpha d] dt + l g dW_bar

Variation of constants from ``s`` to ``t`` (``h = lambda_t - lambda_s > 0``, ``c = 1 + l^2``)::

    x_t = (sigma_t/sigma_s) e^{-l^2 h} x_s
          + sigma_t e^{-l^2 lambda_t} c int_{lambda_s}^{lambda_t} e^{c lambda} d(lambda) dlambda
          + sigma_t sqrt(1 - e^{-2 l^2 h}) z                                      (exact noise)

The noise variance is ``int l^2 g^2 (sigma_t/sigma_u)^2 e^{-2 l^2 (lambda_t - lambda_u)} du
= sigma_t^2 (1 - e^{-2 l^2 h})``. Expanding ``d`` to first order in ``lambda`` gives
``alpha_t [phi_1(c h) d_s + h phi_2(c h) d']`` with the data ``phi`` functions of
`solvers.exponential`; the multistep estimate ``h d' ~ (d_s - d_prev) / r`` (``r`` the
ratio of the previous to the current log-SNR step) makes it a one-evaluation-per-step
method. As Lu et al. (2022b) we weight the difference by ``phi_1(c h)/2`` ("midpoint"),
which equals ``h phi_2(c h)`` to leading order (so the order is unchanged) and is more
accurate at large steps (docs/fast_solvers.md). ``l = 1``: SDE-DPM-Solver++(2M) (``c = 2``, factor ``e^{-h}``, noise
``sigma_t sqrt(1 - e^{-2h})``); ``l = 0``: DPM-Solver++(2M) exactly (Alg. 2).
"""

from __future__ import annotations

import math

from torch import Tensor

from .base import DynamicsKind, SolveContext
from .dpmpp import LOWER_ORDER_FINAL_BELOW
from .dynamics import ReverseDynamics
from .exponential import ExponentialIntegrator, phi_data
from .inputs import check_flag

__all__ = ["SDEDPMSolverPP2M"]


class SDEDPMSolverPP2M(ExponentialIntegrator):
    """SDE-DPM-Solver++(2M): exact linear part and exact noise of the reverse SDE, 1 NFE/step.

    One step from ``s`` to ``t`` on the dynamics' reverse family with noise level
    ``l = dynamics.lam`` (``c = 1 + l^2``, ``h = lambda_t - lambda_s``, ``d = E[x_0 | x]``)::

        x_t = (sigma_t/sigma_s) e^{-l^2 h} x_s + alpha_t phi_1(c h) [d_s + (d_s - d_prev) / (2 r)]
              + sigma_t sqrt(1 - e^{-2 l^2 h}) z

    (first step, and the last one when ``lower_order_final`` applies: without the ``d_prev``
    term, i.e. SDE-DPM-Solver-1, which equals DDPM ancestral sampling / DDIM with eta = 1).
    The derivation is in the module docstring. On the reverse SDE (``l = 1``) the
    output converges to the reverse-SDE marginals; it is weak order 1 (the correction
    removes the drift's second-order term but not the ``O(h)`` coupling of ``d`` with the
    step's own noise), with a much smaller constant than Euler–Maruyama (tests compare both).
    The noise ``z = dW / sqrt(|dt|)`` comes from the noise source's Brownian increment, so a
    shared `BrownianPath` gives comparable paths across step counts.
    Noise is added on every step, the last included (the output is distributed as ``p_eps``).
    On sharp data its error is not monotone between about 10 and 16 NFE: the first-order last
    step used below 15 intervals narrows the modes (spread 0.82 on modes of std 0.02 at
    NFE 12-15); without it (``lower_order_final=False``) the error falls monotonically on four
    of five sharp targets but is larger at NFE 5-10, typically 2x and up to 57x
    (docs/defaults.md, "Between those budgets").

    Args:
        lower_order_final: first-order last step with fewer than 15 grid intervals.

    NFE: one score evaluation per step.
    """

    order: float = 1.0
    strong_order: float | None = 1.0
    dynamics_kind: DynamicsKind = "any"
    stochastic: bool = True

    def __init__(self, *, lower_order_final: bool = True) -> None:
        self.lower_order_final = check_flag(lower_order_final, "lower_order_final")

    def step(self, dynamics: ReverseDynamics, x: Tensor, t: float, t_next: float, ctx: SolveContext) -> Tensor:
        i, tab = ctx.index, self.schedule(ctx)
        s_s, a_t, s_t = tab.sigma[i], tab.alpha[i + 1], tab.sigma[i + 1]
        h = tab.log_snr[i + 1] - tab.log_snr[i]
        l2 = dynamics.lam**2
        ch = (1.0 + l2) * h
        d = dynamics.x0_at(x, t, (tab.alpha[i], s_s))
        # Exact transport of x and of the constant part of the data prediction.
        x_t = ((s_t / s_s) * math.exp(-l2 * h)) * x + (a_t * phi_data(ch, 1)) * d
        d_prev = ctx.memory.get("d_prev")
        ctx.memory["d_prev"] = d
        last_low = self.lower_order_final and ctx.n_steps < LOWER_ORDER_FINAL_BELOW and ctx.is_last
        if d_prev is not None and not last_low:
            # Multistep estimate of h d' from the previous data prediction, midpoint weight.
            r = (tab.log_snr[i] - tab.log_snr[i - 1]) / h
            x_t = x_t + (0.5 * a_t * phi_data(ch, 1) / r) * (d - d_prev)
        if l2 == 0.0:
            return x_t
        # Exact noise of the linear SDE over the step.
        z = ctx.noise.increment(t, t_next, x) / math.sqrt(t - t_next)
        return x_t + (s_t * math.sqrt(-math.expm1(-2.0 * l2 * h))) * z
