"""The convenience entry point ``solvers.sample(sde, score, shape, solver="pc", steps=500)``.

`sample` assembles the composable pieces (solver by name from `solvers.catalog`, dynamics,
grid, prior draw, noise) and calls `Solver.solve`; with ``batch_size`` it solves the batch
chunk by chunk (`solvers.chunks.sample_in_chunks`, whose module docstring says what stays identical to an
unchunked solve).
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import replace
from typing import Any, cast

import torch
from torch import Tensor

from .base import AfterStep, Solver
from .catalog import SOLVERS, SolverSpec, available, get_solver, summaries
from .chunks import check_batch_size, sample_in_chunks
from .dynamics import NonFiniteScoreError, ReverseDynamics
from .grids import check_grid
from .inputs import (
    MAX_STEPS,
    as_count,
    check_flag,
    check_score,
    check_seed,
    check_x_T,
)
from .marginals import require_marginals
from .pc import PredictorCorrector
from .prior_match import PriorMatchProbe
from .prior_warnings import warn_if_off_prior
from .progress import SamplingProgress
from .protocol import ReverseSDEParts, ScoreFn
from .result import Solution
from .sample_setup import (
    HALF_DTYPES,
    NoiseSpec,
    ScoreIn,
    build_grid,
    initial_state,
    make_noise,
    resolve_generator,
    resolve_shape,
)
from .score_sde import check_score_sde, warn_below_training_range
from .sde_checks import check_sde, warn_if_diverged
from .warning_types import SolverWarning, run_warnings, warn

__all__ = [
    "SOLVERS",
    "SolverSpec",
    "available",
    "summaries",
    "get_solver",
    "sample",
    "sample_in_chunks",
    "tweedie_denoise",
]


def tweedie_denoise(dynamics: ReverseDynamics, x: Tensor, t: float) -> Tensor:
    """Tweedie step ``E[x_0 | x_t] = (x + sigma(t)^2 s(x, t)) / alpha(t)`` for ``x: (B, *D)`` (one NFE)."""
    with torch.no_grad():
        return dynamics.x0_pred(x, torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device))


STEPS_DEFAULT = 500
"""`sample`'s step count when ``steps`` is not given (a grid tensor then sets the count)."""

# `pc` itself only: ancestral, reverse_diffusion and annealed_langevin are their algorithms, which need
# sigma(t); swapping their parts would run Euler-Maruyama under their names
_PC_WITHOUT_MARGINALS = ("pass predictor='euler_maruyama', corrector='none' (Euler-Maruyama; the default "
                         "predictor, reverse diffusion, and the Langevin correctors need sigma(t)), or pick a "
                         "solver without needs_marginals (euler_maruyama, ode_*, torchsde_*, adaptive_sde)")


def _keyword_hint(options: dict[str, Any]) -> str:
    """``"; did you mean sample(..., steps=...)?"`` for options that misspell `sample`'s own
    keywords (``step=``, ``keep_trajectroy=``), else ``""``."""
    own = [p for p in inspect.signature(sample).parameters if p not in ("options", "sde", "score")]
    hints = []
    for key in options:
        if key == "solver_options":
            hints.append("solver options are keywords of sample() itself (e.g. snr=0.16), not a dict")
            continue
        close = difflib.get_close_matches(key, own, n=1, cutoff=0.7)
        if close:
            hints.append(f"did you mean sample(..., {close[0]}=...) for {key!r}?")
    return "; " + "; ".join(hints) if hints else ""


def _resolve_solver(solver: str | Solver, options: dict[str, Any]) -> Solver:
    if isinstance(solver, str):
        try:
            return get_solver(solver, **options)
        except TypeError as err:
            hint = _keyword_hint(options)
            if hint:
                raise TypeError(f"{err}{hint}") from None
            raise
    if isinstance(solver, Solver):
        if options:
            raise TypeError(f"options {sorted(options)} given with a Solver instance; set them on it"
                            f"{_keyword_hint(options)}")
        return solver
    raise TypeError(f"solver must be a name or a Solver, got {type(solver).__name__}")


def sample(
    sde: ReverseSDEParts,
    score: ScoreFn,
    shape: tuple[int, ...] | None = None,
    solver: str | Solver = "euler_maruyama",
    *,
    steps: int | None = None,
    grid: str | Tensor | None = None,
    lam: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    noise: NoiseSpec = None,
    x_T: Tensor | None = None,
    denoise: bool | str | None = None,
    keep_trajectory: bool = False,
    max_frames: int | None = 101,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    check_finite: bool = True,
    after_step: AfterStep | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    **options: Any,
) -> Solution:
    """Draw samples by integrating the reverse dynamics from the prior at ``T`` to ``eps``.

    Args:
        sde: forward SDE: ``T``, ``eps``, ``drift``, ``diffusion``; ``marginal_coeffs`` for
            ``needs_marginals`` solvers and ``denoise``; ``prior_sample`` unless ``x_T`` is given.
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        shape: ``(B, *D)``; may be omitted when ``x_T`` is given.
        solver: a name from `available` or a `Solver` instance.
        steps: number of grid intervals, at most `solvers.inputs.MAX_STEPS` (an integer: Python,
            NumPy or a one-element torch tensor; adaptive solvers choose their own steps and
            warn when it is given); when
            not given, `STEPS_DEFAULT` (500). A grid tensor sets it (``len(grid) - 1``): any other
            explicit count is refused, 500 included.
        grid: grid name (``uniform``, ``quadratic``, ``logsnr``, ``logsnr_long_first``, ``karras``,
            ``uniform_logsnr``, ``uniform_or_logsnr``; `solvers.grids.GRIDS`), ``"auto"`` (shaped
            by a cached pilot adaptive solve, `solvers.auto_grid`; prototype; the pilot's
            evaluations are not in ``nfe``: ``stats["pilot_nfe"]`` on ``stats["pilot_batch"]``
            samples, ``stats["pilot_seconds"]`` spent on it in this call) or a decreasing
            tensor of times in ``[eps, T]``; default: the solver's `Solver.grid_for` the SDE.
        lam: reverse-family noise level for solvers that accept any dynamics (default 1 =
            reverse SDE; ODE solvers always use 0), see `Solver.lam_for`.
        seed, generator: randomness of the prior sample and the noise (``seed``, an integer in
            ``[-2^63, 2^64)``, builds a generator on ``device``; ``generator`` must be on
            ``device``'s type; pass at most one). Neither: a seed is drawn from torch's global
            generator, so ``torch.manual_seed(s)`` before the call reproduces it.
        noise: ``"gaussian"`` (default, i.i.d.), ``"brownian"`` (one Brownian path shared
            across step counts, seeded by ``seed``, else drawn from ``generator``, else random;
            resolved to `BROWNIAN_TOL` of ``T - eps``, finer, and then another path, for grids
            with shorter steps) or a `solvers.noise.NoiseSource`.
        x_T: initial state instead of a prior sample.
        denoise: the end-of-run step at ``eps`` (`Solver.finish`; one NFE, two for ``"ode"``
            after a run that drew noise and ended with a short step, which fits to a probe
            just above ``eps``): default ``None``,
            the solver's own (``"ode"`` for every registered solver: a second-order step to
            ``sigma = 0``, so the samples follow ``p_0``; except with an ``after_step`` hook or an
            SDE without ``marginal_coeffs``, where the run ends at ``eps`` with ``"none"``); ``"tweedie"`` (or ``True``):
            Tweedie's ``E[x_0 | x_eps]``; ``"none"`` (or ``False``): the state at ``eps``
            (``p_eps``). See docs/defaults.md.
        keep_trajectory, max_frames: store up to ``max_frames`` evenly spaced states.
        dtype, device: of the state (default: ``x_T``'s, else torch's default float dtype, CPU);
            a dtype may be named (``"float64"``); an unknown or unavailable device (``"cuda"`` on
            a CPU build) is refused before any work. ``float16`` / ``bfloat16``: the score is
            called in that dtype, the solver's state, times and coefficients stay in float32
            (as the ``after_step`` hook sees them), and the samples are returned in it.
        check_finite: raise on NaN/inf scores.
        after_step: hook ``(x, t) -> x`` applied after every step (an explicit end step with a
            hook warns: it runs after the hook's last call and can undo its constraint).
        batch_size: integrate at most this many samples at a time (flat memory; what stays
            identical: see `solvers.chunks`).
        progress: show a tqdm bar (stderr) of the part of the grid integrated (steps taken on
            a fixed grid, ``(T - t) / (T - eps)`` for adaptive solvers), per chunk; samples
            and NFE are unchanged (`solvers.progress`).
        **options: solver options (e.g. ``snr=0.16`` for ``pc``); unknown ones raise.

    Returns:
        `Solution` with ``samples``, ``nfe``, ``times``, ``trajectory``, ``trajectory_times``,
        ``seconds`` and ``stats``.

    Raises:
        ValueError: bad shape, dtype, device, seed, steps, grid, ``lam``, name or option value.
        TypeError: a score that is not callable, unknown option, ``x_T`` / ``generator`` /
            ``noise`` of the wrong type, or the SDE lacks what the solver needs
            (`solvers.inputs.NotAnIntegerError`, both a ``TypeError`` and a ``ValueError``: a
            count or size that is not an integer).
    """
    check_score(score)
    check_score_sde(score, sde)
    check_score_sde(after_step, sde, what="after_step")
    warn_below_training_range(score, sde)
    solver_obj = _resolve_solver(solver, options)
    steps_given = steps is not None
    steps = as_count(STEPS_DEFAULT if steps is None else steps, "steps", maximum=MAX_STEPS)
    check_finite, progress = check_flag(check_finite, "check_finite"), check_flag(progress, "progress")
    keep_trajectory = check_flag(keep_trajectory, "keep_trajectory")
    if max_frames is not None:
        max_frames = as_count(max_frames, "max_frames")
    if after_step is not None and not callable(after_step):
        raise TypeError(f"after_step must be a callable hook (x, t) -> x, got {type(after_step).__name__} "
                        f"{after_step!r}")
    batch_size = check_batch_size(batch_size)
    seed = check_seed(seed)
    x_T = check_x_T(x_T)
    shape, out_dtype, device_ = resolve_shape(shape, x_T, dtype, device)
    # Half precision: the score runs in it, the state, times and coefficients in float32.
    dtype = torch.float32 if out_dtype in HALF_DTYPES else out_dtype
    cache_as = None
    if dtype != out_dtype:
        cache_as = (score, out_dtype)  # the auto grid's pilot cache keys on the user's score
        score = ScoreIn(score, out_dtype)
    check_sde(sde, shape[1:], dtype, device_)
    if grid is not None and not isinstance(grid, str):
        grid = check_grid(grid, sde)
        if steps_given and steps != grid.numel() - 1:
            raise ValueError(f"a grid tensor sets the steps itself ({grid.numel() - 1} intervals); "
                             f"steps={steps} would be ignored: pass one or the other")
    if steps_given and solver_obj.adaptive:
        warn(
            f"{solver if isinstance(solver, str) else type(solver).__name__} chooses its own steps "
            f"(adaptive): steps={steps} is ignored; its cost follows its tolerances (rtol, atol), and "
            "its NFE is counted in the result as for any solver. Leave steps unset for it",
            SolverWarning,
        )
    if solver_obj.needs_marginals:  # before the grid, which may need them too
        require_marginals(sde, repr(solver) if isinstance(solver, str) else type(solver).__name__,
                          _PC_WITHOUT_MARGINALS if type(solver_obj) is PredictorCorrector else None)
    generator = resolve_generator(seed, generator, device_)
    lam_value = solver_obj.lam_for(lam, solver if isinstance(solver, str) else None)
    ts, grid_stats = build_grid(solver_obj, sde, score, grid, steps, shape, cache_as, dtype, device_)
    if x_T is None and isinstance(grid, Tensor) and float(ts[0]) < float(sde.T) * (1.0 - 1e-6):
        warn(
            f"the grid starts at t = {float(ts[0]):.6g} < T = {float(sde.T):g}, but x_T is drawn from the "
            f"prior (a sample of p_T): the run treats it as a sample of p_t there; start the grid at T, "
            f"or pass x_T= drawn from p_t at the grid's first time",
            SolverWarning,
        )
    if after_step is not None and denoise is not None and solver_obj.final_kind(denoise) != "none":
        warn(
            f"denoise={denoise!r} with an after_step hook: the end-of-run step runs after the hook's last "
            f"call and uses the score as given, so it can move what the hook set (replacement's observed "
            f"coordinates leave y, a projection leaves A x = y); with a hook the default ends at eps "
            f"(denoise='none'), where the hook's constraint holds",
            SolverWarning,
        )
    x_start = initial_state(sde, x_T, shape, generator, dtype, device_)
    chunked = batch_size is not None and batch_size < shape[0]
    if chunked and noise == "brownian":
        raise ValueError("noise='brownian' defines one path for the whole batch; drop batch_size")
    noise_src = make_noise(noise, shape, sde, seed, generator, dtype, device_, ts)
    run: dict[str, Any] = dict(keep_trajectory=keep_trajectory, max_frames=max_frames,
                               after_step=after_step, denoise=denoise)
    bar = None
    if progress:
        n_chunks = -(-shape[0] // cast(int, batch_size)) if chunked else 1
        bar = SamplingProgress(ts, n_chunks, desc=solver if isinstance(solver, str) else type(solver).__name__)
    # A prior draw starting at T: its first evaluation says whether it is a sample of p_T.
    starts_at_T = math.isclose(float(ts[0]), float(sde.T), rel_tol=1e-6)  # a float32 grid's T rounds
    probe = PriorMatchProbe(sde, score, x_start) if x_T is None and starts_at_T else None
    try:
        # The bar sees every score call through the wrapper; counting and checks stay outside it.
        inner = score if probe is None else probe
        dynamics = ReverseDynamics(sde, inner if bar is None else bar.wrap(inner), lam_value,
                                   check_finite=check_finite)
        try:
            # The solvers' warnings name the caller's line however deep in the run they are raised
            # (solvers.warning_types.warn); a chunked run raises each message once.
            with run_warnings():
                if chunked:
                    result = sample_in_chunks(solver_obj, dynamics, x_start, ts, batch_size=cast(int, batch_size),
                                              noise=noise_src, progress=bar, **run)
                else:
                    result = solver_obj.solve(dynamics, x_start, ts, noise=noise_src, **run)
                    if bar is not None:
                        bar.finish_chunk()
        except NonFiniteScoreError:
            # A run that blew up from a prior draw p_T does not fit (data far from the origin, a
            # noise level at T too small for them) would otherwise end on the NaN alone: the
            # probe's verdict, read at the first evaluation, comes first.
            if probe is not None and probe.shift is not None:
                warn_if_off_prior(probe, lam=solver_obj.reverse_level(lam_value, sde, ts))
            raise
        warn_if_diverged(result.samples, sde)
        if probe is not None and probe.shift is not None:
            lam_run = solver_obj.reverse_level(lam_value, sde, ts)  # whose contraction of the offset the run gets
            warn_if_off_prior(probe, lam=lam_run)
            grid_stats = {**grid_stats, "prior_shift": probe.shift, "prior_shift_error": probe.error,
                          "prior_shift_carried": probe.carried(lam_run), "prior_shift_norm": probe.norm(),
                          "prior_shift_norm_carried": probe.norm(lam_run)}
        if grid_stats:
            result = replace(result, stats={**result.stats, **grid_stats})
        if out_dtype != dtype:
            traj = result.trajectory
            result = replace(result, samples=result.samples.to(out_dtype),
                             trajectory=None if traj is None else traj.to(out_dtype))
        return result
    finally:
        if bar is not None:
            bar.close()
