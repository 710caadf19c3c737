"""Linear stability of explicit Euler–Maruyama (`solvers.stability`) and its warning."""

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
    point_mass_amplification,
    stable_steps,
    unstable_below,
)

F64 = torch.float64


@pytest.mark.parametrize(
    "sde_name,steps,std",
    [("ve", 11, 0.01), ("ve", 30, 0.01), ("vp", 6, 0.005), ("subvp", 12, 0.002)],
)
def test_the_recursion_is_euler_maruyama_on_a_gaussian_mode(sde_name, steps, std):
    # On one Gaussian mode the EM step is linear, so the state's variance at eps is exactly
    # what the recursion predicts: compare with an actual run (16-D, 4000 samples: the
    # sample variance's relative standard error is 0.6%), stable grids and unstable ones alike.
    sde = sd.get_sde(sde_name)
    ts = grids.get_grid(solvers.defaults.sde_solver_grid(sde))(sde, steps)
    mix = sd.GaussianMixture(torch.zeros(1, 16, dtype=F64), std)
    x = solvers.sample(sde, mix.score_fn(sde), (4000, 16), "euler_maruyama", grid=ts, seed=0, dtype=F64,
                       denoise="none").samples
    alpha, sigma = sde.marginal_coeffs(ts[-2:-1].to(F64))
    scale = math.sqrt(float(alpha) ** 2 * std**2 + float(sigma) ** 2)
    predicted = point_mass_amplification(sde, ts, std=std) * scale
    measured = float(x.pow(2).mean().sqrt())
    assert abs(measured / predicted - 1) < 0.03, (measured, predicted)


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


@pytest.mark.parametrize("solver", ["euler_maruyama", "torchsde_euler", "torchsde_milstein"])
def test_euler_maruyama_warns_on_unstable_grids_only(solver):
    sde = sd.get_sde("ve")
    score = sd.targets.get_target("sharp_8").score_fn(sde)
    with pytest.warns(UserWarning, match=r"stability region for data with modes narrower than about .* take at least \d+ steps"):
        solvers.sample(sde, score, (4, 2), solver, steps=10, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solvers.sample(sde, score, (4, 2), solver, steps=30, seed=0)


def test_no_warning_without_marginals():
    class Bare:
        T, eps = 1.0, 1e-3

        def drift(self, x, t):
            return torch.zeros_like(x)

        def diffusion(self, t):
            return torch.full_like(t, 5.0)

    assert math.isnan(point_mass_amplification(Bare(), torch.tensor([1.0, 0.5, 1e-3])))
