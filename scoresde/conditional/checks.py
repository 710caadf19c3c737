"""Validation shared by the exact conditionals and the conditional samplers (clear errors)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from solvers.inputs import check_data_shape

__all__ = [
    "as_tensor",
    "check_mask",
    "check_observed",
    "check_finite_observed",
    "check_matrix",
    "check_full_row_rank",
    "check_scale",
    "check_noise_std",
    "check_data_std",
    "check_data_shape",
]


def as_tensor(value: Any, name: str, dtype: torch.dtype | None = None) -> Tensor:
    """``torch.as_tensor(value, dtype=dtype)``, or a ``TypeError`` naming ``name`` (``None``, strings, ...)."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be an array or tensor, got {type(value).__name__} {value!r}")
    try:
        # Python sequences go through numpy so that floats are read as float64 (torch would read
        # them as float32 and round before the cast) and complex numbers stay detectable.
        raw = torch.as_tensor(value if isinstance(value, (Tensor, np.ndarray)) else _sequence_array(value))
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a numeric array or tensor, got {type(value).__name__} ({err})") from None
    _check_real(raw, name)
    return raw if dtype is None else raw.to(dtype)


def _sequence_array(value: Any) -> Any:
    """A Python sequence as a numpy array (floats in float64); tensors in it (a tensor that
    requires grad, one on an accelerator, which numpy cannot read) are detached to the CPU first."""
    if isinstance(value, (list, tuple)):
        value = [v.detach().cpu() if isinstance(v, Tensor) else v for v in value]
    return np.asarray(value)


def _check_real(t: Tensor, name: str) -> None:
    """Refuse complex values (a cast to float would drop the imaginary part without a word)."""
    if t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got {t.dtype}; pass the real part explicitly if that is meant")


def check_mask(mask: Any, data_shape: tuple[int, ...]) -> Tensor:
    """A boolean ``mask`` of shape ``data_shape`` (True = observed) with some but not all entries set.

    Integer and float masks are accepted when every entry is 0 or 1 (``[2, 0]`` is refused,
    not read as ``[True, False]``).

    Raises:
        TypeError: not an array. ValueError: not 0/1, the wrong shape, none or all observed.
    """
    m = as_tensor(mask, "mask")
    # a 0/1 array of the data's shape is read as a mask; it may have been meant as a matrix row
    hint = ("" if m.dtype == torch.bool else
            f" (a 0/1 array of the data's shape {tuple(data_shape)} is read as a mask; for a one-row "
            f"measurement matrix pass shape (1, {math.prod(data_shape)}))")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            bad = m[~((m == 0) | (m == 1))].flatten()[0].item()
            raise ValueError(
                f"mask must be boolean or hold only 0 and 1 (1 = observed), got the value {bad!r}"
            )
        m = m != 0
    if tuple(m.shape) != tuple(data_shape):
        raise ValueError(
            f"mask has shape {tuple(m.shape)} but the data has shape {tuple(data_shape)}; "
            "give one boolean per coordinate (True = observed)"
        )
    n_obs = int(m.sum())
    if n_obs == 0:
        raise ValueError("mask observes nothing: that is unconditional sampling; sample without "
                         f"conditioning{hint}")
    if n_obs == m.numel():
        raise ValueError(f"mask observes every coordinate: there is nothing left to sample{hint}")
    return m


def check_observed(observed: Any, data_shape: tuple[int, ...]) -> Tensor:
    """Observed values, shape ``data_shape`` (entries outside the mask are ignored), finite."""
    y = as_tensor(observed, "observed", torch.float64) if not isinstance(observed, Tensor) else observed
    _check_real(y, "observed")
    if tuple(y.shape) != tuple(data_shape):
        raise ValueError(
            f"observed has shape {tuple(y.shape)}, expected the data shape {tuple(data_shape)} "
            "(put the known values at the masked positions; the rest is ignored)"
        )
    return y


def check_finite_observed(y: Tensor, name: str = "observed") -> None:
    """Raise ``ValueError`` if the values ``y`` (a one-off check at construction) hold NaN or inf."""
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise ValueError(f"{name} contains NaN or infinite values; observations must be finite")


def check_matrix(A: Any, dim: int, y: Any | None = None) -> tuple[Tensor, Tensor | None]:
    """A measurement matrix ``A: (M, dim)`` with ``1 <= M`` and a measurement ``y: (M,)``."""
    a = as_tensor(A, "measurement matrix A", torch.float64)
    if a.ndim != 2 or a.shape[1] != dim or a.shape[0] < 1:
        raise ValueError(
            f"measurement matrix A must have shape (M, {dim}) to act on {dim}-dimensional data, "
            f"got {tuple(a.shape)}"
        )
    if not bool(torch.isfinite(a).all()):
        raise ValueError("measurement matrix A contains NaN or inf")
    if y is None:
        return a, None
    yy = as_tensor(y, "measurement y", torch.float64)
    if tuple(yy.shape) != (a.shape[0],):
        raise ValueError(f"measurement y must have shape ({a.shape[0]},) to match A {tuple(a.shape)}, got {tuple(yy.shape)}")
    if not bool(torch.isfinite(yy).all()):
        raise ValueError("measurement y contains NaN or inf")
    return a, yy


NOISELESS_RANK_WHY = "when noise_std = 0, or the likelihood covariance r_t^2 A A^T is singular"
"""Why PosteriorGuidance and ParticleFilter need a full-row-rank ``A`` without measurement noise."""


def check_full_row_rank(a: Tensor, why: str, fix: str = "drop redundant rows") -> None:
    """Raise ``ValueError`` unless the measurement matrix ``a: (M, D)`` has full row rank ``M``.

    A noiseless ``y = A x`` with a rank-deficient ``A`` (redundant or zero rows, ``M > D``) has
    a singular ``A A^T``. ``why`` completes "A must have full row rank ..."; ``fix`` says what to do.
    """
    s = torch.linalg.svdvals(a.double())
    if a.shape[0] > a.shape[1] or float(s.min()) <= 1e-10 * float(s.max()):
        raise ValueError(f"measurement matrix A {tuple(a.shape)} must have full row rank {why}: {fix}")


def _as_float(value: Any, name: str) -> float:
    """``float(value)`` for a real number (or one-element tensor), else a ``TypeError`` naming ``name``."""
    if isinstance(value, (str, bytes, bool)) or isinstance(value, complex):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, Tensor) and (value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be a real number, got a {value.dtype} tensor")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({err})") from None


def check_scale(scale: float, name: str = "guidance scale") -> float:
    """A finite, non-negative guidance scale."""
    s = _as_float(scale, name)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"{name} must be finite and >= 0 (0 = no guidance, 1 = the exact conditional), got {scale!r}")
    return s


def check_noise_std(noise_std: float) -> float:
    """A finite, non-negative measurement-noise standard deviation."""
    s = _as_float(noise_std, "noise_std")
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std!r}")
    return s


def check_data_std(data_std: float) -> float:
    """A finite, positive prior standard deviation ``d`` (ΠGDM's Gaussian prior).

    Raises:
        ValueError: NaN, infinite or ``<= 0`` (``0`` makes the twist's covariance singular).
    """
    s = _as_float(data_std, "data_std")
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"data_std must be finite and > 0, got {data_std!r}")
    return s
