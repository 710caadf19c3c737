"""`scoresde sample` conditioning flags: --class/--guidance, --mask/--observed, and their errors."""

from __future__ import annotations

import numpy as np
import pytest

from scoresde.cli import main


def _run(tmp_path, *flags: str) -> int:
    return main(["sample", "--target", "eight_gaussians", "--n", "400", "--steps", "200", "--no-plot",
                 "--out", str(tmp_path), *flags])


def test_class_guidance_samples_the_component(tmp_path) -> None:
    assert _run(tmp_path, "--class", "2", "--guidance", "1") == 0
    x = np.load(tmp_path / "samples.npy")
    # Component 2 of eight_gaussians is N((0, 2), 0.15^2 I): the mean of 400 samples is within
    # 5 standard errors (0.15 / 20) plus the O(eps) end-time shrinkage.
    assert np.abs(x.mean(0) - np.array([0.0, 2.0])).max() < 5 * 0.15 / 20 + 0.01


def test_mask_observed_replacement_keeps_observation(tmp_path) -> None:
    assert _run(tmp_path, "--mask", "1,0", "--observed", "1.0,0") == 0
    x = np.load(tmp_path / "samples.npy")
    assert np.all(x[:, 0] == 1.0)
    assert _run(tmp_path, "--mask", "1,0", "--observed", "1.0,0", "--impute", "exact") == 0
    x = np.load(tmp_path / "samples.npy")
    assert np.all(np.abs(np.abs(x[:, 1]) - 2**0.5) < 0.75)  # free coordinate near +-1.41 (std 0.15)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--class", "8"), "unknown class 8"),
        (("--class", "1", "--guidance", "-2"), ">= 0"),
        (("--guidance", "2"), "--guidance needs --class"),
        (("--mask", "1,0,1", "--observed", "1,0,0"), "mask has shape"),
        (("--mask", "1,1", "--observed", "1,0"), "every coordinate"),
        (("--mask", "0,0", "--observed", "1,0"), "observes nothing"),
        (("--mask", "1,0"), "go together"),
        (("--mask", "1,x", "--observed", "1,0"), "comma-separated"),
    ],
)
def test_conditioning_errors(tmp_path, capsys, flags, message) -> None:
    assert _run(tmp_path, *flags) == 2
    assert message in capsys.readouterr().err
