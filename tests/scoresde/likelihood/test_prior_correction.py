"""The score-corrected prior at T (`scoresde.likelihood.prior_correction`) against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import prior_log_ratio, score_corrected_prior


def off_centre_gaussian() -> sd.targets.GaussianMixture:
    return sd.targets.GaussianMixture(torch.tensor([[1.5, -0.8]], dtype=torch.float64),
                                      torch.tensor([0.3], dtype=torch.float64))


def gaussian_p_T(sde, m: torch.Tensor, s: float):
    """``log N(x; alpha(T) m, (alpha(T)^2 s^2 + sigma(T)^2) I)``, the exact marginal at T."""
    a, sig = (float(v) for v in sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64)))
    var = a**2 * s**2 + sig**2

    def log_p(x):
        return -0.5 * ((x - a * m) ** 2).sum(1) / var - 0.5 * x.shape[1] * math.log(2 * math.pi * var)

    return log_p


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE()], ids=["vp", "subvp", "ve"])
def test_log_ratio_is_exact_for_a_gaussian_marginal(sde):
    # p_T Gaussian: the integrand is linear in tau, so every node count is exact.
    target = off_centre_gaussian()
    log_p_T = gaussian_p_T(sde, target.means[0], 0.3)
    x = sde.prior_sample((50, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    zero = torch.zeros(1, 2, dtype=torch.float64)
    exact = (log_p_T(x) - sde.prior_log_prob(x)) - (log_p_T(zero) - sde.prior_log_prob(zero))
    for nodes in (1, 3):
        got = prior_log_ratio(target.score_fn(sde), sde.T, sde.prior_std**2, x, nodes)
        torch.testing.assert_close(got, exact, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["vp", "ve"])
def test_corrected_prior_is_the_gaussian_marginal(sde):
    target = off_centre_gaussian()
    log_p_T = gaussian_p_T(sde, target.means[0], 0.3)
    prior = score_corrected_prior(sde, target.score_fn(sde), normalizer_samples=4096)
    x = sde.prior_sample((50, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plain_err = float((sde.prior_log_prob(x) - log_p_T(x)).abs().mean())
    err = float((prior(x) - log_p_T(x)).abs().mean())
    # Only the constant r(0) is a Monte Carlo estimate. Antithetic pairs cancel the linear part
    # of r and leave log cosh(b.z) ~ (b.z)^2/2 with |b| ~ |m| alpha(T) (VP) or |m|/sigma_max
    # (VE, the larger: std ~8e-4 per pair), i.e. ~1.3e-5 at 4096 pairs; 5e-5 is 4 std.
    assert err < 5e-5 and err < plain_err / 50, (err, plain_err)


def test_likelihood_with_the_corrected_prior_reaches_log_p0_on_unequal_weights():
    # sharp_25 (unequal weights, mean off the origin): the N(0, I) prior's scatter is ~3e-3
    # nats per point under VP; with the corrected prior the ODE's own error (~2e-4) is left.
    torch.manual_seed(0)
    target, sde = sd.targets.sharp_25(), sd.VPSDE()
    x = target.sample(200, generator=torch.Generator().manual_seed(2)).double()
    score = target.score_fn(sde)
    exact = target.log_prob(x)
    plain = sd.likelihood.likelihood(sde, score, x, dtype=torch.float64)
    corrected = sd.likelihood.likelihood(sde, score, x, dtype=torch.float64, prior=score_corrected_prior(sde, score))
    plain_err = float((plain.log_prob - exact).abs().mean())
    err = float((corrected.log_prob - exact).abs().mean())
    assert plain_err > 2e-3 and err < 5e-4, (plain_err, err)


def test_needs_an_isotropic_gaussian_prior():
    class NoStd:
        T = 1.0

    with pytest.raises(TypeError, match="prior_std"):
        score_corrected_prior(NoStd(), lambda x, t: -x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nodes"):
        prior_log_ratio(lambda x, t: -x, 1.0, 1.0, torch.zeros(2, 2), 0)
