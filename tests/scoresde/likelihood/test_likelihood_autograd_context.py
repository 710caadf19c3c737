"""The likelihood's messages when autograd cannot reach x (an outside pass).

Under ``torch.inference_mode()`` the error blamed the score; a score whose graph runs through
a model's parameters but not through ``x`` (``net(x.detach(), t)``) got torch's raw
"appears to not have been used in the graph" or, under VP, could leave only the drift's part
of the divergence.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import scoresde as sd
from scoresde.likelihood import log_likelihood
from scoresde.likelihood.flow import graph_reaches

F64 = torch.float64


def _problem() -> tuple[sd.VPSDE, sd.targets.GaussianMixture, torch.Tensor]:
    target = sd.targets.eight_gaussians()
    return sd.VPSDE(), target, target.sample(20, generator=torch.Generator().manual_seed(0)).to(F64)


def test_inference_mode_is_named_as_the_cause() -> None:
    sde, target, x = _problem()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        log_likelihood(sde, target.score_fn(sde), x)


def test_no_grad_around_the_call_still_works() -> None:
    sde, target, x = _problem()
    with torch.no_grad():
        lp = log_likelihood(sde, target.score_fn(sde), x)
    assert float((lp - target.log_prob(x)).abs().mean()) < 1e-3


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["vp", "ve"])
def test_a_graph_through_parameters_only_is_refused(sde: sd.VPSDE) -> None:
    target = sd.targets.eight_gaussians()
    x = target.sample(20, generator=torch.Generator().manual_seed(0)).to(F64)
    base = target.score_fn(sde)
    w = nn.Parameter(torch.ones((), dtype=F64))
    with pytest.raises(ValueError, match="the x it was given is not in it"):
        log_likelihood(sde, lambda z, t: base(z.detach(), t) * w, x)


def test_a_graph_through_parameters_and_x_is_accepted() -> None:
    sde, target, x = _problem()
    base = target.score_fn(sde)
    w = nn.Parameter(torch.ones((), dtype=F64))
    lp = log_likelihood(sde, lambda z, t: base(z, t) * w, x)
    assert float((lp - target.log_prob(x)).abs().mean()) < 1e-3


def test_graph_reaches_leaf_and_intermediate_inputs() -> None:
    leaf = torch.randn(3, 2, requires_grad=True)
    view = leaf.reshape(3, 2) * 1.0
    w = torch.ones((), requires_grad=True)
    assert graph_reaches((view * 2).sum(1), view)
    assert graph_reaches((leaf * 2).sum(1), leaf)
    assert not graph_reaches(view.detach() * w, view)
    assert not graph_reaches(leaf.detach() * w, leaf)
