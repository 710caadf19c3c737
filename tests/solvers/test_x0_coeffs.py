"""Tweedie's denoiser from coefficients the solver already holds (`ReverseDynamics.x0_at`'s
``coeffs``): the same numbers as evaluating the schedule, and the samplers that use it unchanged."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.dynamics import ReverseDynamics
from solvers.exponential import schedule_table


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve", "cosine"])
def test_coefficients_from_the_table_give_the_schedules_denoiser(sde_name: str) -> None:
    sde = sd.get_sde(sde_name)
    target = sd.targets.sharp_8()
    dyn = ReverseDynamics(sde, target.score_fn(sde), 0.0)
    ts = solvers.grids.logsnr(sde, 12)
    table = schedule_table(sde, ts)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for i in (0, 5, 12):
        t = table.t[i]
        direct = dyn.x0_at(x, t)
        given = dyn.x0_at(x, t, (table.alpha[i], table.sigma[i]))
        torch.testing.assert_close(given, direct, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "dpmpp_3m", "unipc", "sde_dpmpp_2m"])
def test_samplers_reading_the_table_match_a_run_through_the_schedule(name: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    run = solvers.sample(sde, target.score_fn(sde), (256, 2), solver=name, steps=15, seed=3, dtype=torch.float64)
    original = ReverseDynamics.x0_at

    def through_schedule(self: ReverseDynamics, x: torch.Tensor, t: float,
                         coeffs: tuple[float, float] | None = None) -> torch.Tensor:
        return original(self, x, t)

    monkeypatch.setattr(ReverseDynamics, "x0_at", through_schedule)
    ref = solvers.sample(sde, target.score_fn(sde), (256, 2), solver=name, steps=15, seed=3, dtype=torch.float64)
    torch.testing.assert_close(run.samples, ref.samples, rtol=1e-12, atol=1e-12)
    assert run.nfe == ref.nfe
