"""What the counted score keeps, and its finiteness check (an outside performance pass).

A fixed-grid run kept the last four evaluations (eight state-sized tensors) for an end step
that can only use two of them, and the finiteness test ran an element-wise pass per call.
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.dynamics import CountedScore, NonFiniteScoreError

F64 = torch.float64


def _held(counted: CountedScore) -> int:
    return len(counted._recent)


def test_a_fixed_grid_run_holds_two_evaluations() -> None:
    counted = CountedScore(lambda x, t: -x)
    x = torch.randn(4, 2, dtype=F64)
    for t in (0.9, 0.7, 0.5, 0.3):
        counted(x.clone(), torch.full((4,), t, dtype=F64))
        assert _held(counted) <= 2
    # the answers are those of the whole window of the last four calls
    xp, tp, _, ok = counted.previous_other_time(x, 0.3)
    assert ok.all() and bool((tp == 0.5).all())
    xq, tq, _, _ = counted.previous_other_time(x, 0.5)
    assert bool((tq == 0.3).all())


def test_repeated_times_keep_the_answer_of_the_window() -> None:
    # Runge-Kutta stages at the end time: the newest at another time lies further back.
    counted = CountedScore(lambda x, t: -x)
    x = torch.randn(3, 2, dtype=F64)
    for t in (0.8, 0.5, 0.5, 0.5):
        counted(x, torch.full((3,), t, dtype=F64))
    assert _held(counted) == 2
    _, tp, _, ok = counted.previous_other_time(x, 0.5)
    assert ok.all() and bool((tp == 0.8).all())
    counted(x, torch.full((3,), 0.5, dtype=F64))  # 0.8 now lies five calls back: out of the window
    assert counted.previous_other_time(x, 0.5) is None


def test_default_end_step_is_unchanged_by_the_smaller_record() -> None:
    # The exact Gaussian end step still fits to the previous evaluation (one NFE).
    sde = sd.VPSDE()
    target = sd.targets.GaussianMixture(torch.tensor([[0.7, -0.4]], dtype=F64), torch.tensor([0.05], dtype=F64))
    x_T = torch.randn(64, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    for name, nfe in (("ddim", 41), ("ode_heun", 81), ("dpmpp_2m", 41)):
        r = solvers.sample(sde, target.score_fn(sde), x_T=x_T, solver=name, steps=40)
        assert r.stats["end_pair"] == "history" and r.nfe == nfe, name
    # gaussian_2m and the end step are exact on one Gaussian: the flow map of N(mu, s^2) from x_T
    r = solvers.sample(sde, target.score_fn(sde), x_T=x_T, solver="gaussian_2m", steps=40)
    a, s = sde.marginal_coeffs(torch.tensor([sde.T], dtype=F64))
    exact = target.means[0] + 0.05 * (x_T / a - target.means[0]) / torch.sqrt(0.05**2 + (s / a) ** 2)
    assert float((r.samples - exact).abs().max()) < 1e-8


def test_finite_check_catches_nan_and_inf_but_not_large_finite_values() -> None:
    x = torch.randn(5, 3)
    t = torch.full((5,), 0.5)
    for bad in (float("nan"), float("inf"), -float("inf")):
        out = torch.zeros(5, 3)
        out[2, 1] = bad
        with pytest.raises(NonFiniteScoreError):
            CountedScore(lambda x, t, o=out: o)(x, t)
    big = torch.full((5, 3), 3e38)  # finite entries whose float32 sum overflows
    assert torch.equal(CountedScore(lambda x, t: big)(x, t), big)
