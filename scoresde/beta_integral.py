"""``B(t) = int_0^t beta``: Gauss-Legendre quadrature, and the check of a closed form against it.

`CompositeIntegral` is `scoresde.schedules.BetaSDE`'s default integral: ``[0, T]`` is cut into
adaptive panels (16 to start, halved where 64-point Gauss-Legendre on a panel and on its halves
disagree, e.g. around a jump or kink of ``beta``), their integrals are summed once, and
``B(t) = B(t_k) + int_{t_k}^t beta`` by 64-point Gauss-Legendre (`gauss_legendre`) on the panel
``[t_k, t_{k+1})`` holding ``t``. So ``B`` is continuous, non-decreasing for ``beta >= 0``, exact
to round-off for a piecewise-smooth ``beta`` and ``dB/dt = beta``. `check_integral` refuses a
given closed form that is not the integral of ``beta``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["gauss_legendre", "check_integral", "check_derivative", "CompositeIntegral", "INTEGRAL_RTOL",
           "INTEGRAL_ATOL"]

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


def _gl_on(beta: Schedule, lo: Tensor, hi: Tensor) -> Tensor:
    """``int_{lo_i}^{hi_i} beta`` for each panel ``(lo_i, hi_i)``, ``(P,)``, by 64-point Gauss-Legendre."""
    return gauss_legendre(lambda u: beta(u + lo.repeat_interleave(len(_GL_NODES))), hi - lo)


def _adaptive_panels(beta: Schedule, T: float, n: int) -> tuple[Tensor, Tensor]:
    """Panels of ``[0, T]`` on which 64-point Gauss-Legendre is exact to round-off.

    Starts from ``n`` equal panels and halves each until Gauss-Legendre on it and on its halves
    agree to 1e-10 relative (of ``int_0^T |beta|``): one pass for a smooth ``beta``, about 30
    more levels around a jump of ``beta``. Returns ``(edges, integrals)``: the sorted panel
    edges ``(P + 1,)`` from 0 to ``T`` and ``int`` over each panel ``(P,)``, float64 (the
    panels are the converged panels' halves, whose integrals are the more accurate ones).
    """
    lo = torch.arange(n, dtype=torch.float64) * (T / n)
    hi = torch.cat([lo[1:], torch.tensor([T], dtype=torch.float64)])
    out_lo, out_val, tol = [], [], None
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        left, right = _gl_on(beta, lo, mid), _gl_on(beta, mid, hi)
        whole, halves = _gl_on(beta, lo, hi), left + right
        tol = 1e-10 * max(1.0, float(whole.abs().sum())) if tol is None else tol
        done = (whole - halves).abs() <= tol
        out_lo += [lo[done], mid[done]]
        out_val += [left[done], right[done]]
        if bool(done.all()):
            break
        lo, hi = torch.cat([lo[~done], mid[~done]]), torch.cat([mid[~done], hi[~done]])
    else:
        out_lo += [lo[~done], mid[~done]]
        out_val += [left[~done], right[~done]]
    starts, vals = torch.cat(out_lo), torch.cat(out_val)
    order = torch.argsort(starts)
    edges = torch.cat([starts[order], torch.tensor([T], dtype=torch.float64)])
    return edges, vals[order]


def _panel_integrals(beta: Schedule, T: float, n: int) -> Tensor:
    """``int_0^{j T/n} beta`` for ``j = 0..n``, ``(n + 1,)`` float64, by adaptive `gauss_legendre`.

    Sums the `_adaptive_panels` integrals: exact to round-off also around a jump of ``beta``.
    """
    edges, vals = _adaptive_panels(beta, T, n)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(vals, 0)])
    j = torch.searchsorted(edges, torch.arange(n + 1, dtype=torch.float64) * (T / n))
    return cum[j.clamp(max=len(cum) - 1)]


def check_derivative(rate: Schedule, value: Schedule, lo: float, hi: float, *, rate_name: str,
                     value_name: str) -> None:
    """Refuse a closed form ``rate`` that is not ``d value / dt`` on ``[lo, hi]``.

    ``value(t_j) - value(lo)`` is compared with the adaptive Gauss-Legendre quadrature of ``rate``
    from ``lo`` at ``t_j = lo + j (hi - lo) / 16``, within ``INTEGRAL_RTOL |ref| + INTEGRAL_ATOL
    max(1, |ref(hi)|)`` (the tolerance of `check_integral`).

    Raises:
        ValueError: they differ by more than that.
    """
    n, h = _INTEGRAL_PANELS, (hi - lo) / _INTEGRAL_PANELS
    ref = _panel_integrals(lambda u: rate(u + lo).to(torch.float64), hi - lo, n)
    knots = lo + torch.arange(n + 1, dtype=torch.float64) * h
    vals = value(knots).to(torch.float64)
    got = vals - vals[0]
    j = _worst_mismatch(got, ref, INTEGRAL_ATOL * max(1.0, float(ref[-1].abs())))
    if j is not None:
        raise ValueError(f"{rate_name} is not the derivative of {value_name}: from t = {lo:.4g} to t = "
                         f"{float(knots[j]):.4g}, {value_name} grows by {float(got[j]):.6g} but the quadrature of "
                         f"{rate_name} gives {float(ref[j]):.6g} (relative tolerance {INTEGRAL_RTOL:g}); check the "
                         f"closed form, or leave it out to use autograd")


class CompositeIntegral:
    """``B(t) = int_0^t beta`` by composite Gauss-Legendre on adaptive panels (module docstring).

    ``B(t) = C_k + int_{t_k}^t beta`` with ``t_k <= t < t_{k+1}`` the panel holding ``t``
    (the first / last panel below 0 / above ``T``), ``C_k = int_0^{t_k} beta`` summed once at
    construction and the rest by 64-point Gauss-Legendre (`gauss_legendre`). Continuous in
    ``t``, differentiable (``dB/dt = beta`` to quadrature accuracy), ``t: (B,)`` or 0-d of any
    dtype and device (the panel is found in at least float32).

    Args:
        beta: ``beta(t: (N,)) -> (N,)`` written with torch operations.
        T: upper end of the panels.
        panels: number of initial equal panels.
    """

    def __init__(self, beta: Schedule, T: float, panels: int = _INTEGRAL_PANELS) -> None:
        self.beta = beta
        self.edges, vals = _adaptive_panels(beta, float(T), panels)
        self.cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(vals, 0)])

    def at_panel_edges(self, T: float, n: int) -> Tensor:
        """``B(j T/n)``, ``j = 0..n``, ``(n + 1,)`` float64 (the panel sums, no quadrature)."""
        j = torch.searchsorted(self.edges, torch.arange(n + 1, dtype=torch.float64) * (T / n))
        return self.cumulative[j.clamp(max=len(self.cumulative) - 1)]

    def __call__(self, t: Tensor) -> Tensor:
        """``B(t)``, shape and dtype of ``t``."""
        # The panel index from t in float64 (float32 on MPS, which has no float64): a
        # low-precision t is exact there, and the index does not depend on t's rounding of edges.
        find = torch.float32 if t.device.type == "mps" else torch.float64
        edges = self.edges.to(device=t.device, dtype=find)
        k = torch.searchsorted(edges, t.detach().to(find).reshape(-1), right=True) - 1
        k = k.clamp(0, len(self.edges) - 2).reshape(t.shape)
        start = self.edges.to(device=t.device, dtype=t.dtype)[k]
        base = self.cumulative.to(device=t.device, dtype=t.dtype)[k]
        # gauss_legendre evaluates beta at start + (t - start)(1 + x_i)/2, flattened (..., 64) -> (-1,).
        node_start = start.unsqueeze(-1).expand(*start.shape, len(_GL_NODES)).reshape(-1)

        def shifted(u: Tensor) -> Tensor:
            return self.beta(u + node_start)

        return base + gauss_legendre(shifted, t - start)


def _worst_mismatch(got: Tensor, ref: Tensor, atol: float) -> int | None:
    """Where ``got`` is furthest beyond ``INTEGRAL_RTOL |ref| + atol`` of the quadrature ``ref``
    (a non-finite entry counts as furthest), or ``None`` when every entry is within it."""
    err = torch.nan_to_num((got - ref).abs() - INTEGRAL_RTOL * ref.abs(), nan=math.inf)
    return int(torch.argmax(err)) if bool((err > atol).any()) else None


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
    j = _worst_mismatch(got, ref, atol)
    if j is not None:
        raise ValueError(f"integral does not match int_0^t beta: at t = {float(j * h):.4g} integral(t) = "
                         f"{float(got[j]):.6g} but quadrature of beta gives {float(ref[j]):.6g} (relative tolerance "
                         f"{INTEGRAL_RTOL:g}); check the closed form, or pass integral=None to use the quadrature")
