"""Guidance wrappers and the other score factories carry the SDE their score belongs to.

An outside pass found the check of a score's declared SDE (``score.sde``) lost behind
``ClassifierGuidance`` (a VP network's guided score sampled under sub-VP was accepted), and no
declaration on the exact conditional scores, the k-diffusion bridge and class-conditional
networks (``train_conditional`` did not record its SDE either).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.conditional import ClassifierFreeGuidance, ClassifierGuidance
from scoresde.interop.kdiffusion import score_from_denoiser
from scoresde.models import MLP
from scoresde.models.conditional import LabelConditional
from scoresde.train import load_model, train_toy
from scoresde.train.conditional import train_conditional

VP, SUB = sd.VPSDE(), sd.SubVPSDE()


def _refused(score: object, sde: object = SUB) -> None:
    with pytest.raises(ValueError, match="the score was made for"):
        solvers.sample(sde, score, shape=(4, 2), solver="ddim", steps=3, seed=0)  # type: ignore[arg-type]


def test_classifier_guidance_forwards_the_network_s_sde_and_training_range(tmp_path: Path) -> None:
    train_toy("eight_gaussians", sde=VP, steps=2, out_dir=tmp_path, progress=False)
    model, sde, _ = load_model(tmp_path)
    guided = ClassifierGuidance(model.score_fn(sde), lambda x, t: torch.zeros(x.shape[0], 3) + x[:, :1], 1, 1.0)
    assert guided.sde is sde and guided.min_score_time == model.min_score_time
    _refused(guided)


def test_exact_conditional_scores_and_the_k_diffusion_bridge_declare_their_sde() -> None:
    mixture = sd.targets.eight_gaussians()
    observed = sd.conditional.ObservedCoordinates(mixture, torch.tensor([True, False]), torch.tensor([1.0, 0.0]))
    _refused(observed.score_fn(VP))
    posterior = sd.conditional.condition_on_measurement(mixture, torch.tensor([[1.0, 0.0]]), torch.tensor([1.0]), 0.1)
    _refused(posterior.score_fn(VP))
    _refused(score_from_denoiser(lambda x, s: torch.zeros_like(x), VP))


def test_class_conditional_networks_know_their_sde() -> None:
    g = torch.Generator().manual_seed(0)
    x, labels = torch.randn(64, 2, generator=g), torch.randint(0, 2, (64,), generator=g)
    model = train_conditional(LabelConditional(MLP((2,)), 2), x, labels, VP, steps=2)
    assert model.trained_sde is VP
    with pytest.raises(ValueError, match="this model was trained under"):
        model.score_fn(SUB)
    _refused(ClassifierFreeGuidance(model.score_fn(VP), label=0, scale=1.0, null_label=model.null_label))


def test_posterior_guidance_refuses_a_score_of_another_sde() -> None:
    with pytest.raises(ValueError, match="the score was made for"):
        sd.conditional.PosteriorGuidance(sd.targets.eight_gaussians().score_fn(VP), SUB, torch.tensor([[1.0, 0.0]]),
                                         torch.tensor([1.0]), (2,))
