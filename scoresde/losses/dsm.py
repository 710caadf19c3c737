"""The denoising score-matching loss itself, per sample and as a batch mean.

The objective and its weightings are described in `scoresde.losses`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from solvers.inputs import check_generator
from solvers.protocol import DiffusionSDE
from solvers.utils import append_dims

from ..models import ScoreModel
from ..sde import configs_match
from .time_sampling import ImportanceTimeSampler
from .weighting import check_options, check_sigma_data, check_t_min, loss_weight

__all__ = ["dsm_per_sample", "dsm_loss", "eps_loss"]


def _same_sde(a: DiffusionSDE, b: DiffusionSDE) -> bool:
    """Whether ``a`` and ``b`` are the same SDE: the same object, or the same class and `config`.

    The configs must have the same keys and values, floats within relative
    `scoresde.sde.CONFIG_RTOL` (a schedule's probe values, `scoresde.sde.schedule_probe`).
    """
    if a is b:
        return True
    if type(a) is not type(b) or not callable(getattr(a, "config", None)):
        return False
    try:
        ca, cb = a.config(), b.config()  # type: ignore[attr-defined]
        return set(ca) == set(cb) and configs_match(ca, cb)
    except Exception:  # noqa: BLE001 - an SDE whose config cannot be compared is not the same
        return False


def _check_sampler(sampler: ImportanceTimeSampler, sde: DiffusionSDE, weighting: str, t_min: float,
                   sigma_data: float) -> None:
    """Refuse a prebuilt ``sampler`` whose SDE, weighting, ``t_min`` or ``sigma_data`` differ from the call's."""
    if not _same_sde(sampler.sde, sde):
        raise ValueError(f"sampler was built for {sampler.sde!r} but the loss is called with sde={sde!r}; "
                         "build the ImportanceTimeSampler with the same SDE")
    if sampler.weighting != weighting:
        raise ValueError(f"sampler was built for weighting={sampler.weighting!r} but the loss is called "
                         f"with weighting={weighting!r}")
    if not math.isclose(sampler.t_min, t_min, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"sampler was built for t_min={sampler.t_min:g} but the loss is called with "
                         f"t_min={t_min:g}")
    if weighting == "edm" and not math.isclose(sampler.sigma_data, sigma_data, rel_tol=1e-12, abs_tol=0.0):
        raise ValueError(f"sampler was built for sigma_data={sampler.sigma_data:g} but the loss is called "
                         f"with sigma_data={sigma_data:g}")


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of a `ScoreModel`'s (first floating) parameters, or ``None`` if it has none."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def _is_model(model: Any) -> bool:
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    return isinstance(model, nn.Module) and isinstance(inner, ScoreModel)


def dsm_per_sample(
    model: nn.Module | Callable[[Tensor, Tensor], Tensor],
    sde: DiffusionSDE,
    x0: Tensor,
    *,
    weighting: str = "sigma2",
    importance: bool = False,
    t_min: float | None = None,
    reduce: str = "mean",
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    z: Tensor | None = None,
    sampler: ImportanceTimeSampler | None = None,
    sigma_data: float = 1.0,
) -> Tensor:
    """Per-sample DSM loss ``(B,)`` for data ``x0: (B, *D)``.

    ``model`` is a `ScoreModel` (possibly wrapped in DDP), called as
    ``model(x_t, t, sde, "eps")``, or any score callable ``(x, t) -> s`` (then
    ``eps = -sigma s``). ``t`` and ``z`` may be given (then ``importance`` is ignored and
    ``t`` is weighted as a uniform draw); otherwise they are drawn from ``generator``:
    ``t`` first, then ``z``. ``sampler`` reuses a prebuilt importance table. ``sigma_data``
    is used only by ``weighting="edm"``.

    Raises:
        ValueError: an unknown ``weighting`` / ``reduce``, ``t_min`` outside ``(0, T)``, a given
            ``t`` outside ``(0, T]`` or NaN,
            ``sigma_data`` not finite and > 0, ``x0`` without a batch dimension or empty,
            ``t`` / ``z`` / the model output of the wrong shape.
            A ``sampler`` built for another SDE, weighting, ``t_min`` or (``"edm"``)
            ``sigma_data`` than the call's.
        TypeError: ``x0``, ``t`` or ``z`` not a tensor (or ``x0`` not floating point), a
            ``generator`` that is not a ``torch.Generator``, a ``sampler`` that is not an
            `ImportanceTimeSampler`, a model that does not return a tensor, or (a `ScoreModel`)
            ``x0`` of another dtype than the model's parameters. Floating ``t`` / ``z`` are cast
            to ``x0``'s dtype for a `ScoreModel`.
    """
    check_options(weighting, reduce)
    lo = check_t_min(sde, t_min)
    sigma_data = check_sigma_data(sigma_data)
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        what = f"a {x0.dtype} tensor" if isinstance(x0, Tensor) else type(x0).__name__
        raise TypeError(f"x0 must be a floating-point torch.Tensor (B, *D), got {what}")
    if x0.ndim < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must have shape (B, *D) with B >= 1, got {tuple(x0.shape)}")
    for name, value in (("t", t), ("z", z)):
        if value is not None and not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(value).__name__}")
    check_generator(generator)
    if sampler is not None and not isinstance(sampler, ImportanceTimeSampler):
        raise TypeError(f"sampler must be an ImportanceTimeSampler or None, got {type(sampler).__name__}")
    if sampler is not None:
        _check_sampler(sampler, sde, weighting, lo, sigma_data)
    if _is_model(model):
        # A ScoreModel computes in its parameters' dtype: refuse other data, cast t and z to x0's.
        dtype = _model_dtype(model)
        if dtype is not None and torch.promote_types(x0.dtype, dtype) != dtype:  # float64 data, float32 model
            raise TypeError(f"x0 is {x0.dtype} but the model's parameters are {dtype}; convert the model "
                            f"(e.g. model.double() for float64 data) or the data (x0.to({dtype}))")
        if t is not None and t.is_floating_point():
            t = t.to(x0.dtype)
        if z is not None and z.is_floating_point():
            z = z.to(x0.dtype)
    b = x0.shape[0]
    if t is None:
        if importance:
            if sampler is None:
                sampler = ImportanceTimeSampler(sde, weighting, t_min=lo, sigma_data=sigma_data)
            t, coef = sampler.sample(b, generator=generator, dtype=x0.dtype, device=x0.device)
        else:
            u = torch.rand(b, generator=generator, dtype=x0.dtype, device=x0.device)
            t = lo + (sde.T - lo) * u
            coef = loss_weight(sde, t, weighting, sigma_data=sigma_data)
    else:
        if t.shape != (b,):
            raise ValueError(f"t must have shape ({b},), got {tuple(t.shape)}")
        if not bool(((t > 0) & (t <= sde.T)).all()):  # also NaN; t = 0 has sigma = 0 (inf loss)
            bad = t[~((t > 0) & (t <= sde.T))]
            raise ValueError(f"t must lie in (0, T = {sde.T:g}]; got {float(bad[0]):g}")
        coef = loss_weight(sde, t, weighting, sigma_data=sigma_data)
    if z is None:
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    elif z.shape != x0.shape:
        raise ValueError(f"z must have the shape of x0 {tuple(x0.shape)}, got {tuple(z.shape)}")

    # Forward-noise the data with the SDE's marginal: x_t = alpha x0 + sigma z.
    alpha, sigma = sde.marginal_coeffs(t)
    x_t = append_dims(alpha, x0.ndim) * x0 + append_dims(sigma, x0.ndim) * z
    out = model(x_t, t, sde, "eps") if _is_model(model) else model(x_t, t)
    if not isinstance(out, Tensor) or out.shape != x0.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the model must return one value per entry of x0, shape {tuple(x0.shape)}; got {got}")
    eps_hat = out if _is_model(model) else -append_dims(sigma, x0.ndim) * out
    sq = (eps_hat - z).pow(2).reshape(b, -1)
    per_sample = sq.mean(dim=1) if reduce == "mean" else sq.sum(dim=1)
    return coef * per_sample


def dsm_loss(model: nn.Module | Callable[[Tensor, Tensor], Tensor], sde: DiffusionSDE, x0: Tensor,
             **kwargs: Any) -> Tensor:
    """Batch mean of `dsm_per_sample` (same keyword options); a scalar."""
    return dsm_per_sample(model, sde, x0, **kwargs).mean()


def eps_loss(model: nn.Module | Callable[[Tensor, Tensor], Tensor], sde: DiffusionSDE, x0: Tensor,
             **kwargs: Any) -> Tensor:
    """Epsilon-prediction loss ``E ||eps_theta(x_t, t) - z||^2`` (Ho et al. 2020), t uniform.

    Identical to `dsm_loss` with ``weighting="sigma2"``.
    """
    if "weighting" in kwargs or "importance" in kwargs:
        raise TypeError("eps_loss has a fixed weighting; use dsm_loss to choose one")
    return dsm_loss(model, sde, x0, weighting="sigma2", **kwargs)
