"""Noise-conditional classifier recipe: it learns the exact p_t(c | x) of a mixture, and guides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde.cli import main
from scoresde.conditional import ClassifierGuidance, ClassMixture, ConditionalReference
from scoresde.train.classifier import (
    load_classifier,
    mixture_data,
    save_classifier,
    train_classifier,
)

VP = sd.VPSDE()
CLASSES = [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.fixture(scope="module")
def trained():
    mix = sd.targets.eight_gaussians()
    return mix, train_classifier(*mixture_data(mix, CLASSES, 8000), VP, steps=400, seed=0)


def test_classifier_matches_exact_posterior(trained) -> None:
    mix, clf = trained
    cm = ClassMixture(mix, CLASSES)
    for t in (0.05, 0.3, 0.7):
        x = mix.sample_marginal(2000, VP, t, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            p = torch.softmax(clf(x, torch.full((2000,), t)), 1)
        exact = cm.log_prob(x.double(), t, VP).exp().float()
        # 400 Adam steps: mean total variation to the exact p_t(c | x) measured 0.01-0.03.
        assert float(0.5 * (p - exact).abs().sum(1).mean()) < 0.06


def test_trained_classifier_guidance_near_exact(trained, tmp_path) -> None:
    mix, clf = trained
    clf2, n = load_classifier(save_classifier(clf, tmp_path / "c.pt"))
    assert n == 4
    ref = ConditionalReference(ClassMixture(mix, CLASSES).conditional(1), VP, VP.eps, n=2000)
    s = ClassifierGuidance(mix.score_fn(VP), clf2, 1, 1.0, n_classes=n)
    x = solvers.sample(VP, s, (2000, 2), "dpmpp_2m", steps=50, seed=0).samples
    # A learned classifier is not exact: allow 5x the exact-score bound (unguided scores ~6e3).
    assert ref.evaluate(x)["combined"] < 30


def test_train_classifier_cli_and_guided_sampling(tmp_path, capsys) -> None:
    clf = tmp_path / "clf.pt"
    assert main(["train-classifier", "--target", "eight_gaussians", "--classes", ",".join(map(str, CLASSES)),
                 "--steps", "200", "--out", str(clf)]) == 0
    assert main(["sample", "--target", "eight_gaussians", "--class", "2", "--classifier", str(clf), "--n", "300",
                 "--steps", "100", "--no-plot", "--out", str(tmp_path)]) == 0
    x = np.load(tmp_path / "samples.npy")
    # Class 2 = components 4, 5 at angles 180 and 225 degrees: x_1 < 0 for (almost) every sample.
    assert (x[:, 0] < 0).mean() > 0.95
    assert main(["sample", "--target", "eight_gaussians", "--class", "4", "--classifier", str(clf),
                 "--no-plot", "--out", str(tmp_path)]) == 2
    assert "unknown class 4" in capsys.readouterr().err
    assert main(["sample", "--target", "eight_gaussians", "--class", "1", "--classifier", str(tmp_path / "no.pt"),
                 "--no-plot", "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
