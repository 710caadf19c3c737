"""A prior draw that is not a sample of p_T (data far from the origin): the probability-flow
ODE carries the offset to the samples; the score at T measures it and the run warns."""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers.prior_match import PRIOR_SHIFT_LIMIT

F64 = torch.float64


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["vp", "ve"])
def test_off_centre_data_warns_and_the_shift_is_the_flows(sde):
    mix = sd.GaussianMixture([[20.0, 20.0]], 5.0)
    with pytest.warns(RuntimeWarning, match="not a sample of p_T"):
        r = solvers.sample(sde, mix.score_fn(sde), (4000, 2), "dpmpp_2m", steps=400, seed=0, dtype=F64,
                           keep_trajectory=True)
    # Gaussian data: the flow maps x_T to mu + (s / sqrt(v_T)) (x_T - alpha_T mu), so the mean is
    # off by alpha_T mu / sqrt(v_T) data stds: the probe's number.
    a, sig = sde.marginal_coeffs(torch.tensor([sde.T], dtype=F64))
    root_v = float((a[0] ** 2 * 25.0 + sig[0] ** 2).sqrt())
    theory = float(a[0]) * 20.0 / root_v
    assert r.stats["prior_shift"] == pytest.approx(theory, rel=0.05)
    x_T = r.trajectory[0]
    exact = 20.0 + (5.0 / root_v) * (x_T - float(a[0]) * 20.0)
    torch.testing.assert_close(r.samples, exact, atol=2e-3 * 5.0, rtol=0.0)  # second order: 0.02 at 100 steps
    assert float((20.0 - exact.mean(0)).min() / 5.0) > theory - 4 * 4000**-0.5


@pytest.mark.parametrize("target", ["eight_gaussians", "grid_25", "sharp_25", "checker_mixture"])
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve", "cosine"])
def test_centred_data_is_quiet(target, sde_name):
    sde = sd.get_sde(sde_name)
    mix = sd.targets.get_target(target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = solvers.sample(sde, mix.score_fn(sde), (2000, 2), "ddim", steps=5, seed=0)
    assert r.stats["prior_shift"] < PRIOR_SHIFT_LIMIT / 3


def test_no_estimate_without_a_prior_draw_at_T():
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    given = solvers.sample(sde, score, solver="ddim", steps=3, x_T=torch.randn(64, 2), seed=0)
    small = solvers.sample(sde, score, (8, 2), "ddim", steps=3, seed=0)
    assert "prior_shift" not in given.stats and "prior_shift" not in small.stats


def test_every_chunk_counts_and_stochastic_runs_keep_quiet():
    sde = sd.VESDE()
    mix = sd.GaussianMixture([[20.0, 20.0]], 5.0)
    score = mix.score_fn(sde)
    with pytest.warns(RuntimeWarning, match="not a sample of p_T"):
        whole = solvers.sample(sde, score, (256, 2), "dpmpp_2m", steps=10, seed=0)
    with pytest.warns(RuntimeWarning, match="under VE: sigma_max"):
        chunked = solvers.sample(sde, score, (256, 2), "dpmpp_2m", steps=10, seed=0, batch_size=8)
    assert chunked.stats["prior_shift"] == pytest.approx(whole.stats["prior_shift"], rel=1e-6)
    assert 0 < chunked.stats["prior_shift_error"] < 0.1 * chunked.stats["prior_shift"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reverse SDE forgets the offset: the number, no warning
        em = solvers.sample(sde, score, (256, 2), "euler_maruyama", steps=200, seed=0)
    assert em.stats["prior_shift"] > PRIOR_SHIFT_LIMIT
