"""`solve_adaptive(..., relative=)`: state entries held to `atol` alone (quadratures).

A quadrature `q(t) = int g dt` carried in the state grows with every step; a tolerance relative
to its size lets each step add `rtol |q|`, so the error of `q` grows with `|q|`, not with the
tolerance. With its relative weight 0 the error per step is bounded by `atol`.
"""

from __future__ import annotations

import math

import pytest
import torch

from solvers.adaptive_ode import solve_adaptive
from solvers.step_control import check_relative, scaled_error_norm

A, K = 1e4, 40.0


def _field(t: float, y: torch.Tensor) -> torch.Tensor:
    """`x' = -x`, `q' = A (1 + sin(K t) / 2)` (q(1) = A (1 + (1 - cos K) / (2 K)))."""
    return torch.stack([-y[:, 0], torch.full_like(y[:, 1], A * (1 + 0.5 * math.sin(K * t)))], dim=1)


def _exact_q() -> float:
    return A * (1 + 0.5 * (1 - math.cos(K)) / K)


def test_quadrature_held_to_atol_is_accurate_where_relative_control_is_not() -> None:
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    y_rel, _ = solve_adaptive(_field, y0, 0.0, 1.0, rtol=1e-6, atol=1e-6)
    y_abs, info = solve_adaptive(_field, y0, 0.0, 1.0, rtol=1e-6, atol=1e-6,
                                 relative=torch.tensor([1.0, 0.0], dtype=torch.float64))
    err_rel = abs(float(y_rel[0, 1]) - _exact_q())
    err_abs = abs(float(y_abs[0, 1]) - _exact_q())
    # Relative control: q ~ 1e4, so each step may add ~1e-2; absolute: ~1e-6 per step.
    assert err_rel > 1e-4
    n_steps = int(info["accepted"])  # type: ignore[call-overload]
    assert err_abs < 1e-6 * n_steps
    assert err_abs < err_rel / 100
    # The data coordinate keeps its relative control (it is as accurate as before or better).
    assert abs(float(y_abs[0, 0]) - math.exp(-1.0)) < 1e-9


def test_relative_weights_enter_the_scaled_norm() -> None:
    y = torch.tensor([[100.0, 100.0]], dtype=torch.float64)
    err = torch.tensor([[1e-3, 1e-3]], dtype=torch.float64)
    full = float(scaled_error_norm(err, y, y, 1e-4, 1e-6))
    masked = float(scaled_error_norm(err, y, y, 1e-4, 1e-6, relative=torch.tensor([1.0, 0.0], dtype=torch.float64)))
    # entry scales: 1e-6 + 1e-2 each; masked: 1e-2 and 1e-6 (+ 4 float64 ulps of 100: 8.9e-14)
    assert full == pytest.approx(math.sqrt((0.1**2 + 0.1**2) / 2), rel=1e-3)
    assert masked == pytest.approx(math.sqrt((0.1**2 + 1e3**2) / 2), rel=1e-3)


def test_an_entry_held_without_a_relative_tolerance_is_not_held_below_its_rounding() -> None:
    # float32: 4 ulps of 100 are 4.8e-5, above atol = 1e-6; the step's error estimate cannot
    # resolve less (a far-off point's log-density held to atol shrank the steps without end).
    from solvers.step_control import ROUNDING_ULPS

    y = torch.tensor([[100.0, 100.0]])
    err = torch.tensor([[1e-3, 1e-3]])
    masked = float(scaled_error_norm(err, y, y, 1e-4, 1e-6, relative=torch.tensor([1.0, 0.0])))
    floor = 1e-6 + ROUNDING_ULPS * torch.finfo(torch.float32).eps * 100.0
    assert ROUNDING_ULPS == 4.0
    assert masked == pytest.approx(math.sqrt((1e-3 / (1e-6 + 1e-2 + floor - 1e-6)) ** 2 / 2 + (1e-3 / floor) ** 2 / 2),
                                   rel=1e-4)


@pytest.mark.parametrize("bad, match", [
    (torch.ones(3), "does not broadcast"),
    (torch.ones(4, 1, 2), "enlarge"),
    (torch.tensor([1.0, -1.0]), ">= 0"),
    (torch.tensor([1.0, float("nan")]), "finite"),
])
def test_bad_relative_weights_are_refused(bad: torch.Tensor, match: str) -> None:
    y0 = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=match):
        check_relative(bad, y0)
    with pytest.raises(ValueError, match=match):
        solve_adaptive(_field, y0, 0.0, 1.0, relative=bad)


def test_relative_must_be_a_tensor() -> None:
    with pytest.raises(TypeError, match="relative"):
        check_relative([1.0, 0.0], torch.zeros(1, 2))  # type: ignore[arg-type]
