"""The default end-of-run step (``denoise="ode"``, `solvers.end`): a local Gaussian followed to sigma = 0.

Closed forms: for data ``N(mu, s^2 I)`` the probability-flow ODE maps ``y = x/alpha`` at noise
level ``S = sigma/alpha`` to ``mu + (y - mu) s/sqrt(s^2 + S^2)`` at ``S = 0``. The step fits ``s^2``
from the run's previous score evaluation and this one, so it must reproduce that map to
round-off whatever the previous evaluation was (another time, another state), and fall back
to the trapezoid ``(y + D)/2`` when there is nothing to fit.
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.quality import within_mode_spread
from solvers.end import final_step
from solvers.marginals import edm_sigma

F64 = torch.float64
SDES = [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(), sd.CosineVPSDE()]
MU = torch.tensor([0.3, -0.2, 0.1], dtype=F64)


def _setup(sde, std, n=32, seed=0):
    target = sd.GaussianMixture(MU[None], std)
    dyn = solvers.ProbabilityFlowODE(sde, target.score_fn(sde))
    g = torch.Generator().manual_seed(seed)
    x = target.sample_marginal(n, sde, sde.eps, generator=g, dtype=F64)
    return target, dyn, x, g


def _exact_end(sde, x, std):
    t = torch.tensor([sde.eps], dtype=F64)
    alpha, _ = sde.marginal_coeffs(t)
    s_end = float(edm_sigma(sde, t)[0])
    return MU + (x / alpha - MU) * std / (std**2 + s_end**2) ** 0.5


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp", "ve", "cosine"])
@pytest.mark.parametrize("std", [0.005, 0.05, 1.0])
def test_exact_on_a_gaussian_after_any_previous_evaluation(sde, std):
    target, dyn, x, g = _setup(sde, std)
    # The previous evaluation: other states at a later time (as after a grid step).
    t_prev = 3 * sde.eps + 0.01
    x_prev = target.sample_marginal(x.shape[0], sde, t_prev, generator=g, dtype=F64)
    dyn.score(x_prev, torch.full((x.shape[0],), t_prev, dtype=F64))
    out = final_step(dyn, x, sde.eps, "ode")
    torch.testing.assert_close(out, _exact_end(sde, x, std), rtol=0, atol=1e-9)
    assert dyn.nfe == 2  # the end step itself is one evaluation


@pytest.mark.parametrize("case", ["none", "same point", "other shape"])
def test_trapezoid_when_there_is_nothing_to_fit(case):
    sde = sd.VPSDE()
    _, dyn, x, _ = _setup(sde, 0.05)
    t = torch.full((x.shape[0],), sde.eps, dtype=F64)
    if case == "same point":
        dyn.score(x, t)
    elif case == "other shape":
        dyn.score(x[:5], t[:5])
    out = final_step(dyn, x, sde.eps, "ode")
    alpha = float(sde.marginal_coeffs(t[:1])[0][0])
    trapezoid = 0.5 * (x / alpha + dyn.x0_pred(x, t))
    torch.testing.assert_close(out, trapezoid, rtol=0, atol=1e-12)


def test_a_meaningless_previous_evaluation_lands_between_tweedie_and_the_trapezoid():
    # The fitted coefficient s S^2 / (g + s) lies in [0, S^2 / 2] for any s^2 >= 0, so a
    # previous evaluation from another mixture (or the prior) cannot push a sample outside.
    sde = sd.VPSDE()
    target = sd.targets.sharp_8()
    dyn = solvers.ProbabilityFlowODE(sde, target.score_fn(sde))
    g = torch.Generator().manual_seed(4)
    x = target.sample_marginal(256, sde, sde.eps, generator=g, dtype=F64)
    dyn.score(torch.randn(256, 2, generator=g, dtype=F64) * 3, torch.full((256,), 0.3, dtype=F64))
    out = final_step(dyn, x, sde.eps, "ode")
    t = torch.full((256,), sde.eps, dtype=F64)
    d = dyn.x0_pred(x, t)
    trapezoid = 0.5 * (x / float(sde.marginal_coeffs(t[:1])[0][0]) + d)
    # out = d + w (trapezoid - d) with w in [0, 1], per sample.
    w = ((out - d) * (trapezoid - d)).sum(1) / ((trapezoid - d) ** 2).sum(1)
    torch.testing.assert_close(out, d + w[:, None] * (trapezoid - d), rtol=0, atol=1e-12)
    assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0 + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpmpp_2m", "gaussian_2m", "lms", "edm_heun", "ode_rk4", "ode_rk45", "euler_maruyama"])
def test_modes_narrower_than_the_last_noise_level(name):
    # VP ends at S = 0.0105; modes of std 0.005 (1/230 of the spacing). The state at eps is
    # 2.3x too wide; the trapezoid would leave the modes 37% too wide.
    sde = sd.VPSDE()
    target = sd.targets.sharp_8(std=0.005)
    # Uniform-in-t grids (ode_rk4) and first-order SDE solvers need 1000 steps to resolve
    # the last stretch where S falls from 3 s to 2 s; the others converge at 100.
    steps = 1000 if name in ("euler_maruyama", "ode_rk4") else 100
    r = solvers.sample(sde, target.score_fn(sde), (4000, 2), solver=name, steps=steps, seed=0, dtype=F64)
    # Seed noise of the spread at n = 4000 in 2-D: sqrt(1/(2 n D)) = 0.008.
    assert abs(within_mode_spread(r.samples, target) - 1.0) < 0.025, name
    at_eps = solvers.sample(sde, target.score_fn(sde), (4000, 2), solver=name, steps=steps, seed=0, dtype=F64,
                            denoise="none").samples
    t = torch.full((4000,), sde.eps, dtype=F64)
    dyn = solvers.ProbabilityFlowODE(sde, target.score_fn(sde))
    alpha = float(sde.marginal_coeffs(t[:1])[0][0])
    trapezoid = 0.5 * (at_eps / alpha + dyn.x0_pred(at_eps, t))
    assert within_mode_spread(trapezoid, target) > 1.3


def test_previous_evaluation_is_kept_per_sample():
    # Samples on their own clocks (per-sample adaptive steps): the newest evaluation of each
    # sample at another time than the query, even when other samples moved since.
    calls = []

    def score(x, t):
        calls.append(t.clone())
        return -x

    counted = solvers.CountedScore(score)
    counted.track_per_sample = True  # what AdaptiveSDE sets (per-sample steps)
    x = [torch.full((2, 1), float(k), dtype=F64) for k in range(3)]
    counted(x[0], torch.tensor([0.5, 0.5], dtype=F64))
    counted(x[1], torch.tensor([0.3, 0.5], dtype=F64))  # sample 1 re-evaluated at the same time
    counted(x[2], torch.tensor([0.3, 0.3], dtype=F64))
    xp, tp, sp, valid = counted.previous_other_time(x[2], 0.3)
    assert valid.all()
    torch.testing.assert_close(tp, torch.tensor([0.5, 0.5], dtype=F64))
    torch.testing.assert_close(xp[:, 0], torch.tensor([0.0, 1.0], dtype=F64))  # sample 1: its newest at 0.5
    torch.testing.assert_close(sp, -xp)
    # Queried at another time, the newest evaluation itself is the answer.
    xq, tq, _, ok = counted.previous_other_time(x[2], 0.1)
    assert ok.all() and torch.equal(xq, x[2]) and bool((tq == 0.3).all())
    # A sample never evaluated at another time is flagged, and another batch shape gives None.
    fresh = solvers.CountedScore(score)
    fresh.track_per_sample = True
    fresh(x[0], torch.tensor([0.3, 0.3], dtype=F64))
    assert not fresh.previous_other_time(x[0], 0.3)[3].any()
    assert fresh.previous_other_time(torch.zeros(3, 1, dtype=F64), 0.3) is None
    # Untracked (whole-batch solvers): the newest recent evaluation whose times all differ.
    shared = solvers.CountedScore(score)
    for k, tk in enumerate(([0.5, 0.5], [0.3, 0.5], [0.3, 0.3])):
        shared(x[k], torch.tensor(tk, dtype=F64))
    xs, ts, _, ok = shared.previous_other_time(x[2], 0.3)
    assert ok.all() and torch.equal(xs, x[0]) and bool((ts == 0.5).all())


@pytest.mark.slow
def test_end_step_after_per_sample_adaptive_steps_on_very_sharp_modes():
    # adaptive_sde moves every sample on its own clock; samples that land early are evaluated
    # again at eps while the rest move on. The end step used the newest evaluation at another
    # time shared by the whole batch, which for early finishers lay far back in their
    # trajectory: on 8 modes of std 0.005 under VP the spread came out 1.24-1.35. Per sample:
    # 0.98 (measured; the state at eps is ~2% narrow, docs/defaults.md).
    sde = sd.VPSDE()
    mix = sd.targets.sharp_8(std=0.005)
    r = solvers.sample(sde, mix.score_fn(sde), shape=(4000, 2), solver="adaptive_sde", seed=0, dtype=F64)
    assert abs(within_mode_spread(r.samples, mix) - 1) < 0.04


@pytest.mark.parametrize("sde", SDES, ids=["vp", "subvp", "ve", "cosine"])
@pytest.mark.parametrize("std", [0.005, 0.05, 1.0])
def test_probe_is_exact_on_an_isotropic_gaussian(sde, std):
    # pair="probe" fits s^2 to one more evaluation at S' = 1.1 S instead of the history: on a
    # Gaussian mode D = mu + s^2 u holds at any state and level, so the map is again exact.
    # For s >> S the probe barely changes u (by ~0.1 S^2/s^2 relative, below `informative`)
    # and the trapezoid is used, exact up to (S^2/s^2)^2/8 of |y - mu| (1.5e-9 at s = 1 on VP).
    _, dyn, x, _ = _setup(sde, std)
    out = final_step(dyn, x, sde.eps, "ode", pair="probe")
    t = torch.tensor([sde.eps], dtype=F64)
    r = float(edm_sigma(sde, t)[0]) ** 2 / std**2
    y = x / sde.marginal_coeffs(t)[0]
    trapezoid_bound = 1.2 * r**2 / 8 * float((y - MU).abs().max()) if r < 1e-3 else 0.0
    torch.testing.assert_close(out, _exact_end(sde, x, std), rtol=0, atol=1e-9 + trapezoid_bound)
    assert dyn.nfe == 2  # the evaluation at eps and the probe


def _anisotropic(n=4000, seed=0):
    # One mode in 16-D with stds log-spaced from 0.003 to 0.2: VP ends at S = 0.0105, so the
    # narrowest directions are far below S and the widest far above.
    std = torch.logspace(-2.5, -0.7, 16, dtype=F64)
    target = sd.GaussianMixture(torch.zeros(1, 16, dtype=F64), std[None])
    sde = sd.VPSDE()
    g = torch.Generator().manual_seed(seed)
    return std, target, sde, target.sample_marginal(n, sde, sde.eps, generator=g, dtype=F64), g


def _log_std_error(out, std):
    """RMS over directions of ln(sample std / exact std)."""
    return float((out.std(0) / std).log().pow(2).mean().sqrt())


def test_probe_fits_the_narrow_directions_after_a_noisy_step():
    # After a step that drew noise the previous evaluation differs from this one mostly by the
    # noise, in every direction, and the fitted s^2 is a mean variance: the narrow directions
    # come out too wide. The probe differs along (C + S^2)^{-1} u and weighs them.
    std, target, sde, x, g = _anisotropic()
    dyn = solvers.ReverseSDE(sde, target.score_fn(sde))
    t_prev = 1.5 * sde.eps + 1e-4
    noisy_prev = target.sample_marginal(x.shape[0], sde, t_prev, generator=g, dtype=F64)
    dyn.score(noisy_prev, torch.full((x.shape[0],), t_prev, dtype=F64))
    history = final_step(dyn, x, sde.eps, "ode", pair="history")
    probe = final_step(dyn, x, sde.eps, "ode", pair="probe")
    # Measured: 0.116 (history) and 0.075 (probe); the state at eps itself is 0.55 off.
    assert _log_std_error(x / float(sde.marginal_coeffs(torch.tensor([sde.eps]))[0][0]), std) > 0.4
    assert _log_std_error(probe, std) < 0.7 * _log_std_error(history, std)
    assert _log_std_error(probe, std) < 0.09


def test_the_pair_follows_whether_the_run_drew_noise_and_how_long_its_last_step_was():
    sde = sd.VPSDE()
    target = sd.targets.sharp_8()
    score = target.score_fn(sde)

    def run(name, steps, **kw):
        r = solvers.sample(sde, score, shape=(64, 2), solver=name, steps=steps, seed=0, **kw)
        return r.nfe, r.stats["end_pair"]

    # 100 log-SNR steps: the last spans 0.07 S, far under NOISY_STEP * S; its noise dominates.
    assert run("euler_maruyama", 100) == (102, "probe")
    assert run("sde_dpmpp_2m", 100) == (102, "probe")
    assert run("ddim", 100, eta=1.0) == (102, "probe")
    # 10 steps: the last spans about 1.9 S (mostly the deterministic change): the history.
    assert run("euler_maruyama", 10) == (11, "history")
    assert run("ddim", 100) == (101, "history")  # eta = 0: deterministic
    assert run("dpmpp_2m", 100) == (101, "history")
    assert run("euler_maruyama", 100, denoise="tweedie") == (101, None)
    assert run("euler_maruyama", 100, denoise="none") == (100, None)
    with pytest.raises(ValueError, match="pair"):
        final_step(solvers.ReverseSDE(sde, score), torch.zeros(4, 2), sde.eps, "ode", pair="other")  # type: ignore[arg-type]


def test_noisy_pair_is_chosen_per_sample():
    # Samples whose previous evaluation is far in S keep it; the others take the probe.
    std, target, sde, x, g = _anisotropic(n=8)
    near, far = 1.2 * sde.eps, 0.05
    t_prev = torch.tensor([near, far] * 4, dtype=F64)
    x_prev = torch.stack([target.sample_marginal(1, sde, float(tp), generator=g, dtype=F64)[0] for tp in t_prev])

    def end(pair, info=None):
        dyn = solvers.ReverseSDE(sde, target.score_fn(sde))
        dyn.score.track_per_sample = True  # per-sample record, as AdaptiveSDE keeps it
        dyn.score(x_prev, t_prev)
        return final_step(dyn, x, sde.eps, "ode", pair=pair, info=info), dyn.nfe

    info: dict = {}
    out, nfe = end("noisy", info)
    assert info["pair"] == "mixed" and nfe == 3  # the record, the evaluation at eps, the probe
    torch.testing.assert_close(out[0::2], end("probe")[0][0::2], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[1::2], end("history")[0][1::2], rtol=0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name,steps", [("euler_maruyama", 1000), ("sde_dpmpp_2m", 200), ("ancestral", 200)])
def test_stochastic_samplers_reach_the_deterministic_level_on_an_anisotropic_mode(name, steps):
    # With the history pair these ended 3-5% wide on average over directions (EM 1000 steps:
    # 1.046, RMS log error 0.114); dpmpp_2m at 200 steps reaches 1.016 (0.070), the limit of
    # one fitted variance per sample on a mode whose stds span S/3.5 to 20 S.
    std, target, sde, _, _ = _anisotropic()
    r = solvers.sample(sde, target.score_fn(sde), shape=(4000, 16), solver=name, steps=steps, seed=0, dtype=F64)
    assert r.stats["end_pair"] == "probe"
    rel = r.samples.std(0) / std
    assert abs(float(rel.mean()) - 1) < 0.03
    assert _log_std_error(r.samples, std) < 0.09
