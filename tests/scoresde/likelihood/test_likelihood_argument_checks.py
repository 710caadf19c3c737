"""The likelihood functions refuse arguments they cannot use, up front and naming the argument.

One test per defect found: a prior of the wrong shape or NaN, `elbo` without `likelihood`'s
checks, non-float dtypes in `dequantize`, `bits_per_dim`'s randomness and data, `T` past the
SDE's horizon, the `max_steps` option, and the autograd warning of the adaptive solver.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import bits_per_dim, dequantize, elbo, log_likelihood
from solvers.adaptive_ode import initial_step
from solvers.dynamics import NonFiniteScoreError
from solvers.step_control import MaxStepsExceeded

FAST = dict(integrator="rk4", grid="uniform", steps=2)
"""A cheap fixed grid: these tests check arguments, not accuracy."""


@pytest.fixture(scope="module")
def problem():
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    x = target.sample(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sde, target.score_fn(sde), x


@pytest.fixture
def torch_warns_always() -> Iterator[None]:
    """torch emits some warnings once per process; make them repeat so a test sees them."""
    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    yield
    torch.set_warn_always(before)


@pytest.mark.parametrize(("prior", "message"), [
    (lambda p: (lambda z: p(z).sum()), r"prior returned shape \(\); it must return shape \(B,\) = \(4,\)"),
    (lambda p: (lambda z: p(z)[:1]), r"prior returned shape \(1,\)"),
    (lambda p: (lambda z: p(z)[:, None]), r"prior returned shape \(4, 1\)"),
    (lambda p: (lambda z: z), r"prior returned shape \(4, 2\)"),
    (lambda p: (lambda z: torch.full_like(p(z), math.nan)), r"prior returned NaN/inf at 4 finite x_T"),
], ids=["sum", "first", "column", "per-dim", "nan"])
def test_likelihood_refuses_a_prior_that_is_not_a_finite_batch_vector(problem, prior, message):
    # Before: a scalar or [:1] was broadcast onto every point, NaN came out as all-NaN
    # log-densities, (B, 1) and (B, D) failed in an indexing RuntimeError.
    sde, score, x = problem
    with pytest.raises(ValueError, match=message):
        log_likelihood(sde, score, x, prior=prior(sde.prior_log_prob), **FAST)


@pytest.mark.parametrize(("kwargs", "kind", "message"), [
    (dict(score=lambda z, t: z[:, :1]), ValueError, r"score returned shape \(16, 1\), expected the shape of x"),
    (dict(score=lambda z, t: torch.full_like(z, math.nan)), NonFiniteScoreError, "score returned NaN/inf"),
    (dict(prior=lambda z: torch.full((z.shape[0],), math.nan, dtype=z.dtype)), ValueError,
     "prior returned NaN/inf"),
    (dict(prior=lambda z: z.sum()), ValueError, r"prior returned shape \(\)"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(batch_size=-3), ValueError, "batch_size must be a positive integer"),
    (dict(dtype=torch.float16), ValueError, "dtype is torch.float16: half precision"),
    (dict(dtype=torch.int64), ValueError, "dtype must be a real floating-point dtype"),
    (dict(dtype="float99"), ValueError, "dtype must be a real floating-point dtype"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
], ids=["score-shape", "score-nan", "prior-nan", "prior-scalar", "batch-0", "batch-neg", "half", "int", "name",
        "seed"])
def test_elbo_checks_its_arguments_as_likelihood_does(problem, kwargs, kind, message):
    # Before: the wrong-shape score was broadcast, NaN scores and priors gave NaN bounds,
    # batch_size <= 0 and half precision were accepted, the rest failed deep inside torch.
    sde, score, x = problem
    kwargs = dict(kwargs)
    score = kwargs.pop("score", score)
    with pytest.raises(kind, match=message):
        elbo(sde, score, x, n_samples=4, **kwargs)


def test_elbo_accepts_a_named_dtype(problem):
    # Before: dtype="float64" failed with "Invalid device string".
    sde, score, x = problem
    named = elbo(sde, score, x.float(), n_samples=4, dtype="float64", seed=0)
    typed = elbo(sde, score, x.float(), n_samples=4, dtype=torch.float64, seed=0)
    assert named.elbo.dtype == torch.float64
    torch.testing.assert_close(named.elbo, typed.elbo, rtol=0, atol=0)


def test_dequantize_refuses_integer_dtypes_and_accepts_names():
    # Before: dtype=torch.int64 floored every value to 0; "float64" was taken for a device.
    k = torch.tensor([[1, 2], [3, 0]])
    with pytest.raises(ValueError, match="dtype must be a real floating-point dtype.*torch.int64"):
        dequantize(k, levels=4, dtype=torch.int64)
    named = dequantize(k, levels=4, dtype="float64", generator=torch.Generator().manual_seed(0))
    typed = dequantize(k, levels=4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert named.dtype == torch.float64
    torch.testing.assert_close(named, typed, rtol=0, atol=0)


def test_bits_per_dim_randomness_dtype_names_and_data(problem):
    sde, score, _ = problem
    k = torch.tensor([[1, 2], [3, 0]])
    opts = dict(levels=4, data_range=(-2.0, 2.0), **FAST)
    # Only a generator: it drives the run (before: "pass either seed or generator, not both").
    a = bits_per_dim(sde, score, k, generator=torch.Generator().manual_seed(3), **opts)
    b = bits_per_dim(sde, score, k, generator=torch.Generator().manual_seed(3), **opts)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="pass either seed or generator, not both"):
        bits_per_dim(sde, score, k, seed=5, generator=torch.Generator(), **opts)
    # seed=None is fresh randomness, as in likelihood (before: always seed 0).
    c = bits_per_dim(sde, score, k, seed=None, **opts)
    d = bits_per_dim(sde, score, k, seed=None, **opts)
    assert not torch.equal(c, d)
    # A named dtype (before: "Invalid device string") gives the typed result.
    named = bits_per_dim(sde, score, k, dtype="float64", **opts)
    typed = bits_per_dim(sde, score, k, dtype=torch.float64, **opts)
    torch.testing.assert_close(named, typed, rtol=0, atol=0)
    # A list is refused by name (before: AttributeError 'list' object has no attribute 'device').
    with pytest.raises(TypeError, match="k must be a tensor of integer levels, got list"):
        bits_per_dim(sde, score, k.tolist(), **opts)


@pytest.mark.parametrize(("T", "message"), [
    (2.0, r"T=2 exceeds the SDE's horizon sde.T=1"),
    (math.inf, "eps and T must be finite"),
    (math.nan, "eps and T must be finite"),
    (1e-6, "need 0 < eps < T"),
    ("late", "T must be a real number"),
], ids=["past", "inf", "nan", "before-eps", "string"])
def test_end_time_must_lie_within_the_sde_horizon(problem, T, message):
    # Before: T=2 warned about the prior, then failed inside the score at a stage time (or, with
    # a score defined everywhere, silently integrated past the horizon).
    sde, score, x = problem
    kind = TypeError if isinstance(T, str) else ValueError
    for fn in (score, lambda z, t: -z):
        with pytest.raises(kind, match=message):
            log_likelihood(sde, fn, x, T=T)
    with pytest.raises(kind, match=message):
        elbo(sde, score, x, T=T, n_samples=4)


def test_max_steps_is_a_likelihood_option(problem):
    # The adaptive solver's advice "raise max_steps" names an option likelihood now has
    # (before: TypeError unknown likelihood option(s) max_steps).
    sde, score, x = problem
    with pytest.raises(MaxStepsExceeded, match=r"max_steps=2 reached .*raise max_steps"):
        log_likelihood(sde, score, x, max_steps=2)
    with pytest.raises(MaxStepsExceeded, match="max_steps=2 reached"):
        log_likelihood(sde, score, x, max_steps=2, integrator="rk4_simpson")  # the pilot's solve
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        log_likelihood(sde, score, x, max_steps=0)


def test_initial_step_does_not_convert_a_graph_to_a_float(torch_warns_always):
    # solve_adaptive's initial step took float() of a tensor with a graph: torch warned
    # "Converting a tensor with requires_grad=True to a scalar" (log_likelihood(grad=True)).
    y0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)

    def fn(t: float, y: torch.Tensor) -> torch.Tensor:
        return -y * (1.0 + t)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = initial_step(fn, 0.0, y0, fn(0.0, y0), 1.0, 5, 1e-5, 1e-5, max_h=1.0)
    assert 0.0 < h <= 1.0


def test_gradients_flow_without_autograd_warnings(problem, torch_warns_always):
    sde, score, x = problem
    x = x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = log_likelihood(sde, score, x, grad=True)
    (grad,) = torch.autograd.grad(lp.sum(), x)
    assert bool(torch.isfinite(grad).all()) and bool((grad != 0).any())


@pytest.mark.parametrize("options", [{}, dict(integrator="rk4_simpson", steps=4), dict(divergence="hutchinson")],
                         ids=["default", "rk4-simpson", "hutchinson"])
def test_likelihood_names_the_score_when_it_returns_the_wrong_shape(problem, options):
    # Before: the likelihood's paths reported "field returned shape (4, 1), expected (4, 2)",
    # naming an internal field rather than the user's score (the sampling path names the score).
    sde, _, x = problem
    with pytest.raises(ValueError, match=r"score returned shape \(4, 1\), expected the shape of x \(4, 2\)"):
        log_likelihood(sde, lambda z, t: z[:, :1], x, **options)
