"""A score that writes into its input is refused; autograd under inference_mode and 1-D shapes are named."""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers.dynamics import ScoreModifiedInputError

SDE = sd.VESDE()
TARGET = sd.targets.eight_gaussians()
EXACT = TARGET.score_fn(SDE)


def _scales_input_in_place(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    s = EXACT(x.clone(), t)  # the right score, but the state is halved
    x.div_(2.0)
    return s


@pytest.mark.parametrize("solver", solvers.available())
def test_every_solver_refuses_a_score_that_changes_its_input(solver: str) -> None:
    # Old code: 28 of the 30 solvers returned other samples without a word (VE, 10 steps:
    # euler_maruyama's spread 3.5 -> 106, ode_heun's 2.9 -> 0.0).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ScoreModifiedInputError, match=r"changed its input x in place \(100 of 100"):
            solvers.sample(SDE, _scales_input_in_place, shape=(50, 2), solver=solver, steps=10, seed=0)


def test_a_score_that_leaves_its_input_alone_is_unchanged_by_the_check() -> None:
    def copies(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y.div_(1.0)
        return EXACT(y, t)

    a = solvers.sample(SDE, copies, shape=(50, 2), solver="dpmpp_2m", steps=10, seed=0)
    b = solvers.sample(SDE, EXACT, shape=(50, 2), solver="dpmpp_2m", steps=10, seed=0)
    assert torch.equal(a.samples, b.samples) and a.nfe == b.nfe


def test_a_differentiating_score_under_inference_mode_names_it() -> None:
    sde = sd.VPSDE()

    def by_autograd(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(-(y**2).sum() / 2, y)
        return g

    with torch.no_grad():  # works
        assert torch.isfinite(solvers.sample(sde, by_autograd, (20, 2), "dpmpp_2m", steps=5, seed=0).samples).all()
    with torch.inference_mode(), pytest.raises(RuntimeError) as info:
        solvers.sample(sde, by_autograd, (20, 2), "dpmpp_2m", steps=5, seed=0)
    assert "torch.inference_mode()" in "\n".join(getattr(info.value, "__notes__", []))


def test_a_one_dimensional_shape_says_a_data_dimension_is_missing() -> None:
    with pytest.raises(ValueError, match=r"a batch size and at least one data dimension.*\(16, 1\)"):
        solvers.sample(SDE, EXACT, shape=(16,), solver="dpmpp_2m", steps=5, seed=0)
    with pytest.raises(ValueError, match=r"a batch size and at least one data dimension"):
        solvers.sample(SDE, EXACT, shape=(16, 2), solver="dpmpp_2m", steps=5, seed=0, x_T=torch.zeros(16))


@pytest.mark.parametrize("solver", ["dpmpp_2m", "euler_maruyama", "ode_heun", "ode_dopri5", "pc"])
def test_a_score_that_changes_its_input_later_in_the_run_is_refused(solver: str) -> None:
    # An outside check: `x.mul_(1.001)` only for t < 0.5 moved dpmpp_2m's samples by 1e-2 unseen.
    sde = sd.VPSDE()
    exact = sd.targets.eight_gaussians().score_fn(sde)

    def later(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = exact(x.clone(), t)
        if float(t.max()) < 0.5:
            x.mul_(1.001)
        return s

    with pytest.raises(ScoreModifiedInputError, match=r"at evaluation \d+ \(the sum of x went from"):
        solvers.sample(sde, later, shape=(50, 2), solver=solver, steps=10, seed=0)


def test_a_state_already_holding_nan_is_named_as_such_not_as_a_changed_input() -> None:
    from solvers.dynamics import CountedScore, NonFiniteScoreError

    counted = CountedScore(lambda x, t: -x)
    x = torch.tensor([[0.0, float("nan")], [1.0, 2.0]])
    with pytest.raises(NonFiniteScoreError, match="already held NaN"):
        counted(x, torch.full((2,), 0.5))
    with pytest.raises(NonFiniteScoreError, match="already held NaN"):
        counted(x, torch.full((2,), 0.4))  # a later call: the sums of x are NaN before and after
