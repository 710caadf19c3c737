"""`gaussian_ancestral`: ancestral steps with a fitted posterior variance (`solvers.gaussian_ancestral`)."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.quality import within_mode_spread
from solvers.gaussian_ancestral import gaussian_transition_variance
from solvers.noise import BrownianPath

F64 = torch.float64


def _state_std_ratio(sde_name: str, solver: str, steps: int, std: float = 0.05, n: int = 20000) -> float:
    """RMS deviation of the state at eps from the mode's mean, over its exact value ``sqrt(a^2 std^2 + sigma^2)``."""
    sde = sd.get_sde(sde_name)
    mean = torch.tensor([[0.3, -0.2]], dtype=F64)
    mix = sd.GaussianMixture(mean, std)
    x = solvers.sample(sde, mix.score_fn(sde), (n, 2), solver, steps=steps, seed=0, dtype=F64, denoise="none").samples
    alpha, sigma = sde.marginal_coeffs(torch.tensor([sde.eps], dtype=F64))
    exact = math.sqrt(float(alpha) ** 2 * std**2 + float(sigma) ** 2)
    return float((x - float(alpha) * mean).pow(2).mean().sqrt()) / exact


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("steps", [3, 5, 10])
def test_exact_on_a_gaussian_mode_at_any_step_count(sde_name, steps):
    # After its first (ancestral) step the transition is the exact one of the reverse SDE for
    # N(mu, s^2 I) data, so even 3 steps land on p_eps's spread to sampling error (20,000
    # 2-D samples: relative standard error of the RMS ~0.4%). Plain ancestral steps collapse
    # the posterior of x_0 and come out 20-80% too narrow at these step counts.
    assert abs(_state_std_ratio(sde_name, "gaussian_ancestral", steps) - 1) < 0.015
    assert _state_std_ratio(sde_name, "ancestral", steps) < 0.85


def test_the_variance_is_the_bridge_plus_the_posterior_spread_of_x0():
    # Cov(y' | y) = S'^2 (S^2 - S'^2)/S^2 + (1 - S'^2/S^2)^2 C with C = s^2 S^2/(s^2 + S^2).
    s2 = torch.tensor([0.0, 1e-4, 0.0025, 0.3, 40.0], dtype=F64)
    for big, small in [(1.0, 0.5), (0.05, 0.0105), (80.0, 3.0)]:
        c = s2 * big**2 / (s2 + big**2)
        expected = small**2 * (big**2 - small**2) / big**2 + (1 - small**2 / big**2) ** 2 * c
        torch.testing.assert_close(gaussian_transition_variance(s2, big, small), expected, rtol=1e-13, atol=0.0)
    with pytest.raises(ValueError, match="S_from > S_to > 0"):
        gaussian_transition_variance(s2, 0.5, 0.5)


def test_one_step_is_the_ancestral_step():
    # With no history the fitted variance is 0 and the step is DDPM's / SMLD's ancestral step.
    for name in ("vp", "ve"):
        sde = sd.get_sde(name)
        score = sd.targets.get_target("sharp_8").score_fn(sde)
        ts = torch.tensor([sde.T, 0.5 * sde.T], dtype=F64)
        kw = dict(grid=ts, seed=3, dtype=F64, denoise="none")
        a = solvers.sample(sde, score, (64, 2), "gaussian_ancestral", **kw).samples
        b = solvers.sample(sde, score, (64, 2), "ancestral", **kw).samples
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_converges_on_a_sharp_mixture_and_beats_ancestral_at_few_steps():
    sde = sd.get_sde("vp")
    mix = sd.targets.get_target("sharp_8")
    score = mix.score_fn(sde)

    def spread(solver: str, steps: int) -> float:
        x = solvers.sample(sde, score, (2000, 2), solver, steps=steps, seed=1, dtype=F64).samples
        return within_mode_spread(x, mix)

    # Converged: within 2% of exact (seed standard error of the spread ~0.5%), weights kept.
    x = solvers.sample(sde, score, (2000, 2), "gaussian_ancestral", steps=300, seed=1, dtype=F64).samples
    assert abs(within_mode_spread(x, mix) - 1) < 0.02
    freq = torch.bincount(mix.responsibilities(x).argmax(1), minlength=8).to(F64) / 2000
    assert 0.5 * float((freq - mix.weights).abs().sum()) < 0.05
    # At 30 steps ancestral is still ~10% narrow; the fitted variance removes most of it.
    assert abs(spread("gaussian_ancestral", 30) - 1) < 0.5 * abs(spread("ancestral", 30) - 1)


def test_reverse_sde_only_seeds_dtypes_and_shared_paths():
    sde = sd.get_sde("vp")
    score = sd.targets.get_target("sharp_8").score_fn(sde)
    with pytest.raises(ValueError, match="lam"):
        solvers.sample(sde, score, (8, 2), "gaussian_ancestral", steps=5, seed=0, lam=0.5)
    a = solvers.sample(sde, score, (8, 2), "gaussian_ancestral", steps=5, seed=4).samples
    b = solvers.sample(sde, score, (8, 2), "gaussian_ancestral", steps=5, seed=4).samples
    assert a.dtype == torch.float32 and torch.equal(a, b)
    path = BrownianPath((8, 2), t0=sde.eps, t1=sde.T, seed=2, dtype=F64)
    c = solvers.sample(sde, score, (8, 2), "gaussian_ancestral", steps=7, noise=path, seed=5, dtype=F64).samples
    d = solvers.sample(sde, score, (8, 2), "gaussian_ancestral", steps=7, noise=path, seed=5, dtype=F64).samples
    torch.testing.assert_close(c, d)
    assert bool(torch.isfinite(c).all())
