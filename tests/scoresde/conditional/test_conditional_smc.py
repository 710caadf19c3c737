"""Particle-filter conditioning (after_step hook): consistent in the number of particles."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.conditional import ConditionalReference, PosteriorGuidance, condition_on_measurement
from scoresde.conditional.smc import ParticleFilter

VP = sd.VPSDE()


def test_particle_filter_reaches_floor_on_a_weak_measurement() -> None:
    # y = x1 + N(0, 0.5^2) = 1 on eight Gaussians: a six-mode posterior. 2,000 particles are
    # plenty when the likelihood is broad; PiGDM's Gaussian approximation is measurably off here.
    mix = sd.targets.eight_gaussians()
    A, y, sy = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([1.0]), 0.5
    ref = ConditionalReference(condition_on_measurement(mix, A, y, sy), VP, VP.eps, n=2000)
    pf = ParticleFilter(mix.score_fn(VP), VP, A, y, (2,), noise_std=sy, seed=0)
    x = solvers.sample(VP, mix.score_fn(VP), (2000, 2), "euler_maruyama", steps=200, seed=0, after_step=pf,
                       dtype=torch.float64).samples
    assert pf.resamples >= 1
    assert ref.evaluate(x)["combined"] <= 6.0  # exact sets score 1.3-5 (see test_conditional_samplers)
    g = PosteriorGuidance(mix.score_fn(VP), VP, A, y, (2,), noise_std=sy)
    xg = solvers.sample(VP, g, (2000, 2), "euler_maruyama", steps=200, seed=0, dtype=torch.float64).samples
    assert ref.evaluate(xg)["combined"] > 6.0  # measured 7.3


def test_systematic_resampling_is_proportional() -> None:
    pf = ParticleFilter(lambda x, t: -x, VP, torch.tensor([True, False]), torch.zeros(2), (2,), seed=0)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).repeat_interleave(250) / 250
    counts = torch.bincount(pf._resample(w) // 250, minlength=4)
    # Systematic resampling gives each block floor or ceil of B * weight.
    assert counts.tolist() == [100, 200, 300, 400]


def test_particle_filter_bad_input() -> None:
    s = sd.targets.eight_gaussians().score_fn(VP)
    with pytest.raises(ValueError, match="ess_fraction"):
        ParticleFilter(s, VP, torch.tensor([True, False]), torch.zeros(2), (2,), ess_fraction=0.0)
    with pytest.raises(ValueError, match="y must have shape"):
        ParticleFilter(s, VP, torch.ones(1, 2), torch.zeros(3), (2,))
    with pytest.raises(ValueError, match="mask has shape"):
        ParticleFilter(s, VP, torch.tensor([True, False, True]), torch.zeros(3), (2,))
