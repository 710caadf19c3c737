"""k-diffusion interop: denoisers ``D(x, sigma)`` <-> scores (sampling over a list of sigmas:
`scoresde.interop.sigma_lists`).

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

import importlib
import importlib.util
import sys
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from solvers.dynamics import note_calling_convention
from solvers.grids import edm_sigma, time_from_edm_sigma
from solvers.protocol import DiffusionSDE, HasMarginals, ScoreFn
from solvers.utils import append_dims, batch_time

__all__ = [
    "Denoiser",
    "score_from_denoiser",
    "denoiser_from_score",
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

    score.sde = sde  # type: ignore[attr-defined]  # its t is sde's clock (solvers.score_sde.check_score_sde)
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


def __getattr__(name: str) -> Any:
    # times_from_sigmas and sample_sigmas moved to scoresde.interop.sigma_lists; still reachable here.
    if name in ("times_from_sigmas", "sample_sigmas"):
        from . import sigma_lists

        return getattr(sigma_lists, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
