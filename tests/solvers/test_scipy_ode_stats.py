"""The SciPy-backed ODE solvers' stats: the integrator's own calls are not called ``nfe`` (which
the Solution's count, end step included, is), and rejected steps are reported."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.scipy_ode import SCIPY_METHODS


@pytest.mark.parametrize("name, method", [("ode_rk45", "RK45"), ("ode_dop853", "DOP853")])
def test_scipy_solver_stats_account_for_every_call(name: str, method: str) -> None:
    sde = sd.VPSDE()
    exact = sd.targets.eight_gaussians().score_fn(sde)
    calls: list[int] = []

    def counted(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return exact(x, t)

    r = solvers.sample(sde, counted, (16, 2), name, seed=0, dtype=torch.float64)
    stats = r.stats
    assert "nfe" not in stats  # an outside pass read stats["nfe"] = 56 against r.nfe = 57
    assert r.nfe == len(calls) == stats["integrator_nfe"] + 1  # + the end-of-run step
    # SciPy's count: f(t0) and the initial step's trial, then n_stages per attempted step (FSAL)
    stages = SCIPY_METHODS[method][0].n_stages
    assert stats["integrator_nfe"] == 2 + stages * (stats["accepted"] + stats["rejected"])
    assert stats["rejected"] > 0  # this run rejects some steps (measured: 4 of 14 for RK45)
