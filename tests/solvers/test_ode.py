"""Fixed-step PF-ODE integrators (solvers.ode) and the SciPy adaptive backend (solvers.scipy_ode)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch

import scoresde as sd
import solvers
from solvers import grids
from solvers.ode import STEPS, euler_step, heun_step, integrate_fixed, rk4_step
from solvers.scipy_ode import solve_ivp_torch

F64 = torch.float64
ODE_NAMES = ["ode_euler", "ode_heun", "ode_rk4", "ode_rk45", "ode_dop853"]
FIXED = {"ode_euler": (solvers.ODEEuler, 1), "ode_heun": (solvers.Heun, 2), "ode_rk4": (solvers.RK4, 4)}


@pytest.fixture(scope="module")
def problem():
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    return sde, target, target.score_fn(sde)


# --- function level ------------------------------------------------------------------------
@pytest.mark.parametrize("h", [0.1, -0.3])
def test_one_step_on_linear_ode_is_the_taylor_polynomial(h):
    # For y' = a y one step multiplies y by the degree-p Taylor polynomial of exp(a h).
    a = torch.tensor([-2.0, 0.5, 3.0], dtype=F64)
    y = torch.tensor([1.0, -2.0, 0.25], dtype=F64)
    z = a * h
    taylor = {
        euler_step: 1 + z,
        heun_step: 1 + z + z**2 / 2,
        rk4_step: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24,
    }
    for step, poly in taylor.items():
        out = step(lambda t, u: a * u, 0.7, y, 0.7 + h)
        # Same polynomial evaluated in another order: agreement to float64 round-off.
        torch.testing.assert_close(out, poly * y, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("t0, t1", [(0.2, 0.9), (1.0, 0.1)])
def test_stage_times_integrate_polynomials_exactly(t0, t1):
    # y' = t^k: Euler is exact for k = 0, Heun (trapezoid) for k <= 1, RK4 (Simpson) for k <= 3.
    exact_up_to = {"euler": 0, "heun": 1, "rk4": 3}
    y0 = torch.zeros(2, dtype=F64)
    for method, kmax in exact_up_to.items():
        for k in range(kmax + 2):
            out = STEPS[method](lambda t, y, k=k: torch.full_like(y, t**k), t0, y0, t1)
            exact = (t1 ** (k + 1) - t0 ** (k + 1)) / (k + 1)
            err = float((out - exact).abs().max())
            if k <= kmax:
                assert err < 1e-15, (method, k, err)  # exact quadrature: round-off only
            else:
                assert err > 1e-4, (method, k, err)  # first inexact degree shows a real error


def test_integrate_fixed_both_directions_and_nonuniform_grid():
    # y' = -2 t y has y(t) = y(t0) exp(-(t^2 - t0^2)); RK4 on a fine non-uniform grid.
    ts = torch.linspace(0.0, 1.0, 201, dtype=F64) ** 2
    y0 = torch.tensor([1.0, 3.0], dtype=F64)
    fwd = integrate_fixed(lambda t, y: -2 * t * y, y0, ts, method="rk4")
    torch.testing.assert_close(fwd, y0 * math.exp(-1.0), rtol=1e-9, atol=0)  # O(h^4) with h <= 0.01
    back = integrate_fixed(lambda t, y: -2 * t * y, fwd, ts.flip(0), method="rk4")
    torch.testing.assert_close(back, y0, rtol=1e-9, atol=0)  # same O(h^4) error, both ways
    # A Python list of times works too; default method is Heun.
    heun = integrate_fixed(lambda t, y: -2 * t * y, y0, ts.tolist())
    torch.testing.assert_close(heun, y0 * math.exp(-1.0), rtol=1e-4, atol=0)  # O(h^2)


def test_integrate_fixed_rejects_bad_input():
    f = lambda t, y: y  # noqa: E731
    y0 = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match="valid methods: euler, heun, rk4"):
        integrate_fixed(f, y0, [0.0, 1.0], method="rk9")
    with pytest.raises(ValueError, match="strictly monotone"):
        integrate_fixed(f, y0, [0.0, 0.5, 0.2])
    with pytest.raises(ValueError, match="at least 2"):
        integrate_fixed(f, y0, [0.0])
    with pytest.raises(ValueError, match="non-finite"):
        integrate_fixed(f, y0, [0.0, float("nan")])
    with pytest.raises(TypeError, match="floating-point"):
        integrate_fixed(f, torch.ones(2, dtype=torch.long), [0.0, 1.0])


# --- solver level --------------------------------------------------------------------------
def test_capabilities_and_registry():
    for name, (cls, order) in FIXED.items():
        assert solvers.SOLVERS[name].factory is cls
        assert cls.order == order and cls.dynamics_kind == "ode" and not cls.stochastic
        assert not cls.adaptive
    for name, order in [("ode_rk45", 5), ("ode_dop853", 8)]:
        cls = solvers.SOLVERS[name]
        assert cls.adaptive and cls.dynamics_kind == "ode" and cls.order == order
    assert solvers.ScipyODE().method == "RK45" and solvers.get_solver("ode_dop853").method == "DOP853"
    lines = solvers.summaries()
    assert all(lines[n] for n in ODE_NAMES)


@pytest.mark.parametrize("name", list(FIXED))
def test_fixed_step_nfe_times_and_trajectory(problem, name):
    sde, _, score = problem
    _, order = FIXED[name]
    per_step = {1: 1, 2: 2, 4: 4}[order]
    r = solvers.sample(sde, score, (16, 2), solver=name, steps=7, seed=0, keep_trajectory=True, denoise=False)
    assert r.nfe == 7 * per_step
    assert r.times.shape == (8,) and r.times[0] == sde.T and r.times[-1] == sde.eps
    assert r.trajectory.shape == (8, 16, 2) and torch.equal(r.trajectory[-1], r.samples)


@pytest.mark.parametrize("name", list(FIXED))
def test_solver_step_is_the_function_level_step(problem, name):
    # The solver class and integrate_fixed share one implementation: identical results.
    sde, _, score = problem
    cls, _ = FIXED[name]
    x = sde.prior_sample((8, 2), generator=torch.Generator().manual_seed(1), dtype=F64)
    ts = grids.karras(sde, 9)
    sol = cls().solve(solvers.ProbabilityFlowODE(sde, score), x, ts)
    dyn = solvers.ProbabilityFlowODE(sde, score)
    ref = integrate_fixed(lambda t, y: dyn.drift(y, solvers.batch_time(t, y)), x, ts, method=cls.method)
    assert torch.equal(sol.samples, ref)


@pytest.mark.parametrize("name", ODE_NAMES)
def test_ode_solvers_refuse_the_reverse_sde(problem, name):
    sde, _, score = problem
    solver = solvers.get_solver(name)
    x = torch.zeros(4, 2)
    with pytest.raises(TypeError, match=r"ODE solver: pass ProbabilityFlowODE\(sde, score\) \(lam=0\)"):
        solver.solve(solvers.ReverseSDE(sde, score), x, grids.uniform(sde, 4))
    with pytest.raises(ValueError, match="ODE solver; lam must be 0"):
        solvers.sample(sde, score, (4, 2), solver=name, steps=4, lam=1.0)


@pytest.mark.parametrize("name", ODE_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept_end_to_end(problem, name, dtype):
    sde, _, score = problem
    seen: set[torch.dtype] = set()

    def spy(x, t):
        seen.update({x.dtype, t.dtype})
        return score(x, t)

    r = solvers.sample(sde, spy, (8, 2), solver=name, steps=6, seed=0, dtype=dtype)
    assert r.samples.dtype == dtype and seen == {dtype}
    assert torch.isfinite(r.samples).all()


@pytest.mark.parametrize("name", ["ode_rk4", "ode_rk45"])
def test_image_shaped_state(name):
    # Data N(0, I) under VP: p_t = N(0, (alpha^2 + sigma^2) I) = N(0, I) for every t, so
    # the score is -x, the PF-ODE velocity is 0 and the state must not move.
    sde = sd.VPSDE()
    x = torch.randn((3, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=F64)
    r = solvers.sample(sde, lambda y, t: -y, solver=name, steps=5, x_T=x, denoise=False)
    assert r.samples.shape == (3, 1, 4, 4)
    torch.testing.assert_close(r.samples, x, rtol=0, atol=1e-12)  # velocity is 0 up to round-off


# --- SciPy backend -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["RK45", "DOP853", "RK23"])
def test_solve_ivp_torch_equals_scipy_solve_ivp(method):
    # Same stepper, same field (only IEEE-exact elementwise + and *, so torch and NumPy agree
    # bit for bit): the visited times, the end state and the call count match exactly.
    y0 = torch.tensor([[1.0, -0.5], [0.3, 2.0]], dtype=F64)

    def fn_torch(t, y):
        return -math.cos(3 * t) * y + 0.1 * (y * y * y)

    def fn_np(t, y):
        return -math.cos(3 * t) * y + 0.1 * (y * y * y)

    y1, info = solve_ivp_torch(fn_torch, y0, 1.0, 0.0, method=method, rtol=1e-7, atol=1e-9)
    ref = scipy.integrate.solve_ivp(fn_np, (1.0, 0.0), y0.reshape(-1).numpy(), method=method, rtol=1e-7, atol=1e-9)
    assert info["nfe"] == ref.nfev
    assert info["accepted"] == len(ref.t) - 1
    np.testing.assert_array_equal(info["t"].numpy(), ref.t)
    np.testing.assert_array_equal(y1.reshape(-1).numpy(), ref.y[:, -1])


def test_solve_ivp_torch_forward_accuracy_and_dtype():
    # y' = y on [0, 1] (the likelihood direction); float32 state in, float32 out.
    y0 = torch.ones(3, dtype=torch.float32)
    y1, info = solve_ivp_torch(lambda t, y: y, y0, 0.0, 1.0, rtol=1e-8, atol=1e-8)
    assert y1.dtype == torch.float32 and float(info["t"][-1]) == 1.0
    torch.testing.assert_close(y1, torch.full((3,), math.e), rtol=2e-7, atol=0)  # float32 round-off


def test_solve_ivp_torch_rejects_bad_input():
    f = lambda t, y: y  # noqa: E731
    y0 = torch.ones(2, dtype=F64)
    with pytest.raises(ValueError, match="valid methods: RK45, DOP853, RK23"):
        solve_ivp_torch(f, y0, 0.0, 1.0, method="Radau")
    with pytest.raises(ValueError, match="rtol and atol"):
        solve_ivp_torch(f, y0, 0.0, 1.0, rtol=0.0)
    with pytest.raises(ValueError, match="distinct"):
        solve_ivp_torch(f, y0, 1.0, 1.0)
    with pytest.raises(ValueError, match="fn returned shape"):
        solve_ivp_torch(lambda t, y: y[:1], y0, 0.0, 1.0)
    with pytest.raises(RuntimeError, match="max_steps=2"):
        solve_ivp_torch(f, y0, 0.0, 10.0, rtol=1e-10, atol=1e-10, max_steps=2)
    with pytest.raises(ValueError, match="valid methods"):
        solvers.ScipyODE("LSODA")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ode_rk45", "ode_dop853"])
def test_scipy_nfe_equals_counted_score_calls(problem, name):
    sde, _, score = problem
    calls = [0]

    def counted(x, t):
        calls[0] += 1
        return score(x, t)

    r = solvers.sample(sde, counted, (32, 2), solver=name, seed=0, keep_trajectory=True, max_frames=None, denoise=False)
    assert r.nfe == calls[0] == r.stats["integrator_nfe"] > 0  # denoise=False: no end step
    # Accepted times run from T down to eps; the trajectory holds the state at each of them.
    assert r.times[0] == sde.T and r.times[-1] == sde.eps and bool((r.times.diff() < 0).all())
    assert r.stats["accepted"] == r.times.numel() - 1
    assert r.trajectory.shape == (r.times.numel(), 32, 2)
    torch.testing.assert_close(r.trajectory_times, r.times)
    assert torch.equal(r.trajectory[-1], r.samples)
    thin = solvers.sample(sde, score, (32, 2), solver=name, seed=0, keep_trajectory=True, max_frames=5, denoise=False)
    assert thin.trajectory.shape == (5, 32, 2) and torch.equal(thin.trajectory[-1], thin.samples)


def test_scipy_rk45_after_step_hook_and_restart_count(problem):
    sde, _, score = problem
    calls = [0]

    def counted(x, t):
        calls[0] += 1
        return score(x, t)

    def pin(x, t):
        x = x.clone()
        x[:, 0] = 0.25
        return x

    r = solvers.sample(sde, counted, (16, 2), solver="ode_rk45", seed=0, after_step=pin, denoise=False)
    assert bool((r.samples[:, 0] == 0.25).all())
    # Restart after every accepted step but the last: 1 + 1 + 6 per step + 1 per restart,
    # all of them counted.
    assert r.nfe == calls[0]
    assert r.nfe >= 2 + 6 * r.stats["accepted"] + (r.stats["accepted"] - 1)
