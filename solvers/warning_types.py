"""The warnings `solvers` raises about a run, by kind, so that one kind can be filtered alone.

Every one is a `SolverWarning` (a ``UserWarning``); those about a run that went wrong or
started wrong are ``RuntimeWarning`` s too, as they were before these classes existed::

    import warnings, solvers
    warnings.simplefilter("ignore", solvers.CoarseGridWarning)   # a step-count sweep: silence
                                                                  # the coarse-grid advice only

They are raised by `warn`, at the first line outside this package (and the packages built on
it that `register_package` names, e.g. ``scoresde``) that led to them: the user's
``solvers.sample(...)`` call, however deep in the run the solver raised it. Python's filters and
its once-per-location record then apply as to any warning: under the default filter a message is
shown once per calling line, also when `solvers.sample` is called in a loop. A chunked run
(``batch_size``) shows each message once, not once per chunk (`run_warnings`).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from types import FrameType

__all__ = [
    "SolverWarning", "CoarseGridWarning", "MethodLimitWarning", "PriorMismatchWarning",
    "DivergedWarning", "SDEConsistencyWarning", "warn", "register_package", "run_warnings",
]

_PACKAGES: set[str] = {"solvers"}
"""Top-level packages whose frames a warning skips (`register_package`)."""

_RUN_SEEN: ContextVar[set[tuple[type[Warning], str]] | None] = ContextVar("solvers_run_warnings", default=None)
"""The messages already raised in the current `run_warnings` block."""


def register_package(name: str) -> None:
    """Attribute `warn`'s warnings past the frames of the top-level package ``name`` too (a
    library that calls `solvers.sample` for its user: the warning names the user's line)."""
    _PACKAGES.add(name.split(".")[0])


def _stacklevel() -> int:
    """``stacklevel`` for `warnings.warn` called in `warn` that names the caller of the outermost
    frame of a registered package (2: the caller of `warn`)."""
    frame: FrameType | None = sys._getframe(2)  # the caller of warn: stacklevel 2 seen from warn
    level, outermost = 2, 1
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        if name.split(".")[0] in _PACKAGES:
            outermost = level
        frame, level = frame.f_back, level + 1
    return outermost + 1


def warn(message: str, category: type[Warning]) -> None:
    """Raise ``message`` as ``category`` at the first line outside the registered packages
    (`register_package`), once per `run_warnings` block."""
    seen = _RUN_SEEN.get()
    if seen is not None:
        if (category, message) in seen:
            return  # the same message from another chunk of the run
        seen.add((category, message))
    warnings.warn(message, category, stacklevel=_stacklevel())


@contextlib.contextmanager
def run_warnings() -> Iterator[None]:
    """A run (one `solvers.sample` call): `warn` raises each message once inside it."""
    token = _RUN_SEEN.set(set())
    try:
        yield
    finally:
        _RUN_SEEN.reset(token)


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
