"""The torchsde backend: same increments as Euler–Maruyama, exact NFE, time reversal, Lévy area.

Convergence orders of the torchsde methods are measured in tests/solvers/test_convergence.py.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers
from solvers import grids
from solvers.torchsde_backend import TORCHSDE_METHODS, _NoiseBrownian

F64 = torch.float64
REGISTERED = {
    "torchsde_euler": "euler",
    "torchsde_milstein": "milstein",
    "torchsde_srk": "srk",
    "torchsde_midpoint": "midpoint",
    "torchsde_reversible_heun": "reversible_heun",
}
# Score evaluations per step (reversible Heun: +1 once, to start its auxiliary state).
NFE_PER_STEP = {"euler": 1, "milstein": 1, "euler_heun": 1, "reversible_heun": 1, "midpoint": 2, "heun": 2, "srk": 2}


@pytest.fixture(scope="module")
def problem():
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    return sde, target, target.score_fn(sde)


def test_registry_and_capabilities():
    for name, method in REGISTERED.items():
        cls = solvers.SOLVERS[name]
        assert cls().method == method and cls.stochastic and cls.dynamics_kind == "any"
        assert cls.strong_order == (1.5 if method == "srk" else 1.0)
    assert set(NFE_PER_STEP) == set(TORCHSDE_METHODS)
    with pytest.raises(ValueError, match="valid methods: euler, milstein, srk"):
        solvers.TorchSDE("log_ode")  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", ["uniform", "karras"])
def test_torchsde_euler_equals_euler_maruyama_on_the_same_brownian_path(problem, grid):
    # Same Brownian increments, same operations: identical to the last bit, on any grid.
    sde, _, score = problem
    x = sde.prior_sample((64, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    ts = grids.get_grid(grid)(sde, 40)
    out = {}
    for key, solver in [("em", solvers.EulerMaruyama(final_noise=True)), ("tsde", solvers.TorchSDE("euler"))]:
        path = solvers.BrownianPath((64, 2), sde.eps, sde.T, seed=7, dtype=F64)
        out[key] = solver.solve(solvers.ReverseSDE(sde, score), x, ts, noise=path).samples
    assert torch.equal(out["em"], out["tsde"])


def test_torchsde_euler_equals_euler_maruyama_with_the_same_seed(problem):
    # With i.i.d. noise both draw one increment per step from the same generator.
    sde, _, score = problem
    em = solvers.sample(sde, score, (32, 2), solver="euler_maruyama", final_noise=True, steps=25, seed=3, denoise=False)
    ts = solvers.sample(sde, score, (32, 2), solver="torchsde_euler", steps=25, seed=3, denoise=False)
    assert torch.equal(em.samples, ts.samples) and em.nfe == ts.nfe == 25
    # The lambda family (0 < lam < 1) goes through the same code.
    em = solvers.sample(sde, score, (32, 2), solver="euler_maruyama", final_noise=True, steps=25, seed=3, lam=0.5, denoise=False)
    ts = solvers.sample(sde, score, (32, 2), solver="torchsde_euler", steps=25, seed=3, lam=0.5, denoise=False)
    assert torch.equal(em.samples, ts.samples)


def test_milstein_equals_euler_for_additive_noise(problem):
    # g does not depend on x, so Milstein's correction g g' (dW^2 - dt)/2 is exactly zero.
    sde, _, score = problem
    a = solvers.sample(sde, score, (32, 2), solver="torchsde_euler", steps=30, seed=5, dtype=F64)
    b = solvers.sample(sde, score, (32, 2), solver="torchsde_milstein", steps=30, seed=5, dtype=F64)
    assert torch.equal(a.samples, b.samples)


@pytest.mark.parametrize("method", list(TORCHSDE_METHODS))
def test_nfe_is_counted_per_step(problem, method):
    sde, _, score = problem
    calls = [0]

    def counted(x, t):
        calls[0] += 1
        return score(x, t)

    r = solvers.sample(sde, counted, (16, 2), solver=solvers.TorchSDE(method), steps=9, seed=0, keep_trajectory=True, denoise=False)
    expected = 9 * NFE_PER_STEP[method] + (1 if method == "reversible_heun" else 0)
    assert r.nfe == calls[0] == expected
    assert r.times.shape == (10,) and r.trajectory.shape == (10, 16, 2)
    assert torch.isfinite(r.samples).all()


def test_srk_refuses_a_brownian_path_without_levy_area(problem):
    sde, _, score = problem
    with pytest.raises(ValueError, match="space-time Lévy area"):
        solvers.sample(sde, score, (8, 2), solver="torchsde_srk", steps=5, seed=0, noise="brownian")
    with pytest.raises(TypeError, match="got unknown option"):
        solvers.sample(sde, score, (8, 2), solver="torchsde_srk", steps=5, dt=0.1)


def test_levy_area_has_the_brownian_law():
    # U = int_s^t (W_u - W_s) du has Var U = h^3/3 and Cov(U, W) = h^2/2 (W = W_t - W_s).
    n, h = 200_000, 0.3
    like = torch.zeros((n, 1), dtype=F64)
    bm = _NoiseBrownian(solvers.GaussianNoise(torch.Generator().manual_seed(0)), like, levy_area=True)
    w, u = bm(-0.9, -0.9 + h, return_U=True)
    assert w.shape == u.shape == (n, 1)
    var_w, var_u, cov = float(w.var()), float(u.var()), float((w * u).mean())
    # Relative Monte-Carlo error of a second moment ~ sqrt(2/n) = 0.003; 5 sigma.
    assert abs(var_w / h - 1) < 0.016
    assert abs(var_u / (h**3 / 3) - 1) < 0.016
    assert abs(cov / (h**2 / 2) - 1) < 0.016


def test_srk_samples_have_the_exact_moments():
    # Single Gaussian N(mu, s^2 I): p_eps = N(alpha mu, (alpha^2 s^2 + sigma^2) I) exactly.
    sde = sd.VPSDE()
    mu, s = torch.tensor([[1.0, -0.5]], dtype=F64), 0.5
    target = sd.targets.GaussianMixture(mu, s)
    n = 10_000
    r = solvers.sample(sde, target.score_fn(sde), (n, 2), solver="torchsde_srk", steps=100, seed=0, dtype=F64)
    alpha, sigma = sde.marginal_coeffs(torch.tensor([sde.eps], dtype=F64))
    var = float(alpha**2 * s**2 + sigma**2)
    z_mean = (r.samples.mean(0) - alpha * mu.squeeze(0)) / math.sqrt(var / n)
    # Mean within 4 standard errors (the O(h^1.5) bias at 100 steps is far below one).
    assert float(z_mean.abs().max()) < 4.0
    # Variance within 4 standard errors sqrt(2/n) = 0.014 of the exact one.
    assert float((r.samples.var(0) / var - 1).abs().max()) < 4 * math.sqrt(2 / n)


@pytest.mark.parametrize("method", ["midpoint", "reversible_heun", "srk"])
def test_image_shaped_state_and_after_step_hook(method):
    # Data N(0, I) under VP: the score is -x at every t; the state (B, C, H, W) is flattened
    # for torchsde and restored. The hook pins one pixel after every step.
    sde = sd.VPSDE()
    x = torch.randn((4, 1, 3, 3), generator=torch.Generator().manual_seed(0), dtype=F64)
    seen: list[float] = []

    def pin(y, t):
        seen.append(float(t[0]))
        y = y.clone()
        y[:, 0, 0, 0] = 0.0
        return y

    r = solvers.sample(sde, lambda y, t: -y, solver=solvers.TorchSDE(method), steps=6, x_T=x, seed=0, after_step=pin, denoise=False)
    assert r.samples.shape == (4, 1, 3, 3) and r.samples.dtype == F64
    assert bool((r.samples[:, 0, 0, 0] == 0).all()) and len(seen) == 6
    # A replaced state restarts reversible Heun's auxiliary state (+1 NFE per step).
    per_step = NFE_PER_STEP[method] + (1 if method == "reversible_heun" else 0)
    assert r.nfe == 6 * per_step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(problem, dtype):
    sde, _, score = problem
    seen: set[torch.dtype] = set()

    def spy(x, t):
        seen.update({x.dtype, t.dtype})
        return score(x, t)

    for name in REGISTERED:
        noise = None if name == "torchsde_srk" else "brownian"
        r = solvers.sample(sde, spy, (8, 2), solver=name, steps=5, seed=0, dtype=dtype, noise=noise)
        assert r.samples.dtype == dtype
    assert seen == {dtype}


@pytest.mark.parametrize("method", ["euler", "milstein", "srk"])
def test_private_adapter_is_accepted_by_sdeint(method):
    """The adapter's g has the shape of its declared noise type, so torchsde.sdeint runs it."""
    import torchsde

    from solvers.dynamics import ReverseSDE
    from solvers.torchsde_backend import _ReversedSDE

    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sde_type, noise_type, _ = TORCHSDE_METHODS[method]
    view = _ReversedSDE(ReverseSDE(sde, score), x.shape, sde_type, noise_type)
    ts = torch.tensor([-sde.T, -0.5, -sde.eps], dtype=torch.float64)
    ys = torchsde.sdeint(view, x.reshape(16, -1), ts, method=method, dt=0.01)
    assert ys.shape == (3, 16, 2) and bool(torch.isfinite(ys).all())
