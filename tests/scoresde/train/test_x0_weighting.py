"""An x0-predicting network and the loss weighting: the usual weightings weight its error by the
unbounded SNR, and Min-SNR-5 (Hang et al. 2023) trains it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

import scoresde as sd
from scoresde.cli import main
from scoresde.losses import MIN_SNR_GAMMA, loss_weight
from scoresde.train.toy import toy_config
from scoresde.train.trainer import Trainer


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE()], ids=["vp", "subvp", "ve"])
def test_min_snr_weights_the_x0_error_by_min_snr_gamma(sde) -> None:
    t = torch.logspace(-5, 0, 50, dtype=torch.float64)
    alpha, sigma = sde.marginal_coeffs(t)
    snr = (alpha / sigma) ** 2
    # the factor on ||eps_theta - z||^2 is the x0 error's weight divided by SNR
    torch.testing.assert_close(loss_weight(sde, t, "min_snr") * snr, snr.clamp(max=MIN_SNR_GAMMA))


def _score_errors(weighting: str) -> list[float]:
    target = sd.GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], 0.3)
    cfg = toy_config("two", sde="subvp", steps=300, data=target)
    cfg.model.output, cfg.loss.weighting, cfg.batch_size = "x0", weighting, 256
    cfg.model.net["width"] = 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(cfg, data=target, out_dir=None, progress=False)
        trainer.fit()
        trainer.close()
    model, sde = trainer.ema.model, cfg.sde.build()
    errors = []
    for t in (0.2, 0.5):
        x = target.sample_marginal(2000, sde, t, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            diff = model.score_fn(sde)(x, torch.full((2000,), t)) - target.marginal_score(x, t, sde)
        errors.append(float(diff.pow(2).sum(1).mean() / target.marginal_score(x, t, sde).pow(2).sum(1).mean()) ** 0.5)
    return errors


def test_an_x0_network_trains_with_min_snr_and_not_with_sigma2() -> None:
    # sub-VP, 300 steps: relative RMS score error at t = 0.2 and 0.5 was 0.78 and 0.16 with
    # sigma2 (its weight on the x0 error reaches 8e7 at t_min), 0.12 and 0.02 with min_snr. On
    # checkerboard at 1000 steps: dpmpp_2m's sliced W2 16x the exact level against 2.1x.
    sigma2, min_snr = _score_errors("sigma2"), _score_errors("min_snr")
    assert all(m < 0.3 and m < s / 3 for m, s in zip(min_snr, sigma2, strict=True)), (sigma2, min_snr)


def test_x0_with_another_weighting_warns_and_the_cli_defaults_to_min_snr(tmp_path: Path) -> None:
    cfg = toy_config("checkerboard", sde="ve", steps=1)
    cfg.model.output = "x0"
    with pytest.warns(RuntimeWarning, match=r"output='x0' with weighting='sigma2' weights the network's x0 error by SNR"):
        Trainer(cfg, out_dir=None, progress=False).close()
    cfg.loss.weighting = "min_snr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(cfg, out_dir=None, progress=False).close()
    out = tmp_path / "run"
    assert main(["train", "--data", "checkerboard", "--output", "x0", "--steps", "2", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["loss"]["weighting"] == "min_snr"
    given = tmp_path / "given"
    assert main(["train", "--data", "checkerboard", "--output", "x0", "--weighting", "sigma2", "--steps", "2",
                 "--out", str(given), "--no-progress"]) == 0  # warns (the CLI prints it), trains as asked
    assert json.loads((given / "config.json").read_text())["loss"]["weighting"] == "sigma2"
