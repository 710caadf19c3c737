"""The warnings of a prior draw that is not a sample of ``p_T`` (`solvers.prior_match` measures it).

`warn_if_off_prior` reads a `PriorMatchProbe` after a run's first evaluations at ``T`` and warns
when the mean shift a run at reverse-family level ``lam`` carries to its samples exceeds
`PRIOR_SHIFT_LIMIT`, when the prior's variance would carry a spread error above
`PRIOR_SPREAD_LIMIT`, or when the score at ``T`` pulls no coordinate towards a centre; each
message gives the numbers and the noise level at ``T`` that would bring the run within the limit.
"""

from __future__ import annotations

import math

import torch

from .prior_match import (
    PRIOR_SHIFT_LIMIT,
    PRIOR_SPREAD_LIMIT,
    SLOPE_TOLERANCE,
    PriorMatchProbe,
)
from .warning_types import PriorMismatchWarning, warn

__all__ = ["warn_if_off_prior"]


def _level_factor(kept: float, share: float, lam: float) -> float:
    """How many times the noise level at ``T`` must grow for a run at level ``lam`` to keep
    `PRIOR_SHIFT_LIMIT` instead of ``kept``, for data of share ``share`` of ``p_T``'s variance.

    Raising the level ``k``-fold multiplies ``p_T``'s variance by ``r + (1 - r) k^2``: the shift
    falls by its square root and the share ``r`` by the whole factor, so what the run keeps,
    ``shift r^(lam^2/2)``, falls by ``(r + (1 - r) k^2)^((1 + lam^2)/2)``; solved for ``k``
    (``kept / limit`` for the ODE and narrow data).
    """
    r = min(max(share, 0.0), 0.999)
    target = (max(kept, PRIOR_SHIFT_LIMIT) / PRIOR_SHIFT_LIMIT) ** (2.0 / (1.0 + lam * lam))
    return math.sqrt(max(target - r, 1.0 - r) / (1.0 - r))


def warn_if_off_prior(probe: PriorMatchProbe, lam: float, stacklevel: int = 3) -> None:
    """Warn when the shift a run at reverse-family level ``lam`` (0: deterministic, 1: the reverse
    SDE) carries to its samples, `PriorMatchProbe.carried`, exceeds `PRIOR_SHIFT_LIMIT`, and the
    probe's shift exceeds four times its error. The warning gives the shift's length too
    (`PriorMatchProbe.norm`), but does not test it: a trained network's own error at ``T`` adds
    to the length over every coordinate (module docstring)."""
    shift, error, carried = probe.shift, probe.error, probe.carried(lam, SLOPE_TOLERANCE)
    if shift is None or error is None or carried is None:
        return
    unpulled = probe.unpulled()
    if bool(unpulled.any()):  # p_T is not the one-mode law the numbers below assume
        _warn_unpulled(probe, int(unpulled.sum()), unpulled.numel(), stacklevel + 1)
        return
    spread, ratio = probe.spread_carried(lam, SLOPE_TOLERANCE), probe.prior_variance_ratio()
    # a slope of the wrong sign (ratio 0: no pull towards the origin) is a broken score, not a prior
    if spread is not None and spread > PRIOR_SPREAD_LIMIT and ratio is not None and 0 < ratio < math.inf:
        _warn_spread(probe, spread, lam, stacklevel + 1)
    if not (carried > PRIOR_SHIFT_LIMIT and shift > 4 * error):
        return
    sde = probe.sde
    alpha, sigma = sde.marginal_coeffs(torch.tensor([float(sde.T)], dtype=torch.float64))  # type: ignore[attr-defined]
    level = float(sigma[0] / alpha[0])
    kept = probe.carried(lam) or carried  # what the run keeps (stats["prior_shift_carried"]), not the lowered read
    kept_length = probe.norm(lam) or 0.0
    total = probe.norm() or 0.0
    if lam == 0.0:
        effect = (f"The probability-flow ODE carries that offset to the samples: the mean off by about "
                  f"{shift:.2g} of the data's std per coordinate, {total:.2g} along the offset")
    else:
        effect = (f"A stochastic run (one that adds noise, or EDM's churn, which restarts the flow from a "
                  f"higher level) forgets part of it (the more, the more it adds or churns and the "
                  f"narrower the data are against the noise at T), but here about {kept:.2g} of the "
                  f"data's std per coordinate ({kept_length:.2g} along the offset) stays in the samples' "
                  f"mean, and mode weights move with it")
    needed = level * _level_factor(kept, float(probe.data_share().mean()), lam)
    warn(
        f"the prior draw x_T is not a sample of p_T: the score at T says p_T is off the prior by "
        f"about {shift:.3g} of its spread per coordinate, {total:.3g} in all along the offset "
        f"(sigma(T) x the batch mean of "
        f"score(x_T, T) + x_T/p^2; solvers.prior_match). {effect}. Usual causes: data far from the "
        f"origin (centre it, and add the mean back to the samples), a noise level at T too small for "
        f"the data's spread or skew (p_T keeps the data's shape), or a conditional or guided score "
        f"whose class lies off the origin. A noise level of about {needed:.3g} at T instead of "
        f"{level:.3g} brings what this run keeps to {PRIOR_SHIFT_LIMIT} per coordinate (under VE: sigma_max)",
        PriorMismatchWarning,
    )


def _warn_unpulled(probe: PriorMatchProbe, count: int, dims: int, stacklevel: int) -> None:
    """The warning of a score at ``T`` that does not pull the draw towards a centre (`PriorMatchProbe.unpulled`)."""
    sde = probe.sde
    alpha, sigma = sde.marginal_coeffs(torch.tensor([float(sde.T)], dtype=torch.float64))  # type: ignore[attr-defined]
    level = float(sigma[0] / alpha[0])
    warn(
        f"the prior draw x_T is not a sample of p_T: the score at T does not pull it towards a centre along "
        f"{count} of {dims} coordinate(s) (its slope against x over the draw is flat or positive there, where "
        f"a p_T close to the prior has slope -1/variance; solvers.prior_match). So p_T has separate modes "
        f"with the draw between them, or is far wider than the prior: the noise level at T ({level:.3g}; "
        f"under VE sigma_max) is too small for the data's spread, and the samples' mode weights and widths "
        f"come out wrong, by an amount this check cannot measure. Take a noise level at T of about the "
        f"largest distance between data points (Song & Ermon 2020; scoresde.data.suggest_sigma_max), or "
        f"rescale the data. If the data are not that wide, check the score at T (an untrained or broken "
        f"network has no pull either)",
        PriorMismatchWarning,
    )


def _warn_spread(probe: PriorMatchProbe, spread: float, lam: float, stacklevel: int) -> None:
    """The warning of a prior whose variance is not ``p_T``'s (`PriorMatchProbe.spread_carried`)."""
    sde = probe.sde
    alpha, sigma = sde.marginal_coeffs(torch.tensor([float(sde.T)], dtype=torch.float64))  # type: ignore[attr-defined]
    level = float(sigma[0] / alpha[0])
    r = float(probe.data_share().max())
    # raising the level k-fold: the prior's share of p_T's variance becomes k^2 (1 - r) / (r + k^2 (1 - r));
    # solved for the share that leaves the limit's spread error, (1 - limit)^2
    q = (1.0 - PRIOR_SPREAD_LIMIT) ** 2
    needed = level * math.sqrt(max(q / (1.0 - q) * r / max(1.0 - r, 1e-12), 1.0))
    how = ("The probability-flow ODE carries that to the samples:" if lam == 0.0 else
           "A stochastic run forgets most of it, but in this one")
    ratio = probe.prior_variance_ratio() or 1.0  # > 0 (warn_if_off_prior)
    wide = ratio > 1.0  # the prior wider than p_T
    toward = "away from" if wide else "towards"
    # per coordinate the ODE scales the spread by sqrt(p^2 / v_j): anisotropic data can be off both ways
    factors = probe.prior_ratios().sqrt() - 1.0
    over, under = factors > PRIOR_SPREAD_LIMIT, factors < -PRIOR_SPREAD_LIMIT
    if bool(over.any()) and bool(under.any()):
        direction = (f"off by about {spread:.1%} per coordinate (RMS) in both directions: too wide in "
                     f"{int(over.sum())} coordinate(s), by up to {float(factors.max()):.0%}, and too narrow in "
                     f"{int(under.sum())}, by up to {float(-factors.min()):.0%}")
        weights = "mode weights move with it, coordinate by coordinate"
    else:
        direction = f"{'too wide' if wide else 'too narrow'} by about {spread:.1%} per coordinate"
        weights = f"mode weights move {toward} the centre"
    if wide:
        advice = (f"Usual causes: an SDE that has not forgotten data narrower than its prior by T "
                  f"(alpha(T) = {float(alpha[0]):.3g}: a larger noise level at T, or a prior of p_T's "
                  f"variance), or a prior (prior_std, prior_sample, prior_log_prob) wider than the "
                  f"SDE's own marginal at T")
    else:
        advice = (f"Usual causes: a network that has not learned the score at T (train longer, or "
                  f"check its output there), or a noise level at T too small for the data's spread "
                  f"(under VE, scoresde.data.suggest_sigma_max: the largest distance between data points, "
                  f"Song & Ermon 2020, or in few dimensions the level that gives the prior p_T's variance); "
                  f"if it is the data, a noise level of about {needed:.3g} at T instead "
                  f"of {level:.3g} brings it within {PRIOR_SPREAD_LIMIT:.1%}, or rescale the data")
    warn(
        f"the prior draw x_T does not have p_T's variance: the score at T says p_T's variance is "
        f"{1.0 / ratio:.3g} times the prior's "
        f"(solvers.prior_match). {how} the samples' spread is {direction} (beyond a "
        f"{SLOPE_TOLERANCE:.0%} allowance for the "
        f"score's own error), and {weights}. {advice}",
        PriorMismatchWarning,
    )
