"""Inputs at the k-diffusion boundary: integer states are refused (they used to come back
truncated to integers), a NaN in a sigma list is named as such, and a score or denoiser that
fails at its first call gets a note on how it is called."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.interop import (
    denoiser_from_score,
    sample_sigmas,
    score_from_denoiser,
    times_from_sigmas,
)

F64 = torch.float64


@pytest.fixture()
def mix() -> sd.GaussianMixture:
    return sd.targets.eight_gaussians()


def test_denoiser_from_score_refuses_an_integer_state(mix: sd.GaussianMixture) -> None:
    vp = sd.VPSDE()
    d = denoiser_from_score(mix.score_fn(vp), vp)
    x = torch.tensor([[1, -1], [1, 1]])
    with pytest.raises(TypeError, match="x_edm must have a floating-point dtype, got torch.int64"):
        d(x, torch.tensor(0.5))
    # The float input gives the non-integer value the int input used to be truncated from.
    out = d(x.to(F64), torch.tensor(0.5, dtype=F64))
    assert out.dtype == F64 and not bool((out == out.round()).all())


def test_score_from_denoiser_refuses_an_integer_state(mix: sd.GaussianMixture) -> None:
    vp = sd.VPSDE()
    score = score_from_denoiser(denoiser_from_score(mix.score_fn(vp), vp), vp)
    with pytest.raises(TypeError, match="x must have a floating-point dtype, got torch.int64"):
        score(torch.tensor([[3, 2], [0, 0]]), torch.tensor([0.3, 0.3]))


@pytest.mark.parametrize("call", ["times_from_sigmas", "sample_sigmas"])
def test_a_nan_sigma_is_named_not_called_unsorted(call: str, mix: sd.GaussianMixture) -> None:
    edm = sd.EDMSDE()
    sig = torch.tensor([80.0, float("nan"), 1.0, 0.0])
    with pytest.raises(ValueError, match="sigmas must be finite noise levels"):
        if call == "times_from_sigmas":
            times_from_sigmas(edm, sig)
        else:
            sample_sigmas(edm, mix.score_fn(edm), sig, "ddim", shape=(4, 2), seed=0)


def test_a_scalar_time_score_behind_denoiser_from_score_gets_the_calling_note(mix: sd.GaussianMixture) -> None:
    vp = sd.VPSDE()
    exact = mix.score_fn(vp)
    d = denoiser_from_score(lambda x, t: exact(x, torch.full((x.shape[0],), float(t))), vp)
    with pytest.raises((ValueError, RuntimeError)) as info:
        d(torch.zeros(4, 2), torch.ones(4))
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "score(x, t)" in notes and "t of shape (4,)" in notes


def test_a_scalar_sigma_denoiser_gets_a_note_about_the_denoiser(mix: sd.GaussianMixture) -> None:
    edm = sd.EDMSDE()
    score = score_from_denoiser(lambda x, s: x / (1 + float(s) ** 2), edm)
    with pytest.raises((ValueError, RuntimeError)) as info:
        solvers.sample(edm, score, shape=(8, 2), solver="dpmpp_2m", steps=10, seed=0)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "D(x_edm, sigma_edm)" in notes and "sigma_edm of shape (8,)" in notes


def test_a_later_failure_gets_no_calling_note(mix: sd.GaussianMixture) -> None:
    # The note is about the first call only: a denoiser that worked once and then fails is not
    # told it was called wrongly.
    edm = sd.EDMSDE()
    calls = []

    def denoiser(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("out of memory")
        return x / (1 + s[:, None] ** 2)

    score = score_from_denoiser(denoiser, edm)
    t = torch.full((4,), 0.5)
    score(torch.zeros(4, 2), t)
    with pytest.raises(RuntimeError) as info:
        score(torch.zeros(4, 2), t)
    assert not getattr(info.value, "__notes__", [])
