"""Checks that an SDE object keeps the protocol's promises, before a run spends any work.

`solvers.protocol` states what a solver asks of an SDE: real ``0 < eps < T``, ``drift(x, t)``
of ``x``'s shape, ``diffusion(t)`` and ``marginal_coeffs(t)`` of shape ``(B,)``, a prior draw
of the requested shape. A hand-written SDE that breaks one of them otherwise fails far from
the cause (a broadcast ``(B, 1)`` drift gives wrong samples without an error; ``sigma(eps) = 0``
gives NaN in the end step; a 0-d diffusion trips a stability warning), or the error blames the
score. `check_sde` evaluates each member once on a two-point probe (``t = T`` and ``t = eps``)
and raises an error that names the member, what it returned and what the protocol asks for.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .inputs import as_real
from .protocol import ReverseSDEParts
from .sde_consistency import warn_if_inconsistent
from .warning_types import DivergedWarning, warn

__all__ = ["check_time_range", "check_sde", "check_prior_draw", "warn_if_diverged", "DIVERGED_FACTOR"]

#: Samples larger than this many times ``sigma(T) / alpha(T)`` are reported as a diverged run.
DIVERGED_FACTOR = 100.0


def check_time_range(sde: object) -> tuple[float, float]:
    """``(T, eps)`` of ``sde`` as Python floats, checked: finite reals with ``0 < eps < T``.

    Samplers run from ``T`` down to ``eps`` and never to ``t = 0``, where ``sigma = 0`` and the
    score is undefined (Song et al. 2021 end at ``eps = 1e-3`` for VP, ``1e-5`` for VE).

    Raises:
        TypeError: ``T`` or ``eps`` missing or not a real number.
        ValueError: not finite, ``eps <= 0`` or ``eps >= T``.
    """
    name = type(sde).__name__
    values = []
    for attr in ("T", "eps"):
        if not hasattr(sde, attr):
            raise TypeError(f"{name} has no {attr}; an SDE needs T (end of the forward process) and eps "
                            "(the smallest time samplers reach)")
        values.append(as_real(getattr(sde, attr), f"{name}.{attr}"))
    T, eps = values
    if not (math.isfinite(T) and math.isfinite(eps)):
        raise ValueError(f"{name} has T={T!r}, eps={eps!r}; both must be finite")
    if not eps > 0.0:
        raise ValueError(
            f"{name}.eps={eps!r}: samplers integrate down to eps, never to t = 0 where sigma(0) = 0 and "
            "the score is undefined; use a small positive eps (1e-3 for VP, 1e-5 for VE)"
        )
    if not eps < T:
        raise ValueError(f"{name} has eps={eps!r} >= T={T!r}; samplers integrate from T down to eps < T")
    return T, eps


def _check_vector(value: Any, what: str, n: int, dtype: torch.dtype, *, positive: bool = False,
                  nonnegative: bool = False) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{what} returned {type(value).__name__}; it must return a torch.Tensor of shape ({n},) "
                        "(one value per time in the batch)")
    if tuple(value.shape) != (n,):
        raise ValueError(f"{what} returned shape {tuple(value.shape)} for {n} times; it must return shape ({n},) "
                         "(one value per time, not broadcast)")
    if not value.dtype.is_floating_point:
        raise TypeError(f"{what} returned dtype {value.dtype}; it must return floating-point values")
    v = value.detach().to(torch.float64)
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"{what} returned non-finite values {v.tolist()} at t = T and t = eps")
    if positive and not bool((v > 0).all()):
        raise ValueError(f"{what} returned {v.tolist()} at t = T and t = eps; it must be > 0 there")
    if nonnegative and not bool((v >= 0).all()):
        raise ValueError(f"{what} returned {v.tolist()} at t = T and t = eps; it must be >= 0")
    return value.to(dtype)


def check_sde(sde: ReverseSDEParts, data_shape: tuple[int, ...], dtype: torch.dtype,
              device: torch.device) -> None:
    """Evaluate ``sde``'s members once at ``t = (T, eps)`` on zeros of shape ``(2, *data_shape)``.

    Checks: `check_time_range`; ``drift(x, t)`` returns a finite tensor of ``x``'s shape;
    ``diffusion(t)`` a finite non-negative ``(2,)`` tensor; ``marginal_coeffs(t)``, if the SDE
    has it, a pair of ``(2,)`` tensors with ``alpha > 0`` and ``sigma > 0`` (``sigma(eps) = 0``
    would divide by zero in every step that uses the score's data prediction), and warns
    when the marginals do not belong to the drift and diffusion (`solvers.sde_consistency`).

    Raises:
        TypeError: a member is missing or returns something that is not a floating tensor.
        ValueError: a wrong shape, non-finite values, or ``alpha``/``sigma`` not positive.
    """
    T, eps = check_time_range(sde)
    name = type(sde).__name__
    for member in ("drift", "diffusion"):
        if not callable(getattr(sde, member, None)):
            raise TypeError(f"{name} has no method {member}; an SDE needs drift(x, t) and diffusion(t)")
    t = torch.tensor([T, eps], dtype=dtype, device=device)
    x = torch.zeros((2, *data_shape), dtype=dtype, device=device)
    drift = sde.drift(x, t)
    if not isinstance(drift, Tensor):
        raise TypeError(f"{name}.drift(x, t) returned {type(drift).__name__}; it must return a tensor of x's shape")
    if tuple(drift.shape) != tuple(x.shape):
        raise ValueError(f"{name}.drift(x, t) returned shape {tuple(drift.shape)} for x of shape "
                         f"{tuple(x.shape)}; it must return x's shape (one drift per sample, not broadcast)")
    if not bool(torch.isfinite(drift).all()):
        raise ValueError(f"{name}.drift(x, t) returned NaN/inf at x = 0, t = T or eps")
    _check_vector(sde.diffusion(t), f"{name}.diffusion(t)", 2, dtype, nonnegative=True)
    if hasattr(sde, "marginal_coeffs"):
        coeffs = sde.marginal_coeffs(t)
        if not (isinstance(coeffs, tuple) and len(coeffs) == 2):
            raise TypeError(f"{name}.marginal_coeffs(t) returned {type(coeffs).__name__}; it must return the "
                            "pair (alpha(t), sigma(t)) of x_t = alpha x_0 + sigma z")
        _check_vector(coeffs[0], f"{name}.marginal_coeffs(t)[0] (alpha)", 2, dtype, positive=True)
        _check_vector(coeffs[1], f"{name}.marginal_coeffs(t)[1] (sigma)", 2, dtype, positive=True)
        warn_if_inconsistent(sde, data_shape, device, stacklevel=4)


def check_prior_draw(x: Any, sde: object, shape: tuple[int, ...], dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    """A draw of ``sde.prior_sample`` checked against the request: returned in ``dtype`` on ``device``.

    Raises:
        TypeError: not a tensor.
        ValueError: another shape than ``shape``, or NaN/inf entries.
    """
    name = f"{type(sde).__name__}.prior_sample"
    if not isinstance(x, Tensor) or not x.dtype.is_floating_point:
        what = type(x).__name__ if not isinstance(x, Tensor) else f"a tensor of dtype {x.dtype}"
        raise TypeError(f"{name} returned {what}; it must return a floating-point tensor of the requested shape")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name}{tuple(shape)} returned shape {tuple(x.shape)}; it must return the requested shape")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} returned {bad} NaN/inf entries (of {x.numel()}); the initial state must be finite")
    return x.to(dtype=dtype, device=device)


def warn_if_diverged(samples: Tensor, sde: object, *, stacklevel: int = 3) -> None:
    """Warn when ``samples: (B, *D)`` hold NaN / inf, or are far larger than any data the SDE's
    prior can represent.

    Non-finite samples come from a non-finite score that ``check_finite=False`` let the run go
    on with, or from a state that overflowed; the warning counts them. At ``T`` the state is
    ``alpha(T) x_0 + sigma(T) z`` and the prior is a Gaussian of scale ``sigma(T)``, so data of
    size well beyond ``sigma(T) / alpha(T)`` (150 on the VP SDE, ``sigma_max`` on VE) are not
    covered by it. A finite sample more than `DIVERGED_FACTOR` times that from the origin is the
    sign of a run that blew up without producing NaN: typically a score network evaluated where
    it was never trained (prior draws far from ``p_T``), or an explicit step too large for the
    score's stiffness. No size warning for an SDE without ``marginal_coeffs`` or with
    ``alpha(T) = 0``.
    """

    if samples.numel() == 0:
        return
    x = samples.detach()
    finite = torch.isfinite(x)
    n_bad = (~finite).reshape(x.shape[0], -1).any(dim=1).sum()
    size_t = x.abs().masked_fill(~finite, 0.0).amax()
    bad_f, size = torch.stack([n_bad.float(), size_t.float()]).tolist()  # one host read (float32: MPS has no float64)
    if bad_f:
        warn(
            f"{int(bad_f)} of {x.shape[0]} samples hold NaN or inf: the run broke down (a NaN / inf score, "
            "which check_finite=True stops at and names, or a state that overflowed)",
            DivergedWarning)
    coeffs = getattr(sde, "marginal_coeffs", None)
    if coeffs is None:
        return
    T = float(getattr(sde, "T", 1.0))
    alpha, sigma = coeffs(torch.full((1,), T, dtype=samples.dtype, device=samples.device))
    a, s = float(torch.as_tensor(alpha).reshape(-1)[0]), float(torch.as_tensor(sigma).reshape(-1)[0])
    if not (a > 0 and math.isfinite(s / a)):
        return
    scale = s / a
    if size > DIVERGED_FACTOR * scale:
        warn(
            f"the samples reach |x| = {size:.3g}, more than {DIVERGED_FACTOR:g} x sigma(T)/alpha(T) = "
            f"{scale:.3g}, beyond any data the prior of {type(sde).__name__} covers: the run diverged. "
            "Usual causes: a score network evaluated far from where it was trained (e.g. a VE sigma_max "
            "below the data's distance from the origin), or too few steps for an explicit solver",
            DivergedWarning)
