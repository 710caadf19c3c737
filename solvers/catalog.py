"""The one name table of solvers: names -> `SolverSpec` (a solver class and its options).

``"ode_dop853"`` is `ScipyODE` with ``method="DOP853"``, ``"dpm_solver_2"`` is `DPMSolver` with
``order=2``: variants are table entries, not subclasses. `get_solver` builds one and checks the
options against the class's signature; unknown names go through `solvers.registry.lookup`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from .adaptive_ode import AdaptiveODE
from .adaptive_sde import AdaptiveSDE
from .base import Solver
from .ddim import DDIM
from .dpm_solver import DPMSolver
from .dpmpp import DPMSolverPP2M, DPMSolverPP3M, UniPC
from .edm import EDMHeun
from .euler_maruyama import EulerMaruyama
from .gaussian_ancestral import GaussianAncestral
from .gaussian_multistep import GaussianMultistep
from .lms import LMS
from .ode import RK4, Heun, ODEEuler
from .pc import Ancestral, AnnealedLangevin, PredictorCorrector, ReverseDiffusion
from .peer_names import PEER_NAMES, folded_name, peer_hint
from .registry import closest_name, is_respelling, lookup
from .scipy_ode import ScipyODE
from .sde_dpmpp import SDEDPMSolverPP2M
from .torchsde_backend import TorchSDE

__all__ = ["SOLVERS", "SolverSpec", "available", "check_solver_names", "summaries", "get_solver"]


class SolverSpec:
    """A registered solver: a `Solver` class and the options that make this entry.

    ``spec(**options)`` builds the solver (entry options first, then ``options``). Capabilities
    (``order``, ``adaptive``, ``stochastic``, ``dynamics_kind``, ...) are those of the solver
    the entry builds by default, so ``SOLVERS["ode_dop853"].order == 8``.

    Args:
        factory: the solver class.
        summary: one line for listings (default: the first line of the class docstring).
        **options: the entry's options.
    """

    def __init__(self, factory: type[Solver], summary: str | None = None, **options: Any) -> None:
        self.factory = factory
        self.options: Mapping[str, Any] = options
        self.summary = summary or (inspect.getdoc(factory) or "").splitlines()[0]
        self._default: Solver | None = None

    def __call__(self, **options: Any) -> Solver:
        return self.factory(**{**self.options, **options})

    @property
    def accepted_options(self) -> list[str]:
        """The keyword options the factory accepts."""
        params = inspect.signature(self.factory).parameters.values()
        return [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def __getattr__(self, name: str) -> Any:
        # Capabilities of the default instance (cheap to build; no solver allocates in __init__).
        if name.startswith("_"):
            raise AttributeError(name)
        if self._default is None:
            self._default = self()
        return getattr(self._default, name)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"SolverSpec({self.factory.__name__}{', ' if opts else ''}{opts})"


SOLVERS: dict[str, SolverSpec] = {
    "euler_maruyama": SolverSpec(EulerMaruyama),
    "pc": SolverSpec(PredictorCorrector),
    "reverse_diffusion": SolverSpec(ReverseDiffusion),
    "ancestral": SolverSpec(Ancestral),
    "gaussian_ancestral": SolverSpec(GaussianAncestral),
    "annealed_langevin": SolverSpec(AnnealedLangevin),
    "ddim": SolverSpec(DDIM),
    "dpm_solver_1": SolverSpec(
        DPMSolver, "DPM-Solver-1: exponential Euler in log-SNR (equals deterministic DDIM); 1 NFE per step.",
        order=1,
    ),
    "dpm_solver_2": SolverSpec(
        DPMSolver, "DPM-Solver-2: singlestep second order in log-SNR (Lu et al. 2022, Alg. 1); 2 NFE per step.",
        order=2,
    ),
    "dpm_solver_3": SolverSpec(
        DPMSolver, "DPM-Solver-3: singlestep third order in log-SNR (Lu et al. 2022, Alg. 2); 3 NFE per step.",
        order=3,
    ),
    "dpmpp_2m": SolverSpec(DPMSolverPP2M),
    "dpmpp_3m": SolverSpec(DPMSolverPP3M),
    "unipc": SolverSpec(UniPC),
    "gaussian_2m": SolverSpec(GaussianMultistep),
    "edm_heun": SolverSpec(EDMHeun),
    "lms": SolverSpec(LMS),
    "sde_dpmpp_2m": SolverSpec(SDEDPMSolverPP2M),
    "ode_euler": SolverSpec(ODEEuler),
    "ode_heun": SolverSpec(Heun),
    "ode_rk4": SolverSpec(RK4),
    "ode_rk45": SolverSpec(ScipyODE),
    "ode_dop853": SolverSpec(
        ScipyODE, "Adaptive DOP853 (Dormand–Prince 8(5,3), scipy) on the probability-flow ODE; order 8.",
        method="DOP853",
    ),
    "torchsde_euler": SolverSpec(TorchSDE),
    "torchsde_milstein": SolverSpec(
        TorchSDE, "torchsde Milstein (Itô) on the reverse SDE; equals Euler–Maruyama for additive noise.",
        method="milstein",
    ),
    "torchsde_srk": SolverSpec(
        TorchSDE, "torchsde stochastic Runge–Kutta (SRA1, Rößler 2010) on the reverse SDE (strong order 1.5).",
        method="srk",
    ),
    "torchsde_midpoint": SolverSpec(
        TorchSDE, "torchsde midpoint (Stratonovich) on the reverse SDE (strong order 1 for additive noise).",
        method="midpoint",
    ),
    "torchsde_reversible_heun": SolverSpec(
        TorchSDE, "torchsde reversible Heun (Kidger et al. 2021) on the reverse SDE (strong order 1, additive).",
        method="reversible_heun",
    ),
    "ode_dopri5": SolverSpec(AdaptiveODE),
    "ode_bosh3": SolverSpec(
        AdaptiveODE, "Adaptive Bogacki–Shampine 3(2) on the probability-flow ODE with PID step control.",
        method="bosh3",
    ),
    "adaptive_sde": SolverSpec(AdaptiveSDE),
}
"""Every registered solver name -> its `SolverSpec` (solver class + the entry's options)."""


def available() -> list[str]:
    """Every registered solver name."""
    return list(SOLVERS)


def check_solver_names(names: list[str]) -> None:
    """Refuse a list of solver names with any unknown one, before any work.

    Raises:
        ValueError: naming every unknown name, each misspelling's closest valid name
            (``'DPMPP_2M' -> 'dpmpp_2m'``), and the list of valid names.
    """
    unknown = [n for n in names if not isinstance(n, str) or n not in SOLVERS]
    if not unknown:
        return
    peers = [hint for n in unknown if (hint := _peer_hint(n))]
    guesses = [f"{n!r} -> {g!r}" for n in unknown
               if not _peer_hint(n) and (g := closest_name(SOLVERS, n)) is not None]
    advice = "".join(f" {hint};" for hint in peers) + (f" did you mean {', '.join(guesses)}?" if guesses else "")
    raise ValueError(f"unknown solver(s) {unknown};{advice} valid solvers: {', '.join(SOLVERS)}")


def summaries() -> dict[str, str]:
    """Solver name -> one-line summary (what ``scoresde solvers`` prints)."""
    return {name: _spec(name).summary for name in SOLVERS}


def _peer_hint(name: object) -> str:
    """`peer_hint` for another library's name, unless it spells one of ours with other case and
    separators (``"DPMPP-2M"``, ``"dpmpp3m"`` keep their "did you mean"; ``"dpm_solver++"``, whose
    closest spelling is ``dpm_solver_3``, and ``"plms"``, whose is ``lms``, get the hint)."""
    if not isinstance(name, str) or name in SOLVERS or is_respelling(SOLVERS, name):
        return ""
    if folded_name(name) not in PEER_NAMES:
        return ""
    closest = closest_name(SOLVERS, name)
    if closest is not None and folded_name(closest) == folded_name(name):
        return ""
    return peer_hint(name)


def _spec(name: str) -> SolverSpec:
    hint = _peer_hint(name)
    if hint:  # another library's name: say which solver here takes the same steps
        raise ValueError(f"unknown solver {name!r}; {hint}. valid solvers: {', '.join(SOLVERS)}")
    entry: SolverSpec | type[Solver] = lookup(SOLVERS, name, "solver")
    return entry if isinstance(entry, SolverSpec) else SolverSpec(entry)


def get_solver(name: str, **options: Any) -> Solver:
    """Instantiate a registered solver by name with keyword options.

    Raises:
        ValueError: unknown name (the message lists the valid names).
        TypeError: unknown option (the message lists the accepted options).
    """
    spec = _spec(name)
    accepted = spec.accepted_options
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise TypeError(f"solver {name!r} got unknown option(s) {unknown}; it accepts: {accepted or 'none'}")
    return spec(**options)
