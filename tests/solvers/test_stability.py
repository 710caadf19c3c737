"""Linear stability of explicit reverse-SDE steps (`solvers.stability`) and the warning built on it."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers import grids
from solvers.stability import (
    AMPLIFICATION_LIMIT,
    EXPLICIT_METHODS,
    point_mass_amplification,
    stable_steps,
    unstable_below,
)

F64 = torch.float64


@pytest.mark.parametrize(
    "method,sde_name,steps,std",
    [
        ("euler", "ve", 11, 0.01), ("euler", "ve", 30, 0.01), ("euler", "vp", 6, 0.005), ("euler", "subvp", 12, 0.002),
        ("srk", "ve", 11, 0.01), ("srk", "subvp", 12, 0.002), ("srk", "vp", 20, 0.005),
        ("midpoint", "ve", 11, 0.01), ("midpoint", "subvp", 12, 0.002), ("midpoint", "vp", 20, 0.005),
        ("heun", "ve", 20, 0.002), ("heun", "vp", 6, 0.005), ("euler_heun", "subvp", 12, 0.002),
    ],
)
def test_the_recursion_is_the_method_on_a_gaussian_mode(method, sde_name, steps, std):
    # On one Gaussian mode each explicit step is linear (module docstring), so the state's
    # variance at eps is exactly what the recursion predicts: compare with an actual run
    # (16-D, 4000 samples: the sample variance's relative standard error is 0.6%), on unstable
    # grids (ratios 10-330) and stable ones (0.6-1.2) alike. "euler" runs our EulerMaruyama,
    # the others torchsde's step functions.
    sde = sd.get_sde(sde_name)
    ts = grids.get_grid(solvers.defaults.sde_solver_grid(sde))(sde, steps)
    mix = sd.GaussianMixture(torch.zeros(1, 16, dtype=F64), std)
    solver = "euler_maruyama" if method == "euler" else solvers.TorchSDE(method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unstable grids warn; that is tested below
        x = solvers.sample(sde, mix.score_fn(sde), (4000, 16), solver, grid=ts, seed=0, dtype=F64,
                           denoise="none").samples
    alpha, sigma = sde.marginal_coeffs(ts[-2:-1].to(F64))
    scale = math.sqrt(float(alpha) ** 2 * std**2 + float(sigma) ** 2)
    predicted = point_mass_amplification(sde, ts, std=std, method=method) * scale
    measured = float(x.pow(2).mean().sqrt())
    assert abs(measured / predicted - 1) < 0.03, (measured, predicted)


def test_the_two_stage_methods_share_the_stability_function_of_constant_stiffness():
    # With A constant (z = h A) midpoint, Heun and SRA1 all reduce to R = 1 - z + z^2/2; the
    # recursion must show that: an SDE with constant drift slope and diffusion and a grid of
    # equal steps gives the same amplification for the three whatever z.
    class Constant:
        T, eps = 6.0, 1e-3

        def drift(self, x, t):
            return torch.zeros_like(x)

        def diffusion(self, t):
            return torch.ones_like(t)

        def marginal_coeffs(self, t):
            return torch.ones_like(t), torch.ones_like(t)  # sigma fixed: A = g^2/(2 sigma^2) = 1/2

    sde = Constant()
    for n in (1, 2, 4, 8):  # z = 3, 1.5, 0.75, 0.375: outside and inside the interval (0, 2)
        ts = torch.linspace(6.0, 1e-3, n + 1, dtype=F64)
        ratios = [point_mass_amplification(sde, ts, lam=0.0, method=m) for m in ("midpoint", "heun", "srk")]
        z = 0.5 * float(ts[0] - ts[1])
        exact = abs(1 - z + z * z / 2) ** n  # no noise (lam = 0), sigma constant
        assert ratios == pytest.approx([exact] * 3, rel=1e-12)
        assert point_mass_amplification(sde, ts, lam=0.0, method="euler") == pytest.approx(abs(1 - z) ** n, rel=1e-12)


def test_unknown_step_rules_are_named():
    sde = sd.get_sde("ve")
    with pytest.raises(ValueError, match="unknown step rule 'rk4'.*euler, milstein"):
        point_mass_amplification(sde, grids.uniform_logsnr(sde, 10), method="rk4")
    assert set(EXPLICIT_METHODS) == set(solvers.torchsde_backend.TORCHSDE_METHODS) - {"reversible_heun"}


def test_fine_grids_are_stable_and_coarse_ve_grids_are_not():
    for name in ("vp", "subvp", "ve"):
        sde = sd.get_sde(name)
        grid = grids.get_grid(solvers.defaults.sde_solver_grid(sde))
        assert 0.8 < point_mass_amplification(sde, grid(sde, 1000)) < 1.2
    ve = sd.get_sde("ve")
    assert point_mass_amplification(ve, grids.uniform_logsnr(ve, 10)) > 100


def test_unstable_below_brackets_the_limit():
    sde = sd.get_sde("ve")
    ts = grids.uniform_logsnr(sde, 11)
    width = unstable_below(sde, ts)
    assert 1e-3 < width < 1.0
    assert point_mass_amplification(sde, ts, std=0.99 * width) > AMPLIFICATION_LIMIT
    assert point_mass_amplification(sde, ts, std=1.01 * width) <= AMPLIFICATION_LIMIT
    assert unstable_below(sde, grids.uniform_logsnr(sde, 50)) == 0.0


def test_stable_steps_is_the_first_count_within_the_limit():
    sde = sd.get_sde("ve")
    n = stable_steps(sde, grids.uniform_logsnr)
    assert n is not None
    assert point_mass_amplification(sde, grids.uniform_logsnr(sde, n)) <= AMPLIFICATION_LIMIT
    assert point_mass_amplification(sde, grids.uniform_logsnr(sde, n - 1)) > AMPLIFICATION_LIMIT


@pytest.mark.parametrize(
    "solver,unstable,stable",
    [
        ("euler_maruyama", 10, 30), ("torchsde_euler", 10, 30), ("torchsde_milstein", 10, 30),
        ("torchsde_srk", 13, 30), ("torchsde_midpoint", 11, 30), (solvers.TorchSDE("heun"), 30, 40),
        (solvers.TorchSDE("euler_heun"), 10, 30),
    ],
)
def test_explicit_steps_warn_on_unstable_grids_only(solver, unstable, stable):
    sde = sd.get_sde("ve")
    score = sd.targets.get_target("sharp_8").score_fn(sde)
    with pytest.warns(UserWarning, match=r"stability region for data with modes narrower than about .* take at least \d+ steps"):
        solvers.sample(sde, score, (4, 2), solver, steps=unstable, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solvers.sample(sde, score, (4, 2), solver, steps=stable, seed=0)


def test_no_warning_without_marginals():
    class Bare:
        T, eps = 1.0, 1e-3

        def drift(self, x, t):
            return torch.zeros_like(x)

        def diffusion(self, t):
            return torch.full_like(t, 5.0)

    assert math.isnan(point_mass_amplification(Bare(), torch.tensor([1.0, 0.5, 1e-3])))
