"""Own SDEs: BetaSDE / SigmaSDE / EDMSDE / DiscreteVPSDE against closed forms and exact mixtures."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde.schedules import check_prior, matched_prior_std

F64 = torch.float64
CUBIC = lambda t: 0.1 + 19.9 * t**3  # noqa: E731 - the schedule of the issue
CUBIC_INT = lambda t: 0.1 * t + 19.9 * t**4 / 4  # noqa: E731


def _quiet(fn, *a, **k):  # build an SDE whose construction-time prior warning is not under test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def test_beta_sde_quadrature_matches_closed_form_and_protocol() -> None:
    quad = _quiet(sd.BetaSDE, CUBIC)
    exact = _quiet(sd.BetaSDE, CUBIC, CUBIC_INT)
    t = torch.linspace(0.0, 1.0, 101, dtype=F64)
    # 64-point Gauss-Legendre is exact for a cubic: only rounding remains.
    torch.testing.assert_close(quad.integrated_beta(t), CUBIC_INT(t), rtol=1e-14, atol=1e-14)
    a, s = exact.marginal_coeffs(t)
    torch.testing.assert_close(a, torch.exp(-0.5 * CUBIC_INT(t)), rtol=1e-14, atol=0)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(t), rtol=1e-14, atol=1e-14)
    assert isinstance(quad, solvers.DiffusionSDE)
    # g^2 = d sigma^2/dt - 2 (d ln alpha/dt) sigma^2, checked by autograd.
    tt = torch.linspace(0.05, 1.0, 20, dtype=F64, requires_grad=True)
    s2 = quad.sigma(tt) ** 2
    (ds2,) = torch.autograd.grad(s2.sum(), tt)
    with torch.no_grad():
        g2 = ds2 - 2 * quad.dlog_alpha_dt(tt) * s2
        torch.testing.assert_close(g2, quad.diffusion(tt) ** 2, rtol=1e-10, atol=1e-12)  # float64 autograd


def test_prior_warning_carries_the_numbers_and_matched_prior_silences_it() -> None:
    with pytest.warns(UserWarning, match=r"alpha\(T\) = 0\.079.*prior='matched'"):
        sde = sd.BetaSDE(CUBIC)
    chk = check_prior(sde, warn=False)
    assert chk.alpha_T == pytest.approx(math.exp(-0.5 * 5.075), rel=1e-12)
    # For unit-variance data the bound is -ln(1 - alpha^2)/2 per dimension.
    assert chk.kl_bound == pytest.approx(-0.5 * math.log(1 - chk.alpha_T**2), rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = sd.BetaSDE(CUBIC, prior="matched", data_std=2.0)
        sd.VPSDE() and check_prior(sd.VPSDE())  # the default VP SDE is fine
        check_prior(sd.VESDE())
    assert m.prior_std == pytest.approx(math.sqrt(chk.alpha_T**2 * 4 + chk.sigma_T**2), rel=1e-12)
    assert matched_prior_std(m, 2.0) == pytest.approx(m.prior_std)
    with pytest.raises(ValueError, match="prior"):
        sd.BetaSDE(CUBIC, prior="wide")
    with pytest.raises(ValueError, match="non-negative"):
        sd.BetaSDE(lambda t: -t)


def test_cubic_beta_likelihood_to_1e3_nats_and_samples() -> None:
    """The issue's task: beta = 0.1 + 19.9 t^3 sampled and likelihood-evaluated against the exact mixture."""
    target = sd.targets.eight_gaussians()
    data_std = float(target.covariance().diagonal().mean().sqrt())
    sde = sd.BetaSDE(CUBIC, prior="matched", data_std=data_std)
    naive = _quiet(sd.BetaSDE, CUBIC)
    x = target.sample(300, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = target.log_prob(x)  # the default estimates the data density log p_0
    err = (sd.likelihood.log_likelihood(sde, target.score_fn(sde), x) - exact).abs().mean()
    with pytest.warns(UserWarning, match="p_T is far from the prior"):
        err_naive = (sd.likelihood.log_likelihood(naive, target.score_fn(naive), x) - exact).abs().mean()
    # Measured 1.2e-4 (matched prior) vs 4.4e-3 (N(0, I)) nats/point with 500 points.
    assert err < 1e-3, float(err)
    assert err_naive > 2e-3, float(err_naive)
    r = solvers.sample(sde, target.score_fn(sde), shape=(2000, 2), solver="dpmpp_2m", steps=50, seed=0, dtype=F64)
    ref = target.sample(2000, generator=torch.Generator().manual_seed(1), dtype=F64)
    lp, lp_ref = target.log_prob(r.samples), target.log_prob(ref)
    se = math.sqrt(lp.var() / 2000 + lp_ref.var() / 2000)
    # Mean exact log-density of our samples equals that of exact samples within 4 standard errors.
    assert abs(float(lp.mean() - lp_ref.mean())) < 4 * se


def test_sigma_sde_and_edm_sde() -> None:
    with pytest.warns(UserWarning, match="KL"):  # sigma(T) = 10 leaves 5e-3 nats/dim of unit data
        ve = sd.SigmaSDE(lambda t: 10.0 * t**2, eps=1e-3)
    t = torch.linspace(0.01, 1.0, 50, dtype=F64)
    torch.testing.assert_close(ve.diffusion(t), torch.sqrt(400.0 * t**3), rtol=1e-13, atol=0)
    assert ve.prior_std == pytest.approx(10.0)
    with pytest.raises(ValueError, match="increasing"):
        sd.SigmaSDE(lambda t: 1.0 / t, eps=0.1)
    edm = sd.EDMSDE()
    assert (edm.T, edm.eps, edm.prior_std) == (80.0, 0.002, 80.0)
    a, s = edm.marginal_coeffs(t)
    torch.testing.assert_close(s, t, rtol=0, atol=0)
    torch.testing.assert_close(a, torch.ones_like(t), rtol=0, atol=0)
    torch.testing.assert_close(edm.diffusion(t), torch.sqrt(2 * t), rtol=0, atol=0)
    target = sd.targets.two_gaussians()
    r = solvers.sample(edm, target.score_fn(edm), shape=(500, 2), solver="edm_heun", steps=30, seed=0, dtype=F64)
    assert torch.isfinite(r.samples).all() and r.samples.shape == (500, 2)


def test_discrete_vp_hits_the_table_and_maps_timesteps() -> None:
    n = 1000
    betas = torch.linspace(1e-4, 0.02, n, dtype=F64)
    abar = torch.cumprod(1 - betas, 0)
    sde = sd.DiscreteVPSDE(abar)
    k = torch.arange(n, dtype=F64)
    tk = sde.time(k)
    a, s = sde.marginal_coeffs(tk)
    torch.testing.assert_close(a**2, abar, rtol=1e-12, atol=0)  # knots: rounding only
    torch.testing.assert_close(s**2, 1 - abar, rtol=1e-12, atol=0)
    torch.testing.assert_close(sde.timestep(tk), k, rtol=0, atol=1e-9)
    assert (sde.T, sde.eps) == (1.0, 1.0 / n)
    # Over each interval (t_{k-1}, t_k] the rate integrates to -ln(1 - beta_k) (Simpson's rule is
    # exact on its quadratic pieces), and it is continuous and non-negative across the knots.
    left, mid = tk - 1.0 / n, tk - 0.5 / n
    mean_rate = (sde.beta(left + 1e-15) + 4 * sde.beta(mid) + sde.beta(tk - 1e-15)) / 6
    torch.testing.assert_close(mean_rate, -n * torch.log1p(-betas), rtol=1e-9, atol=0)
    jump = (sde.beta(tk[:-1] + 1e-12) - sde.beta(tk[:-1] - 1e-12)).abs().max()
    assert float(jump) < 1e-6, float(jump)
    fine = torch.linspace(0, 1, 100_001, dtype=F64)
    assert float(sde.beta(fine).min()) > 0
    # d ln alpha / dt = -beta / 2 between the knots too (central differences).
    t, h = torch.rand(500, dtype=F64, generator=torch.Generator().manual_seed(0)) * 0.99 + 0.005, 1e-7
    slope = (sde.log_alpha(t + h) - sde.log_alpha(t - h)) / (2 * h)
    torch.testing.assert_close(slope, -0.5 * sde.beta(t), rtol=1e-6, atol=1e-7)
    # The linear-beta table approaches the continuous VP SDE with beta in [0.1, 20].
    vp = sd.VPSDE()
    # ln(1 - beta_k) = -beta_k - beta_k^2/2 - ...: the logs differ by sum(beta_k^2)/4 = 0.034 at T.
    gap = (sde.log_alpha(tk) - vp.log_alpha(tk)).abs().max()
    assert float(gap) < 0.25 * float((betas**2).sum()) * 1.05, float(gap)
    with pytest.raises(ValueError, match="decreasing"):
        sd.DiscreteVPSDE(abar.flip(0))
    with pytest.raises(ValueError, match=r"one-dimensional \(N,\), got shape \(2, 2\)"):
        sd.DiscreteVPSDE([[0.9, 0.5], [0.4, 0.3]])
    with pytest.raises(ValueError, match=r"timesteps must lie in \[-1, 999\]"):
        sde.time(1000)


def test_discrete_vp_likelihood_is_as_accurate_as_the_continuous_vp() -> None:
    """A rate that jumped at each of the 1000 knots held the ODE solves to first order: the
    default likelihood was 2.5e-3 nats off (VP: 4e-5) and `steps="auto"` took 6990 NFE."""
    from scoresde.likelihood import likelihood

    target = sd.targets.eight_gaussians()
    x = target.sample(100, generator=torch.Generator().manual_seed(1)).double()
    for sde in (sd.DiscreteVPSDE.from_config({"num_train_timesteps": 1000}), sd.VPSDE()):
        prior = (lambda s: lambda z: target.marginal_log_prob(z, s.T, s))(sde)
        default = likelihood(sde, target.score_fn(sde), x, prior=prior)
        fast = likelihood(sde, target.score_fn(sde), x, prior=prior, integrator="rk4_simpson", steps="auto")
        exact = target.log_prob(x)
        assert float((default.log_prob - exact).abs().mean()) < 3e-4, type(sde).__name__
        assert float((fast.log_prob - exact).abs().mean()) < 3e-4, type(sde).__name__
        assert fast.nfe < 1000, (type(sde).__name__, fast.nfe)


def test_alphas_cumprod_from_config_matches_diffusers() -> None:
    diffusers = pytest.importorskip("diffusers")
    from scoresde.discrete import alphas_cumprod_from_config

    for cfg in [
        {"beta_schedule": "linear"},
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
        {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 200},
        {"beta_schedule": "sigmoid", "num_train_timesteps": 100},
    ]:
        ref = diffusers.DDPMScheduler(**cfg).alphas_cumprod.double()
        # diffusers builds its table in float32: agreement to float32 round-off.
        torch.testing.assert_close(alphas_cumprod_from_config(cfg), ref, rtol=2e-5, atol=1e-7)


def test_check_prior_reads_the_prior_of_any_protocol_sde() -> None:
    class Plain:  # protocol-only SDE: VP with a too-short horizon, no prior_std attribute
        T, eps = 0.3, 1e-3
        _vp = sd.VPSDE()

        def marginal_coeffs(self, t):
            return self._vp.marginal_coeffs(t)

        def prior_log_prob(self, z):
            return self._vp.prior_log_prob(z)

    with pytest.warns(UserWarning, match="KL"):
        chk = check_prior(Plain())
    assert chk.prior_std == pytest.approx(1.0, rel=1e-12)
    assert chk.alpha_T == pytest.approx(math.exp(-0.5 * (0.1 * 0.3 + 9.95 * 0.09)), rel=1e-12)


def test_likelihood_warns_when_p_T_is_far_from_the_prior() -> None:
    """log p_0 is measured against the SDE's prior: a schedule with alpha(T) = 0.079 is flagged with
    its numbers, the built-in SDEs and an explicit prior= are not."""
    target = sd.targets.eight_gaussians()
    x = target.sample(50, generator=torch.Generator().manual_seed(0), dtype=F64)
    naive = _quiet(sd.BetaSDE, CUBIC)
    with pytest.warns(UserWarning, match=r"alpha\(T\) = 0\.079"):
        sd.likelihood.log_likelihood(naive, target.score_fn(naive), x, integrator="rk4", steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for sde in (sd.VPSDE(), sd.SubVPSDE(), sd.VESDE()):
            sd.likelihood.log_likelihood(sde, target.score_fn(sde), x, integrator="rk4", steps=8)
        sd.likelihood.log_likelihood(naive, target.score_fn(naive), x, integrator="rk4", steps=8,
                                     prior=lambda z: target.marginal_log_prob(z, naive.T, naive))


def test_a_schedule_returning_a_number_and_a_reversed_edm_range_are_named():
    with pytest.raises(TypeError, match="beta\\(t\\) must return a tensor of the shape of t"):
        sd.BetaSDE(lambda t: 1.0)
    with pytest.raises(ValueError, match="need 0 < sigma_min < sigma_max < inf, got sigma_min=80, sigma_max=1"):
        sd.EDMSDE(sigma_min=80, sigma_max=1)
    with pytest.raises(TypeError, match="sigma_min must be a real number, got the string '0.002'"):
        sd.EDMSDE(sigma_min="0.002")  # was named as eps, which the caller never passed


@pytest.mark.parametrize("flag", [True, np.bool_(True), torch.tensor(True), np.array(False)])
def test_a_boolean_is_not_a_noise_level(flag) -> None:
    # float(True) is 1.0: EDMSDE(sigma_min=True) was accepted as sigma_min = 1.
    with pytest.raises(TypeError, match="sigma_min must be a real number, got the bool"):
        sd.EDMSDE(sigma_min=flag)
    with pytest.raises(TypeError, match="sigma_max must be a real number, got the bool"):
        sd.VESDE(sigma_max=flag)
    assert sd.EDMSDE(sigma_min=np.float32(0.002)).sigma_min == pytest.approx(0.002)  # NumPy numbers still pass


def test_data_finer_than_the_end_noise_warns_with_the_numbers() -> None:
    # 8 modes of std 0.003 on a circle of radius 0.05: under VPSDE() (sigma/alpha = 0.0105 at
    # eps) every solver returns modes ~1.4x too wide at any step count (docs/defaults.md).
    from scoresde.schedules import check_end_noise
    from scoresde.train.toy import toy_config

    ang = torch.arange(8, dtype=torch.float64) * 2 * math.pi / 8
    tiny = sd.GaussianMixture(torch.stack([0.05 * ang.cos(), 0.05 * ang.sin()], 1), 0.003)
    data_std = float(tiny.covariance().diagonal().mean().sqrt())
    s_eps = math.sqrt(math.expm1(0.1 * 1e-3 + 0.5 * 19.9 * 1e-3**2))  # VP: (sigma/alpha)^2 = e^B(eps) - 1
    assert check_end_noise(sd.VPSDE(), data_std, warn=False) == pytest.approx(s_eps / data_std, rel=0.01)
    with pytest.warns(UserWarning, match=r"only 3\.\d+x the noise left.*VPSDE\(eps=1e-5\)"):
        toy_config("tiny", sde="vp", data=tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        toy_config("tiny", sde=sd.VPSDE(eps=1e-5), data=tiny)  # the remedy: 0.0001 / 0.035
        toy_config("eight_gaussians", sde="vp")  # unit-scale data: silent
    with pytest.raises(ValueError, match="data_std must be positive"):
        check_end_noise(sd.VPSDE(), 0.0)
    # The other end: data of std ~100 under VP is not forgotten by T (alpha(T) = 0.0066).
    big = sd.GaussianMixture(torch.tensor([[-100.0, 0.0], [100.0, 0.0]], dtype=torch.float64), 5.0)
    with pytest.warns(UserWarning, match=r"p_T is far from the prior.*centre the data and rescale them"):
        toy_config("big", sde="vp", data=big)
