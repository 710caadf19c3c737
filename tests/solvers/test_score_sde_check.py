"""A score that declares its SDE (``score.sde``) is refused beside an SDE with other marginals."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.score_sde import check_score_sde


class _Declared:
    def __init__(self, sde: object) -> None:
        self.sde = sde

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x


def test_a_score_of_another_schedule_is_refused_before_any_evaluation() -> None:
    score = _Declared(sd.VPSDE(beta_max=10.0))
    with pytest.raises(ValueError, match=r"at t = 0\.001, alpha .* sigma .*; a score of p_t under one SDE"):
        solvers.sample(sd.VPSDE(), score, shape=(4, 2), solver="ddim", steps=3, seed=0)
    with pytest.raises(ValueError, match=r"the sde runs to T = 2, past the T = 1 the score was made for"):
        check_score_sde(_Declared(sd.VPSDE()), sd.VPSDE(T=2.0))  # past the score's T


@pytest.mark.parametrize("declared", [sd.VPSDE(), None, object()])
def test_an_equal_sde_or_none_that_can_be_compared_passes(declared: object) -> None:
    r = solvers.sample(sd.VPSDE(), _Declared(declared), shape=(4, 2), solver="ddim", steps=3, seed=0)
    assert r.samples.shape == (4, 2)


def test_a_score_on_another_device_is_named() -> None:
    # A score returning its output on another device failed inside the run's bookkeeping with
    # torch's "Tensor on device cpu is not on the expected device meta!", naming no score.
    sde = sd.VPSDE()
    exact = sd.targets.eight_gaussians().score_fn(sde)
    with pytest.raises(ValueError, match=r"score returned a tensor on device meta, but x is on cpu"):
        solvers.sample(sde, lambda x, t: exact(x, t).to("meta"), shape=(8, 2), solver="dpmpp_2m", steps=5, seed=0)
