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


def test_wide_data_the_shift_is_the_flows_own() -> None:
    # N(20, 10^2) under VE with sigma_max = 10: r = 0.5, and the mean of u is the shift times
    # sqrt(1 - r); the flow moves the samples' mean by 1.41 stds, the reverse SDE by 1.0.
    sde = sd.VESDE(sigma_max=10.0)
    score = sd.GaussianMixture([[20.0]], 10.0).score_fn(sde)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ode = solvers.sample(sde, score, (8000, 1), "dpmpp_2m", steps=50, seed=0, dtype=F64)
        sde_run = solvers.sample(sde, score, (8000, 1), "euler_maruyama", steps=400, seed=0, dtype=F64)
    assert ode.stats["prior_shift"] == pytest.approx(2**0.5, rel=0.05)
    assert float((20.0 - ode.samples.mean()) / 10.0) == pytest.approx(ode.stats["prior_shift"], rel=0.05)
    assert sde_run.stats["prior_shift_carried"] == pytest.approx(1.0, rel=0.05)
    assert float((20.0 - sde_run.samples.mean()) / 10.0) == pytest.approx(1.0, rel=0.1)


def test_ddim_with_eta_keeps_the_part_of_its_level() -> None:
    # DDIM with eta is the reverse family at lam = eta: at 0.3 it keeps most of the offset
    # (narrow data under VE: 0.47 of 0.73 stds measured) and must warn; EDM's churn at
    # S_churn = 1 is a level of about 0.34 here, and keeps most of it too.
    sde = sd.VESDE()
    score = _two_modes((30.0, 40.0), 2.0, 0.3).score_fn(sde)
    with pytest.warns(RuntimeWarning, match="stays in the samples' mean"):
        r = solvers.sample(sde, score, (256, 2), "ddim", steps=50, seed=0, eta=0.3)
    assert 0.3 * r.stats["prior_shift"] < r.stats["prior_shift_carried"] < 0.8 * r.stats["prior_shift"]
    with pytest.warns(RuntimeWarning, match="not a sample of p_T"):
        e = solvers.sample(sde, score, (256, 2), "edm_heun", steps=20, seed=0, s_churn=1.0)
    assert 0.4 * e.stats["prior_shift"] < e.stats["prior_shift_carried"] < 0.9 * e.stats["prior_shift"]


def test_edm_churn_keeps_what_its_level_predicts() -> None:
    # One Gaussian of std 5 at (20, 20) under VE, 40 steps, 4000 samples: the flow keeps 0.42 of
    # a std (the shift, 0.40), churn 1 keeps 0.31 (predicted 0.31), churn 10 keeps 0.03 (0.05).
    sde = sd.VESDE()
    score = sd.GaussianMixture([[20.0, 20.0]], 5.0).score_fn(sde)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for churn in (1.0, 10.0):
            r = solvers.sample(sde, score, (4000, 2), "edm_heun", steps=40, seed=0, s_churn=churn, dtype=F64)
            offset = float(((r.samples.mean(0) - 20.0) / 5.0).pow(2).mean().sqrt())
            assert offset == pytest.approx(r.stats["prior_shift_carried"], abs=0.03), churn


def test_a_score_slightly_off_at_T_does_not_pass_for_wide_data() -> None:
    # A network's slope at T a few percent off reads as r ~ 0.02 on narrow data, and sqrt(r) as
    # 0.14 kept where the reverse SDE keeps 0.01: the warning allows for it.
    sde = sd.VESDE()
    exact = _two_modes((30.0, 40.0), 2.0, 0.3).score_fn(sde)

    def slightly_off(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = exact(x, t)
        return torch.where((t > 0.95).reshape(-1, 1), 0.98 * s, s)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = solvers.sample(sde, slightly_off, (256, 2), "euler_maruyama", steps=100, seed=0)
    assert r.stats["prior_shift_carried"] > PRIOR_SHIFT_LIMIT  # the statistic reads the slope as given
