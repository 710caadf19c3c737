"""diffusers interop: a small random UNet2DModel and scheduler configs (no downloads)."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.interop import DiffusersScore, sde_from_scheduler, unet_score

diffusers = pytest.importorskip("diffusers")
F64 = torch.float64


class _ExactOutput(torch.nn.Module):
    """A "UNet" returning the exact eps / v / x0 of a Gaussian data law N(0, s0^2 I) at timestep k."""

    def __init__(self, sde: sd.DiscreteVPSDE, kind: str, s0: float = 0.7) -> None:
        super().__init__()
        self.sde, self.kind, self.s0 = sde, kind, s0

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        a, s = (c[:, None, None, None] for c in self.sde.marginal_coeffs(self.sde.time(k).to(x.dtype)))
        score = -x / (a**2 * self.s0**2 + s**2)
        eps, x0 = -s * score, (x + s**2 * score) / a
        return {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[self.kind]


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_prediction_types_give_the_exact_score(kind: str) -> None:
    sched = diffusers.DDPMScheduler(num_train_timesteps=100, prediction_type=kind)
    sde = sde_from_scheduler(sched)
    score = DiffusersScore(_ExactOutput(sde, kind), sched)
    t = torch.linspace(sde.eps, sde.T, 7, dtype=F64)
    x = torch.randn(7, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    a, s = (c[:, None, None, None] for c in sde.marginal_coeffs(t))
    exact = -x / (a**2 * 0.49 + s**2)
    torch.testing.assert_close(score(x, t), exact, rtol=1e-12, atol=1e-12)  # algebra in float64


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_x0_from_model_output_matches_diffusers_scheduler(kind: str) -> None:
    sched = diffusers.DDPMScheduler(num_train_timesteps=50, prediction_type=kind, clip_sample=False)
    sde = sde_from_scheduler(sched)
    g = torch.Generator().manual_seed(1)
    x, o = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    from scoresde.models.parameterization import convert

    src = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[kind]
    for k in (0, 17, 49):
        t = sde.time(torch.full((2,), k))
        a, s = sde.marginal_coeffs(t)
        ours = convert(o.double(), x.double(), a, s, src=src, dst="x0")
        theirs = sched.step(o, k, x, generator=g).pred_original_sample
        # diffusers works in float32: agreement to float32 round-off, amplified by 1/alpha at large k.
        torch.testing.assert_close(ours.float(), theirs, rtol=1e-4, atol=1e-4)
    # v target: diffusers' get_velocity is our alpha eps - sigma x0.
    k = torch.tensor([5, 40])
    a, s = sde.marginal_coeffs(sde.time(k))
    v = sched.get_velocity(x, o, k)
    torch.testing.assert_close(v.double(), a[:, None, None, None] * o - s[:, None, None, None] * x,
                               rtol=1e-5, atol=1e-5)  # float32 table


def test_small_unet_as_a_score_samples(small_unet) -> None:
    unet = small_unet()
    sched = diffusers.DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    sde, score = unet_score(unet, sched.config)
    assert isinstance(sde, sd.DiscreteVPSDE) and sde.num_timesteps == 100
    t = torch.tensor([sde.eps, 0.5, 1.0], dtype=F64)
    torch.testing.assert_close(score.timesteps(t), torch.tensor([0.0, 49.0, 99.0], dtype=F64),
                               rtol=0, atol=1e-12)
    x = torch.randn(3, 1, 8, 8, dtype=F64)
    out = score(x, t)
    assert out.shape == x.shape and out.dtype == F64 and torch.isfinite(out).all()
    # eps prediction: score = -unet(x, k) / sigma exactly.
    _, s = sde.marginal_coeffs(t)
    with torch.no_grad():
        eps = unet(x, score.timesteps(t)).sample
    torch.testing.assert_close(out, -eps / s[:, None, None, None], rtol=1e-12, atol=1e-12)
    for solver in ("dpmpp_2m", "euler_maruyama"):
        r = solvers.sample(sde, score, shape=(2, 1, 8, 8), solver=solver, steps=4, seed=0, dtype=F64)
        assert r.samples.shape == (2, 1, 8, 8) and torch.isfinite(r.samples).all()
        assert r.nfe == 5  # 4 steps + the default end-of-run step


def test_unknown_prediction_type_and_zero_snr_are_refused(small_unet) -> None:
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusersScore(small_unet(), {"prediction_type": "flow"})
    with pytest.raises(ValueError, match="zero_snr"):
        sde_from_scheduler({"rescale_betas_zero_snr": True})
