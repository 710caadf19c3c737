"""solvers.sample refuses bad arguments before any work, naming the argument (solvers.inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from solvers.inputs import MAX_STEPS, NotAnIntegerError, as_count, check_device, check_dtype


@pytest.fixture(scope="module")
def problem():
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    return sde, target.score_fn(sde)


@pytest.mark.parametrize("steps", [np.int64(4), torch.tensor(4), np.int32(4)])
def test_integer_steps_from_numpy_or_torch_run_as_ints(problem, steps):
    sde, score = problem
    a = solvers.sample(sde, score, (16, 2), solver="ddim", steps=steps, seed=0)
    b = solvers.sample(sde, score, (16, 2), solver="ddim", steps=4, seed=0)
    assert torch.equal(a.samples, b.samples) and a.nfe == b.nfe


@pytest.mark.parametrize("steps", [2.5, 4.0, "4", True])
def test_non_integer_steps_are_refused_not_truncated(problem, steps):
    sde, score = problem
    with pytest.raises(NotAnIntegerError, match="steps must be an integer"):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=steps)
    # Both kinds of except catch it (counts raised ValueError before these checks).
    assert issubclass(NotAnIntegerError, TypeError) and issubclass(NotAnIntegerError, ValueError)


def test_absurd_step_counts_are_refused_before_allocating(problem):
    sde, score = problem
    for solver in ("ddim", "ode_dopri5"):
        with pytest.raises(ValueError, match=r"steps=1000000000000 is more than"):
            solvers.sample(sde, score, (4, 2), solver=solver, steps=10**12)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=0)


def test_adaptive_solvers_build_only_their_end_points(problem):
    sde, score = problem
    # 10^7 steps would be an 80 MB grid; an adaptive solver needs its two ends only.
    big = solvers.sample(sde, score, (8, 2), solver="ode_dopri5", steps=MAX_STEPS, seed=0)
    small = solvers.sample(sde, score, (8, 2), solver="ode_dopri5", steps=1, seed=0)
    assert torch.equal(big.samples, small.samples) and big.nfe == small.nfe


def test_shape_sizes_must_be_integers(problem):
    sde, score = problem
    with pytest.raises(NotAnIntegerError, match="every size in shape must be an integer, got float 8.5"):
        solvers.sample(sde, score, (8.5, 2), solver="ddim", steps=2)
    with pytest.raises(TypeError, match="shape must be a tuple"):
        solvers.sample(sde, score, 8, solver="ddim", steps=2)
    r = solvers.sample(sde, score, (np.int64(3), torch.tensor(2)), solver="ddim", steps=2, seed=0)
    assert r.samples.shape == (3, 2)


def test_seed_checks(problem):
    sde, score = problem
    with pytest.raises(TypeError, match="pass it as generator="):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, seed=torch.Generator())
    for bad in (1.5, "5"):
        with pytest.raises(NotAnIntegerError, match="seed must be an integer"):
            solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, seed=bad)
    with pytest.raises(ValueError, match=r"seed must lie in \[-2\*\*63, 2\*\*64 - 1\]"):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, seed=2**70)
    a = solvers.sample(sde, score, (4, 2), solver="reverse_diffusion", steps=5, seed=np.int64(7))
    b = solvers.sample(sde, score, (4, 2), solver="reverse_diffusion", steps=5, seed=7)
    assert torch.equal(a.samples, b.samples)


def test_generator_checks(problem):
    sde, score = problem
    with pytest.raises(TypeError, match="an integer seed goes in seed="):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, generator=5)


def test_x_T_and_noise_types(problem):
    sde, score = problem
    with pytest.raises(TypeError, match="x_T must be a torch.Tensor .* got list"):
        solvers.sample(sde, score, solver="ddim", steps=2, x_T=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="x_T has dtype torch.int64; it must have a floating-point dtype"):
        solvers.sample(sde, score, solver="ddim", steps=2, x_T=torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="x_T must have shape"):
        solvers.sample(sde, score, solver="ddim", steps=2, x_T=torch.zeros(4))
    with pytest.raises(TypeError, match="noise must be 'gaussian', 'brownian', None or a NoiseSource"):
        solvers.sample(sde, score, (4, 2), solver="euler_maruyama", steps=2, noise=5)


def test_dtype_by_name_and_refusals(problem):
    sde, score = problem
    r = solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, seed=0, dtype="float64")
    assert r.samples.dtype == torch.float64
    assert check_dtype("torch.float32") == torch.float32
    for bad in ("float99", torch.int64, torch.complex64, "int32"):
        with pytest.raises(ValueError, match="dtype must be a real floating-point dtype"):
            check_dtype(bad)


def test_device_checks(problem):
    sde, score = problem
    assert check_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, device="gpu")
    with pytest.raises(ValueError, match="device 'meta' holds shapes, not values"):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, device="meta")
    with pytest.raises(TypeError, match="device must be a torch.device"):
        solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, device=123)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' requested but"):
            solvers.sample(sde, score, (4, 2), solver="ddim", steps=2, device="cuda")


def test_as_count_names_the_argument():
    assert as_count(np.uint8(3), "n") == 3
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -2"):
        as_count(-2, "batch_size")
    with pytest.raises(NotAnIntegerError, match="batch_size must be an integer, got the boolean True"):
        as_count(True, "batch_size")


@pytest.mark.parametrize("bad", [None, 3, "score", torch.zeros(4, 2)])
def test_a_score_that_is_not_callable_is_named_before_any_work(bad):
    # Not "'NoneType' object is not callable" from deep inside the first step: the argument, what
    # it got and the signature it needs. A tensor (a model's output passed instead of the model)
    # gets a hint.
    from scoresde.likelihood import elbo, likelihood

    sde = sd.VPSDE()
    x = torch.zeros(4, 2)
    calls = (
        lambda: solvers.sample(sde, bad, shape=(4, 2), solver="ddim", steps=5, seed=0),
        lambda: likelihood(sde, bad, x),
        lambda: elbo(sde, bad, x),
    )
    for call in calls:
        with pytest.raises(TypeError, match=f"score must be a callable .* got {type(bad).__name__}") as info:
            call()
        assert ("not its output" in str(info.value)) == isinstance(bad, torch.Tensor)
