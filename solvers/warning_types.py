"""The warnings `solvers` raises about a run, by kind, so that one kind can be filtered alone.

Every one is a `SolverWarning` (a ``UserWarning``); those about a run that went wrong or
started wrong are ``RuntimeWarning`` s too, as they were before these classes existed::

    import warnings, solvers
    warnings.simplefilter("ignore", solvers.CoarseGridWarning)   # a step-count sweep: silence
                                                                  # the coarse-grid advice only

Under Python's default filter each message is shown once per calling line, also when
`solvers.sample` is called in a loop, and a chunked run (``batch_size``) shows it once, not
once per chunk (`solvers.reissue`).
"""

from __future__ import annotations

__all__ = [
    "SolverWarning", "CoarseGridWarning", "MethodLimitWarning", "PriorMismatchWarning",
    "DivergedWarning", "SDEConsistencyWarning",
]


class SolverWarning(UserWarning):
    """Base class of the warnings `solvers` raises about a sampling run's settings or results."""


class CoarseGridWarning(SolverWarning):
    """Too few steps for this solver on this SDE: below its measured step-count limit
    (`solvers.stability.warn_if_too_coarse`), outside its explicit steps' stability region
    (`solvers.stability.warn_if_unstable`), or a first-order bias that more steps remove."""


class MethodLimitWarning(SolverWarning):
    """A solver that was not measured to reach ``p_0`` at any step count on this SDE
    (``annealed_langevin``, torchsde's ``reversible_heun``)."""


class PriorMismatchWarning(SolverWarning, RuntimeWarning):
    """The prior draw ``x_T`` is not a sample of ``p_T`` (`solvers.prior_match`): the score at
    ``T`` disagrees with the prior's mean, variance or shape."""


class DivergedWarning(SolverWarning, RuntimeWarning):
    """The samples hold NaN / inf or lie far beyond any data the prior covers
    (`solvers.sde_checks.warn_if_diverged`)."""


class SDEConsistencyWarning(SolverWarning, RuntimeWarning):
    """An SDE's ``marginal_coeffs`` disagree with its drift or diffusion
    (`solvers.sde_consistency`)."""
