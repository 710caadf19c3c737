"""Likelihoods of score-based models: probability-flow ODE log-densities, bits/dim, the SDE bound.

* `log_likelihood` / `likelihood`: the data density `log p_0(x)` (default) or the marginal
  `log p_eps(x)`, by integrating the probability-flow ODE augmented with its divergence up to
  `T` (Song et al. 2021, App. D.2; Grathwohl et al. 2019) and, for `log p_0`, the analytic
  `[0, t_end]` piece (`.endpoint`). Modules: `.options` (grouped options), `.integrators`
  (the name table and one chunk's integration), `.pilot` (the `"auto"` grid), `.runner`
  (chunks), `.result`, `.flow`, `.divergence` (exact or Hutchinson), `.simpson` (RK4 with
  a Simpson log-density, half the divergences), `.time_grids`.
* `bits_per_dim`, `dequantize`, `bpd_from_log_prob`: discrete data with
  uniform dequantization and the rescaling offset stated (`.bpd`).
* `score_corrected_prior`: an opt-in prior at `T` corrected towards `p_T` with the score
  (`.prior_correction`).
* `elbo`: the variational bound of the reverse SDE (Song et al. 2021b, Thm. 3) (`.elbo`).

    import scoresde as sd
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    x = target.sample(1000)
    lp = sd.likelihood.log_likelihood(sde, target.score_fn(sde), x)   # (1000,) nats
"""

from .bpd import bits_per_dim, bpd_from_log_prob, bpd_offset, dequantize
from .core import ADAPTIVE, FIXED, INTEGRATORS, SCIPY, likelihood, log_likelihood
from .divergence import PROBES, exact_divergence, hutchinson_divergence, make_probes
from .elbo import ElboResult, elbo
from .endpoint import DATA_END_TIME, data_correction, data_end_time
from .flow import AugmentedFlow
from .integrators import INTEGRATOR_TABLE, IntegratorSpec, resolve_integrator
from .options import (
    DensityOptions,
    DivergenceOptions,
    IntegratorOptions,
    LikelihoodOptions,
    RunOptions,
)
from .prior_correction import prior_log_ratio, score_corrected_prior
from .result import LikelihoodResult
from .simpson import integrate_rk4_simpson, rk4_simpson_with_path_error
from .time_grids import choose_steps, resample_grid, time_grid

__all__ = [
    "ADAPTIVE",
    "DATA_END_TIME",
    "INTEGRATOR_TABLE",
    "DensityOptions",
    "DivergenceOptions",
    "IntegratorOptions",
    "IntegratorSpec",
    "LikelihoodOptions",
    "RunOptions",
    "data_correction",
    "data_end_time",
    "resolve_integrator",
    "FIXED",
    "INTEGRATORS",
    "PROBES",
    "SCIPY",
    "AugmentedFlow",
    "ElboResult",
    "LikelihoodResult",
    "bits_per_dim",
    "bpd_from_log_prob",
    "bpd_offset",
    "choose_steps",
    "dequantize",
    "elbo",
    "exact_divergence",
    "hutchinson_divergence",
    "integrate_rk4_simpson",
    "rk4_simpson_with_path_error",
    "likelihood",
    "log_likelihood",
    "make_probes",
    "prior_log_ratio",
    "score_corrected_prior",
    "resample_grid",
    "time_grid",
]
