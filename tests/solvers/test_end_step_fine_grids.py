"""The end-of-run step after a short last step (fine grids), in float64 and float32.

Closed form as in ``test_end_step_fit``: for data ``N(mu, s^2 I)`` the probability-flow ODE maps
``y = x/alpha`` at noise level ``S`` to ``mu + (y - mu) s/sqrt(s^2 + S^2)`` at ``S = 0``, and
``y' = mu + (y - mu) sqrt(s^2 + S'^2)/sqrt(s^2 + S^2)`` at ``S'``. A fine grid's last step
changes ``u = (y - D)/S^2`` by a small fraction of itself. Two things made the fit fall back to
the trapezoid there: ``u`` was formed as ``(y - D)/S^2``, which loses ``|y|/|y - D|`` of the
precision to cancellation, and the bar on ``|du|`` was float32's in every dtype. ``ode_rk4`` at
3000 steps on a mode of std 0.05 under VP came out 3.7e-5 from the exact map in float64
(1e-13 with the fit).
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.end import final_step
from solvers.marginals import edm_sigma, time_from_edm_sigma

F64 = torch.float64
MU = torch.tensor([0.3, -0.2, 0.1], dtype=F64)
SDES = [sd.VPSDE(), sd.CosineVPSDE(), sd.SubVPSDE(), sd.VESDE()]


def _maps(sde, std, ratio, dtype, n=32):
    """States at ``eps`` and on the same trajectories at ``S' = ratio S``, and the exact end."""
    target = sd.GaussianMixture(MU[None], std)
    g = torch.Generator().manual_seed(0)
    x = target.sample_marginal(n, sde, sde.eps, generator=g, dtype=F64)
    t = torch.tensor([sde.eps], dtype=F64)
    s_end, alpha = float(edm_sigma(sde, t)[0]), sde.marginal_coeffs(t)[0]
    t_prev = float(time_from_edm_sigma(sde, [ratio * s_end])[0])
    a_p, sig_p = sde.marginal_coeffs(torch.tensor([t_prev], dtype=F64))
    y = x / alpha
    y_prev = MU + (y - MU) * ((std**2 + float(sig_p / a_p) ** 2) / (std**2 + s_end**2)) ** 0.5
    exact = MU + (y - MU) * std / (std**2 + s_end**2) ** 0.5
    return target, x.to(dtype), (y_prev * a_p).to(dtype), t_prev, exact


@pytest.mark.parametrize("sde", SDES, ids=["vp", "cosine", "subvp", "ve"])
@pytest.mark.parametrize("std", [0.005, 0.05, 1.0])
@pytest.mark.parametrize("ratio", [1.003, 1.0003])
def test_float64_fit_after_a_short_last_step_is_exact(sde, std, ratio):
    # Last steps of 0.3% and 0.03% in S: log-SNR grids of about 3,000 and 30,000 steps.
    target, x, x_prev, t_prev, exact = _maps(sde, std, ratio, F64)
    dyn = solvers.ProbabilityFlowODE(sde, target.score_fn(sde))
    dyn.score(x_prev, torch.full((x.shape[0],), t_prev, dtype=F64))
    out = final_step(dyn, x, sde.eps, "ode")
    torch.testing.assert_close(out, exact, rtol=0, atol=1e-11)


@pytest.mark.parametrize("std", [0.05, 1.0])
def test_float32_fit_after_a_short_last_step(std):
    # A 3% step: informative in float32. With u formed by subtraction its rounding (1e-4 of
    # |u| on the wide mode) entered the fit; the error was 30-60x float32's resolution of y.
    sde = sd.VPSDE()
    target, x, x_prev, t_prev, exact = _maps(sde, std, 1.03, torch.float32)
    dyn = solvers.ProbabilityFlowODE(sde, target.score_fn(sde))
    dyn.score(x_prev, torch.full((x.shape[0],), t_prev, dtype=torch.float32))
    out = final_step(dyn, x, sde.eps, "ode").to(F64)
    assert float((out - exact).abs().max()) < 8 * torch.finfo(torch.float32).eps


@pytest.mark.slow
def test_ode_rk4_on_a_fine_grid_reaches_the_exact_end_in_float64():
    sde = sd.VPSDE()
    target = sd.GaussianMixture(MU[None], 0.05)
    g = torch.Generator().manual_seed(1)
    x_T = target.sample_marginal(8, sde, sde.T, generator=g, dtype=F64)
    t_T = torch.tensor([sde.T], dtype=F64)
    s_T = float(edm_sigma(sde, t_T)[0])
    exact = MU + (x_T / sde.marginal_coeffs(t_T)[0] - MU) * 0.05 / (0.05**2 + s_T**2) ** 0.5
    r = solvers.sample(sde, target.score_fn(sde), solver="ode_rk4", steps=3000, x_T=x_T, dtype=F64)
    torch.testing.assert_close(r.samples, exact, rtol=0, atol=1e-10)
