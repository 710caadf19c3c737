"""Where and when the field panels look: their default view and their default times.

* `field_limits`: a panel's view: the one asked for, else the exact ``p_t``'s when a 2-D target
  and its SDE are given (`scoresde.plotting.marginals.density_limits`), else
  `DEFAULT_FIELD_LIMS` for unit-scale data.
* `default_field_times`: ``T`` and three noise levels, the same stages of the diffusion for
  every SDE.
"""

from __future__ import annotations

import math

import torch

from solvers.marginals import edm_sigma, time_from_edm_sigma
from solvers.protocol import DiffusionSDE

from ..targets import GaussianMixture
from ._common import Limits, Range
from .marginals import density_limits

__all__ = ["DEFAULT_FIELD_LIMS", "field_limits", "FIELD_NOISE_LEVELS", "FIELD_TIME_FRACTIONS",
           "default_field_times"]

DEFAULT_FIELD_LIMS: Range = (-3.0, 3.0)
"""The field plots' view without a target (unit-scale data); with one, the view of ``p_t``."""


def field_limits(lims: Range | Limits | None, target: GaussianMixture | None, sde: DiffusionSDE | None,
                 t: float) -> Range | Limits:
    """``lims`` if given; else the view of the exact ``p_t`` (`density_limits`: all but < 0.6% of
    its mass) when a 2-D ``target`` and ``sde`` are given, else `DEFAULT_FIELD_LIMS`."""
    if lims is not None:
        return lims
    if target is not None and sde is not None and target.dim == 2:
        return density_limits(target, sde, t)
    return DEFAULT_FIELD_LIMS


FIELD_NOISE_LEVELS = (1.234, 0.3402, 0.04469)
"""Noise-to-signal ratios ``S = sigma/alpha`` of the default field panels after ``T``: those of
the default VP SDE at ``t = 0.3, 0.1, 0.01`` (on unit-scale data: modes merged, separating, and
close to the data), so every SDE shows the same stages of the diffusion (`default_field_times`)."""

FIELD_TIME_FRACTIONS = (1.0, 0.3, 0.1, 0.01)
"""Default field panels, as fractions of ``T``, for an SDE without ``marginal_coeffs``."""


def default_field_times(sde: DiffusionSDE) -> tuple[float, ...]:
    """``T`` and the times where ``sigma/alpha`` is `FIELD_NOISE_LEVELS` (rounded to two
    significant digits; the default VP SDE gets ``1, 0.3, 0.1, 0.01``). Levels outside the SDE's
    range ``(S(eps), S(T))`` are replaced by points spread evenly in ``ln S`` across it; an SDE
    without marginals gets `FIELD_TIME_FRACTIONS` of ``T``."""
    T = float(sde.T)
    if not callable(getattr(sde, "marginal_coeffs", None)):
        return tuple(f * T for f in FIELD_TIME_FRACTIONS)
    s_T, s_eps = edm_sigma(sde, torch.tensor([T, float(sde.eps)], dtype=torch.float64)).tolist()
    levels = [s for s in FIELD_NOISE_LEVELS if s_eps < s < s_T]
    if len(levels) < len(FIELD_NOISE_LEVELS):  # a short or unusual range: spread evenly in ln S
        levels = [math.exp(math.log(s_eps) + f * math.log(s_T / s_eps)) for f in (0.5, 0.35, 0.15)]
    times = time_from_edm_sigma(sde, levels).tolist()
    return (T, *(float(f"{t:.2g}") for t in times))
