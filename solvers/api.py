"""The convenience entry point: ``solvers.sample(sde, score, shape, solver="pc", steps=500)``.

``SOLVERS`` is the single name -> class table; :func:`sample` only assembles the composable
pieces (dynamics, grid, noise, solver) and applies the optional final denoising step.
"""

from __future__ import annotations

import inspect
from typing import Literal

import torch
from torch import Tensor

from .adaptive_ode import AdaptiveBosh3, AdaptiveODE
from .adaptive_sde import AdaptiveSDE
from .base import AfterStep, Solver
from .ddim import DDIM
from .dpm_solver import DPMSolver1, DPMSolver2, DPMSolver3
from .dpmpp import DPMSolverPP2M, DPMSolverPP3M, UniPC
from .dynamics import ReverseDynamics
from .edm import EDMHeun
from .euler_maruyama import EulerMaruyama
from .grids import check_grid, get_grid
from .noise import BrownianPath, GaussianNoise, NoiseSource, make_generator
from .ode import RK4, Heun, ODEEuler
from .pc import Ancestral, AnnealedLangevin, PredictorCorrector, ReverseDiffusion
from .protocol import DiffusionSDE, ScoreFn
from .result import SampleResult
from .scipy_ode import ScipyDOP853, ScipyODE
from .sde_dpmpp import SDEDPMSolverPP2M
from .torchsde_backend import (
    TorchSDE,
    TorchSDEMidpoint,
    TorchSDEMilstein,
    TorchSDEReversibleHeun,
    TorchSDESRK,
)
from .utils import batch_time

__all__ = ["SOLVERS", "available", "summaries", "get_solver", "sample", "tweedie_denoise"]

SOLVERS: dict[str, type[Solver]] = {
    "euler_maruyama": EulerMaruyama,
    "pc": PredictorCorrector,
    "reverse_diffusion": ReverseDiffusion,
    "ancestral": Ancestral,
    "annealed_langevin": AnnealedLangevin,
    "ddim": DDIM,
    "dpm_solver_1": DPMSolver1,
    "dpm_solver_2": DPMSolver2,
    "dpm_solver_3": DPMSolver3,
    "dpmpp_2m": DPMSolverPP2M,
    "dpmpp_3m": DPMSolverPP3M,
    "unipc": UniPC,
    "edm_heun": EDMHeun,
    "sde_dpmpp_2m": SDEDPMSolverPP2M,
    "ode_euler": ODEEuler,
    "ode_heun": Heun,
    "ode_rk4": RK4,
    "ode_rk45": ScipyODE,
    "ode_dop853": ScipyDOP853,
    "torchsde_euler": TorchSDE,
    "torchsde_milstein": TorchSDEMilstein,
    "torchsde_srk": TorchSDESRK,
    "torchsde_midpoint": TorchSDEMidpoint,
    "torchsde_reversible_heun": TorchSDEReversibleHeun,
    "ode_dopri5": AdaptiveODE,
    "ode_bosh3": AdaptiveBosh3,
    "adaptive_sde": AdaptiveSDE,
}


def available() -> list[str]:
    """Every registered solver name."""
    return list(SOLVERS)


def summaries() -> dict[str, str]:
    """Solver name -> first line of its docstring (what ``scoresde solvers`` prints)."""
    return {name: (inspect.getdoc(cls) or "").splitlines()[0] for name, cls in SOLVERS.items()}


def get_solver(name: str, **options: object) -> Solver:
    """Instantiate a registered solver by name with keyword options.

    Raises ``ValueError`` listing the valid names for an unknown name, and ``TypeError``
    listing the accepted options for an unknown option.
    """
    try:
        cls = SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; valid solvers: {', '.join(SOLVERS)}") from None
    params = inspect.signature(cls.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise TypeError(
            f"solver {name!r} got unknown option(s) {unknown}; it accepts: {accepted or 'none'}"
        )
    return cls(**options)


def tweedie_denoise(dynamics: ReverseDynamics, x: Tensor, t: float) -> Tensor:
    """Final Tweedie step ``E[x_0 | x_t] = (x + sigma(t)^2 s(x, t)) / alpha(t)`` (one NFE)."""
    with torch.no_grad():
        return dynamics.x0_pred(x, batch_time(t, x))


def _make_noise(
    noise: NoiseSource | Literal["gaussian", "brownian"] | None,
    shape: tuple[int, ...],
    sde: DiffusionSDE,
    seed: int | None,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
) -> NoiseSource:
    if noise is None or noise == "gaussian":
        return GaussianNoise(generator)
    if noise == "brownian":
        return BrownianPath(
            shape, sde.eps, sde.T, seed=0 if seed is None else seed, dtype=dtype, device=device
        )
    if isinstance(noise, str):
        raise ValueError(f"unknown noise {noise!r}; use 'gaussian', 'brownian' or a NoiseSource")
    return noise


def sample(
    sde: DiffusionSDE,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    solver: str | Solver = "euler_maruyama",
    *,
    steps: int = 500,
    grid: str | Tensor | None = None,
    lam: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    noise: NoiseSource | Literal["gaussian", "brownian"] | None = None,
    x_T: Tensor | None = None,
    denoise: bool = False,
    keep_trajectory: bool = False,
    max_frames: int | None = 101,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    check_finite: bool = True,
    after_step: AfterStep | None = None,
    **options: object,
) -> SampleResult:
    """Draw samples by integrating the reverse dynamics from the prior at ``T`` to ``eps``.

    Args:
        sde: forward SDE (any :class:`~solvers.protocol.DiffusionSDE`).
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        shape: ``(B, *D)``; may be omitted when ``x_T`` is given.
        solver: a name from :func:`available` or a :class:`Solver` instance.
        steps: number of grid intervals (adaptive solvers use only the end points).
        grid: grid name (``uniform``, ``quadratic``, ``logsnr``, ``karras``) or a decreasing
            tensor of times in ``[eps, T]``; default: the solver's ``default_grid``
            (``uniform``; ``logsnr`` for exponential integrators, ``karras`` for ``edm_heun``).
        lam: reverse-family noise level for solvers that accept any dynamics
            (default 1 = reverse SDE; ODE solvers always use 0).
        seed, generator: randomness of the prior sample and the noise (``seed`` builds a
            generator on ``device``; pass at most one).
        noise: ``"gaussian"`` (default, i.i.d.), ``"brownian"`` (one Brownian path shared
            across step counts, seeded by ``seed``) or a :class:`~solvers.noise.NoiseSource`.
        x_T: initial state instead of a prior sample.
        denoise: apply the Tweedie denoiser at ``eps`` (one extra NFE).
        keep_trajectory, max_frames: store up to ``max_frames`` evenly spaced states.
        dtype, device: of the state (default: ``x_T``'s, else torch's default dtype on CPU).
        check_finite: raise on NaN/inf scores.
        after_step: hook ``(x, t) -> x`` applied after every step.
        **options: solver options (e.g. ``snr=0.16`` for ``pc``); unknown ones raise.

    Returns:
        :class:`~solvers.result.SampleResult` with ``samples``, ``nfe``, ``times``,
        ``trajectory``, ``seconds``.
    """
    if isinstance(solver, str):
        solver_obj = get_solver(solver, **options)
    elif isinstance(solver, Solver):
        if options:
            raise TypeError(f"options {sorted(options)} given with a Solver instance; set them on it")
        solver_obj = solver
    else:
        raise TypeError(f"solver must be a name or a Solver, got {type(solver).__name__}")
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")

    if x_T is not None:
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x_T.shape {tuple(x_T.shape)}")
        dtype = x_T.dtype if dtype is None else dtype
        device = x_T.device if device is None else device
        shape = tuple(x_T.shape)
    if shape is None:
        raise ValueError("give shape=(B, *D) or x_T")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be (B, *D) with positive sizes, got {shape}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    device = torch.device("cpu") if device is None else torch.device(device)
    if generator is None:
        generator = make_generator(seed, device)

    if solver_obj.dynamics_kind == "ode":
        if lam not in (None, 0, 0.0):
            raise ValueError(f"{type(solver_obj).__name__} is an ODE solver; lam must be 0")
        lam_value = 0.0
    elif solver_obj.dynamics_kind == "sde":
        if lam not in (None, 1, 1.0):
            raise ValueError(f"{type(solver_obj).__name__} needs the reverse SDE; lam must be 1")
        lam_value = 1.0
    else:
        lam_value = 1.0 if lam is None else float(lam)
    dynamics = ReverseDynamics(sde, score, lam_value, check_finite=check_finite)

    if grid is None:
        grid = solver_obj.default_grid
    ts = get_grid(grid)(sde, steps) if isinstance(grid, str) else check_grid(grid, sde)
    if x_T is None:
        x_T = sde.prior_sample(shape, generator=generator, dtype=dtype, device=device)
    else:
        x_T = x_T.to(dtype=dtype, device=device)
    noise_src = _make_noise(noise, shape, sde, seed, generator, dtype, device)

    result = solver_obj.solve(
        dynamics,
        x_T,
        ts,
        noise=noise_src,
        keep_trajectory=keep_trajectory,
        max_frames=max_frames,
        after_step=after_step,
    )
    if denoise:
        result.samples = tweedie_denoise(dynamics, result.samples, float(result.times[-1]))
        result.nfe = dynamics.nfe
    return result
