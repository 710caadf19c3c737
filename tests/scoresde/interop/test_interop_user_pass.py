"""Defects found by users coming from k-diffusion and diffusers; each test failed before its fix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import scoresde as sd
import solvers
from scoresde.interop import sample_sigmas, times_from_sigmas, unet_score

F64 = torch.float64
SIGMAS = torch.tensor([50.0, 20.0, 8.0, 3.0, 1.0, 0.4, 0.15, 0.05, 0.02, 0.01], dtype=F64)  # no final 0


def _start() -> torch.Tensor:
    return 50 * torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=F64)


def test_churn_is_converted_whatever_run_options_come_with_it() -> None:
    # A run option (keep_trajectory, noise, check_finite, progress) made the name path skip the
    # conversion of s_churn to k-diffusion's gamma: samples 1.3 away from the instance path.
    edm = sd.EDMSDE()
    score = sd.targets.eight_gaussians().score_fn(edm)
    kw = dict(s_churn=2.0, s_tmin=0.05, s_tmax=20.0)
    ref = sample_sigmas(edm, score, SIGMAS, solvers.EDMHeun(**kw), x=_start(), seed=3).samples
    for extra in ({"keep_trajectory": True}, {"check_finite": True}, {"progress": False}):
        got = sample_sigmas(edm, score, SIGMAS, "edm_heun", x=_start(), seed=3, **kw, **extra).samples
        assert torch.equal(got, ref), extra


@pytest.mark.parametrize("option", ["denoise", "grid", "x_T", "steps"])
def test_options_the_sigma_list_sets_are_refused_by_name(option: str) -> None:
    edm = sd.EDMSDE()
    score = sd.targets.eight_gaussians().score_fn(edm)
    value = {"denoise": True, "grid": "karras", "x_T": torch.zeros(4, 2), "steps": 20}[option]
    with pytest.raises(TypeError, match=f"sample_sigmas sets {option} from the sigma list"):
        sample_sigmas(edm, score, SIGMAS, "ddim", shape=(4, 2), seed=0, **{option: value})


def test_float32_sigma_lists_at_the_range_ends_are_accepted() -> None:
    # k-diffusion's get_sigmas_vp in float32 ends at 0.0104838 for VPSDE()'s 0.0104860, and was
    # refused as outside the range; a level far outside still is.
    sde = sd.VPSDE()
    lo = float(sde.marginal_coeffs(torch.tensor([sde.eps], dtype=F64))[1][0]
               / sde.marginal_coeffs(torch.tensor([sde.eps], dtype=F64))[0][0])
    a_T, s_T = (float(v[0]) for v in sde.marginal_coeffs(torch.tensor([sde.T], dtype=F64)))
    hi = s_T / a_T
    sig = torch.logspace(torch.log10(torch.tensor(hi)), torch.log10(torch.tensor(lo)), 10, dtype=F64)
    sig[0], sig[-1] = hi * (1 + 2.6e-4), lo * (1 - 2.1e-4)
    ts, final = times_from_sigmas(sde, sig.float())
    assert not final and float(ts[0]) == pytest.approx(sde.T) and float(ts[-1]) == pytest.approx(sde.eps)
    sig[-1] = lo * 0.98
    with pytest.raises(ValueError, match="noise levels must lie in"):
        times_from_sigmas(sde, sig)


class _Eps(nn.Module):
    """A fixed epsilon prediction (x itself), optionally with a variance half on the channels."""

    def __init__(self, learned: bool) -> None:
        super().__init__()
        self.learned = learned
        self.p = nn.Parameter(torch.zeros((), dtype=F64))

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        eps = 0.5 * x + self.p
        return torch.cat([eps, torch.full_like(eps, 7.0)], 1) if self.learned else eps


def test_learned_variance_models_use_the_prediction_half() -> None:
    diffusers = pytest.importorskip("diffusers")
    plain = diffusers.DDPMScheduler(clip_sample=False)
    learned = diffusers.DDPMScheduler(clip_sample=False, variance_type="learned_range")
    x = torch.randn(3, 2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 0.4, dtype=F64)
    _, s_plain = unet_score(_Eps(False), plain)
    _, s_learned = unet_score(_Eps(True), learned)
    assert torch.equal(s_learned(x, t), s_plain(x, t))
    _, wrong = unet_score(_Eps(True), plain)  # twice the channels, but the config does not say why
    with pytest.raises(ValueError, match="learned-variance model"):
        wrong(x, t)


def test_continuous_timestep_schedulers_are_refused() -> None:
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.EulerDiscreteScheduler(timestep_type="continuous", prediction_type="v_prediction")
    with pytest.raises(ValueError, match="timestep_type='continuous'"):
        unet_score(_Eps(False), sch)
