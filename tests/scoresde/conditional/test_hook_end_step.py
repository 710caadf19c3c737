"""An explicit end step with an ``after_step`` hook is warned about: it moves what the hook set.

With a hook the default run ends at ``eps`` (``denoise="none"``), where replacement's observed
coordinates equal ``y``. ``denoise="ode"`` or ``"tweedie"`` then step to ``sigma = 0`` with the
unconditional score and moved them off ``y`` (by 1e-3 to 5e-3 on eight Gaussians), silently.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde.cli import main
from scoresde.conditional import Replacement

VP = sd.VPSDE()
MIX = sd.targets.eight_gaussians()
MASK = torch.tensor([True, False])
Y = torch.tensor([1.0, 0.0], dtype=torch.float64)


def _run(denoise):
    return solvers.sample(VP, MIX.score_fn(VP), (200, 2), "dpmpp_2m", steps=20, seed=0, denoise=denoise,
                          after_step=Replacement(VP, MASK, Y, seed=1), dtype=torch.float64)


@pytest.mark.parametrize("denoise", ["ode", "tweedie", True])
def test_an_explicit_end_step_with_a_hook_warns(denoise) -> None:
    with pytest.warns(UserWarning, match="with an after_step hook: the end-of-run step runs after the hook"):
        r = _run(denoise)
    assert float((r.samples[:, 0] - 1.0).abs().max()) > 1e-4  # what the warning is about


@pytest.mark.parametrize("denoise", [None, "none", False])
def test_the_default_with_a_hook_is_quiet_and_keeps_y(denoise) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = _run(denoise)
    assert torch.equal(r.samples[:, 0], torch.ones(200, dtype=torch.float64))


def test_an_end_step_without_a_hook_is_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solvers.sample(VP, MIX.score_fn(VP), (64, 2), "dpmpp_2m", steps=10, seed=0, denoise="ode")


def test_cli_conditional_sampling_with_denoise_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    assert main(["sample", "--target", "eight_gaussians", "--solver", "dpmpp_2m", "--steps", "10", "--n", "50",
                 "--mask", "1,0", "--observed", "1.0,0", "--denoise", "ode", "--out", str(out),
                 "--no-progress"]) == 0
    assert "with an after_step hook" in capsys.readouterr().err
    assert np.load(out / "samples.npy").shape == (50, 2)
