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


def test_classifier_files_are_verified_and_foreign_files_named(trained, tmp_path) -> None:
    from scoresde.train.checkpoint import CheckpointError

    _, clf = trained
    path = save_classifier(clf, tmp_path / "c.pt", sde=VP, data="eight_gaussians")
    blob = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.pt"
    mid = len(blob) // 2
    flipped.write_bytes(bytes(blob[:mid]) + bytes(b ^ 0xFF for b in blob[mid:mid + 8]) + bytes(blob[mid + 8:]))
    with pytest.raises(CheckpointError, match="corrupt: SHA-256"):
        load_classifier(flipped)
    (tmp_path / "half.pt").write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(CheckpointError, match="truncated"):
        load_classifier(tmp_path / "half.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a file\xff" * 10)
    with pytest.raises(ValueError, match="not a valid classifier file"):
        load_classifier(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="is a folder"):
        load_classifier(tmp_path)
    # A plain torch.save file of the old layout still loads.
    old = tmp_path / "old.pt"
    torch.save({"kind": "noisy_classifier", "config": clf.config, "state_dict": clf.state_dict()}, old)
    again, n = load_classifier(old)
    assert n == 4 and again.trained_for is None
    # A classifier passed where a score model is expected is named as such.
    with pytest.raises(CheckpointError, match="is a classifier file"):
        sd.train.load_model(path)


def test_a_classifier_for_another_sde_or_data_warns(trained, tmp_path) -> None:
    from scoresde.train.classifier import check_classifier_fits

    _, clf = trained
    loaded, _ = load_classifier(save_classifier(clf, tmp_path / "c.pt", sde=VP, data="eight_gaussians"))
    assert loaded.trained_for == {"sde": {"name": "vp", "params": VP.config()}, "data": "eight_gaussians"}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_classifier_fits(loaded, sd.VPSDE(), "eight_gaussians")  # the same: silent
    with pytest.warns(UserWarning, match="trained for SDE vp .*\\(here: ve "):
        check_classifier_fits(loaded, sd.VESDE(), "eight_gaussians")
    with pytest.warns(UserWarning, match="data 'eight_gaussians' \\(here: 'ring'\\)"):
        check_classifier_fits(loaded, VP, "ring")


def test_train_classifier_refuses_a_folder_as_out_before_training(tmp_path, capsys) -> None:
    assert main(["train-classifier", "--target", "eight_gaussians", "--steps", "5", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr()
    assert "is a folder; give a file name" in err.err and "step 0" not in err.out
    assert main(["sample", "--target", "eight_gaussians", "--classifier", str(tmp_path / "c.pt"),
                 "--no-plot", "--out", str(tmp_path)]) == 2
    assert "--classifier needs --class" in capsys.readouterr().err
