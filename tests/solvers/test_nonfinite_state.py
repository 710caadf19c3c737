"""A NaN that an earlier step put into the state is not blamed on the score.

An SDE whose diffusion is NaN at one time the grid visits (a beta(t) < 0 between the points
BetaSDE checks at construction, from an outside check) broke the state in that step; the next
score call returned NaN on it and the run said "score returned NaN/inf ... check the model".
"""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers.dynamics import NonFiniteScoreError


def test_a_broken_state_is_named_as_the_cause() -> None:
    dip = sd.BetaSDE(lambda t: 12.0 + 0 * t - 400.0 * torch.exp(-(((t - 0.502) / 0.0004) ** 2)))
    assert not bool(torch.isfinite(dip.diffusion(torch.tensor([0.502], dtype=torch.float64))).all())
    score = sd.targets.eight_gaussians().score_fn(dip)
    with warnings.catch_warnings(), pytest.raises(NonFiniteScoreError, match="already held NaN/inf") as info:
        warnings.simplefilter("ignore")
        solvers.sample(dip, score, shape=(100, 2), solver="euler_maruyama",
                       grid=torch.tensor([1.0, 0.502, 0.3, 0.001]), seed=0)
    assert "check the model" not in str(info.value)


def test_a_score_that_returns_nan_is_still_named() -> None:
    sde = sd.VPSDE()

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, float("nan"))

    with pytest.raises(NonFiniteScoreError, match="score returned NaN/inf"):
        solvers.sample(sde, score, shape=(8, 2), solver="ddim", steps=5, seed=0)
