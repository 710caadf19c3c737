"""Denoising score matching in continuous time (Vincent 2011; Song et al. 2021, eq. 7).

For ``x_t = alpha(t) x0 + sigma(t) z`` the per-sample loss is::

    L = E_t E_x0 E_z [ w(t) || s_theta(x_t, t) + z / sigma(t) ||^2 ],    t ~ U(t_min, T)
      = E_t E_x0 E_z [ (w(t) / sigma(t)^2) || eps_theta(x_t, t) - z ||^2 ]

since ``sigma s_theta = -eps_theta``; the second form is what is computed (no division of
``z`` by a tiny ``sigma``). Weightings ``w(t)``:

* ``"sigma2"``: ``w = sigma^2`` (Song et al. 2021's default; equals the epsilon-prediction
  loss of Ho et al. 2020);
* ``"likelihood"``: ``w = g^2`` (Song et al. 2021b, "Maximum likelihood training": the loss
  then bounds the negative log-likelihood);
* ``"none"``: ``w = 1``;
* ``"min_snr"``: Min-SNR-``gamma`` (Hang et al. 2023, "Efficient Diffusion Training via
  Min-SNR Weighting Strategy"): ``min(SNR, gamma)`` on ``||x0_theta - x0||^2``, with
  ``SNR = alpha^2/sigma^2`` and ``gamma`` = `MIN_SNR_GAMMA`, i.e. ``min(SNR, gamma)/SNR`` on the
  epsilon loss. For an ``x0``-predicting network the others weight its error by at least
  ``SNR``, unbounded as ``t -> 0`` (at the default ``t_min``: 9e3 under VP, 8e7 under sub-VP
  and 6e7 under VE): the
  smallest times then dominate the loss and its gradients (`warn_x0_weighting`);
* ``"edm"``: EDM's ``lambda(sigma_edm) = (sigma_edm^2 + sd^2)/(sigma_edm sd)^2`` on
  ``||D - x0||^2`` (Karras et al. 2022, Table 1), ``sigma_edm = sigma/alpha``,
  ``sd = sigma_data``. Since ``D - x0 = -sigma_edm (eps_theta - z)``, the factor on
  ``||eps_theta - z||^2`` is ``lambda sigma_edm^2 = 1 + sigma_edm^2/sd^2``. (EDM also draws
  ``ln sigma_edm ~ N(P_mean, P_std^2)``: `edm_time_sample` gives such times.)

Importance sampling of ``t`` (Song et al. 2021b, Sec. 5; Huang et al. 2021): draw ``t`` from
``q(t) ∝ h(t) = w(t)/sigma(t)^2`` and weight each term by ``h(t) / ((T - t_min) q(t))``, which
keeps the estimator's expectation equal to the uniform-``t`` loss above while its weights are
(almost) constant. For ``w = g^2``, ``h = g^2/sigma^2 = d ln(sigma^2/alpha^2)/dt``. The CDF of
``q`` is tabulated numerically on a log-spaced grid of ``t`` (``h`` behaves like ``1/t`` near
0) and inverted by linear interpolation; the weights use the density of exactly that
piecewise sampler, so the estimator is unbiased whatever the grid resolution.

``reduce``: ``"mean"`` or ``"sum"`` of the squared error over the data dimensions; the batch
is always averaged. ``t_min`` is the epsilon-truncation of time (default ``sde.eps``).
"""

from __future__ import annotations

from .config import DSMLoss, LossConfig
from .dsm import dsm_loss, dsm_per_sample, eps_loss
from .time_sampling import ImportanceTimeSampler, edm_time_sample
from .weighting import MIN_SNR_GAMMA, REDUCTIONS, WEIGHTINGS, loss_weight, warn_x0_weighting

__all__ = [
    "WEIGHTINGS",
    "REDUCTIONS",
    "loss_weight",
    "warn_x0_weighting",
    "MIN_SNR_GAMMA",
    "ImportanceTimeSampler",
    "dsm_per_sample",
    "dsm_loss",
    "eps_loss",
    "LossConfig",
    "DSMLoss",
    "edm_time_sample",
]
