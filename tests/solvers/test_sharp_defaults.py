"""Every solver's DEFAULT configuration samples the exact p_0 of a sharp mixture.

Target: 8 modes on a circle of radius 1.5 with std 0.03 (1/38 of the neighbour spacing),
sharper than the VP SDE's end point: at ``eps = 1e-3`` the noise std is 0.0105, which
blurs the within-mode spread to ``sqrt(1 + (0.0105/0.03)^2) = 1.059`` (+5.9%), and
Tweedie's denoiser there over-shrinks it to ``0.944`` (-5.6%). A default that returns
``p_eps`` or that over-denoises fails the spread check below.

Seed noise: for ``n`` exact samples in ``D = 2`` the spread ``sqrt(mean r^2 / D)`` has
standard deviation ``sqrt(1 / (2 n D)) = 0.0079`` at ``n = 4000``; tolerance 0.025 is
3.2 of those, and the blur / overshoot (0.056-0.059) is 7 of them. The mode weights are
judged by the total variation to the true weights; for exact samples its mean is about
``sum_k sqrt(w_k (1 - w_k) / n) / 2 * sqrt(2/pi) = 0.017``; bound 0.05.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.quality import mode_frequencies, within_mode_spread

N = 4000
SPREAD_TOL = 0.025  # 3.2 x the seed std sqrt(1/(2 N D)) = 0.0079 (module docstring)
TV_TOL = 0.05  # 3 x the mean TV of exact samples (0.017)

#: Moderate budgets: score evaluations per solver (fixed-grid solvers get NFE / per-step).
NFE = 200
SLOW_NFE = 1000  # first-order stochastic solvers: O(h) bias needs more steps

#: Solvers whose default is not expected to reach p_0 at <= 1000 NFE (documented + warned).
EXEMPT: dict[str, str] = {
    "annealed_langevin": "no reverse-SDE predictor: 3-5% too wide at 1000 NFE on VP, sub-VP, VE",
    "torchsde_reversible_heun": "auxiliary state weakly stable: 24-170x too wide at 1000 steps",
}


def _target() -> sd.GaussianMixture:
    return sd.targets.sharp_8(std=0.03)


#: Known open failures (reported, not yet fixed): (solver, SDE) -> what was measured.
OPEN: dict[tuple[str, str], str] = {}

#: Score evaluations per grid step where it is not 1.
PER_STEP = {"pc": 2, "dpm_solver_2": 2, "dpm_solver_3": 3, "edm_heun": 2, "ode_heun": 2, "ode_rk4": 4,
            "torchsde_srk": 2, "torchsde_midpoint": 2}


def _steps(name: str, sde: object) -> int:
    # 200 NFE where the default grid is graded towards t = 0 (log-SNR / Karras, or log-SNR below
    # sigma_min under VE) or the solver is adaptive; 1000 (the budget) for the generic
    # solvers on uniform grids,
    # for stochastic ones, and for explicit Euler in t (order 1 without the exponential
    # integrators' exact linear part: +3.3% spread at 200 NFE on the log-SNR grid).
    spec = solvers.get_solver(name)
    graded = spec.adaptive or spec.grid_for(sde) in ("logsnr", "karras", "uniform_or_logsnr")
    nfe = NFE if graded and not spec.stochastic and name != "ode_euler" else SLOW_NFE
    return max(2, nfe // PER_STEP.get(name, 1))


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("name", [n for n in solvers.available() if n not in EXEMPT])
def test_default_samples_p0(name: str, sde_name: str) -> None:
    if (name, sde_name) in OPEN:
        pytest.skip(OPEN[(name, sde_name)])
    mix = _target()
    sde = sd.get_sde(sde_name)
    r = solvers.sample(sde, mix.score_fn(sde), shape=(N, 2), solver=name, steps=_steps(name, sde), seed=0)
    x = r.samples.to(torch.float64)
    assert torch.isfinite(x).all()
    spread = within_mode_spread(x, mix)
    tv = 0.5 * float((mode_frequencies(x, mix) - mix.weights).abs().sum())
    assert abs(spread - 1.0) < SPREAD_TOL, f"{name} on {sde_name}: spread {spread:.4f} (NFE {r.nfe})"
    assert tv < TV_TOL, f"{name} on {sde_name}: mode-weight TV {tv:.4f}"


def test_blur_and_overshoot_are_detected() -> None:
    # The check above must be able to fail: exact p_eps samples and their Tweedie
    # denoising both sit outside the tolerance (the module docstring's 5.9% / 5.6%).
    mix = _target()
    sde = sd.get_sde("vp")
    x = mix.sample_marginal(N, sde, sde.eps, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = float(sde.marginal_coeffs(torch.tensor([sde.eps], dtype=torch.float64))[0][0])
    assert within_mode_spread(x / a, mix) - 1.0 > SPREAD_TOL
    dyn = solvers.ProbabilityFlowODE(sde, mix.score_fn(sde))
    x0 = dyn.x0_pred(x, torch.full((N,), sde.eps, dtype=torch.float64))
    assert 1.0 - within_mode_spread(x0, mix) > SPREAD_TOL
    assert math.sqrt(1 / (2 * N * 2)) * 3 < SPREAD_TOL


def test_exempt_solvers_warn() -> None:
    mix = _target()
    sde = sd.get_sde("vp")
    for name in EXEMPT:
        with pytest.warns(UserWarning, match="p_0"):
            solvers.sample(sde, mix.score_fn(sde), shape=(16, 2), solver=name, steps=20, seed=0)


#: Deterministic solvers of order >= 2: their default budget above (200 NFE on graded grids, 1000
#: on uniform ones) must resolve modes far narrower than the VP end point's noise (std 0.005
#: against sigma(eps)/alpha(eps) = 0.0105).
HIGHER_ORDER_ODE = ["dpm_solver_2", "dpm_solver_3", "dpmpp_2m", "dpmpp_3m", "unipc", "gaussian_2m", "lms",
                    "edm_heun", "ode_heun", "ode_rk4", "ode_rk45"]


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("name", HIGHER_ORDER_ODE)
def test_default_resolves_very_sharp_modes(name: str, sde_name: str) -> None:
    # 8 modes of std 0.005 (1/230 of the spacing). With the uniform grid in t under VP,
    # ode_rk4 / ode_heun crossed the last stretch (sigma/alpha from ~3 mode stds down to
    # 0.0105) in one or two steps and returned a spread of 0.26 / 0.22 at 200 NFE and 0.98 /
    # 0.93 at 1000; their default grid is now log-SNR on VP (docs/defaults.md).
    mix = sd.targets.sharp_8(std=0.005)
    sde = sd.get_sde(sde_name)
    r = solvers.sample(sde, mix.score_fn(sde), shape=(N, 2), solver=name, steps=_steps(name, sde), seed=0,
                       dtype=torch.float64)
    spread = within_mode_spread(r.samples, mix)
    assert abs(spread - 1.0) < SPREAD_TOL, f"{name} on {sde_name}: spread {spread:.4f} (NFE {r.nfe})"
