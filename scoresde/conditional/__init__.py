"""Conditional generation with exact answers: imputation, linear inverse problems, class guidance.

* Exact conditionals of a `GaussianMixture` (`ObservedCoordinates`, `condition_on_measurement`,
  `ClassMixture`), with exact noised scores, densities and samples at every ``t``: the oracles.
* Score wrappers and ``after_step`` hooks that compose with ``solvers.sample``.
"""

from __future__ import annotations

from .exact import ClassMixture, ObservedCoordinates, condition_on_measurement
from .gaussians import FullCovMixture

__all__ = ["ClassMixture", "FullCovMixture", "ObservedCoordinates", "condition_on_measurement"]
