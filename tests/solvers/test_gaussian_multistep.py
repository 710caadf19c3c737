"""`gaussian_2m`: the multistep with a fitted Gaussian part (solvers.gaussian_multistep).

Checked against closed forms: on isotropic Gaussian data ``N(mu, s^2 I)`` the probability-flow
ODE keeps ``(y - mu)/sqrt(s^2 + S^2)`` constant (``y = x/alpha``, ``S = sigma/alpha``), and every
step after the first (a DDIM step, no history) must keep it to round-off for any step size.
The step coefficients are checked against the closed form of their integral and against
their two limits (DPM-Solver++(2M) with exact weights at ``s^2 = 0``, ``eps_hat/S`` constant
at ``s^2 -> inf``); the order on anisotropic data is measured in `tests.test_exponential`.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers
from solvers.gaussian_multistep import (
    GaussianMultistep,
    fit_gaussian_part,
    gaussian_step_coefficients,
)
from solvers.marginals import edm_sigma

F64 = torch.float64
SDES = [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(), sd.CosineVPSDE()]


def _closed_form_f(s2: torch.Tensor, s_from: float, s_to: float) -> torch.Tensor:
    """``F = h + g' int_{S_i}^{S'} dtau/(tau g(tau))`` with the antiderivative ``-asinh(s/tau)/s``."""
    h = math.log(s_from / s_to)
    s = s2.sqrt()
    g_to = torch.sqrt(s2 + s_to**2)
    integral = (torch.asinh(s / s_from) - torch.asinh(s / s_to)) / s
    return h + g_to * integral


@pytest.mark.parametrize(("s_from", "s_to"), [(0.05, 0.03), (2.0, 0.5), (157.0, 20.0), (0.02, 0.0011), (152.0, 0.0105)])
def test_step_coefficients_match_closed_forms(s_from, s_to):
    s2 = torch.tensor([1e-4, 2.5e-3, 0.3, 10.0], dtype=F64)
    a, f = gaussian_step_coefficients(s2, s_from, s_to)
    a_ref = torch.sqrt((s2 + s_from**2) * (s2 + s_to**2)) - s2
    # The naive reference cancels: its own round-off is about s^2 * 2e-16 <= 2e-15.
    torch.testing.assert_close(a, a_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(f, _closed_form_f(s2, s_from, s_to), rtol=1e-10, atol=1e-14)


def test_step_coefficients_limits():
    s_from, s_to = 0.8, 0.3
    h = math.log(s_from / s_to)
    a0, f0 = gaussian_step_coefficients(torch.zeros(1, dtype=F64), s_from, s_to)
    # s^2 = 0: DDIM's A = S_i S' and the exact phi_2 weight h - 1 + e^{-h} of DPM-Solver++(2M).
    assert float(a0) == pytest.approx(s_from * s_to, rel=1e-14)
    assert float(f0) == pytest.approx(h + math.expm1(-h), rel=1e-12)
    # s^2 -> inf: A -> (S_i^2 + S'^2)/2 and F -> 0 like 1/s^2 (no cancellation at s^2 = 1e12).
    a_inf, f_inf = gaussian_step_coefficients(torch.tensor([1e12], dtype=F64), s_from, s_to)
    assert float(a_inf) == pytest.approx((s_from**2 + s_to**2) / 2, rel=1e-9)
    assert 0 < float(f_inf) < 1e-11


def test_step_coefficients_reject_a_backward_step():
    with pytest.raises(ValueError, match="S_from > S_to > 0"):
        gaussian_step_coefficients(torch.zeros(1, dtype=F64), 0.1, 0.2)


def test_fit_recovers_the_gaussian_part():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 3, 4, generator=gen, dtype=F64)
    s2 = torch.tensor([0.0, 1e-3, 0.25, 4.0, 100.0], dtype=F64)
    u_prev, u = torch.randn(5, 3, 4, generator=gen, dtype=F64), torch.randn(5, 3, 4, generator=gen, dtype=F64)
    d_prev, d = mu + s2[:, None, None] * u_prev, mu + s2[:, None, None] * u
    torch.testing.assert_close(fit_gaussian_part(d, d_prev, u, u_prev), s2, rtol=1e-12, atol=1e-14)
    # Nothing to fit (u unchanged) or a negative slope: s^2 = 0, i.e. DPM-Solver++(2M).
    assert float(fit_gaussian_part(d, d_prev, u, u).abs().max()) == 0.0
    assert float(fit_gaussian_part(d_prev, d, u, u_prev)[1:].max()) == 0.0


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp", "ve", "cosine"])
@pytest.mark.parametrize("steps", [4, 9, 14, 30])
def test_exact_on_isotropic_gaussian_after_the_first_step(sde, steps):
    # The default: no lower-order last step, so this holds below 15 steps as well.
    mu = torch.tensor([0.3, -0.2, 0.1], dtype=F64)
    std = 0.05
    target = sd.GaussianMixture(mu[None], std)
    r = solvers.sample(
        sde, target.score_fn(sde), (64, 3), solver="gaussian_2m", steps=steps,
        seed=0, dtype=F64, denoise="none", keep_trajectory=True,
    )
    times = r.trajectory_times
    alpha, _ = sde.marginal_coeffs(times)
    g = torch.sqrt(std**2 + edm_sigma(sde, times) ** 2)
    z = (r.trajectory / alpha[:, None, None] - mu) / g[:, None, None]  # (steps + 1, B, 3)
    # The invariant of the exact flow holds from step 1 on, whatever the step sizes
    # (4 steps: h = 2.4 in log-SNR); round-off is amplified by 1/alpha(T) <= 150.
    torch.testing.assert_close(z[1:], z[1].expand_as(z[1:]), rtol=0, atol=1e-10)


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp", "ve", "cosine"])
@pytest.mark.parametrize("std", [0.005, 0.05, 0.5])
def test_default_end_step_is_the_exact_flow_to_sigma_zero(sde, std):
    # The default end step (solvers.end) continues the Gaussian fitted to the last two
    # evaluations to S = 0: for N(mu, s^2 I) the sample is mu + s z with the z of step 1, even
    # when s is half the VP grid's last noise level S_n = 0.0105.
    mu = torch.tensor([0.3, -0.2], dtype=F64)
    target = sd.GaussianMixture(mu[None], std)
    r = solvers.sample(
        sde, target.score_fn(sde), (64, 2), solver="gaussian_2m", steps=6,
        seed=1, dtype=F64, keep_trajectory=True,
    )
    t1 = r.trajectory_times[1:2]
    alpha1, _ = sde.marginal_coeffs(t1)
    z1 = (r.trajectory[1] / alpha1 - mu) / torch.sqrt(std**2 + edm_sigma(sde, t1) ** 2)
    torch.testing.assert_close((r.samples - mu) / std, z1, rtol=0, atol=1e-9)


def test_second_order_on_a_mixture():
    # Sharp, anisotropic modes: the fitted s^2 is an average and the step is only second order.
    sde = sd.VPSDE()
    target = sd.GaussianMixture([[1.0, 0.0], [-1.0, 0.5]], [[0.1, 0.3], [0.2, 0.05]], [0.3, 0.7])
    x_T = target.sample_marginal(16, sde, sde.T, generator=torch.Generator().manual_seed(0), dtype=F64)
    ode = solvers.ProbabilityFlowODE(sde, target.score_fn(sde))
    ref = solvers.RK4().solve(ode, x_T.clone(), solvers.grids.logsnr(sde, 4000)).samples
    errs = [
        float((GaussianMultistep().solve(ode, x_T.clone(), solvers.grids.logsnr(sde, n)).samples - ref).abs().max())
        for n in (40, 80, 160)
    ]
    slopes = [math.log2(errs[k] / errs[k + 1]) for k in range(2)]
    assert min(slopes) > 1.7, f"errors {errs}, slopes {slopes}"


def test_lower_order_final_is_opt_in():
    assert [GaussianMultistep().step_order(i, 5) for i in range(5)] == [1, 2, 2, 2, 2]
    solver = GaussianMultistep(lower_order_final=True)  # DPM-Solver++'s convention
    assert [solver.step_order(i, 5) for i in range(5)] == [1, 2, 2, 2, 1]
    assert [solver.step_order(i, 20) for i in (0, 1, 19)] == [1, 2, 2]


def test_lower_order_final_would_shrink_a_gaussian_mode():
    # Why it is off: a DDIM last step contracts N(mu, s^2) by (s^2 + S S')/(g g') < g'/g.
    sde = sd.VPSDE()
    target = sd.GaussianMixture([[0.0, 0.0]], 0.02)
    x_T = sde.prior_sample((4000, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    spread = {
        lof: float(
            solvers.sample(sde, target.score_fn(sde), solver=GaussianMultistep(lower_order_final=lof), steps=9,
                           x_T=x_T, seed=0).samples.std(0).mean() / 0.02)
        for lof in (False, True)
    }
    # The exact flow maps x_T to mu + s x_T / sqrt(alpha_T^2 s^2 + sigma_T^2) (= s x_T to 1e-7); the
    # only error left is the first (DDIM) step's, 2e-5 here.
    exact = float(x_T.std(0).mean())
    assert abs(spread[False] - exact) < 1e-4, spread
    assert spread[True] < exact - 0.05, spread


def test_registered_with_the_log_snr_grid_and_float32():
    spec = solvers.SOLVERS["gaussian_2m"]
    target = sd.targets.sharp_8()
    sde = sd.VPSDE()
    assert spec.factory is GaussianMultistep and spec.order == 2.0 and spec.grid_for(sde) == "logsnr"
    r = solvers.sample(sde, target.score_fn(sde), (256, 2), solver="gaussian_2m", steps=20, seed=0)
    assert r.samples.dtype == torch.float32 and r.nfe == 21 and bool(torch.isfinite(r.samples).all())
