"""The end of a sampling run: from the last grid time ``eps`` to the data at ``sigma = 0``.

Every solver integrates down to ``t = eps > 0``, where the exact state follows the blurred
marginal ``p_eps`` (noise std ``sigma(eps)/alpha(eps)``; 0.0105 for the default VP SDE, next to
data features of that size). The remaining piece to ``p_0`` is one step of the
probability-flow ODE in the EDM variables of Karras et al. 2022 (``y = x/alpha``, noise level
``S = sigma/alpha``)::

    dy/dS = d(y, S) = (y - D(y; S)) / S = -S grad_y log p_S(y),     D = E[x_0 | x_t]

Because ``d = -S grad log p_S`` vanishes at ``S = 0`` for any ``p_0`` with a smooth density, the
trapezoidal rule over ``[S, 0]`` needs only the slope at ``S`` (one score evaluation)::

    trapezoid:  y_0 = y - (S/2) (d(S) + 0) = (y + D(y; S)) / 2

For a Gaussian mode of std ``s`` the exact flow scales ``y - mu`` by ``s/sqrt(s^2 + S^2) =
1 - x/2 + 3x^2/8 - ...`` with ``x = S^2/s^2``, the trapezoid by ``1 - x/(2(1 + x))``: it is
too wide by about ``x^2/8``, 0.7% at ``s = 2 S`` but 7% at ``s = S`` and 37% at ``s = S/2``
(the default VP SDE ends at ``S = 0.0105``).

``"ode"`` (the default) therefore integrates a local Gaussian exactly instead. With
``u = (y - D)/S^2``, a mode ``N(mu, s^2 I)`` has ``D = mu + s^2 u`` at any ``y`` and ``S``
(`solvers.gaussian_fit`), so the run's previous score evaluation of the same samples
(per sample, the newest one at another time than this step's, `CountedScore.previous_other_time`:
with per-sample adaptive steps samples reach ``eps`` at different iterations) and this one
give ``s^2`` per sample, and the exact flow to ``S = 0`` is::

    "ode":      y_0 = mu + (y - mu) s / g = D + u s S^2 / (g + s),      g = sqrt(s^2 + S^2)

still one NFE. ``s >> S`` gives the trapezoid back, ``s = 0`` Tweedie's ``D``; since
``s/(g + s) <= 1/2`` every sample lands between those two, whatever the fit. Where there is
no usable previous evaluation (none at another time, another batch shape, or no change in
``u``) the trapezoid is used.

The Euler step to ``S = 0`` returns Tweedie's ``D(y; S)`` (``"tweedie"``, what
``denoise=True`` did): it scales by ``1 - x/(1 + x)``, about twice the needed shrink (-2%
spread on a mode of std 0.05 under the default VP SDE). ``"none"`` returns the state at
``eps`` (a sample of ``p_eps``). Only the score at ``t = eps`` is evaluated, inside the time
range a model is trained on.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .dynamics import SAME_TIME, CountedScore, ReverseDynamics
from .gaussian_fit import fit_gaussian_part, informative
from .marginals import require_marginals, x0_from_score
from .utils import batch_time

__all__ = ["FINAL_STEPS", "SAME_TIME", "FinalStep", "final_step"]

FinalStep = Literal["ode", "tweedie", "none"]
FINAL_STEPS: tuple[str, ...] = ("ode", "tweedie", "none")
def final_step(dynamics: ReverseDynamics, x: Tensor, t: float, kind: FinalStep = "ode") -> Tensor:
    """Map ``x: (B, *D)`` at time ``t`` (usually ``eps``) to ``sigma = 0``; one NFE unless ``"none"``.

    Args:
        dynamics: the run's dynamics (its score is counted).
        x: the state at ``t``.
        t: the time of ``x``.
        kind: ``"ode"`` (the fitted Gaussian's flow to ``S = 0``, the default: samples
            ``p_0``), ``"tweedie"`` (Euler to ``S = 0``: ``E[x_0 | x_t]``) or ``"none"``
            (return ``x``: ``p_t``).

    Returns:
        ``(B, *D)`` samples at ``sigma = 0`` (or ``x`` itself for ``"none"``).

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in FINAL_STEPS:
        raise ValueError(f"unknown final step {kind!r}; valid: {', '.join(FINAL_STEPS)}")
    if kind == "none":
        return x
    with torch.no_grad():
        # A replaced score (not a CountedScore) keeps no record: the trapezoid is used then.
        counted = dynamics.score if isinstance(dynamics.score, CountedScore) else None
        previous = counted.previous_other_time(x, t) if counted is not None else None
        tt = batch_time(t, x)
        x0 = dynamics.x0_pred(x, tt)
        if kind == "tweedie":
            return x0
        sde = require_marginals(dynamics.sde, "the 'ode' end step")
        alpha, sigma = sde.marginal_coeffs(tt[:1])
        s_end = float(sigma[0] / alpha[0])
        u = (x / alpha.reshape((1,) * x.ndim) - x0) / s_end**2
        coeff = torch.full((x.shape[0],), 0.5 * s_end**2, dtype=torch.float64, device=x.device)
        if previous is not None and bool(previous[3].any()):
            xp, tp, score_p, valid = previous
            # Samples without an evaluation at another time: placeholders, masked out below (trapezoid).
            vm = valid.reshape((-1,) + (1,) * (x.ndim - 1))
            xp, score_p = torch.where(vm, xp, x), torch.where(vm, score_p, x0.new_zeros(()).expand_as(x))
            tp = torch.where(valid, tp, torch.full_like(tp, t)).to(x.dtype)
            ap, sp = (c.reshape((-1,) + (1,) * (x.ndim - 1)) for c in sde.marginal_coeffs(tp))
            dp = x0_from_score(sde, xp, tp, score_p)
            up = (xp / ap - dp) / (sp / ap) ** 2
            s2 = fit_gaussian_part(x0, dp, u, up)
            s = s2.sqrt()
            fitted = s * s_end**2 / (torch.sqrt(s2 + s_end**2) + s)
            coeff = torch.where(valid & informative(u, up), fitted, coeff)
        y0: Tensor = x0 + coeff.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1)) * u
        return y0
