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
too wide by 0.6% at ``s = 2 S`` but 6% at ``s = S`` and 34% at ``s = S/2`` (``x^2/8`` for small ``x``)
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

Which pair of evaluations the fit uses (``pair``). On a deterministic path the previous
evaluation differs from this one by a step of the flow itself, along ``u``, so ``s^2`` is the
mode's variance in the directions ``u`` points to, the ones the map above acts on. A step that
drew noise moves ``y`` by its deterministic part, about ``dS`` (the step's span in ``S``,
times ``|y - mu|/S``), and by fresh noise of std about ``sqrt(2 S dS)``: the noise dominates
once ``dS < 2 S``, i.e. for the short last steps of long runs. The difference is then spread
over every direction, and on a mode narrower than ``S`` in some directions and wider in
others the fit returns a mean variance: the result is too wide (1-2% in mean spread at 1000
steps on a 64-D mixture whose mode stds span 0.005-0.2 under VP; docs/defaults.md). A probe
restores a deterministic pair for one more NFE: the Euler step of ``dy/dS = (y - D)/S``
from ``S`` to ``S' = 1.1 S`` (so ``t' > eps``, inside a model's training range) and one
evaluation there. For a Gaussian mode of covariance ``C`` the change in ``u`` is then
``-(S' - S) S (C + S^2)^{-1} u`` to first order: the fit weighs the narrow directions in which
``u`` is large, the ones that need the shrink. ``S'`` close to ``S`` keeps the fit local (a
probe at ``2 S`` measured worse). ``pair="noisy"`` (what `Solver.finish` picks for a run that
drew noise) takes the probe per sample where the previous evaluation lies less than
``NOISY_STEP * S = S/2`` above ``S`` (noise at least twice the deterministic change) and the
history elsewhere: short runs, whose last step spans more than ``S/2``, keep their one-NFE end
step, on which the two pairs measured the same on isotropic modes.

The Euler step to ``S = 0`` returns Tweedie's ``D(y; S)`` (``"tweedie"``, what
``denoise=True`` did): it scales by ``1 - x/(1 + x)``, about twice the needed shrink (-2%
spread on a mode of std 0.05 under the default VP SDE). ``"none"`` returns the state at
``eps`` (a sample of ``p_eps``). Only the score at ``t = eps`` is evaluated, inside the time
range a model is trained on.
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import Tensor

from .dynamics import SAME_TIME, CountedScore, ReverseDynamics
from .gaussian_fit import edm_u, fit_gaussian_part, informative
from .marginals import (
    edm_sigma,
    marginal_coeffs_like,
    require_marginals,
    time_from_edm_sigma,
    x0_from_score,
)
from .protocol import MarginalSDE
from .registry import lookup
from .utils import batch_time

__all__ = ["END_PAIRS", "FINAL_STEPS", "NOISY_STEP", "PROBE_RATIO", "SAME_TIME", "EndPair", "FinalStep", "end_step_kind", "final_step"]

FinalStep = Literal["ode", "tweedie", "none"]
FINAL_STEPS: tuple[str, ...] = ("ode", "tweedie", "none")
EndPair = Literal["history", "probe", "noisy"]
END_PAIRS: tuple[str, ...] = ("history", "probe", "noisy")


def end_step_kind(denoise: bool | str | None, default: str = "ode") -> str:
    """The end-of-run step a ``denoise`` argument names: ``None`` -> ``default``, ``True`` ->
    ``"tweedie"``, ``False`` -> ``"none"``, else one of `FINAL_STEPS`.

    Raises:
        ValueError: an unknown name.
    """
    if denoise is None:
        return default
    if isinstance(denoise, bool):
        return "tweedie" if denoise else "none"
    return lookup({k: k for k in FINAL_STEPS}, denoise, "final step", hint="or True / False")


#: The probe's noise level relative to the end's, ``S'/S``.
PROBE_RATIO = 1.1
#: ``"noisy"`` takes the probe where the history's last step spans less than this many ``S``.
NOISY_STEP = 0.5


def final_step(
    dynamics: ReverseDynamics,
    x: Tensor,
    t: float,
    kind: FinalStep = "ode",
    pair: EndPair = "history",
    info: dict[str, object] | None = None,
) -> Tensor:
    """Map ``x: (B, *D)`` at time ``t`` (usually ``eps``) to ``sigma = 0``.

    One NFE for ``"tweedie"`` and for ``"ode"`` fitted to the history, two when ``"ode"``
    takes a probe, none for ``"none"``.

    Args:
        dynamics: the run's dynamics (its score is counted).
        x: the state at ``t``.
        t: the time of ``x``.
        kind: ``"ode"`` (the fitted Gaussian's flow to ``S = 0``, the default: samples
            ``p_0``), ``"tweedie"`` (Euler to ``S = 0``: ``E[x_0 | x_t]``) or ``"none"``
            (return ``x``: ``p_t``).
        pair: what ``"ode"`` fits the Gaussian to besides this evaluation: the run's previous
            evaluation (``"history"``: runs on a deterministic path), a probe at
            ``S' = PROBE_RATIO * S`` (``"probe"``), or, per sample, the probe where the previous
            evaluation lies less than ``NOISY_STEP * S`` above ``S`` (or there is none) and the
            history elsewhere (``"noisy"``: runs that drew noise, see the module docstring).
        info: if given, ``info["pair"]`` is set to the pair used (``"history"``, ``"probe"``,
            ``"mixed"``; ``None`` for ``"tweedie"`` / ``"none"``).

    Returns:
        ``(B, *D)`` samples at ``sigma = 0`` (or ``x`` itself for ``"none"``).

    Raises:
        ValueError: unknown ``kind`` or ``pair``.
    """
    if kind not in FINAL_STEPS:
        raise ValueError(f"unknown final step {kind!r}; valid: {', '.join(FINAL_STEPS)}")
    if pair not in END_PAIRS:
        raise ValueError(f"unknown end-step pair {pair!r}; valid: {', '.join(END_PAIRS)}")
    if info is not None:
        info["pair"] = None
    if kind == "none":
        return x
    with torch.no_grad():
        # A replaced score (not a CountedScore) keeps no record: the trapezoid is used then.
        counted = dynamics.score if isinstance(dynamics.score, CountedScore) else None
        previous = counted.previous_other_time(x, t) if counted is not None and pair != "probe" else None
        tt = batch_time(t, x)
        score = dynamics.score(x, tt)
        x0 = dynamics.x0_from_score(x, tt, score)
        if kind == "tweedie":
            return x0
        sde = require_marginals(dynamics.sde, "the 'ode' end step")
        alpha, sigma = marginal_coeffs_like(sde, tt[:1])  # the run's dtype
        s_end = float(sigma[0] / alpha[0])
        u = edm_u(score, alpha)  # (y - D)/S^2 without the subtraction
        coeff = torch.full((x.shape[0],), 0.5 * s_end**2, dtype=torch.float64, device=x.device)
        used = "history"
        if pair != "history":
            # Per sample: take the probe where the history pair is missing or its last step small.
            probe_mask = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            if previous is not None and pair == "noisy":
                ap, sp = sde.marginal_coeffs(previous[1].to(torch.float64))
                probe_mask = ~previous[3] | (sp / ap - s_end < NOISY_STEP * s_end)
            probe = _probe(dynamics, x, x0, float(alpha[0]), s_end) if bool(probe_mask.any()) else None
            if probe is not None:
                previous = probe if previous is None else _select(probe_mask, probe, previous)
                used = "probe" if bool(probe_mask.all()) else "mixed"
        if previous is not None and bool(previous[3].any()):
            xp, tp, score_p, valid = previous
            # Samples without an evaluation at another time: placeholders, masked out below (trapezoid).
            if not bool(valid.all()):  # (copies of the state only where some are missing)
                vm = valid.reshape((-1,) + (1,) * (x.ndim - 1))
                xp, score_p = torch.where(vm, xp, x), torch.where(vm, score_p, x0.new_zeros(()).expand_as(x))
                tp = torch.where(valid, tp, torch.full_like(tp, t))
            tp = tp.to(x.dtype)
            ap = marginal_coeffs_like(sde, tp)[0].reshape((-1,) + (1,) * (x.ndim - 1))
            dp = x0_from_score(sde, xp, tp, score_p)
            up = edm_u(score_p, ap)
            s2 = fit_gaussian_part(x0, dp, u, up)
            s = s2.sqrt()
            fitted = s * s_end**2 / (torch.sqrt(s2 + s_end**2) + s)
            coeff = torch.where(valid & informative(u, up), fitted, coeff)
        if info is not None:
            info["pair"] = used
        y0: Tensor = x0 + coeff.to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1)) * u
        return y0


Evaluation = tuple[Tensor, Tensor, Tensor, Tensor]


def _select(mask: Tensor, a: Evaluation, b: Evaluation) -> Evaluation:
    """Per sample ``a`` where ``mask: (B,)`` else ``b`` (``(x, t, score, valid)`` tuples)."""
    xm = mask.reshape((-1,) + (1,) * (a[0].ndim - 1))
    return (torch.where(xm, a[0], b[0]), torch.where(mask, a[1].to(torch.float64), b[1].to(torch.float64)),
            torch.where(xm, a[2], b[2]), torch.where(mask, a[3], b[3]))


def _probe(dynamics: ReverseDynamics, x: Tensor, x0: Tensor, alpha: float, s_end: float) -> Evaluation | None:
    """One evaluation at ``S' = PROBE_RATIO * S`` after an Euler step of ``dy/dS = (y - D)/S``.

    Returns ``(x', t', score', valid)`` like `CountedScore.previous_other_time` (``x'`` in the
    SDE's variables, ``t': (B,)``), or ``None`` when ``S'`` lies above the SDE's ``T``.
    """
    sde = cast(MarginalSDE, dynamics.sde)  # the caller checked the marginals
    s_probe = PROBE_RATIO * s_end
    if s_probe >= edm_sigma(sde, torch.tensor([sde.T], dtype=torch.float64)).item():
        return None
    t_probe = float(time_from_edm_sigma(sde, [s_probe])[0])
    a_p, sig_p = (float(c[0]) for c in sde.marginal_coeffs(torch.tensor([t_probe], dtype=torch.float64)))
    s_probe = sig_p / a_p  # the bisection's S', so that the pair is consistent
    y = x / alpha
    x_p = (y + (s_probe - s_end) / s_end * (y - x0)) * a_p
    tp = batch_time(t_probe, x)
    score_p = dynamics.score(x_p, tp)
    valid = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    return x_p, tp.to(torch.float64), score_p, valid
