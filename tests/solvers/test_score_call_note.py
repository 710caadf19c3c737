"""A score that fails at its first call (written for a scalar t, say) gets a note on how it is called."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers


def test_a_score_failing_at_the_first_call_is_told_the_calling_convention() -> None:
    sde = sd.VPSDE()

    def scalar_time_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x * float(t)  # torch: "only one element tensors can be converted to Python scalars"

    with pytest.raises((RuntimeError, ValueError, TypeError)) as info:
        solvers.sample(sde, scalar_time_score, (8, 2), "ddim", steps=4, seed=0)
    notes = getattr(info.value, "__notes__", [])
    assert any("score(x, t) with x of shape (8, 2) and t of shape (8,)" in n for n in notes), notes


def test_a_failure_later_in_the_run_is_left_as_it_is() -> None:
    sde = sd.VPSDE()
    exact = sd.targets.eight_gaussians().score_fn(sde)
    calls: list[int] = []

    def fails_later(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the user's own failure")
        return exact(x, t)

    with pytest.raises(RuntimeError, match="the user's own failure") as info:
        solvers.sample(sde, fails_later, (8, 2), "ddim", steps=4, seed=0)
    assert not getattr(info.value, "__notes__", [])


def test_the_likelihood_adds_the_same_note() -> None:
    from scoresde.likelihood import likelihood

    sde = sd.VPSDE()

    def scalar_time_score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x * float(t)

    with pytest.raises((RuntimeError, ValueError, TypeError)) as info:
        likelihood(sde, scalar_time_score, torch.randn(4, 2, generator=torch.Generator().manual_seed(0)))
    notes = getattr(info.value, "__notes__", [])
    assert any("score(x, t) with x of shape" in n and "t of shape" in n for n in notes), notes
