"""Interchangeable samplers for score-based diffusion models.

Depends only on small SDE protocols (`solvers.protocol`) and a score callable, never on
networks or training code. Convenience call::

    r = solvers.sample(sde, score, shape=(10_000, 2), solver="pc", steps=500, seed=0)

Composable layer::

    dyn = solvers.ReverseSDE(sde, score)
    sol = solvers.EulerMaruyama().solve(dyn, x_T, solvers.grids.uniform(sde, 500))

Start with docs/architecture.md for the layers and where each formula lives.
"""

from . import grids, marginals, noise
from .adaptive_ode import AdaptiveODE, solve_adaptive
from .adaptive_sde import AdaptiveSDE
from .api import SOLVERS, SolverSpec, available, get_solver, sample, summaries, tweedie_denoise
from .base import FixedGridSolver, SolveContext, Solver
from .catalog import check_solver_names
from .correctors import AnnealedLangevinCorrector, Corrector, LangevinCorrector, NoneCorrector
from .ddim import DDIM
from .dpm_solver import DPMSolver
from .dpmpp import DPMSolverPP2M, DPMSolverPP3M, UniPC
from .dynamics import (
    CountedScore,
    NonFiniteScoreError,
    ProbabilityFlowODE,
    ReverseDynamics,
    ReverseSDE,
)
from .edm import EDMHeun
from .end import final_step
from .euler_maruyama import EulerMaruyama
from .gaussian_ancestral import GaussianAncestral
from .gaussian_multistep import GaussianMultistep
from .lms import LMS
from .marginals import forward_transition
from .noise import BrownianPath, GaussianNoise, NoiseSource
from .ode import RK4, Heun, ODEEuler, integrate_fixed
from .pc import Ancestral, AnnealedLangevin, PredictorCorrector, ReverseDiffusion
from .predictors import (
    AncestralPredictor,
    EulerMaruyamaPredictor,
    NonePredictor,
    Predictor,
    ReverseDiffusionPredictor,
)
from .protocol import DiffusionSDE, HasMarginals, HasPrior, MarginalSDE, ReverseSDEParts, ScoreFn
from .registry import lookup
from .result import Solution
from .scipy_ode import ScipyODE, solve_ivp_torch
from .sde_dpmpp import SDEDPMSolverPP2M
from .torchsde_backend import TorchSDE
from .utils import append_dims, batch_time
from .warning_types import (
    CoarseGridWarning,
    DivergedWarning,
    MethodLimitWarning,
    PriorMismatchWarning,
    SDEConsistencyWarning,
    SolverWarning,
)

__all__ = [
    "SOLVERS",
    "SolverWarning",
    "CoarseGridWarning",
    "MethodLimitWarning",
    "PriorMismatchWarning",
    "DivergedWarning",
    "SDEConsistencyWarning",
    "AdaptiveODE",
    "AdaptiveSDE",
    "Ancestral",
    "AncestralPredictor",
    "AnnealedLangevin",
    "AnnealedLangevinCorrector",
    "BrownianPath",
    "Corrector",
    "CountedScore",
    "DDIM",
    "DPMSolver",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "DiffusionSDE",
    "EDMHeun",
    "GaussianAncestral",
    "GaussianMultistep",
    "LMS",
    "EulerMaruyama",
    "EulerMaruyamaPredictor",
    "FixedGridSolver",
    "GaussianNoise",
    "HasMarginals",
    "HasPrior",
    "Heun",
    "LangevinCorrector",
    "MarginalSDE",
    "NoiseSource",
    "NonFiniteScoreError",
    "NoneCorrector",
    "NonePredictor",
    "ODEEuler",
    "Predictor",
    "PredictorCorrector",
    "ProbabilityFlowODE",
    "RK4",
    "ReverseDiffusion",
    "ReverseDiffusionPredictor",
    "ReverseDynamics",
    "ReverseSDE",
    "ReverseSDEParts",
    "SDEDPMSolverPP2M",
    "ScipyODE",
    "ScoreFn",
    "SolveContext",
    "Solution",
    "Solver",
    "SolverSpec",
    "TorchSDE",
    "UniPC",
    "append_dims",
    "available",
    "check_solver_names",
    "batch_time",
    "forward_transition",
    "get_solver",
    "grids",
    "integrate_fixed",
    "lookup",
    "marginals",
    "noise",
    "sample",
    "solve_adaptive",
    "solve_ivp_torch",
    "summaries",
    "tweedie_denoise",
    "final_step",
]
