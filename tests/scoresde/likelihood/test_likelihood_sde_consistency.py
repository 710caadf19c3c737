"""The likelihood warns, at the caller's line, when an SDE's marginals do not belong to its drift and
diffusion (the samplers' check, `solvers.sde_consistency`): the flow uses drift and diffusion, the
data term and the grids use the marginals, so the density comes out wrong. It used to run
silently (a SigmaSDE with three times the right dsigma2_dt: -5e7 nats per point, with only the
prior-mismatch warning)."""

from __future__ import annotations

import warnings

import torch

import scoresde as sd


class _WrongDiffusion(sd.VPSDE):
    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return 1.1 * super().diffusion(t)


def _warnings_of(sde: sd.VPSDE) -> list[warnings.WarningMessage]:
    mix = sd.targets.eight_gaussians()
    x = mix.sample(20, generator=torch.Generator().manual_seed(0)).double()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sd.likelihood.log_likelihood(sde, mix.score_fn(sde), x)
    return [w for w in caught if "do not belong to its" in str(w.message)]


def test_inconsistent_sde_warns_at_the_callers_line() -> None:
    found = _warnings_of(_WrongDiffusion())
    assert len(found) == 1
    assert "_WrongDiffusion: marginal_coeffs(t)" in str(found[0].message)
    assert found[0].filename == __file__


def test_consistent_sde_does_not_warn() -> None:
    assert _warnings_of(sd.VPSDE()) == []
