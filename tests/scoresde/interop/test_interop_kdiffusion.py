"""k-diffusion interop against the real k-diffusion samplers (skipped when k-diffusion is absent)."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.interop import (
    denoiser_from_score,
    load_k_diffusion_sampling,
    sample_sigmas,
    score_from_denoiser,
    times_from_sigmas,
)

F64 = torch.float64
SDES = [sd.EDMSDE(), sd.VPSDE(), sd.VESDE()]
IDS = ["edm", "vp", "ve"]


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_denoiser_and_score_round_trip_exactly(sde: sd.AffineSDE) -> None:
    target = sd.targets.eight_gaussians()
    score = target.score_fn(sde)
    g = torch.Generator().manual_seed(0)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(16, generator=g, dtype=F64)
    a, s = sde.marginal_coeffs(t)
    x0 = target.sample(16, generator=g, dtype=F64)
    x = a[:, None] * x0 + s[:, None] * torch.randn(16, 2, generator=g, dtype=F64)
    # D = E[x0 | x_t] by Tweedie from the exact score; then back to the score.
    den = denoiser_from_score(score, sde)
    d = den(x / a[:, None], s / a)
    torch.testing.assert_close(d, (x + s[:, None] ** 2 * score(x, t)) / a[:, None], rtol=1e-9, atol=1e-9)
    back = score_from_denoiser(den, sde)(x, t)
    # Bisection recovers t to float64 round-off; the score then agrees to a few ulps of 1/sigma^2.
    torch.testing.assert_close(back, score(x, t), rtol=1e-7, atol=1e-7 * float(score(x, t).abs().max()))
    # sigma = 0 is the identity; out-of-range noise levels are refused with the range.
    torch.testing.assert_close(den(x, torch.zeros(16, dtype=F64)), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="noise levels must lie in"):
        den(x, torch.full((16,), 1e4, dtype=F64))


def test_times_from_sigmas() -> None:
    sde = sd.VPSDE()
    ts, final = times_from_sigmas(sde, [80.0, 5.0, 0.5, 0.0])
    assert final and ts.shape == (3,)
    torch.testing.assert_close(sde.edm_sigma(ts), torch.tensor([80.0, 5.0, 0.5], dtype=F64), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="decreasing"):
        times_from_sigmas(sde, [1.0, 2.0])
    with pytest.raises(ValueError, match="noise levels must lie in"):
        times_from_sigmas(sde, [500.0, 1.0])


@pytest.fixture(scope="module")
def kd():
    mod = load_k_diffusion_sampling()
    if mod is None:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1)")
    return mod


def _setup(sde: sd.AffineSDE, kd, n: int):
    target = sd.targets.eight_gaussians()
    score = target.score_fn(sde)
    s_min, s_max = (float(v) for v in sde.edm_sigma(torch.tensor([sde.eps, sde.T], dtype=F64)))
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # k-diffusion builds the list in the default dtype
    try:
        sigmas = kd.get_sigmas_karras(n, s_min, s_max, rho=7.0)  # ends in 0
    finally:
        torch.set_default_dtype(default)
    x = s_max * torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    return score, sigmas, x


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_heun_matches_k_diffusion(kd, sde: sd.AffineSDE) -> None:
    score, sigmas, x = _setup(sde, kd, 12)
    theirs = kd.sample_heun(denoiser_from_score(score, sde), x.clone(), sigmas, disable=True)
    ours = sample_sigmas(sde, score, sigmas, "edm_heun", x=x.clone())
    # Same algorithm (Karras Alg. 1; the step to sigma = 0 is the denoiser in both): float64
    # round-off (measured max 4e-15 on states of size 2.5).
    torch.testing.assert_close(ours.samples, theirs, rtol=1e-12, atol=1e-12)
    assert ours.nfe == 2 * (len(sigmas) - 2) + 1  # Heun steps + the final Euler (= denoise) step


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_dpmpp_2m_matches_k_diffusion(kd, sde: sd.AffineSDE) -> None:
    score, sigmas, x = _setup(sde, kd, 10)
    theirs = kd.sample_dpmpp_2m(denoiser_from_score(score, sde), x.clone(), sigmas, disable=True)
    # k-diffusion keeps order 2 on the last positive step; ours lowers it with < 15 steps
    # unless lower_order_final=False. Its step to 0 returns the denoiser, as our denoise=True.
    ours = sample_sigmas(sde, score, sigmas, "dpmpp_2m", x=x.clone(), lower_order_final=False)
    torch.testing.assert_close(ours.samples, theirs, rtol=1e-12, atol=1e-12)  # float64 round-off
    default = sample_sigmas(sde, score, sigmas, "dpmpp_2m", x=x.clone())
    assert float((default.samples - theirs).abs().max()) > 1e-6  # the documented difference is real


def test_k_diffusion_sampler_drives_a_score_model_through_score_from_denoiser(kd) -> None:
    # A k-diffusion-style denoiser (here the exact one of an EDM SDE) drives our solvers.
    edm = sd.EDMSDE()
    target = sd.targets.two_gaussians()
    den = denoiser_from_score(target.score_fn(edm), edm)
    r = solvers.sample(edm, score_from_denoiser(den, edm), shape=(512, 2), solver="edm_heun", steps=18,
                       seed=0, dtype=F64, denoise=True)
    ref = solvers.sample(edm, target.score_fn(edm), shape=(512, 2), solver="edm_heun", steps=18,
                         seed=0, dtype=F64, denoise=True)
    torch.testing.assert_close(r.samples, ref.samples, rtol=1e-8, atol=1e-8)  # bisection-level round-off


def test_sigma_list_without_final_zero_returns_edm_units(kd) -> None:
    sde = sd.VPSDE()
    score, sigmas, x = _setup(sde, kd, 8)
    sig = sigmas[:-1]  # stop at sigma_min: every step is Heun, the result stays noisy
    theirs = kd.sample_heun(denoiser_from_score(score, sde), x.clone(), sig, disable=True)
    ours = sample_sigmas(sde, score, sig, "edm_heun", x=x.clone())
    torch.testing.assert_close(ours.samples, theirs, rtol=1e-12, atol=1e-12)  # float64 round-off
    assert ours.nfe == 2 * (len(sig) - 1)


def test_fuzzed_bad_arguments() -> None:
    sde = sd.VPSDE()
    score = sd.targets.two_gaussians().score_fn(sde)
    x, t = torch.randn(4, 2), torch.full((4,), 0.5)
    with pytest.raises(TypeError, match="denoiser must be a callable"):
        score_from_denoiser(None, sde)  # failed only when called
    with pytest.raises(TypeError, match="sde must be an SDE"):
        score_from_denoiser(lambda x, s: x, "vp")  # was AttributeError when called
    with pytest.raises(TypeError, match="sde must be an SDE"):
        times_from_sigmas(None, [5.0, 1.0])  # was AttributeError
    with pytest.raises(ValueError, match="shape of x"):
        score_from_denoiser(lambda x, s: x[:, :1], sde)(x, t)  # was broadcast silently
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(4,\)"):
        score_from_denoiser(lambda x, s: x, sde)(x, t[:3])  # was a RuntimeError from broadcasting
    assert score_from_denoiser(lambda x, s: x, sde)(x, 0.5).shape == (4, 2)  # was AttributeError
    den = denoiser_from_score(score, sde)
    with pytest.raises(ValueError, match="finite"):
        den(x, torch.full((4,), float("nan")))  # NaN levels missed the cache and ran at t = eps
    with pytest.raises(TypeError, match="x_edm must be a tensor"):
        den([[0.0, 0.0]], 1.0)  # was AttributeError
    sig = [5.0, 2.0, 1.0, 0.0]
    with pytest.raises(TypeError, match="seed must be an integer"):
        sample_sigmas(sde, score, sig, shape=(4, 2), seed=2.5)  # was truncated to 2
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sample_sigmas(sde, score, sig, shape=(4, 2), generator=3)  # was a raw torch.randn TypeError
    with pytest.raises(ValueError, match="floating-point dtype"):
        sample_sigmas(sde, score, sig, shape=(4, 2), dtype=torch.int64)  # was NotImplementedError
    with pytest.raises(ValueError, match="unknown device"):
        sample_sigmas(sde, score, sig, shape=(4, 2), device="bogus")  # was RuntimeError
    with pytest.raises(TypeError, match="every size in shape must be an integer"):
        sample_sigmas(sde, score, sig, shape=(4, 2.5))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sample_sigmas(sde, score, sig, x=[[0.0, 0.0]])  # was AttributeError
