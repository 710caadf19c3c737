"""k-diffusion interop: denoisers ``D(x, sigma)`` <-> scores, and sampling over a list of sigmas.

k-diffusion (Crowson; the samplers of Karras et al. 2022, "EDM") writes every diffusion in
EDM variables: the state ``x_edm = x / alpha(t)`` at noise level ``sigma_edm = sigma(t)/alpha(t)``,
and the model is a denoiser ``D(x_edm, sigma_edm) ~ E[x_0 | x_edm]``. For our affine SDEs
(``x_t = alpha x_0 + sigma z``) Tweedie's formula ties the two:

    score(x, t) = (alpha D(x / alpha, sigma / alpha) - x) / sigma^2
    D(x_edm, S) = (x + sigma^2 score(x, t)) / alpha,   x = alpha x_edm,   t: sigma(t)/alpha(t) = S

The time ``t`` of a noise level is found by bisection (``solvers.grids.time_from_edm_sigma``);
for `scoresde.EDMSDE` it is ``t = S`` itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

import solvers
from solvers.grids import edm_sigma, time_from_edm_sigma
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.result import Solution
from solvers.utils import append_dims

__all__ = [
    "Denoiser",
    "score_from_denoiser",
    "denoiser_from_score",
    "times_from_sigmas",
    "sample_sigmas",
    "load_k_diffusion_sampling",
]

Denoiser = Callable[[Tensor, Tensor], Tensor]
"""``D(x_edm: (B, *D), sigma_edm: (B,)) -> (B, *D)``, k-diffusion's model convention."""

_REL_TOL = 1e-6  # levels this close to the range ends count as inside (float32-built sigma lists)


def _sigma_range(sde: DiffusionSDE) -> tuple[float, float]:
    s = edm_sigma(sde, torch.tensor([sde.eps, sde.T], dtype=torch.float64))
    return float(s[0]), float(s[1])


def score_from_denoiser(denoiser: Denoiser, sde: DiffusionSDE) -> ScoreFn:
    """Score ``s(x, t) = (alpha D(x/alpha, sigma/alpha) - x) / sigma^2`` of a k-diffusion denoiser.

    Args:
        denoiser: ``D(x_edm: (B, *D), sigma_edm: (B,)) -> (B, *D)``.
        sde: the SDE whose ``alpha(t), sigma(t)`` place ``D``'s noise levels in time.

    Returns:
        ``score(x: (B, *D), t: (B,)) -> (B, *D)`` for every solver.
    """

    def score(x: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = sde.marginal_coeffs(t.to(dtype=x.dtype, device=x.device))
        a, s = append_dims(alpha, x.ndim), append_dims(sigma, x.ndim)
        d = denoiser(x / a, sigma / alpha)
        return (a * d - x) / (s * s)

    return score


def _times(sde: DiffusionSDE, sigma: Tensor) -> Tensor:
    """Times ``(N,)`` float64 of noise levels ``sigma: (N,) > 0``; raises outside the SDE's range."""
    lo, hi = _sigma_range(sde)
    s_min, s_max = float(sigma.min()), float(sigma.max())
    if s_min < lo * (1 - _REL_TOL) or s_max > hi * (1 + _REL_TOL):
        raise ValueError(
            f"noise levels must lie in [sigma_edm(eps), sigma_edm(T)] = [{lo:.6g}, {hi:.6g}] of "
            f"{type(sde).__name__}, got [{s_min:.6g}, {s_max:.6g}]; choose the sigmas in that range "
            "(or an SDE with a smaller eps / larger T)"
        )
    t = time_from_edm_sigma(sde, sigma.clamp(lo, hi))
    return t.clamp(sde.eps, sde.T)


def denoiser_from_score(score: ScoreFn, sde: DiffusionSDE) -> Denoiser:
    """k-diffusion denoiser ``D(x_edm, sigma_edm) = (x + sigma^2 s(x, t)) / alpha`` with ``x = alpha x_edm``.

    ``t`` solves ``sigma(t)/alpha(t) = sigma_edm`` (bisection, cached per distinct level);
    ``sigma_edm = 0`` returns ``x_edm`` unchanged.

    Args:
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        sde: the SDE the score belongs to.

    Returns:
        ``D(x_edm: (B, *D), sigma_edm: (B,) or 0-d) -> (B, *D)``.

    Raises:
        ValueError: (when called) for a noise level outside ``[sigma_edm(eps), sigma_edm(T)]``.
    """
    cache: dict[float, float] = {}

    def denoiser(x_edm: Tensor, sigma: Tensor) -> Tensor:
        sig = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu().reshape(-1)
        if sig.numel() == 1:
            sig = sig.expand(x_edm.shape[0])
        if sig.shape != (x_edm.shape[0],):
            raise ValueError(f"sigma must be 0-d or ({x_edm.shape[0]},), got {tuple(sig.shape)}")
        new = sorted({float(v) for v in sig.tolist()} - set(cache) - {0.0})
        if new:
            for v, tv in zip(new, _times(sde, torch.tensor(new, dtype=torch.float64)).tolist(), strict=True):
                cache[v] = tv
        t = torch.tensor([cache.get(float(v), sde.eps) for v in sig.tolist()], dtype=x_edm.dtype,
                         device=x_edm.device)
        alpha, s = sde.marginal_coeffs(t)
        a, s = append_dims(alpha, x_edm.ndim), append_dims(s, x_edm.ndim)
        x = a * x_edm
        d = (x + s * s * score(x, t)) / a
        zero = append_dims((sig == 0).to(x_edm.device), x_edm.ndim)
        return torch.where(zero, x_edm, d)

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
        which is what k-diffusion's step to ``sigma = 0`` computes).
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu().reshape(-1)
    if s.numel() < 2 or not bool((s[1:] < s[:-1]).all()):
        raise ValueError("sigmas must be a strictly decreasing list of at least 2 noise levels")
    final = bool(s[-1] == 0)
    pos = s[:-1] if final else s
    if pos.numel() < 2:
        raise ValueError("need at least 2 positive sigmas (one solver step)")
    if float(pos.min()) <= 0:
        raise ValueError("only the last sigma may be 0; the others must be positive")
    return _times(sde, pos), final


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
    a final 0 becomes the final denoising step. Input and output are EDM states
    ``x_edm = x / alpha``: the start ``x`` is scaled by ``alpha(t_0)``, the result divided by
    ``alpha(t_n)`` (a final denoise returns ``x_0`` itself).

    Args:
        sde, score: the diffusion and its score ``(x: (B, *D), t: (B,)) -> (B, *D)``.
        sigmas: decreasing noise levels, optionally ending in 0.
        solver: a solver name or instance (e.g. ``"edm_heun"``, ``"dpmpp_2m"``).
        x: start ``x_edm`` at ``sigmas[0]``; default ``sigmas[0] * N(0, I)`` of ``shape``
            (k-diffusion's convention), drawn from ``seed`` / ``generator``.
        shape, seed, generator, dtype, device: as for ``solvers.sample``.
        **options: solver options (e.g. ``lower_order_final=False``).

    Returns:
        The ``Solution`` of ``solvers.sample`` with ``samples`` in EDM units.
    """
    ts, final = times_from_sigmas(sde, sigmas)
    s0 = float(torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)[0])
    if x is None:
        if shape is None:
            raise ValueError("give x (the start in EDM units) or shape")
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        dev = torch.device("cpu") if device is None else torch.device(device)
        gen = generator if generator is not None else solvers.noise.make_generator(seed, dev)
        x = s0 * torch.randn(tuple(shape), generator=gen, dtype=dtype or torch.get_default_dtype(), device=dev)
        generator, seed = gen, None
    x = x.to(dtype=dtype or x.dtype, device=device or x.device)
    a = sde.marginal_coeffs(ts[[0, -1]].to(x.dtype))[0].tolist()
    res = solvers.sample(sde, score, solver=solver, grid=ts, x_T=a[0] * x, denoise=final, seed=seed,
                         generator=generator, **options)
    if not final:
        res.samples = res.samples / a[1]
    return res


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
