"""Inputs the conditional API must refuse by name: complex observations, non-numeric scales."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from scoresde.conditional import (
    ClassifierGuidance,
    ClassMixture,
    ObservedCoordinates,
    PosteriorGuidance,
    Replacement,
    condition_on_measurement,
)

VP = sd.VPSDE()
MIX = sd.targets.eight_gaussians()
MASK = torch.tensor([True, False])


@pytest.mark.parametrize("make", [
    lambda y: ObservedCoordinates(MIX, MASK, y),
    lambda y: Replacement(VP, MASK, y, seed=0),
    lambda y: PosteriorGuidance(MIX.score_fn(VP), VP, MASK, y[:1], (2,)),
    lambda y: condition_on_measurement(MIX, torch.tensor([[1.0, 1.0]]), y[:1], 0.1),
], ids=["observed_coordinates", "replacement", "posterior_guidance", "measurement"])
@pytest.mark.parametrize("as_list", [False, True])
def test_complex_observations_are_refused(make, as_list: bool) -> None:
    # A cast to float drops the imaginary part (torch warns at best, or not at all): the
    # sampler would condition on another value than the one given.
    y = torch.tensor([1 + 5j, 0j])
    with pytest.raises(TypeError, match="must hold real numbers, got torch.complex"):
        make(y.tolist() if as_list else y)


def test_real_observations_still_accepted() -> None:
    oc = ObservedCoordinates(MIX, MASK, torch.tensor([1.0, 0.0]))
    assert oc.conditional.weights.sum().item() == pytest.approx(1.0)
    assert Replacement(VP, MASK, [1, 0], seed=0) is not None  # integers are real numbers


@pytest.mark.parametrize("scale", ["big", 1j, True])
def test_guidance_scale_not_a_real_number_is_named(scale) -> None:
    cm = ClassMixture(MIX, [0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(TypeError, match="guidance scale must be a real number"):
        ClassifierGuidance(MIX.score_fn(VP), cm.classifier(VP), 1, scale)


def test_noise_std_not_a_real_number_is_named() -> None:
    with pytest.raises(TypeError, match="noise_std must be a real number"):
        condition_on_measurement(MIX, torch.tensor([[1.0, 1.0]]), torch.tensor([1.0]), "0.1")


def test_one_observation_with_a_batch_axis_is_shared_by_every_sample() -> None:
    # (1, D) was refused as "1 observations but the batch has N samples"; the CLI reads such a
    # file as one shared observation, and so does the hook now.
    import solvers

    runs = []
    for y in (torch.tensor([1.0, 0.0]), torch.tensor([[1.0, 0.0]])):
        runs.append(solvers.sample(VP, MIX.score_fn(VP), (16, 2), "euler_maruyama", steps=20, seed=0,
                                   after_step=Replacement(VP, MASK, y, seed=1)).samples)
    assert torch.equal(runs[0], runs[1]) and bool((runs[0][:, 0] == 1.0).all())
