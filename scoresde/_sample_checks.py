"""Checks of the sample-set arguments shared by `scoresde.metrics`, `scoresde.mode_metrics` and
`scoresde.quality` (kept apart so that each of those modules can be imported first)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from solvers.inputs import check_seed


def _as_samples(x: Any, name: str, *, min_n: int, finite: bool = True) -> Tensor:
    """Validate one sample set ``(N, D)`` and return it as a floating tensor, detached from autograd.

    With ``finite=False`` NaN/inf entries are let through (the caller handles them).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be real-valued, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(
            f"{name} must have shape (N, D), got {tuple(x.shape)}"
            + ("; flatten with x.reshape(len(x), -1)" if x.ndim > 2 else "")
        )
    if x.shape[0] < min_n or x.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_n} samples of dimension >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.to(torch.float64)
    x = x.detach()  # every metric returns a float; in-place kernels refuse tensors that need grad
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return x


def _work_dtype(device: torch.device) -> torch.dtype:
    # float64 everywhere except MPS, which does not implement it.
    return torch.float32 if device.type == "mps" else torch.float64


def _seed(seed: Any) -> int:
    """``seed`` as an int ``torch.Generator.manual_seed`` accepts (``None`` and ``2.5`` refused)."""
    s = check_seed(seed)
    if s is None:
        raise TypeError("seed must be an integer, got None")
    return s
