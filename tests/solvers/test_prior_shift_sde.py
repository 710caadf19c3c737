"""The off-prior check for runs that draw noise, and for solvers that round the state at T.

The reverse family at level ``lam`` keeps ``shift r^(lam^2/2)`` of the prior's offset (data
stds), ``r = alpha(T)^2 s^2 / v_T`` the data's share of ``p_T``'s variance
(`solvers.prior_match`): the reverse SDE forgets the offset of narrow data, not of wide data.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers.prior_match import PRIOR_SHIFT_LIMIT, PriorMatchProbe

F64 = torch.float64


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE()], ids=["vp", "subvp", "ve"])
@pytest.mark.parametrize("std", [0.3, 5.0])
def test_data_share_is_exact_for_a_gaussian_p_T(sde, std: float) -> None:
    mix = sd.GaussianMixture([[20.0, -10.0]], std)
    x = sde.prior_sample((256, 2), generator=torch.Generator().manual_seed(0)).to(F64)
    probe = PriorMatchProbe(sde, mix.score_fn(sde), x)
    probe(x, torch.full((256,), sde.T, dtype=F64))
    alpha, sigma = sde.marginal_coeffs(torch.tensor([sde.T], dtype=F64))
    r = float(alpha**2 * std**2 / (alpha**2 * std**2 + sigma**2))
    assert probe.data_share().tolist() == pytest.approx([r, r], rel=1e-8)
    assert probe.carried(0.0) == probe.shift
    assert probe.carried(1.0) == pytest.approx(probe.shift * r**0.5, rel=1e-8)


def test_the_reverse_sde_keeps_the_predicted_part_of_the_offset() -> None:
    # One Gaussian of std 5 at (30, 30) under VE (sigma_max = 50): the flow keeps the whole
    # shift (0.59 stds), the reverse SDE sqrt(r) ~ 0.1 of it; measured on 20,000 samples (the
    # mean's standard error is 0.007 stds per coordinate).
    sde = sd.VESDE()
    score = sd.GaussianMixture([[30.0, 30.0]], 5.0).score_fn(sde)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for solver, steps, lam in [("euler_maruyama", 400, 1.0), ("ancestral", 400, 1.0), ("dpmpp_2m", 50, 0.0)]:
            r = solvers.sample(sde, score, (20000, 2), solver, steps=steps, seed=0, dtype=F64)
            offset = float(((r.samples.mean(0) - 30.0) / 5.0).pow(2).mean().sqrt())
            predicted = r.stats["prior_shift_carried"]
            assert predicted == pytest.approx(r.stats["prior_shift"] * (1.0 if lam == 0 else 0.0995), rel=0.01)
            assert offset == pytest.approx(predicted, rel=0.25), solver


def _two_modes(centre: tuple[float, float], sep: float, std: float) -> sd.GaussianMixture:
    cx, cy = centre
    return sd.GaussianMixture([[cx - sep / 2, cy], [cx + sep / 2, cy]], std)


@pytest.mark.parametrize("solver", ["euler_maruyama", "ancestral", "pc", "sde_dpmpp_2m"])
def test_wide_data_far_off_the_prior_warn_stochastic_runs(solver: str) -> None:
    # Two modes of std 5 at (40, 50) and (60, 50) under VE: the reverse SDE ends with mode
    # weights 0.58 / 0.42 and the mean 2.5 off (measured, 1000 steps); it used to say nothing.
    sde = sd.VESDE()
    score = _two_modes((50.0, 50.0), 20.0, 5.0).score_fn(sde)
    with pytest.warns(RuntimeWarning, match="stays in the samples' mean"):
        r = solvers.sample(sde, score, (256, 2), solver, steps=40, seed=0)
    assert r.stats["prior_shift_carried"] > PRIOR_SHIFT_LIMIT


def test_narrow_data_far_off_the_prior_warn_only_the_flow() -> None:
    # Modes of std 0.3 at (30, 40) under VE: the flow keeps 0.7 stds of offset, the reverse
    # SDE about 0.01 (it forgets): the ODE run warns, the SDE run does not.
    sde = sd.VESDE()
    score = _two_modes((30.0, 40.0), 2.0, 0.3).score_fn(sde)
    with pytest.warns(RuntimeWarning, match="probability-flow ODE carries that offset"):
        solvers.sample(sde, score, (256, 2), "dpmpp_2m", steps=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = solvers.sample(sde, score, (256, 2), "euler_maruyama", steps=200, seed=0)
    assert r.stats["prior_shift"] > 10 * PRIOR_SHIFT_LIMIT > 5 * r.stats["prior_shift_carried"]


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.SubVPSDE()], ids=["vp", "subvp"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_edm_heun_is_probed_under_vp(sde, dtype) -> None:
    # EDM's step calls the score at alpha (x / alpha), not bit-equal to x_T when alpha(T) != 1:
    # the probe used to discard it, so edm_heun had no prior_shift and never warned.
    score = _two_modes((50.0, 50.0), 20.0, 5.0).score_fn(sde)
    with pytest.warns(RuntimeWarning, match="not a sample of p_T"):
        edm = solvers.sample(sde, score, (256, 2), "edm_heun", steps=10, seed=0, dtype=dtype)
    with pytest.warns(RuntimeWarning, match="not a sample of p_T"):
        ref = solvers.sample(sde, score, (256, 2), "dpmpp_2m", steps=10, seed=0, dtype=dtype)
    assert edm.stats["prior_shift"] == pytest.approx(ref.stats["prior_shift"], rel=1e-4)
