"""log_likelihood refuses what it cannot use, and says when an option has no effect or biases the result."""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd


@pytest.fixture(scope="module")
def problem():
    target = sd.targets.eight_gaussians()
    x = target.sample(6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return target, x


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["vp", "ve"])
def test_a_score_without_gradients_is_refused(problem, sde):
    # Under VP the drift alone keeps a graph: without the check the divergence would silently
    # lose the score's part.
    target, x = problem
    score = target.score_fn(sde)
    with pytest.raises(ValueError, match="score is not differentiable with respect to x"):
        sd.likelihood.log_likelihood(sde, lambda z, t: score(z, t).detach(), x)


def test_a_score_returning_no_tensor_is_refused(problem):
    _, x = problem
    with pytest.raises(TypeError, match="score returned float; it must return a tensor"):
        sd.likelihood.log_likelihood(sd.VPSDE(), lambda z, t: 1.0, x)


def test_option_values_are_checked(problem):
    target, x = problem
    sde = sd.VPSDE()
    score = target.score_fn(sde)
    cases = [
        (dict(grid="foo"), ValueError, "unknown grid 'foo'; valid: auto, uniform"),
        (dict(prior="foo"), ValueError, "prior must be a function"),
        (dict(device="gpu"), ValueError, "unknown device 'gpu'"),
        (dict(dtype="float99"), ValueError, "dtype must be a real floating-point dtype"),
        (dict(seed=1.5), TypeError, "seed must be an integer"),
        (dict(generator=5), TypeError, "an integer seed goes in seed="),
    ]
    for kwargs, kind, message in cases:
        with pytest.raises(kind, match=message):
            sd.likelihood.log_likelihood(sde, score, x, **kwargs)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sd.likelihood.log_likelihood(sde, score, x.tolist())


def test_named_dtype_is_the_dtype(problem):
    target, x = problem
    sde = sd.VPSDE()
    score = target.score_fn(sde)
    a = sd.likelihood.log_likelihood(sde, score, x.float(), dtype="float64")
    b = sd.likelihood.log_likelihood(sde, score, x.float(), dtype=torch.float64)
    assert a.dtype == torch.float64 and torch.equal(a, b)


def test_steps_with_an_adaptive_integrator_warn_that_they_are_unused(problem):
    target, x = problem
    sde = sd.VPSDE()
    with pytest.warns(UserWarning, match="integrator='dopri5' chooses its own steps and ignores them"):
        sd.likelihood.log_likelihood(sde, target.score_fn(sde), x, steps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fast path uses them: no warning
        sd.likelihood.log_likelihood(sde, target.score_fn(sde), x, integrator="rk4_simpson", steps=8)


def test_an_end_time_other_than_the_sdes_warns_of_the_prior_mismatch_and_is_biased(problem):
    target, x = problem
    sde = sd.VPSDE()
    score = target.score_fn(sde)
    exact = target.log_prob(x)
    with pytest.warns(UserWarning, match="T=0.3 is not the SDE's T=1"):
        short = sd.likelihood.log_likelihood(sde, score, x, T=0.3)
    # With the matching prior (the exact p_T of the mixture at 0.3) there is no warning and no bias.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = sd.likelihood.log_likelihood(
            sde, score, x, T=0.3, prior=lambda z: target.marginal_log_prob(z, 0.3, sde))
    fixed_error = float((fixed - exact).abs().mean())
    assert fixed_error < 1e-3
    # The warning is about a real bias: the prior N(0, I) is not p_T at T = 0.3.
    assert float((short - exact).abs().mean()) > 20 * fixed_error


@pytest.mark.parametrize("integrator", ["dopri5", "bosh3", "rk45"])
def test_tolerances_must_be_positive_and_finite(problem, integrator):
    # atol = 0 made the torch integrators' step NaN, reported as "t contains non-finite values".
    target, x = problem
    sde = sd.VPSDE()
    for kwargs in (dict(atol=0.0), dict(rtol=float("nan")), dict(atol=-1e-5)):
        with pytest.raises(ValueError, match="must be positive and finite"):
            sd.likelihood.log_likelihood(sde, target.score_fn(sde), x, integrator=integrator, **kwargs)
