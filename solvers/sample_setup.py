"""The run's inputs for `solvers.sample`: shape, dtype and device, the generator, the initial
state, the noise source and the time grid, each checked and resolved before a step is taken.

`solvers.api.sample` calls these in order; none of them evaluates the score (a ``grid="auto"``
pilot aside, `solvers.auto_grid`).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import Tensor

from .auto_grid import auto_grid_report
from .base import Solver
from .grids import GRIDS_WITHOUT_MARGINALS, get_grid
from .inputs import check_device, check_dtype, check_generator, check_shape
from .marginals import require_marginals
from .noise import BrownianPath, GaussianNoise, NoiseSource, make_generator
from .protocol import DiffusionSDE, HasPrior, ReverseSDEParts, ScoreFn
from .sde_checks import check_prior_draw

__all__ = ["BROWNIAN_TOL", "HALF_DTYPES", "NoiseSpec", "ScoreIn", "build_grid", "initial_state", "make_noise",
           "resolve_generator", "resolve_shape"]

NoiseSpec = NoiseSource | Literal["gaussian", "brownian"] | None

HALF_DTYPES = (torch.float16, torch.bfloat16)
"""Sampling dtypes whose runs keep the state in float32 and call only the score in them."""


class ScoreIn:
    """The score called in ``dtype`` (half precision) on a float32 state: ``x, t`` are cast
    down for the call, the output back up by the dynamics (its dtype follows the state).

    The increments of a fine grid (1e-3 of the state and of ``t``) are below bfloat16's
    resolution (2^-8 relative): a state kept in it drifts off as steps are added (ode_heun on
    a Gaussian: error 0.03 at 25 steps, 1.6 at 1600), while a model in half precision costs
    only the score's own rounding.
    """

    def __init__(self, score: ScoreFn, dtype: torch.dtype) -> None:
        self.score, self.dtype = score, dtype

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self.score(x.to(self.dtype), t.to(self.dtype))


BROWNIAN_TOL = 1e-7
"""Default resolution of the shared Brownian path, relative to ``T - eps``."""


def make_noise(
    noise: NoiseSpec, shape: tuple[int, ...], sde: ReverseSDEParts, seed: int | None,
    generator: torch.Generator, dtype: torch.dtype, device: torch.device, ts: Tensor,
) -> NoiseSource:
    if noise is None or noise == "gaussian":
        return GaussianNoise(generator)
    if noise == "brownian":
        if seed is None:  # a generator (given, or freshly seeded): the path's entropy comes from it
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        # The tree must resolve the shortest step (VE's log-SNR grid at 3000 steps has steps of
        # 8.6e-8, below 1e-7 (T - eps): the tree recursed without end). Grids it resolves keep
        # the default, so their runs share one path across step counts; a finer tree draws
        # another path.
        span = float(sde.T) - float(sde.eps)
        shortest = float((ts[:-1] - ts[1:]).min()) if ts.numel() > 1 else span
        tol = BROWNIAN_TOL if shortest >= 2 * BROWNIAN_TOL * span else 0.01 * shortest / span
        return BrownianPath(shape, sde.eps, sde.T, seed=seed, dtype=dtype, device=device, tol=tol)
    if isinstance(noise, str):
        raise ValueError(f"unknown noise {noise!r}; use 'gaussian', 'brownian' or a NoiseSource")
    if not isinstance(noise, NoiseSource):
        raise TypeError(
            f"noise must be 'gaussian', 'brownian', None or a NoiseSource (with increment(t_from, "
            f"t_to, like) and normal(like)), got {type(noise).__name__}"
        )
    return noise


def resolve_shape(
    shape: tuple[int, ...] | None, x_T: Tensor | None, dtype: torch.dtype | str | None,
    device: torch.device | str | None,
) -> tuple[tuple[int, ...], torch.dtype, torch.device]:
    """The run's ``(shape, dtype, device)``: as given, else ``x_T``'s, else ``shape`` with torch's
    default float dtype on CPU (each checked by `solvers.inputs`)."""
    if x_T is not None:
        if shape is not None and check_shape(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x_T.shape {tuple(x_T.shape)}")
        dtype = x_T.dtype if dtype is None else dtype
        device = x_T.device if device is None else device
        shape = tuple(x_T.shape)
    if shape is None:
        raise ValueError("give shape=(B, *D) or x_T")
    return check_shape(shape), check_dtype(dtype), check_device(device)


def initial_state(
    sde: ReverseSDEParts, x_T: Tensor | None, shape: tuple[int, ...], generator: torch.Generator,
    dtype: torch.dtype, device: torch.device,
) -> Tensor:
    if x_T is not None:
        # A copy: the run's first score call receives this state, and a score that writes into
        # its input (a normalising layer in place) must not change the caller's x_T.
        return x_T.to(dtype=dtype, device=device, copy=True)
    if not isinstance(sde, HasPrior):
        raise TypeError(
            f"{type(sde).__name__} has no prior_sample(shape, generator=, dtype=, device=) to draw "
            "x_T from; pass x_T= (the initial state at T)"
        )
    try:
        draw = sde.prior_sample(shape, generator=generator, dtype=dtype, device=device)
    except TypeError as err:
        if "unexpected keyword" not in str(err):
            raise
        raise TypeError(
            f"{type(sde).__name__}.prior_sample must take prior_sample(shape, *, generator=None, "
            f"dtype=None, device=None) (solvers.protocol.HasPrior): {err}; or pass x_T= (the initial state at T)"
        ) from err
    return check_prior_draw(draw, sde, shape, dtype, device)


def resolve_generator(seed: int | None, generator: torch.Generator | None,
                       device: torch.device) -> torch.Generator:
    """The run's generator: the one given, or one seeded by ``seed`` on ``device`` (not both)."""
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    given = check_generator(generator, device)
    return make_generator(seed, device) if given is None else given


def build_grid(solver: Solver, sde: ReverseSDEParts, score: ScoreFn, grid: str | Tensor | None,
                steps: int, shape: tuple[int, ...], cache_as: tuple[ScoreFn, object] | None = None,
                dtype: torch.dtype = torch.float64,
                device: torch.device | None = None) -> tuple[Tensor, dict[str, Any]]:
    """The time grid of a run: the solver's default for this SDE, a name, ``"auto"`` or a tensor,
    and the stats of building it (``"auto"``: its pilot's cost, `solvers.auto_grid`, run in the
    run's ``dtype`` on its ``device``).

    A named grid is built here; a tensor grid is validated by `Solver.solve` (once per solve).
    An adaptive solver uses only the grid's end points, so its named grid has one step whatever
    ``steps`` is (no ``(steps + 1,)`` tensor is built for nothing), and ``"auto"`` is its default
    grid (no pilot is run for end points alone).
    """
    grid = solver.grid_for(sde) if grid is None else grid
    if solver.adaptive and isinstance(grid, str):
        steps = 1
        if grid == "auto":
            grid = solver.grid_for(sde)
    if isinstance(grid, str) and grid == "auto":
        require_marginals(sde, "grid='auto'", "use grid='uniform' or 'quadratic'")
        ts, pilot = auto_grid_report(cast(DiffusionSDE, sde), score, steps, shape, cache_as=cache_as,
                                     dtype=dtype, device=torch.device("cpu") if device is None else device)
        return ts, {"pilot_nfe": pilot.nfe, "pilot_batch": pilot.batch, "pilot_seconds": pilot.seconds,
                    "pilot_cached": pilot.cached}
    if isinstance(grid, str) and grid not in GRIDS_WITHOUT_MARGINALS:
        require_marginals(sde, f"grid={grid!r}", "use grid='uniform' or 'quadratic'")
    return (get_grid(grid)(sde, steps) if isinstance(grid, str) else grid), {}
