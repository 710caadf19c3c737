"""Forward SDEs: closed-form marginals against theory and Monte-Carlo of the SDE itself."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers

ALL_SDES = [
    pytest.param(lambda: sd.VPSDE(), id="vp"),
    pytest.param(lambda: sd.SubVPSDE(), id="subvp"),
    pytest.param(lambda: sd.VESDE(sigma_min=0.01, sigma_max=5.0), id="ve"),
    pytest.param(lambda: sd.VESDE(sigma_min=0.01, sigma_max=5.0, exact_sigma=False), id="ve-ref"),
    pytest.param(lambda: sd.CosineVPSDE(), id="cosine"),
]
EXACT_SDES = ALL_SDES[:3] + ALL_SDES[4:]


@pytest.mark.parametrize("make", ALL_SDES)
def test_satisfies_protocol(make):
    sde = make()
    assert isinstance(sde, solvers.DiffusionSDE)
    t = torch.linspace(sde.eps, sde.T, 5)
    alpha, sigma = sde.marginal_coeffs(t)
    assert alpha.shape == sigma.shape == sde.diffusion(t).shape == (5,)
    x = torch.randn(5, 3, 4, 4)  # image-shaped data broadcasts through append_dims
    assert sde.drift(x, t).shape == x.shape


@pytest.mark.parametrize("make", EXACT_SDES)
def test_drift_and_diffusion_match_marginals(make):
    """f = (d ln alpha/dt) x and g^2 = d sigma^2/dt - 2 (d ln alpha/dt) sigma^2, by autograd."""
    sde = make()
    t = torch.linspace(sde.eps, sde.T * 0.999, 50, dtype=torch.float64, requires_grad=True)
    alpha, sigma = sde.marginal_coeffs(t)
    (dlog_alpha,) = torch.autograd.grad(torch.log(alpha).sum(), t, retain_graph=True)
    (dvar,) = torch.autograd.grad((sigma**2).sum(), t)
    t = t.detach()
    x = torch.randn(50, 2, dtype=torch.float64)
    torch.testing.assert_close(sde.drift(x, t), dlog_alpha[:, None] * x)
    g2 = dvar - 2 * dlog_alpha * sigma.detach() ** 2
    # rtol 1e-6: float64 autograd of closed forms; any schedule typo is O(1).
    torch.testing.assert_close(sde.diffusion(t) ** 2, g2, rtol=1e-6, atol=1e-9)


def test_reference_ve_convention_differs_by_sigma_min():
    exact, ref = sd.VESDE(0.01, 5.0), sd.VESDE(0.01, 5.0, exact_sigma=False)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    torch.testing.assert_close(ref.sigma(t) ** 2 - exact.sigma(t) ** 2, torch.full_like(t, 1e-4))
    assert float(exact.sigma(torch.tensor(0.0))) == 0.0


@pytest.mark.parametrize("make", EXACT_SDES)
def test_forward_monte_carlo_matches_closed_form(make):
    """Euler-Maruyama on the forward SDE from a point mass reproduces mean alpha x0, var sigma^2."""
    sde = make()
    g = torch.Generator().manual_seed(0)
    n, steps, t_end = 20_000, 400, 0.6 * sde.T
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64)
    x = x0.expand(n, 2).clone()
    dt = t_end / steps
    for i in range(steps):
        t = torch.full((n,), i * dt, dtype=torch.float64)
        dw = math.sqrt(dt) * torch.randn(n, 2, generator=g, dtype=torch.float64)
        x = x + sde.drift(x, t) * dt + sde.diffusion(t)[:, None] * dw
    alpha, sigma = sde.marginal_coeffs(torch.tensor([t_end], dtype=torch.float64))
    mean_err = (x.mean(0) - alpha * x0).abs().max()
    var_rel_err = (x.var(0) / sigma**2 - 1).abs().max()
    # 5 standard errors of the MC mean, plus O(dt) Euler bias on the variance (~1%).
    assert mean_err < 5 * float(sigma) / math.sqrt(n) + 0.01 * float(alpha)
    assert var_rel_err < 5 * math.sqrt(2 / n) + 0.01


@pytest.mark.parametrize("make", EXACT_SDES)
def test_transition_is_exact_composition(make):
    """Composing transitions s->u->t equals the transition s->t, and 0->t is the marginal."""
    sde = make()
    s, u, t = (torch.tensor([v], dtype=torch.float64) for v in (0.1, 0.4, 0.8 * sde.T))
    a1, b1 = sde.transition(s, u)
    a2, b2 = sde.transition(u, t)
    a, b = sde.transition(s, t)
    torch.testing.assert_close(a1 * a2, a)
    torch.testing.assert_close(a2**2 * b1**2 + b2**2, b**2)
    alpha, sigma = sde.marginal_coeffs(t)
    a0, b0 = sde.transition(torch.zeros(1, dtype=torch.float64), t)
    torch.testing.assert_close(a0, alpha)
    torch.testing.assert_close(b0, sigma)


def test_vp_transition_matches_ddpm_betas():
    """VP: a = sqrt(1 - beta_i), b = sqrt(beta_i) with 1 - beta_i = alpha_t^2 / alpha_s^2."""
    sde = sd.VPSDE()
    s, t = torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.31], dtype=torch.float64)
    a, b = sde.transition(s, t)
    beta_i = 1 - (sde.alpha(t) / sde.alpha(s)) ** 2
    torch.testing.assert_close(a, torch.sqrt(1 - beta_i))
    torch.testing.assert_close(b, torch.sqrt(beta_i))


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(), sd.CosineVPSDE()], ids=repr)
def test_prior_matches_marginal_at_T_and_log_prob(sde):
    alpha, sigma = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))
    # With the default parameters the signal is forgotten at T: alpha/sigma <= 2% (VE: 1/50).
    assert float(alpha / sigma) < 0.021
    # prior_std approximates sigma(T) within 1% (VE: sigma_min^2 is negligible).
    assert abs(float(sigma) / sde.prior_std - 1) < 0.01
    z = sde.prior_sample((4, 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, sde.prior_std).log_prob(z).sum(dim=1)
    torch.testing.assert_close(sde.prior_log_prob(z), ref)


def test_vp_defaults_and_named_construction():
    sde = sd.get_sde("vp")
    assert (sde.beta_min, sde.beta_max, sde.T, sde.eps) == (0.1, 20.0, 1.0, 1e-3)
    assert isinstance(sd.get_sde("ve", sigma_max=10.0), sd.VESDE)
    with pytest.raises(ValueError, match="valid names"):
        sd.get_sde("nope")


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="eps"):
        sd.VPSDE(eps=2.0)
    with pytest.raises(ValueError, match="sigma_min"):
        sd.VESDE(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="beta"):
        sd.VPSDE(beta_min=3.0, beta_max=1.0)
    with pytest.raises(ValueError, match="T < 1"):
        sd.CosineVPSDE(T=1.0)


def test_check_time():
    sde = sd.VPSDE()
    sde.check_time(torch.tensor([sde.eps, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"t must lie in"):
        sde.check_time(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"t must lie in"):
        sde.check_time(0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_preserved(dtype):
    for sde in (sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(), sd.CosineVPSDE()):
        t = torch.linspace(sde.eps, sde.T, 4, dtype=dtype)
        alpha, sigma = sde.marginal_coeffs(t)
        assert alpha.dtype == sigma.dtype == sde.diffusion(t).dtype == dtype
        assert sde.prior_sample((2, 2), dtype=dtype).dtype == dtype


def test_small_t_is_accurate_in_float32():
    """sigma(t) near t = 0 uses expm1, so float32 keeps full relative precision."""
    for sde in (sd.VPSDE(), sd.VESDE()):
        t64 = torch.tensor([1e-5, 1e-4], dtype=torch.float64)
        rel = (sde.sigma(t64.float()).double() / sde.sigma(t64) - 1).abs().max()
        assert rel < 1e-5  # float32 relative precision, not cancellation-limited
