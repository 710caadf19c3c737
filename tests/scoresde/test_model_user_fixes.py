"""Defects an outside pass over models, parameterizations and losses found (each test failed before its fix)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

import scoresde as sd
from scoresde import losses as L
from scoresde.models.mlp import MLP
from scoresde.train import Trainer, load_model, toy_config


def test_load_model_keeps_float64_weights_exact(tmp_path: Path) -> None:
    # The model was built in float32 and loaded before the cast to float64, so a float64 run's
    # weights came back rounded to float32 (up to 3e-8 per weight, 7e-7 relative in the score).
    cfg = toy_config("eight_gaussians", steps=3)
    cfg.dtype = "float64"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(cfg, out_dir=tmp_path / "run", overwrite=True, progress=False)
        trainer.fit()
        trainer.close()
    model, sde, _ = load_model(tmp_path / "run", ema=False)
    trained = dict(trainer.model.named_parameters())
    for name, p in model.named_parameters():
        assert p.dtype == torch.float64
        assert torch.equal(p, trained[name].detach()), name
    x = torch.randn(16, 2, dtype=torch.float64)
    t = torch.full((16,), 0.3, dtype=torch.float64)
    assert torch.equal(model.score_fn(sde)(x, t), trainer.model.eval().score_fn(sde)(x, t))


@pytest.mark.parametrize("t", [1e-5, 1e-3, 1.5e-3, 1e-2, 0.1, 0.5, 0.9])
def test_cosine_schedule_float32_is_accurate_near_zero(t: float) -> None:
    # ln alpha was ln cos(a0 + d) - ln cos(a0): the two cancel near t = 0 and sigma lost three
    # digits in float32 (4e-4 relative at t = 1.5e-3). Reference without cancellation:
    # 1 - alpha_bar = (cos^2 a0 - cos^2(a0 + d)) / cos^2 a0 = sin d sin(2 a0 + d) / cos^2 a0.
    sde = sd.CosineVPSDE()
    a0 = 0.5 * math.pi * sde.s / (1 + sde.s)
    d = 0.5 * math.pi * t / (1 + sde.s)
    sigma_exact = math.sqrt(math.sin(d) * math.sin(2 * a0 + d)) / math.cos(a0)
    sigma32 = float(sde.sigma(torch.tensor([t], dtype=torch.float32))[0])
    assert abs(sigma32 / sigma_exact - 1) < 2e-6
    sigma64 = float(sde.sigma(torch.tensor([t], dtype=torch.float64))[0])
    assert abs(sigma64 / sigma_exact - 1) < 1e-12
    assert float(sde.log_alpha(torch.zeros(1))[0]) == 0.0


def test_mlp_accepts_an_empty_batch() -> None:
    net = MLP((2,))
    assert net(torch.randn(0, 2), torch.zeros(0)).shape == (0, 2)
    net3 = MLP((3, 2, 2))
    assert net3(torch.randn(0, 3, 2, 2), torch.zeros(0)).shape == (0, 3, 2, 2)


def test_score_model_refuses_t_zero() -> None:
    model = sd.models.ModelConfig(data_shape=(2,)).build(seed=0)
    torch.nn.init.normal_(model.net.out.weight, std=0.1)
    x = torch.randn(8, 2)
    with pytest.raises(ValueError, match="t must be > 0"):
        model.score_fn(sd.VPSDE())(x, torch.zeros(8))
    with pytest.raises(ValueError, match="t must be > 0"):
        model(x, 0.0, sd.VESDE(), "x0")
    assert torch.isfinite(model.score_fn(sd.VPSDE())(x, torch.full((8,), 1e-5))).all()


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_dsm_loss_refuses_given_times_outside_the_sde(bad: float) -> None:
    model = sd.models.ModelConfig(data_shape=(2,)).build(seed=0)
    t = torch.full((8,), 0.5)
    t[3] = bad
    with pytest.raises(ValueError, match=r"t must lie in \(0, T"):
        L.dsm_loss(model, sd.VPSDE(), torch.randn(8, 2), t=t, weighting="likelihood")
    # a time below the default t_min but above 0 is a legitimate evaluation point
    t[3] = 1e-6
    assert torch.isfinite(L.dsm_loss(model, sd.VPSDE(), torch.randn(8, 2), t=t))


def test_float64_model_in_a_float32_solve_names_the_dtype_option() -> None:
    import solvers

    model = sd.models.ModelConfig(data_shape=(2,)).build(seed=0).double()
    with pytest.raises(TypeError, match=r"solvers.sample\(\.\.\., dtype="):
        solvers.sample(sd.VPSDE(), model.score_fn(sd.VPSDE()), shape=(8, 2), solver="ddim", steps=3, seed=0)
