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

from typing import Any

import torch

__all__ = ["check_score_sde", "check_training_sde", "marginals_difference", "trained_time_floor",
           "warn_below_training_range", "SCORE_SDE_RTOL"]

SCORE_SDE_RTOL = 1e-3
"""Relative difference of ``alpha(t)`` or ``sigma(t)`` above which the SDEs count as different.
A discrete schedule's float32 table (diffusers' ``alphas_cumprod``) and the same table rebuilt
in float64 differ by up to 1e-4 in ``sigma`` at ``t = 1/N``: one process. A difference of 0.1%
in the noise level changes a score by as little."""

_FRACTIONS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
"""Where in ``[eps, T]`` of the solved SDE the coefficients are compared."""


def marginals_difference(declared: Any, sde: Any) -> str | None:
    """Where ``declared``'s marginals part from ``sde``'s on ``sde``'s ``[eps, T]``, or ``None``.

    ``None`` also when either SDE lacks ``marginal_coeffs(t) -> (alpha, sigma)`` or cannot be
    evaluated (`check_sde` names what is wrong with a broken one). Otherwise the text names the
    first time where ``alpha(t)`` or ``sigma(t)`` differ by more than `SCORE_SDE_RTOL`, or says
    that ``sde`` runs past ``declared.T`` (an earlier ``T`` with the same marginals is the same
    process stopped early).
    """
    if declared is sde:
        return None
    if not (callable(getattr(declared, "marginal_coeffs", None)) and callable(getattr(sde, "marginal_coeffs", None))):
        return None
    try:
        eps, T = float(sde.eps), float(sde.T)
        T_declared = float(declared.T)
    except (AttributeError, TypeError, ValueError):
        return None
    if T > T_declared * (1.0 + 1e-9):
        # (an earlier T is fine where the marginals agree: a VP schedule stopped early)
        return f"the sde runs to T = {T:g}, past the T = {T_declared:g} the score was made for"
    t = torch.tensor([eps + f * (T - eps) for f in _FRACTIONS], dtype=torch.float64)
    try:
        a1, s1 = (torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(-1) for v in sde.marginal_coeffs(t))
        a2, s2 = (torch.as_tensor(v).detach().to("cpu", torch.float64).reshape(-1)
                  for v in declared.marginal_coeffs(t))
        if a1.shape != t.shape or a2.shape != t.shape or s1.shape != t.shape or s2.shape != t.shape:
            return None
        off = ((a1 - a2).abs() > SCORE_SDE_RTOL * a2.abs()) | ((s1 - s2).abs() > SCORE_SDE_RTOL * s2.abs())
    except Exception:  # a broken SDE: `check_sde` names what is wrong with it
        return None
    if not bool(off.any()):
        return None
    i = int(off.nonzero()[0, 0])
    return (f"at t = {float(t[i]):.4g}, alpha {float(a2[i]):.6g} against {float(a1[i]):.6g}, "
            f"sigma {float(s2[i]):.6g} against {float(s1[i]):.6g}")


def check_score_sde(score: Any, sde: Any, *, what: str = "score") -> None:
    """Refuse a ``score`` whose declared ``score.sde`` has other marginals than ``sde``.

    Nothing is checked when ``score`` has no ``sde`` attribute, when it is ``sde`` itself, or
    when either lacks ``marginal_coeffs(t) -> (alpha, sigma)``. ``what`` names the object in the
    message (``"after_step"`` for a step hook that uses an SDE's coefficients, e.g.
    `scoresde.conditional.Replacement`).

    Raises:
        ValueError: ``sde`` runs past the declared SDE's ``T``, or ``alpha(t)`` / ``sigma(t)``
            differ by more than `SCORE_SDE_RTOL` at a time in ``[eps, T]``; the message names
            both SDEs and the first time where they part.
    """
    declared = getattr(score, "sde", None)
    if declared is None:
        return
    difference = marginals_difference(declared, sde)
    if difference is None:
        return
    advice = ("a score of p_t under one SDE is not the score of another's p_t; solve with the score's own "
              "SDE (score.sde; e.g. sde, score = scoresde.interop.unet_score(unet, scheduler), or the SDE "
              "scoresde.train.load_model returns with a trained model)")
    raise ValueError(f"the {what} was made for {declared!r} ({what}.sde), not for the sde given, {sde!r}: "
                     f"{difference} (the {what}'s SDE against the one given); {advice}")


def check_training_sde(trained: Any, sde: Any) -> None:
    """Refuse building a trained network's score for ``sde`` when it was trained (``trained``;
    ``None``: not known) under an SDE with other marginals: its time input would mean other
    noise levels.

    Raises:
        ValueError: naming both SDEs and where they part (`marginals_difference`).
    """
    difference = None if trained is None else marginals_difference(trained, sde)
    if difference is not None:
        raise ValueError(
            f"this model was trained under {trained!r}, but score_fn was given {sde!r}: {difference} (the "
            f"training SDE against the one given); the network's time input would mean other noise levels: "
            f"use the SDE it was trained with (scoresde.train.load_model returns it)")


def trained_time_floor(score: Any, sde: Any) -> float | None:
    """The earliest time the score's network was trained at: the larger ``min_score_time`` of
    ``score`` (a trained `scoresde` model's score carries it) and ``sde`` (a discrete schedule's
    first timestep), or ``None`` where neither has one."""
    floors = []
    for source in (score, sde):
        value = getattr(source, "min_score_time", None)
        try:
            floors += [] if value is None else [float(value)]
        except (TypeError, ValueError):
            continue
    return max(floors) if floors else None


def warn_below_training_range(score: Any, sde: Any) -> None:
    """Warn when a run ends (``sde.eps``) below the earliest time the score's network was trained
    at (`trained_time_floor`): its score there is extrapolated, not learned."""
    floor = trained_time_floor(score, sde)
    try:
        eps = float(sde.eps)
    except (AttributeError, TypeError, ValueError):
        return
    if floor is not None and eps < floor * (1.0 - 1e-9):
        from .warning_types import MethodLimitWarning, warn

        warn(f"the run ends at eps = {eps:g}, below the earliest time the score's network was trained at "
             f"({floor:g}): its score on [{eps:g}, {floor:g}] is extrapolated, not learned; sample with an SDE "
             f"whose eps is at least {floor:g} (the run's end step carries the samples on to the data)",
             MethodLimitWarning)
