"""What the built-in SDE classes check at construction (`scoresde.sde`), and how they warn.

Two gross settings, judged for data of unit scale (the data are not known when an SDE is
built; training and likelihoods check the actual data, `scoresde.check_prior`):

* ``p_T`` far from the prior (`BUILTIN_PRIOR_KL_WARN`), e.g. ``VPSDE(T=0.1)``;
* for VP-type SDEs, ``T`` far past the point where the data are forgotten
  (`OVERSHOOT_EDM_SIGMA`), e.g. ``VPSDE(T=2)``: the default sampling grids start at ``T``.
"""

from __future__ import annotations

import math
import sys
import warnings
from types import FrameType
from typing import Any

import torch

from solvers.marginals import edm_sigma, time_from_edm_sigma

__all__ = ["BUILTIN_PRIOR_KL_WARN", "FORGOTTEN_EDM_SIGMA", "OVERSHOOT_EDM_SIGMA", "warn_builtin"]

BUILTIN_PRIOR_KL_WARN = 0.05
"""The built-in SDE classes warn at construction above this `scoresde.check_prior` bound (nats
per dimension, unit data): a gross mismatch of ``p_T`` and the prior, not the data-aware check."""

FORGOTTEN_EDM_SIGMA = 160.0
"""``sigma/alpha`` from which the ``N(0, I)`` prior stands for ``p_t`` of unit-scale data (about
``1/(2 S^2)`` = 2e-5 nats per dimension; the default VP SDE ends at 152)."""

OVERSHOOT_EDM_SIGMA = 1000.0
"""A built-in VP-type SDE warns at construction when ``sigma/alpha`` at ``T`` exceeds this: the
default sampling grids, which start at ``T``, spend a sizeable share of their steps above
`FORGOTTEN_EDM_SIGMA` (``VPSDE(T=2)``: 4.9e8, 61% of a log-SNR grid and 18 of 20 Karras
steps; ``edm_heun`` at 20 steps left modes 290x too wide)."""


def _outside_construction() -> int:
    """``stacklevel`` for a warning that names the first caller outside `scoresde.sde`,
    `scoresde.schedules` and this module (the user's ``VPSDE(...)``, ``EDMSDE(...)`` or
    ``get_sde(...)`` line, not a constructor in between)."""
    here = {__file__, sys.modules["scoresde.sde"].__file__}
    schedules = sys.modules.get("scoresde.schedules")
    if schedules is not None:
        here.add(schedules.__file__)
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename in here:
        frame, level = frame.f_back, level + 1
    return level


def warn_builtin(sde: Any, prior_fix: str) -> None:
    """Warn about ``sde``'s gross settings: ``p_T`` of unit-variance data more than
    `BUILTIN_PRIOR_KL_WARN` nats per dimension from the prior, or (VP-type) ``sigma/alpha`` at ``T``
    above `OVERSHOOT_EDM_SIGMA`. ``prior_fix``: the class's advice for the first.

    The prior bound is the convexity bound ``E_x0 KL(N(alpha x0, sigma^2) || prior)``, first order
    in ``1/sigma_max^2`` under VE where the mismatch of centred data is second order; Song et al.
    2021's rule ``sigma_max`` = the largest pairwise distance gives ~0.02 for unit data. So the
    constructors flag gross settings only (``VPSDE(T=0.1)``: 1.1; ``VESDE(sigma_max=0.5)``: 2.0),
    and training and likelihoods check the actual data at `scoresde.schedules.PRIOR_KL_TOL`.
    """
    from .prior_checks import check_prior  # prior_checks imports scoresde.sde

    res = check_prior(sde, 1.0, tol=BUILTIN_PRIOR_KL_WARN, warn=False)
    if not res.ok:
        warnings.warn(
            f"p_T is far from the prior N(0, {res.prior_std:.4g}^2 I) of {sde!r}: alpha(T) = "
            f"{res.alpha_T:.4g}, sigma(T) = {res.sigma_T:.4g}, so for data of unit root-mean-square "
            f"KL(p_T || prior) can reach {res.kl_bound:.3g} nats per dimension (warned above "
            f"{BUILTIN_PRIOR_KL_WARN:g} here; training and likelihoods check the actual data at "
            f"scoresde.schedules.PRIOR_KL_TOL). Samples start from, and likelihoods are computed against, the wrong "
            f"density. Fix: {prior_fix}",
            UserWarning, stacklevel=_outside_construction())
    _warn_overshoot(sde, res.prior_std, res.alpha_T, res.sigma_T)


def _warn_overshoot(sde: Any, prior_std: float, alpha_T: float, sigma_T: float) -> None:
    """Warn when a VP-type ``T`` lies far beyond the point where the data are forgotten."""
    s_T = sigma_T / alpha_T if alpha_T > 0 else math.inf
    if prior_std != 1.0 or not s_T > OVERSHOOT_EDM_SIGMA:
        return
    t_forgot = float(time_from_edm_sigma(sde, [FORGOTTEN_EDM_SIGMA])[0])
    s_eps = float(edm_sigma(sde, torch.tensor([sde.eps], dtype=torch.float64))[0])
    if math.isfinite(s_T):
        logsnr_share = math.log(s_T / FORGOTTEN_EDM_SIGMA) / math.log(s_T / s_eps)
        r = 1.0 / 7.0  # Karras et al.'s rho = 7
        karras_share = (s_T**r - FORGOTTEN_EDM_SIGMA**r) / (s_T**r - s_eps**r)
        where = (f"sigma/alpha at T is {s_T:.3g}", f"the default sampling grids start at T and spend "
                 f"{logsnr_share:.0%} of a log-SNR grid and {karras_share:.0%} of a Karras grid above it, "
                 "where nothing changes (few-step samplers lose most of their budget)")
    else:  # alpha(T) underflows: the grids cannot even start there
        where = (f"alpha(T) = {alpha_T:.3g} underflows (sigma/alpha at T is infinite)",
                 "the samplers' grids, which start at T, fail there")
    warnings.warn(
        f"{sde!r}: {where[0]}, but the N(0, I) prior already stands for p_t of "
        f"unit-scale data from sigma/alpha = {FORGOTTEN_EDM_SIGMA:g} (t = {t_forgot:.4g}); {where[1]}. "
        f"Use T = {t_forgot:.4g} (or pass grid=...).",
        UserWarning, stacklevel=_outside_construction())
