"""``B(t) = int_0^t beta``: Gauss-Legendre quadrature, and the check of a closed form against it.

`gauss_legendre` is `scoresde.schedules.BetaSDE`'s default integral (64 nodes on ``[0, t]``);
`check_integral` refuses a given closed form that is not the integral of ``beta``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["gauss_legendre", "check_integral", "INTEGRAL_RTOL", "INTEGRAL_ATOL"]

Schedule = Callable[[Tensor], Tensor]

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


def gauss_legendre(fn: Schedule, t: Tensor) -> Tensor:
    """``int_0^t fn(u) du`` by 64-point Gauss-Legendre quadrature; ``t: (B,)`` or 0-d, same shape out.

    Differentiable in ``t`` (the nodes are ``t (1 + x_i)/2``).
    """
    x = torch.as_tensor(_GL_NODES, dtype=t.dtype, device=t.device)
    w = torch.as_tensor(_GL_WEIGHTS, dtype=t.dtype, device=t.device)
    tt = t.unsqueeze(-1)
    u = 0.5 * tt * (1.0 + x)  # (..., 64)
    vals = fn(u.reshape(-1)).reshape(u.shape)
    return 0.5 * t * (vals * w).sum(dim=-1)


INTEGRAL_RTOL, INTEGRAL_ATOL = 1e-3, 1e-6
"""`BetaSDE` refuses an ``integral`` off the quadrature of ``beta`` by more than ``rtol |B| + atol max(1, B(T))``."""

_INTEGRAL_PANELS = 16  # the integral check compares at t = j T / 16


def _panel_integrals(beta: Schedule, T: float, n: int) -> Tensor:
    """``int_0^{j T/n} beta`` for ``j = 0..n``, ``(n + 1,)`` float64, by adaptive `gauss_legendre`.

    Each of the ``n`` panels is halved until 64-point Gauss-Legendre on it and on its halves agree
    to 1e-10 relative: one pass for smooth ``beta``, about 30 more around a jump of ``beta``.
    """
    def gl(lo: Tensor, hi: Tensor) -> Tensor:
        return gauss_legendre(lambda u: beta(u + lo.repeat_interleave(len(_GL_NODES))), hi - lo)

    lo = torch.arange(n, dtype=torch.float64) * (T / n)
    hi, owner = torch.cat([lo[1:], torch.tensor([T], dtype=torch.float64)]), torch.arange(n)
    total, tol = torch.zeros(n, dtype=torch.float64), None
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        whole, halves = gl(lo, hi), gl(lo, mid) + gl(mid, hi)
        tol = 1e-10 * max(1.0, float(whole.abs().sum())) if tol is None else tol
        done = (whole - halves).abs() <= tol
        total.index_add_(0, owner[done], halves[done])
        if bool(done.all()):
            break
        lo, hi, owner = (torch.cat([lo[~done], mid[~done]]), torch.cat([mid[~done], hi[~done]]),
                         torch.cat([owner[~done], owner[~done]]))
    else:
        total.index_add_(0, owner[~done], halves[~done])
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(total, 0)])


def check_integral(beta: Schedule, integral: Schedule, T: float, probe: Tensor) -> None:
    """Refuse a closed form ``integral`` that is not ``B(t) = int_0^t beta``.

    Compared at ``t_j = j T / 16`` with adaptive Gauss-Legendre quadrature of ``beta`` (``B(0) = 0``;
    exact to round-off also where ``beta`` jumps), within ``INTEGRAL_RTOL |B| + INTEGRAL_ATOL max(1, B(T))``.
    Also required on ``probe`` (``(257,)`` on ``[0, T]``): a tensor of ``t``'s shape, finite, non-decreasing.

    Raises:
        TypeError: ``integral(t)`` not a tensor.
        ValueError: any of the above fails.
    """
    vals = integral(probe)
    if not isinstance(vals, Tensor):
        raise TypeError(f"integral(t) must return a tensor of the shape of t, got {type(vals).__name__}")
    vals = vals.to(torch.float64)
    if vals.shape != probe.shape or not bool(torch.isfinite(vals).all()):
        raise ValueError("integral(t) must return finite values of the shape of t on [0, T]")
    n, h = _INTEGRAL_PANELS, T / _INTEGRAL_PANELS
    ref = _panel_integrals(beta, T, n)  # B(t_j), j = 0..n
    if not bool(torch.isfinite(ref).all()):
        raise ValueError("beta(t) must be finite on [0, T]: its quadrature is not")
    got = integral(torch.linspace(0.0, T, n + 1, dtype=torch.float64)).to(torch.float64)
    atol = INTEGRAL_ATOL * max(1.0, float(ref[-1]))
    if abs(float(got[0])) > atol:
        raise ValueError(f"integral must be B(t) = int_0^t beta, with B(0) = 0; got integral(0) = {float(got[0]):.6g}")
    diffs = vals[1:] - vals[:-1]
    if bool((diffs < -atol).any()):
        i = int(torch.argmin(diffs))
        raise ValueError(f"integral must be non-decreasing on [0, T] (B' = beta >= 0); it falls from "
                         f"{float(vals[i]):.6g} at t = {float(probe[i]):.4g} to {float(vals[i + 1]):.6g} at "
                         f"t = {float(probe[i + 1]):.4g}")
    err = (got - ref).abs() - INTEGRAL_RTOL * ref.abs()
    if bool((err > atol).any()):
        j = int(torch.argmax(err))
        raise ValueError(f"integral does not match int_0^t beta: at t = {float(j * h):.4g} integral(t) = "
                         f"{float(got[j]):.6g} but quadrature of beta gives {float(ref[j]):.6g} (relative tolerance "
                         f"{INTEGRAL_RTOL:g}); check the closed form, or pass integral=None to use the quadrature")
