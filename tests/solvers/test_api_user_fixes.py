"""Defects an outside pass over the solver API found (each test failed before its fix)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers


@pytest.fixture(scope="module")
def problem() -> tuple[sd.VPSDE, object]:
    sde = sd.VPSDE()
    return sde, sd.targets.eight_gaussians().score_fn(sde)


def test_brownian_noise_follows_the_generator_and_is_random_without_seed(problem) -> None:
    # The path was always seeded with 0 unless seed= was given: two generators, or two
    # unseeded runs, drew the same noise.
    sde, score = problem
    x_T = torch.zeros(200, 2)

    def run(**kw: object) -> torch.Tensor:
        return solvers.sample(sde, score, x_T=x_T, solver="euler_maruyama", steps=20, noise="brownian", **kw).samples

    g1, g2 = (run(generator=torch.Generator().manual_seed(k)) for k in (1, 2))
    assert not torch.equal(g1, g2)
    assert torch.equal(g1, run(generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(run(), run())
    assert torch.equal(run(seed=3), run(seed=3))


def _gaussian_data_score(sde: sd.VPSDE, s0: float):
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = sde.marginal_coeffs(t)
        return -x / (a**2 * s0**2 + s**2).to(x.dtype)[:, None]

    return score


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sampling_does_not_degrade_with_more_steps(dtype: torch.dtype) -> None:
    # The state and times were kept in half precision: increments below its resolution were
    # lost and bfloat16 ode_heun drifted from the exact map by 0.03 at 25 steps, 1.6 at 1600.
    sde = sd.VPSDE()
    score = _gaussian_data_score(sde, 0.5)
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    # exact probability-flow map of N(0, s0^2 I) from T to 0: x_0 = s0 x_T / sqrt(a_T^2 s0^2 + s_T^2)
    a_T, s_T = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))
    exact = 0.5 * x_T.double() / float(torch.sqrt(a_T**2 * 0.25 + s_T**2))
    ulp = torch.finfo(dtype).eps * float(exact.abs().max())
    errs = []
    for steps in (25, 400, 1600):
        r = solvers.sample(sde, score, x_T=x_T.to(dtype), solver="ode_heun", steps=steps)
        assert r.samples.dtype == dtype
        errs.append(float((r.samples.double() - exact).abs().max()))
    assert errs[-1] <= max(2 * errs[0], 4 * ulp), errs


def test_adaptive_solvers_run_in_float16(problem) -> None:
    # The scaled error norm overflowed float16 (y / (rtol |y| + atol) ~ 7.6e4) and was blamed on the score.
    sde, score = problem
    for name in ("ode_dopri5", "ode_bosh3"):
        r = solvers.sample(sde, score, shape=(64, 2), solver=name, seed=0, dtype=torch.float16)
        assert r.samples.dtype == torch.float16 and torch.isfinite(r.samples).all()


def test_torchsde_solvers_work_under_inference_mode(problem) -> None:
    # The drift cache read y._version, which inference tensors do not have.
    sde, score = problem
    names = [n for n in solvers.available() if n.startswith("torchsde_")]
    assert len(names) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reversible_heun warns that it is biased
        for name in names:
            ref = solvers.sample(sde, score, shape=(32, 2), solver=name, steps=10, seed=0)
            with torch.inference_mode():
                out = solvers.sample(sde, score, shape=(32, 2), solver=name, steps=10, seed=0)
                x_T = torch.randn(8, 2)
            assert torch.equal(out.samples, ref.samples) and out.nfe == ref.nfe, name
            assert solvers.sample(sde, score, x_T=x_T, solver=name, steps=5, seed=0).samples.shape == (8, 2)


@pytest.mark.parametrize(("kw", "hint"), [
    ({"keep_trajectroy": True}, "keep_trajectory="),
    ({"step": 5}, "steps="),
    ({"solver_options": {"snr": 0.1}}, "keywords of sample"),
])
def test_misspelled_sample_keywords_get_a_hint(problem, kw: dict, hint: str) -> None:
    sde, score = problem
    with pytest.raises(TypeError, match=hint):
        solvers.sample(sde, score, shape=(4, 2), solver="pc", **kw)


def test_loose_argument_types_are_refused(problem) -> None:
    sde, score = problem
    with pytest.raises(TypeError, match="lam must be a real number"):
        solvers.sample(sde, score, shape=(4, 2), solver="euler_maruyama", steps=2, lam="1")
    with pytest.raises(TypeError, match="keep_trajectory must be True or False"):
        solvers.sample(sde, score, shape=(4, 2), solver="ddim", steps=2, keep_trajectory="no")
    dyn, ts = solvers.ReverseSDE(sde, score), solvers.grids.uniform(sde, 4)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        solvers.get_solver("euler_maruyama").solve(dyn, torch.randn(4, 2), ts, generator=5)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        solvers.get_solver("euler_maruyama").solve(dyn, np.zeros((4, 2)), ts)


def test_a_grid_below_T_with_a_prior_draw_warns(problem) -> None:
    sde, score = problem
    with pytest.warns(UserWarning, match=r"grid starts at t = 0.3 < T"):
        solvers.sample(sde, score, shape=(4, 2), solver="ode_heun", grid=torch.linspace(0.3, 1e-3, 6), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solvers.sample(sde, score, x_T=torch.randn(4, 2), solver="ode_heun", grid=torch.linspace(0.3, 1e-3, 6))
        solvers.sample(sde, score, shape=(4, 2), solver="ode_heun", grid=torch.linspace(1.0, 1e-3, 6), seed=0)
