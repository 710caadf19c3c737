"""EDM Heun sampler (Karras et al. 2022, Alg. 1-2) on any affine SDE through x/alpha, sigma/alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde import metrics
from solvers.marginals import time_from_edm_sigma

F64 = torch.float64
MU = torch.tensor([[1.0, -0.5, 2.0]], dtype=F64)
STD = torch.tensor([[0.5, 0.3, 0.8]], dtype=F64)
GAUSS = sd.GaussianMixture(MU, STD)


def exact_flow(sde: sd.AffineSDE, x: torch.Tensor) -> torch.Tensor:
    """Exact PF-ODE map of the single Gaussian ``GAUSS`` from ``T`` to ``eps``."""
    t = torch.tensor([sde.T, sde.eps], dtype=F64)
    a, s = sde.marginal_coeffs(t)
    v = a[:, None] ** 2 * STD**2 + s[:, None] ** 2
    return a[1] * MU + torch.sqrt(v[1] / v[0]) * (x - a[0] * MU)


@pytest.mark.parametrize("grid", ["karras", "logsnr"])
@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["vp", "ve"])
def test_heun_is_second_order(sde, grid):
    x_T = GAUSS.sample_marginal(8, sde, sde.T, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref = exact_flow(sde, x_T)
    steps = (32, 64, 128)
    errs = []
    for n in steps:
        ts = solvers.grids.get_grid(grid)(sde, n)
        out = solvers.EDMHeun().solve(solvers.ProbabilityFlowODE(sde, GAUSS.score_fn(sde)), x_T.clone(), ts)
        errs.append(float((out.samples - ref).abs().max()))
    order = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    # Pre-asymptotic lag of the fitted slope (measured 2.03-2.1 at these step counts).
    assert order >= solvers.EDMHeun.order - 0.2, (order, errs)


class _SigmaTime:
    """A stand-in 'SDE' whose time is the EDM noise level itself: alpha = 1, sigma(t) = t."""

    T = 1e6
    eps = 0.0

    def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones_like(t), t


def test_vp_run_equals_karras_algorithm_in_sigma_space():
    # Karras' Alg. 1 written directly in (x_edm, sigma_edm) with the data-space denoiser
    # D(y; S) = E[x_0 | x_0 + S z], against EDMHeun on the VP SDE mapped by x/alpha.
    target = sd.targets.eight_gaussians()
    sde = sd.VPSDE()
    ts = solvers.grids.karras(sde, 12)
    alpha, sigma = sde.marginal_coeffs(ts)
    s_edm = (sigma / alpha).tolist()
    x_T = sde.prior_sample((64, 2), generator=torch.Generator().manual_seed(1), dtype=F64)
    ours = solvers.EDMHeun().solve(solvers.ProbabilityFlowODE(sde, target.score_fn(sde)), x_T.clone(), ts).samples

    stub = _SigmaTime()

    def denoise(y: torch.Tensor, s: float) -> torch.Tensor:
        return y + s**2 * target.marginal_score(y, torch.full((y.shape[0],), s, dtype=F64), stub)

    y = x_T / alpha[0]
    for s_i, s_next in zip(s_edm[:-1], s_edm[1:], strict=True):
        d = (y - denoise(y, s_i)) / s_i
        y_e = y + (s_next - s_i) * d
        d2 = (y_e - denoise(y_e, s_next)) / s_next
        y = y + (s_next - s_i) * 0.5 * (d + d2)
    # Same algorithm, two coordinate systems: agreement to float64 round-off (x 1/alpha(T)).
    torch.testing.assert_close(ours / alpha[-1], y, rtol=0, atol=1e-9)


def test_nfe_determinism_and_default_grid():
    sde = sd.VESDE()
    score = GAUSS.score_fn(sde)
    r1 = solvers.sample(sde, score, (4, 3), solver="edm_heun", steps=9, seed=0, dtype=F64, denoise=False)
    r2 = solvers.sample(sde, score, (4, 3), solver="edm_heun", steps=9, seed=0, dtype=F64, denoise=False)
    assert r1.nfe == 18  # two score evaluations per Heun step
    torch.testing.assert_close(r1.samples, r2.samples, rtol=0, atol=0)  # no churn: deterministic
    torch.testing.assert_close(r1.times, solvers.grids.karras(sde, 9))
    assert solvers.EDMHeun.default_grid == "karras" and solvers.EDMHeun.dynamics_kind == "ode"


def test_churn_keeps_the_exact_marginal_variance():
    # Churn adds noise then follows the ODE: the marginal of a Gaussian is preserved.
    sde = sd.VPSDE()
    mu, std = torch.tensor([[0.5, -1.0]], dtype=F64), torch.tensor([[0.6, 0.3]], dtype=F64)
    target = sd.GaussianMixture(mu, std)
    n = 20_000
    x_T = target.sample_marginal(n, sde, sde.T, generator=torch.Generator().manual_seed(2), dtype=F64)
    # gamma = S_churn/N = 20/121 (N: the 121 positive levels) on every step with sigma_edm in [0.05, 50].
    solver = solvers.EDMHeun(s_churn=20.0, s_tmin=0.05, s_tmax=50.0)
    out = solver.solve(
        solvers.ProbabilityFlowODE(sde, target.score_fn(sde)),
        x_T,
        solvers.grids.karras(sde, 120),
        generator=torch.Generator().manual_seed(3),
    ).samples
    a, s = sde.marginal_coeffs(torch.tensor([sde.eps], dtype=F64))
    var = a**2 * std**2 + s**2
    # Monte-Carlo std of a variance estimate: sqrt(2/n) = 1%; 4% is 4 MC std (measured bias
    # at 120 steps: < 1%; with maximal churn gamma = 0.41 at 60 steps it is 6%).
    torch.testing.assert_close(out.var(0, keepdim=True) / var, torch.ones_like(var), rtol=0, atol=0.04)
    torch.testing.assert_close(out.mean(0, keepdim=True), a * mu, rtol=0, atol=0.03)  # ~4 MC std


@pytest.mark.parametrize(
    ("tname", "sname"), [("eight_gaussians", "vp"), ("eight_gaussians", "ve"), ("high_dim_16", "vp")]
)
@pytest.mark.parametrize("churn", [0.0, 10.0])
def test_reaches_noise_floor(tname, sname, churn):
    target, sde = sd.targets.get_target(tname), sd.get_sde(sname)
    n = 3000
    ref_fn = lambda m, g: target.sample_marginal(m, sde, sde.eps, generator=g)  # noqa: E731
    sw = lambda a, b: metrics.sliced_wasserstein(a, b, n_projections=128)  # noqa: E731
    floor_mean, floor_std = metrics.noise_floor(sw, ref_fn, n, repeats=8)
    x_T = target.sample_marginal(n, sde, sde.T, generator=torch.Generator().manual_seed(11))
    # Churn up to the top of the schedule: the cap keeps every score query inside [eps, T].
    r = solvers.sample(sde, target.score_fn(sde), solver="edm_heun", steps=20, x_T=x_T, seed=4, s_churn=churn)
    value = sw(r.samples, ref_fn(n, torch.Generator().manual_seed(12)))
    # No systematic bias: within 3 standard deviations of the exact-vs-exact floor.
    assert value <= floor_mean + 3 * floor_std, (value, floor_mean, floor_std)


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE(), sd.CosineVPSDE()], ids=["vp", "ve", "cosine"])
def test_edm_sigma_inversion(sde):
    t = torch.tensor([sde.eps, 0.02, 0.5, sde.T], dtype=F64)
    alpha, sigma = sde.marginal_coeffs(t)
    torch.testing.assert_close(time_from_edm_sigma(sde, sigma / alpha), t, rtol=1e-10, atol=1e-12)


def test_bad_options():
    with pytest.raises(ValueError, match="s_churn"):
        solvers.EDMHeun(s_churn=-1.0)
    with pytest.raises(ValueError, match="s_tmin"):
        solvers.EDMHeun(s_tmin=2.0, s_tmax=1.0)
    with pytest.raises(TypeError, match="unknown option"):
        solvers.get_solver("edm_heun", churn=1.0)
    assert math.isinf(solvers.EDMHeun().s_tmax)
