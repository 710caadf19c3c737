"""scoresde: score-based generative modeling with SDEs.

Forward SDEs and schedules (`scoresde.sde`), exact Gaussian-mixture targets
(`scoresde.targets`), data, networks, losses, training, likelihoods, metrics and
plots. Sampling lives in the separate package `solvers`.

    import scoresde as sd, solvers
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    r = solvers.sample(sde, target.score_fn(sde), shape=(10_000, 2), solver="pc", steps=500, seed=0)
"""

from __future__ import annotations

import importlib
from typing import Any

from solvers.warning_types import register_package

from . import sde, targets
from .discrete import DiscreteVPSDE
from .mixture import GaussianMixture
from .schedules import EDMSDE, BetaSDE, SigmaSDE, check_prior
from .sde import SDES, VESDE, VPSDE, AffineSDE, CosineVPSDE, SubVPSDE, get_sde

__version__ = "0.1.0"

# The samplers' warnings name the user's line, past this package's frames too (compare, plots, CLI).
register_package(__name__)

_LAZY = {
    "data",
    "metrics",
    "models",
    "losses",
    "train",
    "likelihood",
    "plotting",
    "compare",
    "interop",
    "cli",
    "conditional",
    "quality",
    "mode_metrics",
    "schedules",
    "discrete",
    "beta_integral",
    "atomic",
}


_LAZY_FUNCTIONS = {"load_model": "train", "train_toy": "train"}
"""Functions reachable from the top level (``scoresde.load_model(path)``), loaded with their module."""


def __getattr__(name: str) -> Any:
    # Heavy or optional submodules (matplotlib, training) load on first use.
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_FUNCTIONS:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SDES",
    "AffineSDE",
    "BetaSDE",
    "CosineVPSDE",
    "DiscreteVPSDE",
    "EDMSDE",
    "GaussianMixture",
    "SigmaSDE",
    "SubVPSDE",
    "VESDE",
    "VPSDE",
    "check_prior",
    "get_sde",
    "sde",
    "targets",
    "__version__",
]
