"""Regression tests for clear errors and run-to-run state in the conditional samplers."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.conditional import (
    ClassifierGuidance,
    ClassMixture,
    ObservedCoordinates,
    ParticleFilter,
    PosteriorGuidance,
    Replacement,
)
from scoresde.conditional.checks import check_mask

VP = sd.VPSDE()
MIX = sd.targets.eight_gaussians()
SCORE = MIX.score_fn(VP)


def test_particle_filter_starts_each_run_afresh() -> None:
    # The weights of a run that stopped above eps leaked into the next run's first update.
    A, y = torch.tensor([[1.0, 1.0]]), torch.tensor([1.5])
    grids = [torch.linspace(1, 0.05, 11), None, None]  # the first run stops above eps

    def run(pf: ParticleFilter, grid: torch.Tensor | None) -> torch.Tensor:
        return solvers.sample(VP, SCORE, (64, 2), "euler_maruyama", grid=grid, steps=10, seed=0,
                              after_step=pf, dtype=torch.float64).samples

    def make(g: torch.Generator) -> ParticleFilter:
        return ParticleFilter(SCORE, VP, A, y, (2,), noise_std=0.1, generator=g)

    shared = make(torch.Generator().manual_seed(0))
    reused = [run(shared, grid) for grid in grids]
    g = torch.Generator().manual_seed(0)  # fresh filters drawing the same resampling stream
    fresh = [run(make(g), grid) for grid in grids]
    for a, b in zip(reused, fresh, strict=True):
        assert torch.equal(a, b)
    run(shared, grids[0])
    assert shared._prev is not None
    shared.reset()
    assert shared._prev is None and shared._logw is None


def test_classifier_guidance_names_a_bad_classifier() -> None:
    clf = ClassMixture(MIX, [0, 0, 0, 0, 1, 1, 1, 1]).classifier(VP)
    x, t = torch.randn(4, 2), torch.full((4,), 0.5)
    # Was "RuntimeError: element 0 of tensors does not require grad".
    with pytest.raises(TypeError, match="differentiable in x"):
        ClassifierGuidance(SCORE, lambda x, t: clf(x.detach(), t), 1)(x, t)
    # Was a NaN score, blamed on "the score" by solvers.sample.
    with pytest.raises(ValueError, match="classifier returned NaN"):
        ClassifierGuidance(SCORE, lambda x, t: clf(x, t) * float("nan"), 1)(x, t)


@pytest.mark.parametrize("A", [[[1.0, 1.0], [2.0, 2.0]], [[0.0, 0.0]]])
def test_noiseless_rank_deficient_matrix_is_refused_up_front(A: list[list[float]]) -> None:
    # Was a torch _LinAlgError / a MultivariateNormal constraint error during sampling.
    A_t = torch.tensor(A)
    y = torch.arange(1.0, A_t.shape[0] + 1)
    with pytest.raises(ValueError, match="full row rank when noise_std = 0"):
        PosteriorGuidance(SCORE, VP, A_t, y, (2,))
    with pytest.raises(ValueError, match="full row rank when noise_std = 0"):
        ParticleFilter(SCORE, VP, A_t, y, (2,))
    PosteriorGuidance(SCORE, VP, A_t, y, (2,), noise_std=0.1)  # with noise the covariance is fine
    ParticleFilter(SCORE, VP, A_t, y, (2,), noise_std=0.1)


def test_replacement_per_sample_observations_explain_batch_size() -> None:
    hook = Replacement(VP, torch.tensor([True, False]), torch.randn(6, 2), seed=0)
    with pytest.raises(ValueError, match=r"unchunked run \(no batch_size\)"):
        solvers.sample(VP, SCORE, (6, 2), steps=10, seed=0, after_step=hook, batch_size=3)


def test_mask_must_be_boolean_or_zero_one() -> None:
    # An integer [2, 0] was read as [True, False] while a float 0.5 was refused.
    for bad in ([2, 0], [0.5, 0.0], [-1, 0]):
        with pytest.raises(ValueError, match="mask must be boolean or hold only 0 and 1"):
            check_mask(bad, (2,))
    with pytest.raises(ValueError, match="mask must be boolean"):
        ObservedCoordinates(MIX, [2, 0], [1.0, 0.0])
    for good in ([1, 0], [1.0, 0.0], [True, False]):
        assert check_mask(good, (2,)).tolist() == [True, False]


@pytest.mark.parametrize("A", [[1.0, 1.0], [0.0, 0.0]])
def test_a_flat_0_1_vector_read_as_a_mask_says_how_to_pass_a_matrix_row(A: list[float]) -> None:
    # [1., 1.] meant as the measurement x1 + x2 was told only "mask observes every coordinate"
    from scoresde.conditional import ParticleFilter, PosteriorGuidance
    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    with pytest.raises(ValueError, match=r"read as a mask; for a one-row measurement matrix pass shape \(1, 2\)"):
        PosteriorGuidance(target.score_fn(sde), sde, A, [1.5], (2,), noise_std=0.1)
    with pytest.raises(ValueError, match=r"for a one-row measurement matrix pass shape \(1, 2\)"):
        ParticleFilter(target.score_fn(sde), sde, A, [1.5], (2,), noise_std=0.1)
