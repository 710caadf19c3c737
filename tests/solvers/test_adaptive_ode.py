"""Adaptive embedded Runge–Kutta (dopri5, bosh3): orders, tolerances, NFE accounting, PF-ODE flows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import solvers
from scoresde.sde import VESDE, VPSDE
from solvers.adaptive_ode import BOSH3, DOPRI5, AdaptiveODE, solve_adaptive
from solvers.step_control import (
    ConstantStepSize,
    MaxStepsExceeded,
    PIDController,
    check_tolerances,
)

F64 = torch.float64

# A damped rotation y' = A y with exact solution y(t) = exp(A t) y0 (rows are samples).
A_MAT = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=F64)
Y0 = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, 0.3]], dtype=F64)


def linear_field(t: float, y: torch.Tensor) -> torch.Tensor:
    return y @ A_MAT.T


def linear_exact(t: float, y0: torch.Tensor = Y0) -> torch.Tensor:
    return y0 @ torch.linalg.matrix_exp(A_MAT * t).T


class Counter:
    """Counts calls of a vector field."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.fn(t, y)


@pytest.mark.parametrize("tab", [DOPRI5, BOSH3], ids=lambda t: t.name)
def test_fixed_step_order(tab):
    # Global error of n constant steps on [0, 2]; slope of log err vs log h = declared order.
    ns = [8, 16, 32]
    errs = []
    for n in ns:
        y, info = solve_adaptive(
            linear_field, Y0, 0.0, 2.0, method=tab, first_step=2.0 / n, controller=ConstantStepSize()
        )
        assert info["accepted"] == n and info["rejected"] == 0
        errs.append(float((y - linear_exact(2.0)).abs().max()))
    slopes = np.diff(np.log(errs)) / np.diff(np.log([2.0 / n for n in ns]))
    # Pre-asymptotic drift of the slope at these step sizes is < 0.35 (measured 5.3/5.1, 3.3/3.1).
    assert slopes[-1] == pytest.approx(tab.order, abs=0.35), slopes


def test_tableau_consistency():
    # Row sums of a equal c, weights sum to 1, error weights sum to 0 (both pairs consistent).
    for tab in (DOPRI5, BOSH3):
        for ci, row in zip(tab.c, tab.a, strict=True):
            assert sum(row) == pytest.approx(ci, abs=1e-14)  # exact fractions in float64
        assert sum(tab.b) == pytest.approx(1.0, abs=1e-14)
        assert sum(tab.e) == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_tighter_tolerance_smaller_error_more_nfe(method):
    errs, nfes = [], []
    for tol in (1e-4, 1e-6, 1e-8):
        y, info = solve_adaptive(linear_field, Y0, 0.0, 3.0, method=method, rtol=tol, atol=tol)
        err = float((y - linear_exact(3.0)).abs().max())
        errs.append(err)
        nfes.append(info["nfe"])
        # Global error stays within a modest multiple of the local tolerance (measured <= 11x).
        assert err < 30 * tol, (tol, err)
    assert errs[0] > errs[1] > errs[2]
    assert nfes[0] < nfes[1] < nfes[2]


def test_matches_scipy_rk45_nonlinear():
    # Lotka–Volterra, a nonlinear 2-D system, on a batch of 3 initial conditions.
    def lv(t, y):
        return torch.stack([1.1 * y[..., 0] - 0.4 * y[..., 0] * y[..., 1],
                            0.1 * y[..., 0] * y[..., 1] - 0.4 * y[..., 1]], dim=-1)

    y0 = torch.tensor([[10.0, 5.0], [4.0, 2.0], [1.0, 1.0]], dtype=F64)
    y, info = solve_adaptive(lv, y0, 0.0, 8.0, rtol=1e-10, atol=1e-10)
    ref = solve_ivp(
        lambda t, z: lv(t, torch.from_numpy(z).reshape(3, 2)).reshape(-1).numpy(),
        (0.0, 8.0), y0.reshape(-1).numpy(), method="RK45", rtol=1e-12, atol=1e-12,
    ).y[:, -1].reshape(3, 2)
    # Both at tolerances <= 1e-10 on O(10) states: agreement to 1e-7 leaves 1000x margin.
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-7, atol=1e-7)
    assert info["accepted"] > 10


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_both_time_directions(method):
    y1, f_info = solve_adaptive(linear_field, Y0, 0.0, 2.0, method=method, rtol=1e-9, atol=1e-9)
    y0, b_info = solve_adaptive(linear_field, y1, 2.0, 0.0, method=method, rtol=1e-9, atol=1e-9)
    # Two solves at tol 1e-9 with growth exp(1) backwards: round trip within 1e-7.
    assert float((y0 - Y0).abs().max()) < 1e-7
    tf, tb = f_info["t"], b_info["t"]
    assert tf[0] == 0.0 and tf[-1] == 2.0 and bool((tf.diff() > 0).all())
    assert tb[0] == 2.0 and tb[-1] == 0.0 and bool((tb.diff() < 0).all())
    assert bool((b_info["h"] < 0).all())


@pytest.mark.parametrize("method,per_step", [("dopri5", 6), ("bosh3", 3)])
def test_nfe_accounting(method, per_step):
    # A deliberately huge first step forces rejections.
    fn = Counter(linear_field)
    _, info = solve_adaptive(fn, Y0, 0.0, 3.0, method=method, rtol=1e-6, atol=1e-6, first_step=3.0)
    attempts = info["accepted"] + info["rejected"]
    assert info["rejected"] >= 1
    # f(t0, y0), then (stages - 1) new evaluations per attempt thanks to FSAL.
    assert fn.calls == info["nfe"] == 1 + per_step * attempts
    fn = Counter(linear_field)
    _, info = solve_adaptive(fn, Y0, 0.0, 3.0, method=method, rtol=1e-6, atol=1e-6)
    # Hairer–Wanner initial step selection costs exactly one more evaluation.
    assert fn.calls == info["nfe"] == 2 + per_step * (info["accepted"] + info["rejected"])
    assert len(info["t"]) == info["accepted"] + 1


def test_per_sample_control_protects_the_hard_sample():
    # 63 samples decay slowly, one oscillates fast: the batch RMS dilutes the hard sample's error.
    rates = torch.ones(64, 1, dtype=F64) * 0.1
    rates[0] = 20.0

    def fn(t, y):
        return torch.cat([-0.1 * y[:, :1], rates * y[:, 2:3], -rates * y[:, 1:2]], dim=1)

    y0 = torch.tensor([1.0, 1.0, 0.0], dtype=F64).repeat(64, 1)
    exact0 = torch.tensor([math.exp(-0.3), math.cos(60.0), -math.sin(60.0)], dtype=F64)
    errs, nfes = {}, {}
    for per_sample in (False, True):
        y, info = solve_adaptive(fn, y0, 0.0, 3.0, rtol=1e-5, atol=1e-5, per_sample=per_sample)
        errs[per_sample] = float((y[0] - exact0).abs().max())
        nfes[per_sample] = info["nfe"]
    assert nfes[True] > nfes[False]
    # Per-sample control brings the hard sample's error down by at least 3x (measured ~8x).
    assert errs[True] < errs[False] / 3


def _hard_sample_batch() -> tuple:
    rates = torch.ones(64, 1, dtype=F64) * 0.1
    rates[0] = 20.0

    def fn(t, y):
        return torch.cat([-0.1 * y[:, :1], rates * y[:, 2:3], -rates * y[:, 1:2]], dim=1)

    return fn, torch.tensor([1.0, 1.0, 0.0], dtype=F64).repeat(64, 1)


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_sample_errors_say_which_sample_took_the_batch_norms_slack(method):
    # Under the batch RMS every accepted step has mean_i e_i^2 <= 1, so the path RMS of the
    # samples satisfies mean_i rms_i^2 <= 1, while the hard sample alone may reach sqrt(64) = 8;
    # under the per-sample norm every e_i <= 1 on every accepted step, so every rms_i <= 1.
    fn, y0 = _hard_sample_batch()
    y_plain, info_plain = solve_adaptive(fn, y0, 0.0, 3.0, method=method)
    y, info = solve_adaptive(fn, y0, 0.0, 3.0, method=method, sample_errors=True)
    torch.testing.assert_close(y, y_plain, rtol=0, atol=0)  # measuring changes nothing
    assert info["nfe"] == info_plain["nfe"] and "sample_error_rms" not in info_plain
    rms = info["sample_error_rms"]
    assert rms.shape == (64,) and float(rms.pow(2).mean()) <= 1.0 + 1e-12
    assert float(rms[0]) > 2.0 > float(rms[1:].max())
    # The largest step error: between the path RMS and sqrt(B) = 8 (each step's mean square <= 1).
    peak = info["sample_error_max"]
    assert bool((peak >= rms - 1e-12).all()) and float(peak.max()) <= 8.0 + 1e-12
    assert float(peak[0]) > 4.0 > float(peak[1:].max())
    _, info_ps = solve_adaptive(fn, y0, 0.0, 3.0, method=method, per_sample=True, sample_errors=True)
    assert float(info_ps["sample_error_rms"].max()) <= 1.0 + 1e-12
    assert float(info_ps["sample_error_max"].max()) <= 1.0 + 1e-12


def test_sample_errors_need_a_batch():
    with pytest.raises(ValueError, match="sample_errors needs y0 of shape"):
        solve_adaptive(lambda t, y: -y, torch.tensor(1.0, dtype=F64), 0.0, 1.0, sample_errors=True)
    y0 = torch.ones(3, 2, dtype=F64)
    _, info = solve_adaptive(lambda t, y: -y, y0, 0.5, 0.5, sample_errors=True)
    assert torch.equal(info["sample_error_rms"], torch.zeros(3, dtype=F64))
    assert torch.equal(info["sample_error_max"], torch.zeros(3, dtype=F64))


def test_pid_controller_coefficients():
    # A PI controller (Gustafsson-like) reaches the same accuracy as the default.
    y, info = solve_adaptive(
        linear_field, Y0, 0.0, 3.0, rtol=1e-7, atol=1e-7,
        controller=PIDController(pcoeff=0.4, icoeff=0.3),
    )
    assert float((y - linear_exact(3.0)).abs().max()) < 30 * 1e-7  # as in the tolerance test


def test_callback_replacement_re_evaluates():
    seen = []

    def cb(t, y):
        seen.append(t)
        return y * 1.0  # a new tensor: the state is replaced, so f is re-evaluated

    fn = Counter(linear_field)
    _, info = solve_adaptive(fn, Y0, 0.0, 1.0, first_step=0.1, callback=cb)
    attempts = info["accepted"] + info["rejected"]
    # One extra evaluation per accepted step except the last (its f is never needed).
    assert fn.calls == info["nfe"] == 1 + 6 * attempts + info["accepted"] - 1
    assert seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) == info["accepted"] + 1


# --- errors ----------------------------------------------------------------------------------
def test_max_steps_exceeded():
    with pytest.raises(MaxStepsExceeded, match="max_steps=5"):
        solve_adaptive(linear_field, Y0, 0.0, 3.0, rtol=1e-10, atol=1e-10, max_steps=5)


@pytest.mark.parametrize("rtol,atol", [(-1e-3, 1e-3), (0.0, 0.0), (1e-3, float("nan")), (1.5, 1e-3)])
def test_bad_tolerances(rtol, atol):
    with pytest.raises(ValueError):
        check_tolerances(rtol, atol)
    with pytest.raises(ValueError):
        solve_adaptive(linear_field, Y0, 0.0, 1.0, rtol=rtol, atol=atol)
    with pytest.raises(ValueError):
        AdaptiveODE(rtol=rtol, atol=atol)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="unknown method"):
        solve_adaptive(linear_field, Y0, 0.0, 1.0, method="rk45")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="first_step"):
        solve_adaptive(linear_field, Y0, 0.0, 1.0, controller=ConstantStepSize())
    with pytest.raises(ValueError, match="max_steps"):
        solve_adaptive(linear_field, Y0, 0.0, 1.0, max_steps=0)
    with pytest.raises(ValueError, match="per_sample"):
        solve_adaptive(lambda t, y: -y, torch.tensor(1.0, dtype=F64), 0.0, 1.0, per_sample=True)
    with pytest.raises(ValueError, match="factor_min"):
        PIDController(factor_min=2.0)
    y, info = solve_adaptive(linear_field, Y0, 1.0, 1.0)
    assert torch.equal(y, Y0) and info["nfe"] == 0


# --- the probability-flow ODE ----------------------------------------------------------------
def _gaussian_score(sde, mu: float, s: float):
    """Exact score of p_t = N(alpha mu, (alpha^2 s^2 + sigma^2) I) for p_0 = N(mu, s^2 I)."""

    def score(x, t):
        alpha, sigma = sde.marginal_coeffs(t)
        var = alpha**2 * s**2 + sigma**2
        return -(x - solvers.append_dims(alpha, x.ndim) * mu) / solvers.append_dims(var, x.ndim)

    return score


def _flow_invariant(sde, x, t, mu, s):
    alpha, sigma = sde.marginal_coeffs(torch.full((x.shape[0],), t, dtype=F64))
    a, v = solvers.append_dims(alpha, x.ndim), solvers.append_dims(alpha**2 * s**2 + sigma**2, x.ndim)
    return (x - a * mu) / v.sqrt()


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["VP", "VE"])
@pytest.mark.parametrize("solver", ["ode_dopri5", "ode_bosh3"])
def test_pf_ode_single_gaussian_exact_flow(sde, solver):
    # For a Gaussian target the PF-ODE keeps (x - alpha mu)/sqrt(alpha^2 s^2 + sigma^2) constant.
    mu, s, tol = 0.7, 0.3, 1e-6
    g = torch.Generator().manual_seed(0)
    x_T = sde.prior_sample((16, 3), generator=g, dtype=F64)
    r = solvers.sample(sde, _gaussian_score(sde, mu, s), x_T=x_T, solver=solver, rtol=tol, atol=tol, denoise=False)
    inv_T = _flow_invariant(sde, x_T, sde.T, mu, s)
    inv_eps = _flow_invariant(sde, r.samples, sde.eps, mu, s)
    # Invariant in units of the final state's scale (sqrt(var_eps) ~ s): error <= 100 * tol.
    err = float((inv_eps - inv_T).abs().max()) * s
    assert err < 100 * tol, err
    assert r.samples.dtype == F64
    assert r.stats["accepted"] >= 1 and "rejected" in r.stats
    assert r.times[0] == sde.T and r.times[-1] == sde.eps and bool((r.times.diff() < 0).all())
    per = 6 if solver == "ode_dopri5" else 3
    assert r.nfe == 2 + per * (r.stats["accepted"] + r.stats["rejected"])


def test_solver_class_attributes_and_registry():
    dopri5, bosh3 = solvers.SOLVERS["ode_dopri5"], solvers.SOLVERS["ode_bosh3"]
    assert dopri5.factory is AdaptiveODE and bosh3.factory is AdaptiveODE
    for spec, order in ((dopri5, 5), (bosh3, 3)):
        assert spec.adaptive and spec.dynamics_kind == "ode" and not spec.stochastic
        assert spec.order == order and spec().order == order
    assert bosh3().tableau is BOSH3 and AdaptiveODE("bosh3").tableau is BOSH3
    with pytest.raises(TypeError, match="ODE solver"):
        AdaptiveODE().solve(solvers.ReverseSDE(VPSDE(), lambda x, t: -x), torch.zeros(2, 2),
                            torch.tensor([1.0, 0.001]))


def test_trajectory_and_after_step_float32():
    sde, mu, s = VPSDE(), 0.5, 0.4
    calls = []

    def hook(x, t):
        calls.append(t.shape)
        return x

    r = solvers.sample(sde, _gaussian_score(sde, mu, s), shape=(8, 2), solver="ode_dopri5",
                       seed=0, keep_trajectory=True, max_frames=5, after_step=hook, rtol=1e-4, atol=1e-4, denoise=False)
    assert r.samples.dtype == torch.float32
    assert r.stats["accepted"] + 1 > 5  # more frames than max_frames: thinning is exercised
    assert r.trajectory is not None and r.trajectory.shape == (5, 8, 2)
    assert r.trajectory_times[0] == sde.T and r.trajectory_times[-1] == sde.eps
    torch.testing.assert_close(r.trajectory[-1], r.samples)
    assert len(calls) == r.stats["accepted"] and calls[0] == (8,)
    inv_T = _flow_invariant(sde, r.trajectory[0].double(), sde.T, mu, s)
    inv_eps = _flow_invariant(sde, r.samples.double(), sde.eps, mu, s)
    # float32 state at tol 1e-4: the invariant (scaled by s) holds to 100 * tol.
    assert float((inv_eps - inv_T).abs().max()) * s < 1e-2
