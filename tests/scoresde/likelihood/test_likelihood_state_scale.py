"""`rk4_simpson`'s scaled state `y = x / r(t)`, `r = sqrt(alpha^2 c^2 + sigma^2)`: the scale's
closed form, fourth-order convergence by refinement, agreement with the plain state and with
the adaptive default, and the error reduction under VE where the state grows 5000-fold."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import likelihood
from scoresde.likelihood.state_scale import marginal_state_scale
from scoresde.targets import GaussianMixture


def circle8() -> GaussianMixture:
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = torch.stack([2.0 * ang.cos(), 2.0 * ang.sin()], dim=1)
    return GaussianMixture(means, 2 * 2.0 * math.sin(math.pi / 8) / 25, name="circle8")


def _setup(sde_name: str, n: int):
    sde, target = sd.get_sde(sde_name), circle8()
    x = target.sample(n, generator=torch.Generator().manual_seed(0)).double()

    def p_T(z: torch.Tensor) -> torch.Tensor:
        return target.marginal_log_prob(z, sde.T, sde)

    return sde, target, x, p_T


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_scale_is_the_marginal_scale_and_its_exact_log_derivative(sde_name):
    sde, c2 = sd.get_sde(sde_name), 2.0
    scale = marginal_state_scale(sde, c2)
    for t in (1e-5, 0.3, 0.9):
        tt = torch.tensor([t], dtype=torch.float64, requires_grad=True)
        alpha, sigma = sde.marginal_coeffs(tt)
        log_r = 0.5 * torch.log(alpha**2 * c2 + sigma**2).sum()
        (exact_dlog,) = torch.autograd.grad(log_r, tt)
        r, dlog = scale(t)
        assert r == pytest.approx(math.exp(log_r.item()), rel=1e-12)
        # Fourth-order differences against autograd's exact derivative (truncation and rounding
        # are ~1e-11 relative here; an inconsistent d ln r/dt would bias the ODE by as much).
        assert dlog == pytest.approx(float(exact_dlog), rel=1e-8)


def test_scale_refuses_bad_input():
    with pytest.raises(ValueError, match="mean square"):
        marginal_state_scale(sd.VPSDE(), 0.0)
    sde, _, x, _ = _setup("vp", 4)
    with pytest.raises(ValueError, match="state_scale"):
        likelihood(sde, circle8().score_fn(sde), x, integrator="rk4_simpson", state_scale="sigma")


def test_scaled_state_converges_with_order_four_under_ve():
    sde, target, x, p_T = _setup("ve", 150)
    exact = target.marginal_log_prob(x, sde.eps, sde)
    grid = "quadratic"  # a fixed named grid: the refinement is exact halving of a fixed profile
    errs = []
    for steps in (64, 128, 256):
        r = likelihood(sde, target.score_fn(sde), x, prior=p_T, integrator="rk4_simpson", steps=steps,
                       grid=grid, density="marginal")
        errs.append(float((r.log_prob - exact).abs().mean()))
    orders = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:], strict=True)]
    # RK4 path + Simpson log-density on y = x / r: order 4 (a change of variables keeps it).
    assert all(3.5 < q < 4.6 for q in orders), (errs, orders)


def test_scaled_state_agrees_with_plain_state_and_default_and_helps_under_ve():
    sde, target, x, p_T = _setup("ve", 300)
    score = target.score_fn(sde)
    exact = target.log_prob(x)
    # A small pilot, so that most points are integrated on the fixed grid (not kept from the pilot).
    opts = dict(prior=p_T, integrator="rk4_simpson", pilot_size=32)
    fine = {name: likelihood(sde, score, x, steps=96, state_scale=name, **opts).log_prob
            for name in ("marginal", "none")}
    # Converged, both states give the same log p_0 (the change of variables is exact): measured
    # max difference 7e-5, mean errors 4e-6 (scaled) and 1.2e-5 (plain).
    torch.testing.assert_close(fine["marginal"], fine["none"], rtol=0, atol=2e-4)
    assert float((fine["marginal"] - exact).abs().mean()) < 2e-5
    # ... and agree with the adaptive default to within its own error (1.1e-4 nats here).
    default = likelihood(sde, score, x, prior=p_T).log_prob
    assert float((fine["marginal"] - default).abs().mean()) < 3e-4
    coarse = {name: float((likelihood(sde, score, x, steps=24, state_scale=name, **opts).log_prob - exact)
                          .abs().mean()) for name in ("marginal", "none")}
    # At 24 steps on the auto grid: measured 3.4e-4 (scaled) vs 1.5e-3 (plain) on 1,000 points;
    # the exponential growth of the VE state is what the plain RK4 steps miss.
    assert coarse["marginal"] < 0.5 * coarse["none"], coarse
    assert coarse["marginal"] <= 1e-3, coarse


def test_auto_steps_in_the_scaled_state_need_fewer_steps_under_ve():
    sde, target, x, p_T = _setup("ve", 300)
    score = target.score_fn(sde)
    runs = {name: likelihood(sde, score, x, prior=p_T, integrator="rk4_simpson", steps="auto", state_scale=name)
            for name in ("marginal", "none")}
    steps = {name: r.stats[0]["steps"] for name, r in runs.items()}
    # The pilot runs in the scaled state too, so the grid's profile suits the scaled RK4:
    # measured 22-23 vs 38-39 steps on the sharp 2-D mixtures, both verified at the target.
    assert steps["marginal"] <= 0.75 * steps["none"], steps
    for r in runs.values():
        assert float((r.log_prob - target.log_prob(x)).abs().mean()) <= 1e-3
