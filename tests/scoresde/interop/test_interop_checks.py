"""Interop input checks: non-DDPM diffusers schedulers, float times, torchsde's lam."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from scoresde.interop import DiffusersScore, ReverseTorchSDE, sde_from_scheduler, unet_score

F64 = torch.float64


class _Zero(torch.nn.Module):
    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


@pytest.mark.parametrize("name", ["ScoreSdeVeScheduler", "EDMEulerScheduler", "CMStochasticIterativeScheduler"])
def test_sigma_space_diffusers_schedulers_are_refused(name: str) -> None:
    diffusers = pytest.importorskip("diffusers")
    sched = getattr(diffusers, name)()
    with pytest.raises(ValueError, match=rf"{name}.*not a discrete-VP.*SigmaSDE"):
        sde_from_scheduler(sched)
    with pytest.raises(ValueError, match=name):
        unet_score(_Zero(), sched)
    with pytest.raises(ValueError, match=r"config.*sigma_max.*not a discrete-VP"):
        unet_score(_Zero(), sched.config)
    # A betas-based scheduler is still read (its table, exactly).
    ddim = diffusers.DDIMScheduler(num_train_timesteps=20)
    torch.testing.assert_close(sde_from_scheduler(ddim).alphas_cumprod, ddim.alphas_cumprod.double(),
                               rtol=1e-6, atol=1e-7)


def test_non_integer_num_train_timesteps_is_refused() -> None:
    with pytest.raises(TypeError, match="num_train_timesteps"):
        sde_from_scheduler({"beta_schedule": "linear", "num_train_timesteps": 10.5})
    assert sde_from_scheduler({"beta_schedule": "linear", "num_train_timesteps": 10}).num_timesteps == 10


def test_diffusers_score_takes_a_float_time_and_refuses_t_zero() -> None:
    score = DiffusersScore(_Zero(), {"beta_schedule": "linear", "num_train_timesteps": 10})
    x = torch.randn(3, 1, 2, 2, dtype=F64)
    ref = score(x, torch.full((3,), 0.5, dtype=F64))
    torch.testing.assert_close(score(x, 0.5), ref, rtol=0, atol=0)
    torch.testing.assert_close(score(x, torch.tensor(0.5)), ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"t must be in \(0, T\]"):
        score(x, 0.0)


@pytest.mark.parametrize("lam", ["1", True, None, float("nan"), -1.0])
def test_reverse_torchsde_refuses_a_lam_that_is_not_a_finite_real(lam: object) -> None:
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    with pytest.raises((TypeError, ValueError), match="lam"):
        ReverseTorchSDE(sde, score, data_shape=(2,), lam=lam)
    assert ReverseTorchSDE(sde, score, data_shape=(2,), lam=0.5).lam == 0.5
