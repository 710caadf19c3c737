"""Explicit FSAL embedded Runge–Kutta pairs: Dormand–Prince 5(4) and Bogacki–Shampine 3(2).

Dormand & Prince (1980), "A family of embedded Runge–Kutta formulae"; Bogacki & Shampine (1989),
"A 3(2) pair of Runge–Kutta formulas". Both are FSAL ("first same as last"): the last stage is
evaluated at the new state, so it is the first stage of the next step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .registry import lookup

__all__ = ["ButcherTableau", "DOPRI5", "BOSH3", "TABLEAUS", "get_tableau", "combine", "weighted_sum"]


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit FSAL embedded pair.

    Attributes:
        c: ``(s,)`` nodes.
        a: lower-triangular rows ``a[i] = (a_i0, ..., a_i,i-1)``; the last row equals ``b``
            (FSAL: the last stage is ``f`` at the new state).
        b: ``(s,)`` weights of the propagated (higher-order) solution.
        e: ``(s,)`` ``b - b_hat``: the error estimate is ``h * sum_i e_i k_i``.
        order: order of the propagated solution.
        error_order: order of the embedded solution plus one (the exponent ``1/k`` of the
            step-size controller).
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    order: int
    error_order: int

    @property
    def stages(self) -> int:
        return len(self.c)


def _pair(
    name: str,
    c: Sequence[float],
    a: Sequence[Sequence[float]],
    b: Sequence[float],
    b_hat: Sequence[float],
    order: int,
    error_order: int,
) -> ButcherTableau:
    e = tuple(bi - bh for bi, bh in zip(b, b_hat, strict=True))
    tab = ButcherTableau(name, tuple(c), tuple(tuple(r) for r in a), tuple(b), e, order, error_order)
    if tab.a[-1] != tuple(b[:-1]):
        raise ValueError("FSAL tableau: last row of a must equal b")
    return tab


# Dormand & Prince (1980), Table 2 (RK5(4)7M); also Hairer–Nørsett–Wanner I, Table II.5.2.
DOPRI5 = _pair(
    "dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    b_hat=(5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40),
    order=5,
    error_order=5,
)

# Bogacki & Shampine (1989): third-order solution, second-order embedded estimate.
BOSH3 = _pair(
    "bosh3",
    c=(0.0, 1 / 2, 3 / 4, 1.0),
    a=((), (1 / 2,), (0.0, 3 / 4), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_hat=(7 / 24, 1 / 4, 1 / 3, 1 / 8),
    order=3,
    error_order=3,
)

TABLEAUS: Mapping[str, ButcherTableau] = {"dopri5": DOPRI5, "bosh3": BOSH3}


def get_tableau(method: str | ButcherTableau) -> ButcherTableau:
    """A tableau by name (``"dopri5"``, ``"bosh3"``) or itself.

    Raises:
        ValueError: unknown name (the message lists the valid names).
    """
    if isinstance(method, ButcherTableau):
        return method
    return lookup(TABLEAUS, method, "method")


def combine(y: Tensor, coeffs: tuple[float, ...], ks: list[Tensor], dt: float) -> Tensor:
    """``y + dt * sum_j coeffs_j k_j`` (zero coefficients skipped); ``y`` is not modified."""
    out: Tensor | None = None
    for cj, kj in zip(coeffs, ks, strict=False):
        if cj == 0.0:
            continue
        out = torch.add(y, kj, alpha=dt * cj) if out is None else out.add_(kj, alpha=dt * cj)
    return y.clone() if out is None else out


def weighted_sum(coeffs: tuple[float, ...], ks: list[Tensor], dt: float) -> Tensor:
    """``dt * sum_j coeffs_j k_j``."""
    out: Tensor | None = None
    for cj, kj in zip(coeffs, ks, strict=True):
        if cj == 0.0:
            continue
        out = kj * (dt * cj) if out is None else out.add_(kj, alpha=dt * cj)
    if out is None:
        return torch.zeros_like(ks[0])
    return out
