"""k-diffusion interop: denoisers ``D(x, sigma)`` <-> scores, and sampling over a list of sigmas.

k-diffusion (Crowson; the samplers of Karras et al. 2022, "EDM") writes every diffusion in
EDM variables: the state ``x_edm = x / alpha(t)`` at noise level ``sigma_edm = sigma(t)/alpha(t)``,
and the model is a denoiser ``D(x_edm, sigma_edm) ~ E[x_0 | x_edm]``. For our affine SDEs
(``x_t = alpha x_0 + sigma z``) Tweedie's formula ties the two:

    score(x, t) = (alpha D(x / alpha, sigma / alpha) - x) / sigma^2
    D(x_edm, S) = (x + sigma^2 score(x, t)) / alpha,   x = alpha x_edm,   t: sigma(t)/alpha(t) = S

The time ``t`` of a noise level is found by bisection (``solvers.grids.time_from_edm_sigma``);
for `scoresde.EDMSDE` it is ``t = S`` itself.

Precision: both conversions cancel (``x + sigma^2 score`` is ``O(x_0)`` while each term is
``O(sigma)``; ``alpha D - x`` is ``O(sigma)`` while each term is ``O(1)``), so they run in at
least float32 (`work_dtype`): half-precision inputs are cast up, the wrapped callable is
called in float32 (a half-precision network must cast its input itself, as
`scoresde.interop.DiffusersScore` does: passing it a rounded state would cost as much as the
half-precision arithmetic), and the result is cast back to the input's dtype.
In bfloat16 the Tweedie step alone would lose the denoiser at ``sigma = 30`` (error 0.37 on
outputs of size 0.2 against 5e-4 from rounding the exact output).
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
import types
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

import solvers
from solvers.dynamics import note_calling_convention
from solvers.grids import edm_sigma, time_from_edm_sigma
from solvers.inputs import check_device, check_dtype, check_generator, check_seed, check_shape
from solvers.protocol import DiffusionSDE, HasMarginals, ScoreFn
from solvers.result import Solution
from solvers.utils import append_dims, batch_time

from ._warn import reemit_at_user

__all__ = [
    "Denoiser",
    "score_from_denoiser",
    "denoiser_from_score",
    "times_from_sigmas",
    "sample_sigmas",
    "load_k_diffusion_sampling",
    "work_dtype",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``D(x_edm: (B, *D), sigma_edm: (B,)) -> (B, *D)``, k-diffusion's model convention."""

_REL_TOL = 1e-3
"""Noise levels this close (relative) to the range ends count as inside and are clamped onto
them. Lists built in float32 by k-diffusion and diffusers miss the ends by up to a few 1e-4:
``get_sigmas_vp`` for `scoresde.VPSDE`'s own ``eps`` gives 0.0104838 against 0.0104860
(``exp(x) - 1`` in float32), diffusers' cosine table 2.6e-4 at ``k = 0``."""

SIGMA_CACHE_SIZE = 512
"""Most noise levels (and their bisected times) a `denoiser_from_score` denoiser keeps (LRU).

A sampler queries one level per call (a few hundred over a run at most), and those are what
the cache is for: each costs a 100-step bisection once. Calls with many distinct levels
(per-sample random sigma, as in training) are not cached (`SIGMA_CACHE_MAX_NEW`), so memory
stays bounded whatever the use."""

SIGMA_CACHE_MAX_NEW = 8
"""A call with more distinct uncached levels than this computes their times without caching
them (one batched bisection, as before), so per-sample sigmas neither grow the cache nor
evict a sampler's levels."""


def _check_sde(sde: Any) -> None:
    """Refuse an ``sde`` without affine marginals and a time range (``marginal_coeffs``, ``eps``, ``T``)."""
    if not isinstance(sde, HasMarginals) or not (hasattr(sde, "eps") and hasattr(sde, "T")):
        raise TypeError(f"sde must be an SDE with affine marginals (marginal_coeffs(t), eps, T), "
                        f"e.g. scoresde.VPSDE(); got {type(sde).__name__}")


def _check_callable(fn: Any, name: str, signature: str) -> None:
    if not callable(fn):
        raise TypeError(f"{name} must be a callable {signature}, got {type(fn).__name__}")


def _check_floating(x: Any, name: str) -> None:
    """Refuse a non-tensor or an integer / bool tensor (the result would be cast back to it, truncated)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}; convert it first "
                        f"(e.g. {name}.double()): the result comes back in {name}'s dtype")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the conversions compute in: ``dtype`` promoted to at least float32.

    bfloat16 / float16 -> float32, float32 -> float32, float64 -> float64.
    """
    return torch.promote_types(dtype, torch.float32)


def _sigma_range(sde: DiffusionSDE) -> tuple[float, float]:
    s = edm_sigma(sde, torch.tensor([sde.eps, sde.T], dtype=torch.float64))
    return float(s[0]), float(s[1])


def score_from_denoiser(denoiser: Denoiser, sde: DiffusionSDE) -> ScoreFn:
    """Score ``s(x, t) = (alpha D(x/alpha, sigma/alpha) - x) / sigma^2`` of a k-diffusion denoiser.

    Args:
        denoiser: ``D(x_edm: (B, *D), sigma_edm: (B,)) -> (B, *D)``.
        sde: the SDE whose ``alpha(t), sigma(t)`` place ``D``'s noise levels in time.

    Returns:
        ``score(x: (B, *D), t: (B,)) -> (B, *D)`` for every solver (``t`` may also be a
        float or 0-d), in ``x``'s dtype; computed in `work_dtype` (``D`` gets ``x_edm`` and
        ``sigma_edm`` in at least float32).

    Raises:
        TypeError: ``denoiser`` not callable, ``sde`` without affine marginals; (when called)
            ``x`` not a floating-point tensor, a denoiser output that is not a tensor. An
            exception from the denoiser's first call carries a note on how it is called.
        ValueError: (when called) ``t`` not 0-d or ``(B,)``, or a time where ``sigma(t) = 0``
            (``t = 0``: the score of a denoiser is undefined there); a denoiser output of another
            shape than ``x``.
    """
    _check_callable(denoiser, "denoiser", "D(x_edm, sigma_edm) -> tensor")
    _check_sde(sde)

    succeeded = False  # a failing first call gets a note on how the denoiser is called

    def score(x: Tensor, t: Tensor) -> Tensor:
        nonlocal succeeded
        _check_floating(x, "x")
        xw = x.to(work_dtype(x.dtype))
        tt = batch_time(t, xw)
        alpha, sigma = sde.marginal_coeffs(tt)
        if not bool((sigma > 0).all()):  # NaN fails this too
            bad = float(tt[~(sigma > 0)][0])
            raise ValueError(f"score_from_denoiser: t = {bad:g} has sigma(t) = 0 (or not a number) under "
                             f"{type(sde).__name__}: the score (alpha D - x) / sigma^2 is undefined there; "
                             f"evaluate it at t in [eps={float(sde.eps):g}, T={float(sde.T):g}]")
        a, s = append_dims(alpha, x.ndim), append_dims(sigma, x.ndim)
        try:
            d = denoiser(xw / a, sigma / alpha)
        except Exception as err:
            if not succeeded:
                err.add_note(f"(score_from_denoiser calls the denoiser as D(x_edm, sigma_edm) with x_edm of "
                             f"shape {tuple(x.shape)} and sigma_edm of shape {tuple(sigma.shape)}, one noise "
                             "level per sample; a denoiser written for a Python-float sigma can take "
                             "float(sigma[0]) when all are equal, or broadcast sigma[:, None])")
            raise
        succeeded = True
        if not isinstance(d, Tensor) or d.shape != x.shape:
            got = tuple(d.shape) if isinstance(d, Tensor) else type(d).__name__
            raise ValueError(f"denoiser(x, sigma) must return a tensor of the shape of x, "
                             f"{tuple(x.shape)}; got {got}")
        return ((a * d.to(xw.dtype) - xw) / (s * s)).to(x.dtype)

    return score


def _times(sde: DiffusionSDE, sigma: Tensor) -> Tensor:
    """Times ``(N,)`` float64 of noise levels ``sigma: (N,) > 0``; raises outside the SDE's range."""
    lo, hi = _sigma_range(sde)
    if not bool(torch.isfinite(sigma).all()):
        raise ValueError(f"noise levels must be finite, got {sigma.tolist()}")
    s_min, s_max = float(sigma.min()), float(sigma.max())
    if s_min < lo * (1 - _REL_TOL) or s_max > hi * (1 + _REL_TOL):
        raise ValueError(
            f"noise levels must lie in [sigma_edm(eps), sigma_edm(T)] = [{lo:.6g}, {hi:.6g}] of "
            f"{type(sde).__name__} (to within {_REL_TOL:g} relative), got [{s_min:.6g}, {s_max:.6g}]; "
            "choose the sigmas in that range (or an SDE with a smaller eps / larger T)"
        )
    t = time_from_edm_sigma(sde, sigma.clamp(lo, hi))
    return t.clamp(sde.eps, sde.T)


def denoiser_from_score(score: ScoreFn, sde: DiffusionSDE) -> Denoiser:
    """k-diffusion denoiser ``D(x_edm, sigma_edm) = (x + sigma^2 s(x, t)) / alpha`` with ``x = alpha x_edm``.

    ``t`` solves ``sigma(t)/alpha(t) = sigma_edm`` (batched bisection); ``sigma_edm = 0``
    returns ``x_edm`` unchanged. The times of the levels of calls with at most
    `SIGMA_CACHE_MAX_NEW` new distinct levels (a sampler's: one level per call) are kept in an
    LRU cache of at most `SIGMA_CACHE_SIZE` levels; calls with many distinct levels (per-sample
    random sigma, as in training) are bisected without caching, so memory stays bounded.

    Args:
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        sde: the SDE the score belongs to.

    Returns:
        ``D(x_edm: (B, *D), sigma_edm: (B,) or 0-d) -> (B, *D)`` in ``x_edm``'s dtype;
        computed in `work_dtype` (``score`` gets ``x`` and ``t`` in at least float32).

    Raises:
        TypeError: ``score`` not callable, ``sde`` without affine marginals; (when called)
            ``x_edm`` not a floating-point tensor of shape ``(B, *D)``; ``score`` returning something other
            than a tensor (e.g. a diffusers ``UNet2DOutput``: wrap a diffusers model with
            `scoresde.interop.unet_score` first).
        ValueError: (when called) for a noise level outside ``[sigma_edm(eps), sigma_edm(T)]``
            or NaN/inf, ``sigma`` not 0-d or ``(B,)``; ``score`` returning another shape than ``x``.
    """
    _check_callable(score, "score", "(x, t) -> tensor")
    _check_sde(sde)
    cache: OrderedDict[float, float] = OrderedDict()  # level -> time, least recently used first

    def times_of(levels: list[float]) -> dict[float, float]:
        """Times of the distinct positive ``levels``, through the bounded LRU ``cache``."""
        new = [v for v in levels if v not in cache]
        if len(new) > SIGMA_CACHE_MAX_NEW:  # per-sample levels: bisect them, keep nothing
            fresh = _times(sde, torch.tensor(new, dtype=torch.float64)).tolist()
            out = dict(zip(new, fresh, strict=True))
            for v in levels:
                if v in cache:
                    out[v] = cache[v]
            return out
        if new:
            for v, tv in zip(new, _times(sde, torch.tensor(new, dtype=torch.float64)).tolist(), strict=True):
                cache[v] = tv
        out = {}
        for v in levels:
            cache.move_to_end(v)
            out[v] = cache[v]
        while len(cache) > SIGMA_CACHE_SIZE:
            cache.popitem(last=False)
        return out

    succeeded = False  # a failing first call gets the calling-convention note

    def denoiser(x_edm: Tensor, sigma: Tensor) -> Tensor:
        nonlocal succeeded
        if not isinstance(x_edm, Tensor) or x_edm.ndim < 1:
            got = tuple(x_edm.shape) if isinstance(x_edm, Tensor) else type(x_edm).__name__
            raise TypeError(f"x_edm must be a tensor of shape (B, *D), got {got}")
        _check_floating(x_edm, "x_edm")
        sig = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu().reshape(-1)
        if sig.numel() == 1:
            sig = sig.expand(x_edm.shape[0])
        if sig.shape != (x_edm.shape[0],):
            raise ValueError(f"sigma must be 0-d or ({x_edm.shape[0]},), got {tuple(sig.shape)}")
        if not bool(torch.isfinite(sig).all()):  # a NaN level would miss the cache and run at eps
            raise ValueError(f"noise levels must be finite, got {sig.tolist()}")
        # Times of the few distinct levels, then one gather: no Python loop over the batch.
        if sig.numel() > 0 and bool((sig == sig[0]).all()):  # a sampler's call: sigma * ones(B)
            levels, where = sig[:1], torch.zeros_like(sig, dtype=torch.long)
        else:
            levels, where = torch.unique(sig, sorted=True, return_inverse=True)
        values = levels.tolist()  # sorted, distinct
        known = times_of([v for v in values if v != 0.0])
        xw = x_edm.to(work_dtype(x_edm.dtype))
        t = torch.tensor([known.get(v, sde.eps) for v in values], dtype=xw.dtype, device=where.device)[where].to(xw.device)
        alpha, s = sde.marginal_coeffs(t)
        a, s = append_dims(alpha, xw.ndim), append_dims(s, xw.ndim)
        x = a * xw
        try:
            out = score(x, t)
        except Exception as err:
            if not succeeded:
                note_calling_convention(err, x, t)
            raise
        succeeded = True
        if not isinstance(out, Tensor):
            hint = (" (it looks like a model output object with .sample, e.g. a diffusers UNet2DOutput: "
                    "a diffusers model is not a score; wrap it with scoresde.interop.unet_score(unet, "
                    "scheduler) first)") if hasattr(out, "sample") else ""
            raise TypeError(f"score(x, t) must return a tensor of the shape of x, {tuple(x.shape)}; "
                            f"got {type(out).__name__}{hint}")
        if out.shape != x.shape:
            raise ValueError(f"score(x, t) must return a tensor of the shape of x, {tuple(x.shape)}; "
                             f"got {tuple(out.shape)}")
        d = (x + s * s * out.to(xw.dtype)) / a
        zero = append_dims((sig == 0).to(xw.device), xw.ndim)
        return torch.where(zero, xw, d).to(x_edm.dtype)

    return denoiser


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


def load_k_diffusion_sampling() -> types.ModuleType | None:
    """``k_diffusion.sampling``, or ``None`` when k-diffusion is not installed.

    When the package's own ``__init__`` fails on its optional extras (it imports training
    dependencies), only ``sampling.py`` is loaded, under a stand-in package that supplies
    the one helper it takes from ``k_diffusion.utils`` (``append_dims``).
    """
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError:
        pass
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    name = "_scoresde_k_diffusion_sampling"
    if f"{name}.sampling" in sys.modules:
        return sys.modules[f"{name}.sampling"]
    pkg = types.ModuleType(name)
    pkg.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType(f"{name}.utils")
    utils.append_dims = append_dims  # type: ignore[attr-defined]
    pkg.utils = utils  # type: ignore[attr-defined]
    sys.modules[name], sys.modules[f"{name}.utils"] = pkg, utils
    try:
        return importlib.import_module(f"{name}.sampling")
    except ImportError:
        return None
