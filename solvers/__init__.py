"""Interchangeable samplers for score-based diffusion models.

Depends only on the :class:`~solvers.protocol.DiffusionSDE` protocol and a score callable,
never on networks or training code. Convenience call::

    r = solvers.sample(sde, score, shape=(10_000, 2), solver="pc", steps=500, seed=0)

Composable layer::

    dyn = solvers.ReverseSDE(sde, score)
    sol = solvers.EulerMaruyama().solve(dyn, x_T, solvers.grids.uniform(sde, 500))
"""

from . import grids, noise
from .adaptive_ode import AdaptiveBosh3, AdaptiveODE, solve_adaptive
from .adaptive_sde import AdaptiveSDE
from .api import SOLVERS, available, get_solver, sample, summaries, tweedie_denoise
from .base import FixedGridSolver, Solver, StepContext
from .correctors import AnnealedLangevinCorrector, Corrector, LangevinCorrector, NoneCorrector
from .ddim import DDIM
from .dpm_solver import DPMSolver1, DPMSolver2, DPMSolver3
from .dpmpp import DPMSolverPP2M, DPMSolverPP3M, UniPC
from .dynamics import (
    CountedScore,
    NonFiniteScoreError,
    ProbabilityFlowODE,
    ReverseDynamics,
    ReverseSDE,
    forward_transition,
)
from .edm import EDMHeun
from .euler_maruyama import EulerMaruyama
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
from .protocol import DiffusionSDE, ScoreFn
from .result import SampleResult, Solution
from .scipy_ode import ScipyDOP853, ScipyODE, solve_ivp_torch
from .sde_dpmpp import SDEDPMSolverPP2M
from .torchsde_backend import (
    TorchSDE,
    TorchSDEMidpoint,
    TorchSDEMilstein,
    TorchSDEReversibleHeun,
    TorchSDESRK,
)
from .utils import append_dims, batch_time

__all__ = [
    "SOLVERS",
    "AdaptiveBosh3",
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
    "DPMSolver1",
    "DPMSolver2",
    "DPMSolver3",
    "DPMSolverPP2M",
    "DPMSolverPP3M",
    "DiffusionSDE",
    "EDMHeun",
    "EulerMaruyama",
    "EulerMaruyamaPredictor",
    "FixedGridSolver",
    "GaussianNoise",
    "Heun",
    "LangevinCorrector",
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
    "SDEDPMSolverPP2M",
    "SampleResult",
    "ScipyDOP853",
    "ScipyODE",
    "ScoreFn",
    "Solution",
    "Solver",
    "StepContext",
    "TorchSDE",
    "TorchSDEMidpoint",
    "TorchSDEMilstein",
    "TorchSDEReversibleHeun",
    "TorchSDESRK",
    "UniPC",
    "append_dims",
    "available",
    "batch_time",
    "forward_transition",
    "get_solver",
    "grids",
    "integrate_fixed",
    "noise",
    "sample",
    "solve_adaptive",
    "solve_ivp_torch",
    "summaries",
    "tweedie_denoise",
]
