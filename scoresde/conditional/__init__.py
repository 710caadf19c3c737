"""Conditional generation with exact answers: imputation, linear inverse problems, class guidance.

* Exact conditionals of a `GaussianMixture` (`ObservedCoordinates`, `condition_on_measurement`,
  `ClassMixture`), with exact noised scores, densities and samples at every ``t``: the oracles.
* Samplers that compose with ``solvers.sample``: the ``after_step`` hooks `Replacement` and
  `LinearReplacement` (Song et al. 2021), the score wrappers `PosteriorGuidance` (ΠGDM, DPS),
  `ClassifierGuidance` and `ClassifierFreeGuidance`, and the `ParticleFilter` hook (sequential
  Monte Carlo, consistent as the number of particles grows).
* `ConditionalReference`: distance to an exact conditional in units of the noise floor.
"""

from __future__ import annotations

from .evaluate import ConditionalReference, as_full_cov
from .exact import ClassMixture, ObservedCoordinates, condition_on_measurement
from .gaussians import FullCovMixture
from .guidance import ClassifierFreeGuidance, ClassifierGuidance
from .operators import MaskOperator, MatrixOperator, colorization_matrix
from .posterior import PosteriorGuidance
from .replacement import LinearReplacement, Replacement, StatefulHook
from .smc import PARTICLE_FILTER_SOLVERS, ParticleFilter

__all__ = [
    "PARTICLE_FILTER_SOLVERS",
    "ClassMixture",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "ConditionalReference",
    "FullCovMixture",
    "LinearReplacement",
    "MaskOperator",
    "MatrixOperator",
    "ObservedCoordinates",
    "ParticleFilter",
    "PosteriorGuidance",
    "Replacement",
    "StatefulHook",
    "as_full_cov",
    "colorization_matrix",
    "condition_on_measurement",
]
