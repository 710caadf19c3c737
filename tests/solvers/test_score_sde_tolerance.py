"""What counts as the same process for a score's declared SDE (an outside pass over the check).

The same diffusers schedule as its float32 table and rebuilt in float64 was refused (sigma
8e-5 apart at t = 1/N, the tolerance was 1e-5), a VP schedule stopped early (same marginals,
smaller T) was refused as "other marginals", and an SDE answering on another device crashed
the check instead of being skipped.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers.score_sde import check_score_sde, marginals_difference


class _Declared:
    def __init__(self, sde: object) -> None:
        self.sde = sde

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x


def test_a_float32_table_and_its_float64_rebuild_are_one_process() -> None:
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    table64 = torch.cumprod(1.0 - betas, dim=0)
    one, other = sd.DiscreteVPSDE(table64.float()), sd.DiscreteVPSDE(table64)
    assert marginals_difference(one, other) is None
    check_score_sde(_Declared(one), other)
    check_score_sde(_Declared(other), one)


def test_a_schedule_stopped_early_is_the_same_process_but_one_run_past_t_is_not() -> None:
    target = sd.targets.eight_gaussians()
    score = target.score_fn(sd.VPSDE())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a prior far from p_T at T = 0.5 is the prior checks' business)
        r = solvers.sample(sd.VPSDE(T=0.5), score, shape=(8, 2), solver="ddim", steps=4, seed=0)
    assert torch.isfinite(r.samples).all()
    with pytest.raises(ValueError, match=r"the sde runs to T = 2, past the T = 1 the score was made for"):
        solvers.sample(sd.VPSDE(T=2.0), score, shape=(8, 2), solver="ddim", steps=4, seed=0)


def test_an_sde_answering_on_another_device_is_not_compared() -> None:
    class OnMeta(sd.VPSDE):
        def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a, s = super().marginal_coeffs(t)
            return a.to("meta"), s.to("meta")

    assert marginals_difference(OnMeta(), sd.VPSDE()) is None
    check_score_sde(_Declared(OnMeta()), sd.VPSDE())
