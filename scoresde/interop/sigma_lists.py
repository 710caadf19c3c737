"""Our solvers over an explicit k-diffusion sigma list, in k-diffusion's units.

A k-diffusion sampler takes a decreasing list of noise levels ``sigma_edm`` (optionally
ending in 0) and a state in EDM units ``x_edm = x / alpha``. `times_from_sigmas` turns such
a list into our time grid and `sample_sigmas` runs any of our solvers over it, so the two
libraries can be compared step for step (the conversions between denoisers and scores are in
`scoresde.interop.kdiffusion`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

import solvers
from solvers.inputs import check_device, check_dtype, check_generator, check_seed, check_shape
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.result import Solution

from ._warn import reemit_at_user
from .kdiffusion import _check_sde, _times

__all__ = ["times_from_sigmas", "sample_sigmas"]


def times_from_sigmas(sde: DiffusionSDE, sigmas: Tensor | Sequence[float]) -> tuple[Tensor, bool]:
    """Our time grid for a decreasing k-diffusion sigma list (optionally ending in 0).

    Args:
        sde: the SDE.
        sigmas: ``(n + 1,)`` strictly decreasing noise levels ``sigma_edm``, each in
            ``[sigma_edm(eps), sigma_edm(T)]`` except a final 0.

    Returns:
        ``(ts, final_denoise)``: the decreasing float64 times of the positive sigmas, and
        whether the list ended in 0 (then the last move is the denoiser, ``x = D(x, sigma_n)``,
        which is what the step to ``sigma = 0`` of k-diffusion's ``sample_euler``,
        ``sample_heun``, ``sample_dpm_2`` and ``sample_dpmpp_2m`` computes; ``sample_lms``
        takes an Adams step to 0 instead, see `sample_sigmas`).

    Raises:
        TypeError: ``sde`` without affine marginals.
        ValueError: ``sigmas`` not finite or not strictly decreasing, with fewer than 2 positive levels,
            outside the SDE's range, or with two levels within 1e-3 beyond one end (both would
            be that end's time).
    """
    _check_sde(sde)
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu().reshape(-1)
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"sigmas must be finite noise levels, got {s.tolist()}")
    if s.numel() < 2 or not bool((s[1:] < s[:-1]).all()):
        raise ValueError("sigmas must be a strictly decreasing list of at least 2 noise levels")
    final = bool(s[-1] == 0)
    pos = s[:-1] if final else s
    if pos.numel() < 2:
        raise ValueError("need at least 2 positive sigmas (one solver step)")
    if float(pos.min()) <= 0:
        raise ValueError("only the last sigma may be 0; the others must be positive")
    ts = _times(sde, pos)
    same = (ts[1:] >= ts[:-1]).nonzero().flatten()
    if same.numel():  # two levels within _REL_TOL beyond one end, both clamped onto it
        i = int(same[0])
        raise ValueError(
            f"sigmas {float(pos[i]):.8g} and {float(pos[i + 1]):.8g} both lie at or beyond an end of "
            f"{type(sde).__name__}'s range and become the same time {float(ts[i]):.8g}; keep only one "
            "level at each end of the range")
    return ts, final


def sample_sigmas(
    sde: DiffusionSDE,
    score: ScoreFn,
    sigmas: Tensor | Sequence[float],
    solver: str | solvers.Solver = "edm_heun",
    *,
    x: Tensor | None = None,
    shape: tuple[int, ...] | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    **options: Any,
) -> Solution:
    """Run one of our solvers over an explicit k-diffusion sigma list, in k-diffusion's units.

    The sigmas become the time grid (`times_from_sigmas`) and ``solvers.sample`` runs on it;
    a final 0 becomes the final denoising step ``D(x, sigma_n)`` (``denoise=True``, one
    evaluation). Input and output are EDM states ``x_edm = x / alpha``: the start ``x`` is
    scaled by ``alpha(t_0)``, the result divided by ``alpha(t_n)`` (a final denoise returns
    ``x_0`` itself).

    Agreement with k-diffusion on the same float64 list: float64 round-off for ``"ddim"`` /
    ``sample_euler``, ``"edm_heun"`` / ``sample_heun``, ``"dpm_solver_2"`` / ``sample_dpm_2``
    and ``"dpmpp_2m"`` (``lower_order_final=False``) / ``sample_dpmpp_2m``, with or without
    a final 0 (their step to 0 is the denoiser too), also with churn (``"edm_heun"`` with
    ``s_churn``, ``s_tmin``, ``s_tmax`` / ``sample_heun`` with the same values, given the same
    normal draws): ``s_churn`` means k-diffusion's ``gamma = min(s_churn / (len(sigmas) - 1),
    sqrt(2) - 1)``, which for a list ending in 0 is `solvers.EDMHeun`'s own ``N`` (the number
    of positive levels) and without it is matched by rescaling ``s_churn`` by
    ``len(sigmas) / (len(sigmas) - 1)`` here. With a final 0 this needs the last positive
    level outside ``[s_tmin, s_tmax]`` (k-diffusion also churns its step to 0, our final
    denoise does not), and a first level that churns to at most the SDE's top level
    ``S(T)`` (a list from below the top, or ``s_tmax`` below the first level; ours caps the
    churned level at ``S(T)``, k-diffusion does not). ``"lms"`` agrees with
    ``sample_lms`` to round-off only without a final 0 (3e-15 and 5e-15 under EDM and VP, 10
    levels): with one, k-diffusion's last step is an Adams step integrating its order-4
    polynomial through the last four slopes to ``sigma = 0``, ours the denoiser, and the two
    differ far above round-off (7e-5 under EDM, 2e-3 under VP on ``eight_gaussians``, 10
    levels).

    Args:
        sde, score: the diffusion and its score ``(x: (B, *D), t: (B,)) -> (B, *D)``.
        sigmas: decreasing noise levels, optionally ending in 0.
        solver: a solver name or instance (e.g. ``"edm_heun"``, ``"dpmpp_2m"``).
        x: start ``x_edm`` at ``sigmas[0]``; default ``sigmas[0] * N(0, I)`` of ``shape``
            (k-diffusion's convention), drawn from ``seed`` / ``generator``.
        shape, seed, generator, dtype, device: as for ``solvers.sample``.
        **options: solver options (e.g. ``lower_order_final=False``).

    Returns:
        The ``Solution`` of ``solvers.sample`` with ``samples`` in EDM units. Its ``trajectory``
        and ``times`` stay in the SDE's units (states ``alpha(t) x_edm``, times ``t``; the
        levels are ``sigma_edm = sigma(t)/alpha(t)``), as ``solvers.sample`` records them.

    Raises:
        TypeError: ``sde`` without affine marginals; ``x`` not a tensor; ``seed`` /
            ``generator`` / ``shape`` of the wrong type (``seed=2.5`` is refused, not truncated);
            ``grid``, ``steps``, ``x_T``, ``denoise`` or ``shape`` among the options (the sigma
            list sets them).
        ValueError: bad ``sigmas`` (`times_from_sigmas`); neither ``x`` nor ``shape``, or a
            ``shape`` other than ``x``'s; an integer ``x`` without a floating ``dtype``; both
            ``seed`` and ``generator``; a non-floating ``dtype``, an unknown ``device``; and
            whatever ``solvers.sample`` refuses (unknown solver or options, NaN ``x``, ...).
    """
    ts, final = times_from_sigmas(sde, sigmas)
    s0 = float(torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)[0])
    seed = check_seed(seed)
    dtype = check_dtype(dtype) if dtype is not None else None
    device = check_device(device) if device is not None else None
    if x is None:
        if shape is None:
            raise ValueError("give x (the start in EDM units) or shape")
        shape = check_shape(shape)
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        dev = torch.device("cpu") if device is None else device
        gen = check_generator(generator, dev) if generator is not None else solvers.noise.make_generator(seed, dev)
        x = s0 * torch.randn(shape, generator=gen, dtype=dtype or torch.get_default_dtype(), device=dev)
        generator, seed = gen, None
    elif not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, *D) (the start in EDM units), "
                        f"got {type(x).__name__}")
    else:
        if shape is not None and tuple(check_shape(shape)) != tuple(x.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x.shape {tuple(x.shape)}: give one of them")
        if not x.is_floating_point() and dtype is None:
            raise ValueError(f"x must have a floating-point dtype, got {x.dtype} (use x.float(), or pass dtype=)")
    x = x.to(dtype=dtype or x.dtype, device=device or x.device)
    fixed = sorted(k for k in options if k in _SET_BY_SIGMAS)
    if fixed:
        raise TypeError(
            f"sample_sigmas sets {', '.join(fixed)} from the sigma list (the times are the sigmas, the "
            "start is x at sigmas[0], and a final 0 is the final denoise): append 0 to the sigmas for "
            "a final denoise, pass the start as x=, and choose the levels in the list itself")
    a = sde.marginal_coeffs(ts[[0, -1]])[0].tolist()  # float64 times: never rounded to x's dtype
    if not final:
        solver, options = _churn_as_k_diffusion(solver, options, len(ts))
    # Warnings of the run (e.g. too few steps for the solver) name the caller's line, not this one.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = solvers.sample(sde, score, solver=solver, grid=ts, x_T=a[0] * x, denoise=final, seed=seed,
                             generator=generator, **options)
    reemit_at_user(caught)
    if not final:
        res.samples = res.samples / a[1]
    return res


_SET_BY_SIGMAS = ("grid", "steps", "x_T", "denoise", "shape")
"""``solvers.sample`` options that `sample_sigmas` derives from the sigma list and refuses."""

_RUN_OPTIONS = ("noise", "keep_trajectory", "max_frames", "check_finite", "after_step", "batch_size",
                "progress", "lam")
"""``solvers.sample`` options that are not the solver's own (left out when the solver is built)."""


def _churn_as_k_diffusion(solver: str | solvers.Solver, options: dict[str, Any],
                          n_levels: int) -> tuple[str | solvers.Solver, dict[str, Any]]:
    """``EDMHeun``'s ``s_churn`` rescaled for a sigma list of ``n_levels`` positive levels and no final 0.

    `solvers.EDMHeun` takes ``gamma = S_churn / N`` with ``N = n_levels`` (Karras' N, the positive
    noise levels); k-diffusion's ``sample_heun`` divides by ``len(sigmas) - 1``, which is the same
    for a list ending in 0 but ``n_levels - 1`` without it. Passing ``S_churn n_levels /
    (n_levels - 1)`` gives k-diffusion's ``gamma`` exactly (the ``sqrt(2) - 1`` cap applies to the
    same ratio). Other solvers and ``s_churn = 0`` are returned unchanged.
    """
    scale = n_levels / (n_levels - 1)
    if isinstance(solver, solvers.EDMHeun):
        if solver.s_churn > 0:
            solver = copy.copy(solver)
            solver.s_churn = solver.s_churn * scale
        return solver, options
    if isinstance(solver, str) and float(options.get("s_churn", 0.0) or 0.0) > 0:
        try:
            own = {k: v for k, v in options.items() if k not in _RUN_OPTIONS}  # the solver's options only
            is_edm = isinstance(solvers.get_solver(solver, **own), solvers.EDMHeun)
        except (TypeError, ValueError, KeyError):
            return solver, options  # solvers.sample reports the bad name / options itself
        if is_edm:
            options = {**options, "s_churn": float(options["s_churn"]) * scale}
    return solver, options
