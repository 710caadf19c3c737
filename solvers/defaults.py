"""Defaults that depend on the SDE: the grid of first-order reverse-SDE samplers, the Langevin snr.

Measured with the exact score of sharp Gaussian mixtures (mode std 1/20-1/40 of the mode
spacing; ``benchmarks/sharp.py``, tables in docs/defaults.md):

* Grid of Euler-Maruyama and the predictor-corrector family (``pc``, ``reverse_diffusion``,
  ``ancestral``, ``annealed_langevin``): on VP and sub-VP the uniform grid in ``t`` is coarse in
  ``ln sigma`` near ``t = 0`` (``sigma^2 ~ beta_min t``, so the last step halves the noise
  variance); ancestral sampling loses 6% of the within-mode spread there at 1000 steps,
  reverse diffusion gains 2%. The ``logsnr`` grid fixes both. On VE the uniform grid is
  geometric in ``sigma`` down to ``sigma_min`` and ``logsnr`` would spend a third of the steps
  below ``sigma_min = 0.01`` (worse on broad modes at 20-50 NFE), but the uniform grid crosses
  that stretch in a few steps at any budget: on modes of std 0.002 Euler-Maruyama stays 11%
  too wide at 1000 steps. VE uses ``uniform_logsnr``: the uniform grid's step density with a
  floor of a quarter of the log-SNR grid's (2.8% too wide there at 1000 steps, ``ancestral``
  2.1% narrow instead of 23%; on broader targets level from 200 NFE on, 2-14% worse at 20).
* Langevin corrector snr: 0.16 on VE and 0.01 on VP / sub-VP, the settings of Song et al.
  2021 (App. G and their reference configs). With 0.16 on VP the corrector's ``O(snr^2)``
  bias shows on trained models (2.2x the noise floor on a VP checkerboard model, 0.92x
  with 0.01). Under VE the same bias (spread ``snr^2 / 2`` too wide) and the loss of narrow
  modes are removed by the corrector's step cap ``h <= sigma(t)^2``
  (`solvers.correctors.LangevinCorrector`), not by a smaller snr, which would give up the
  corrector's help at 50-500 NFE.

An SDE is treated as variance-exploding when ``alpha(t) = 1`` on its whole time range. The
VE rules above rest on the uniform grid in ``t`` being geometric in ``sigma``, which holds for
Song et al.'s VE SDE (``sigma(t) = sigma_min (sigma_max / sigma_min)^t``) but not for every
variance-exploding SDE: under EDM's ``sigma(t) = t`` (Karras et al. 2022) the uniform grid is
uniform in ``sigma`` and leaves a handful of steps for the last decades of noise. There the
first-order samplers take the ``logsnr`` grid (geometric in ``sigma``): on ``eight_gaussians``
and ``sharp_8`` at 20-200 steps, Euler-Maruyama, ``pc``, reverse diffusion, ``ode_euler`` and
annealed Langevin were 2-30x closer to ``p_0`` than on ``uniform_logsnr`` (combined metric,
``pc`` at 100 steps 1.58 against 16.75), and level at 1000 (`has_geometric_noise`).
"""

from __future__ import annotations

import torch

from .protocol import HasMarginals, ReverseSDEParts

__all__ = [
    "has_geometric_noise",
    "is_variance_exploding",
    "is_variance_preserving",
    "sde_solver_grid",
    "classic_ode_grid",
    "langevin_snr",
    "VE_SNR",
    "VP_SNR",
]

VE_SNR = 0.16
"""Langevin corrector snr on VE SDEs (Song et al. 2021)."""
VP_SNR = 0.01
"""Langevin corrector snr on VP and sub-VP SDEs (Song et al. 2021)."""


def is_variance_exploding(sde: object) -> bool:
    """``True`` when the SDE has ``alpha(t) = 1`` at ``eps``, ``T / 2`` and ``T`` (no drift)."""
    if not isinstance(sde, HasMarginals) or not isinstance(sde, ReverseSDEParts):
        return False
    t = torch.tensor([sde.eps, 0.5 * sde.T, sde.T], dtype=torch.float64)
    alpha, _ = sde.marginal_coeffs(t)
    return bool(torch.allclose(alpha, torch.ones_like(alpha), rtol=0.0, atol=1e-12))


def has_geometric_noise(sde: object) -> bool:
    """``True`` for a variance-exploding SDE whose ``ln sigma(t)`` is affine in ``t`` on ``[T/4, T]``.

    That is Song et al.'s VE SDE (away from ``t = 0``, where the exact marginal's
    ``sigma^2 = sigma_v^2 - sigma_min^2`` bends), on which a grid uniform in ``t`` is geometric
    in ``sigma``. Tested on five equally spaced times: the second differences of ``ln sigma``
    must stay within 2% of its change over ``[T/4, T]`` (EDM's ``sigma = t``: 14%).
    """
    if not is_variance_exploding(sde):
        return False
    assert isinstance(sde, HasMarginals) and isinstance(sde, ReverseSDEParts)
    t = torch.linspace(0.25 * sde.T, sde.T, 5, dtype=torch.float64)
    _, sigma = sde.marginal_coeffs(t)
    log_sigma = sigma.double().log()
    change = float((log_sigma[-1] - log_sigma[0]).abs())
    bend = float(log_sigma.diff().diff().abs().max())
    return change > 0 and bend <= 0.02 * change


def is_variance_preserving(sde: object) -> bool:
    """``True`` when ``alpha(t)^2 + sigma(t)^2 = 1`` at ``eps``, ``T / 2`` and ``T`` (VP, cosine VP)."""
    if not isinstance(sde, HasMarginals) or not isinstance(sde, ReverseSDEParts):
        return False
    t = torch.tensor([sde.eps, 0.5 * sde.T, sde.T], dtype=torch.float64)
    alpha, sigma = sde.marginal_coeffs(t)
    total = alpha.double() ** 2 + sigma.double() ** 2
    return bool(torch.allclose(total, torch.ones_like(total), rtol=0.0, atol=1e-6))


def classic_ode_grid(sde: object, *, sub_vp: str = "uniform") -> str:
    """Default grid of ``ode_heun`` / ``ode_rk4``: ``logsnr`` on variance-preserving SDEs,
    ``uniform_or_logsnr`` on VE, ``sub_vp`` otherwise.

    Under VP the uniform grid in ``t`` crosses the end of the run, where ``sigma/alpha`` falls
    from a few mode widths to 0.0105, in one or two steps; on the log-SNR grid both integrators
    resolve modes of std 0.005 at 200 NFE (uniform: spread 0.22-0.26 of exact). Under sub-VP
    the log-SNR grid runs on to ``sigma/alpha = 1.1e-4`` and spends about a quarter of its steps
    below 0.005; it was better on very sharp modes but worse on broad ones (``high_dim_16``,
    ``eight_gaussians``) at 10-100 NFE, so sub-VP (any SDE with marginals that is neither VP nor
    VE) gets ``sub_vp``, ``uniform`` by default (docs/defaults.md; `solvers.ode.Heun` and
    `solvers.ode.RK4` ask for ``logsnr``: on the uniform grid their quality rose and fell with
    the budget, and narrow modes came out up to 65% too narrow at 100-200 NFE).
    A variance-exploding SDE whose noise is not geometric in ``t`` (EDM's ``sigma = t``) takes
    ``logsnr`` too: the uniform grid is uniform in ``sigma`` there (`has_geometric_noise`).
    Under VE (noise geometric in ``t``) the uniform grid's last step spans the factor
    ``sqrt(t_1/eps)`` of the marginal noise, where an explicit step in ``t`` is unstable on
    modes narrower than ``sigma_min``: with 8 modes of std 0.002 ``ode_heun`` read a spread of
    0.91 / 0.43 / 0.84 of exact at 99 / 199 / 399 NFE and ``ode_rk4`` 1.11 / 0.17 / 0.68 at 57 /
    97 / 197, so quality fell as the budget grew. ``uniform_or_logsnr`` keeps the uniform
    density above ``sigma_min`` and the log-SNR grid's below (docs/defaults.md).
    """
    geometric_in_t = has_geometric_noise(sde) or not is_variance_exploding(sde)
    if is_variance_preserving(sde) or not geometric_in_t:
        return "logsnr"
    if not isinstance(sde, HasMarginals):
        return "uniform"
    return "uniform_or_logsnr" if is_variance_exploding(sde) else sub_vp


def sde_solver_grid(sde: object) -> str:
    """Default grid of first-order reverse-SDE samplers: ``uniform_logsnr`` on VE, ``logsnr`` otherwise.

    VE here means noise geometric in ``t`` (`has_geometric_noise`); a variance-exploding SDE
    with another ``sigma(t)`` (EDM's ``sigma = t``) takes ``logsnr``. ``uniform`` for SDEs
    without ``marginal_coeffs`` (log-SNR needs the marginals).
    """
    if not isinstance(sde, HasMarginals):
        return "uniform"
    return "uniform_logsnr" if has_geometric_noise(sde) else "logsnr"


def langevin_snr(sde: object) -> float:
    """Default Langevin-corrector snr: 0.16 on VE, 0.01 otherwise (VP, sub-VP, cosine)."""
    return VE_SNR if is_variance_exploding(sde) else VP_SNR
