"""Does the SDE being solved match the one a score declares it was made for?

A score of ``p_t`` belongs to one forward process: under another ``alpha(t), sigma(t)`` the
same ``t`` is another noise level, and a solver that pairs them samples a wrong law without
any error. A score that knows its process can say so with an attribute ``score.sde``
(`scoresde.interop.DiffusersScore` does: it is a network of a discrete schedule's timesteps).
`check_score_sde` compares the two SDEs' marginal coefficients at a few times before a run
and refuses a mismatch. Scores without ``.sde`` (most callables, and scores of ``sigma``
alone, which fit any schedule) are not checked.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["check_score_sde", "SCORE_SDE_RTOL"]

SCORE_SDE_RTOL = 1e-5
"""Relative difference of ``alpha(t)`` or ``sigma(t)`` above which the SDEs count as different
(a float32 table rebuilt in float64 differs by about 1e-7)."""

_FRACTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Where in ``[eps, T]`` of the solved SDE the coefficients are compared."""


def check_score_sde(score: Any, sde: Any) -> None:
    """Refuse a ``score`` whose declared ``score.sde`` has other marginals than ``sde``.

    Nothing is checked when ``score`` has no ``sde`` attribute, when it is ``sde`` itself, or
    when either lacks ``marginal_coeffs(t) -> (alpha, sigma)``.

    Raises:
        ValueError: the end times differ, or ``alpha(t)`` / ``sigma(t)`` differ by more than
            `SCORE_SDE_RTOL` at a time in ``[eps, T]``; the message names both SDEs and the
            first time where they part.
    """
    declared = getattr(score, "sde", None)
    if declared is None or declared is sde:
        return
    if not (callable(getattr(declared, "marginal_coeffs", None)) and callable(getattr(sde, "marginal_coeffs", None))):
        return
    try:
        eps, T = float(sde.eps), float(sde.T)
        T_declared = float(declared.T)
    except (AttributeError, TypeError, ValueError):
        return
    advice = ("a score of p_t under one SDE is not the score of another's p_t; solve with the score's own "
              "SDE (score.sde; e.g. sde, score = scoresde.interop.unet_score(unet, scheduler))")
    if not math.isclose(T, T_declared, rel_tol=1e-9):
        raise ValueError(f"the score was made for {declared!r} (score.sde, T = {T_declared:g}), but the "
                         f"sde given is {sde!r} (T = {T:g}): {advice}")
    t = torch.tensor([eps + f * (T - eps) for f in _FRACTIONS], dtype=torch.float64)
    try:
        a1, s1 = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in sde.marginal_coeffs(t))
        a2, s2 = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in declared.marginal_coeffs(t))
    except Exception:  # a broken SDE: `check_sde` names what is wrong with it
        return
    if a1.shape != t.shape or a2.shape != t.shape or s1.shape != t.shape or s2.shape != t.shape:
        return
    off = ((a1 - a2).abs() > SCORE_SDE_RTOL * a2.abs()) | ((s1 - s2).abs() > SCORE_SDE_RTOL * s2.abs())
    if bool(off.any()):
        i = int(off.nonzero()[0, 0])
        raise ValueError(
            f"the score was made for {declared!r} (score.sde), whose marginals differ from those of the "
            f"sde given, {sde!r}: at t = {float(t[i]):.4g}, alpha {float(a2[i]):.6g} against {float(a1[i]):.6g}, "
            f"sigma {float(s2[i]):.6g} against {float(s1[i]):.6g}; {advice}")
