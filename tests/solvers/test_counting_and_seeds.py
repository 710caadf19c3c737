"""What a sampler comparison relies on: random streams that belong to the seed that asked for
them, every documented seed taken, and every evaluation counted (user pass on NFE and seeds)."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.noise import BrownianPath, make_generator

F64 = torch.float64


def test_brownian_normal_stream_is_not_another_seeds_prior_draw():
    sde = sd.VPSDE()
    like = torch.zeros(8, 2)
    for seed in (0, 1, 7):
        normal = BrownianPath((8, 2), sde.eps, sde.T, seed=seed).normal(like)
        for other in range(0, 10):
            assert not torch.equal(normal, sde.prior_sample((8, 2), generator=make_generator(other)))


@pytest.mark.parametrize("seed", [2**64 - 1, -1, -(2**63)])
def test_brownian_noise_takes_every_documented_seed(seed):
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    r = solvers.sample(sde, score, (4, 2), "pc", steps=3, seed=seed, noise="brownian")
    again = solvers.sample(sde, score, (4, 2), "pc", steps=3, seed=seed, noise="brownian")
    assert torch.isfinite(r.samples).all() and torch.equal(r.samples, again.samples)


def test_likelihood_takes_a_generator_without_seed():
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    x = target.sample(16, generator=torch.Generator().manual_seed(0)).to(F64)
    score = target.score_fn(sde)
    opts = dict(divergence="hutchinson", integrator="rk4", steps=8)
    by_gen = sd.likelihood.likelihood(sde, score, x, generator=torch.Generator().manual_seed(0), **opts)
    by_seed = sd.likelihood.likelihood(sde, score, x, seed=0, **opts)
    assert torch.equal(by_gen.log_prob, by_seed.log_prob)
    other = sd.likelihood.likelihood(sde, score, x, generator=torch.Generator().manual_seed(5), **opts)
    assert not torch.equal(other.log_prob, by_seed.log_prob)
    with pytest.raises(ValueError, match="either seed or generator"):
        sd.likelihood.likelihood(sde, score, x, seed=3, generator=torch.Generator(), **opts)
    elbo_gen = sd.likelihood.elbo(sde, score, x, n_samples=4, generator=torch.Generator().manual_seed(0))
    elbo_seed = sd.likelihood.elbo(sde, score, x, n_samples=4, seed=0)
    assert torch.equal(elbo_gen.elbo, elbo_seed.elbo)


def test_a_users_counted_score_counts_the_run():
    sde = sd.VPSDE()
    counted = solvers.CountedScore(sd.targets.eight_gaussians().score_fn(sde))
    r = solvers.sample(sde, counted, (8, 2), "ode_heun", steps=5, seed=0)
    assert counted.calls == r.nfe == 11
