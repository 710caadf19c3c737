"""Interop input checks: non-DDPM diffusers schedulers, float times, torchsde's lam; half-precision
timesteps and conversions, a discrete table's prior, torchsde's Brownian range and dt, and the
k-diffusion LMS agreement as documented."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.interop import (
    DiffusersScore,
    ReverseTorchSDE,
    TorchsdeBrownianNoise,
    denoiser_from_score,
    load_k_diffusion_sampling,
    sample_sigmas,
    score_from_denoiser,
    sde_from_scheduler,
    unet_score,
)

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
    # A betas-based scheduler is still read (its table, exactly); 20 steps stop short of the prior.
    ddim = diffusers.DDIMScheduler(num_train_timesteps=20)
    with pytest.warns(UserWarning, match="short of the prior"):
        table = sde_from_scheduler(ddim).alphas_cumprod
    torch.testing.assert_close(table, ddim.alphas_cumprod.double(),
                               rtol=1e-6, atol=1e-7)


def test_non_integer_num_train_timesteps_is_refused() -> None:
    with pytest.raises(TypeError, match="num_train_timesteps"):
        sde_from_scheduler({"beta_schedule": "linear", "num_train_timesteps": 10.5})
    with pytest.warns(UserWarning, match="short of the prior"):
        assert sde_from_scheduler({"beta_schedule": "linear", "num_train_timesteps": 10}).num_timesteps == 10


def test_diffusers_score_takes_a_float_time_and_refuses_t_zero() -> None:
    score = DiffusersScore(_Zero(), {"beta_schedule": "linear", "num_train_timesteps": 10}, prior=1.0)
    x = torch.randn(3, 1, 2, 2, dtype=F64)
    ref = score(x, torch.full((3,), 0.5, dtype=F64))
    torch.testing.assert_close(score(x, 0.5), ref, rtol=0, atol=0)
    torch.testing.assert_close(score(x, torch.tensor(0.5)), ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"t must be in \[1/N, T\] = \[0.1, 1\]"):
        score(x, 0.0)


@pytest.mark.parametrize("lam", ["1", True, None, float("nan"), -1.0])
def test_reverse_torchsde_refuses_a_lam_that_is_not_a_finite_real(lam: object) -> None:
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    with pytest.raises((TypeError, ValueError), match="lam"):
        ReverseTorchSDE(sde, score, data_shape=(2,), lam=lam)
    assert ReverseTorchSDE(sde, score, data_shape=(2,), lam=0.5).lam == 0.5


# --- 1. diffusers timesteps are never passed in half precision --------------------------------


class _Recorder(torch.nn.Module):
    """A network of a given dtype that records the timesteps it is called with."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1, dtype=dtype))
        self.k: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        self.k = k.clone()
        return torch.zeros_like(x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, F64])
def test_diffusers_score_passes_timesteps_in_float32_or_float64(dtype: torch.dtype) -> None:
    net = _Recorder(dtype)
    score = DiffusersScore(net, {"beta_schedule": "linear", "num_train_timesteps": 1000})
    k = torch.tensor([999.0, 123.4, 0.0], dtype=F64)
    score(torch.zeros(3, 2), score.sde.time(k))
    assert net.k is not None
    want = F64 if dtype == F64 else torch.float32
    assert net.k.dtype == want
    # bfloat16 made k = 999 into 1000 (outside the trained 0..999), float16 123.4 into 123.375.
    torch.testing.assert_close(net.k, k.to(want), rtol=0, atol=1e-4)


# --- 3. a discrete table that stops short of the prior ----------------------------------------


def test_discrete_vp_warns_when_the_table_stops_short_of_the_prior() -> None:
    cfg = {"beta_schedule": "linear", "num_train_timesteps": 10}  # alpha_bar_{N-1} = 0.904
    with pytest.warns(UserWarning, match=r"alpha_bar_\{N-1\} = 0\.9037.*p_T is far from the prior.*"
                                         r"prior='matched'"):
        sde = sd.DiscreteVPSDE.from_config(cfg)
    assert sde.prior_std == 1.0 and not sde.prior_chosen
    with pytest.warns(UserWarning, match="short of the prior"):
        sde_from_scheduler(cfg)
    diffusers = pytest.importorskip("diffusers")
    with pytest.warns(UserWarning, match="short of the prior"):
        unet_score(_Zero(), diffusers.DDPMScheduler(num_train_timesteps=10))


def test_discrete_vp_prior_matched_or_a_std_follows_beta_sde() -> None:
    cfg = {"beta_schedule": "linear", "num_train_timesteps": 10}
    abar_T = float(sd.discrete.alphas_cumprod_from_config(cfg)[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a chosen prior: no warning
        matched = sde_from_scheduler(cfg, prior="matched", data_std=0.5)
        fixed = sd.DiscreteVPSDE.from_config(cfg, prior=0.7)
        score = DiffusersScore(_Zero(), cfg, prior="matched", data_std=0.5)
    std = math.sqrt(abar_T * 0.25 + 1 - abar_T)  # sqrt(alpha(T)^2 data_std^2 + sigma(T)^2)
    assert matched.prior_std == pytest.approx(std, rel=1e-12) and matched.prior_chosen
    assert score.sde.prior_std == pytest.approx(std, rel=1e-12)
    assert fixed.prior_std == 0.7 and "prior_std=0.7" in repr(fixed)
    # prior_log_prob and prior_sample follow the chosen std.
    z = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    ref = torch.distributions.Normal(torch.tensor(0.0, dtype=F64), torch.tensor(std, dtype=F64)).log_prob(z).sum(1)
    torch.testing.assert_close(matched.prior_log_prob(z), ref, rtol=1e-12, atol=1e-12)
    draws = matched.prior_sample((20000, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    assert float(draws.std()) == pytest.approx(std, rel=0.02)  # 40000 draws: std error 0.35%
    with pytest.raises(ValueError, match="prior must be None"):
        sd.DiscreteVPSDE.from_config(cfg, prior="wide")
    with pytest.raises(ValueError, match="prior std must be positive"):
        sd.DiscreteVPSDE.from_config(cfg, prior=-1.0)


@pytest.mark.parametrize("cfg", [
    {"beta_schedule": "linear"},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "squaredcos_cap_v2"},
], ids=["linear", "scaled_linear", "squaredcos"])
def test_well_formed_1000_step_tables_are_unchanged_and_quiet(cfg: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sde = sde_from_scheduler({**cfg, "num_train_timesteps": 1000})
    assert sde.prior_std == 1.0 and repr(sde) == "DiscreteVPSDE(num_timesteps=1000)"
    z = torch.randn(4, 2, dtype=F64)
    torch.testing.assert_close(sde.prior_log_prob(z), sd.VPSDE().prior_log_prob(z), rtol=0, atol=0)


# --- 4. k-diffusion conversions in half precision ---------------------------------------------


def _exact_denoiser(target: sd.GaussianMixture, sde: sd.AffineSDE):
    """The mixture's denoiser, computed in float64 and returned in the input's dtype."""
    d64 = denoiser_from_score(target.score_fn(sde), sde)
    return lambda x, s: d64(x.double(), s).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("sigma", [30.0, 1.0, 0.1])
@pytest.mark.parametrize("sde", [sd.EDMSDE(), sd.VPSDE()], ids=["edm", "vp"])
def test_denoiser_from_score_in_half_precision_is_as_good_as_rounding(
        sde: sd.AffineSDE, sigma: float, dtype: torch.dtype) -> None:
    target = sd.targets.eight_gaussians()
    g = torch.Generator().manual_seed(0)
    x = (target.sample(256, generator=g).double() + sigma * torch.randn(256, 2, generator=g, dtype=F64)).to(dtype)
    ref = denoiser_from_score(target.score_fn(sde), sde)(x.double(), torch.tensor(sigma))  # exact, float64
    out = denoiser_from_score(target.score_fn(sde), sde)(x, torch.tensor(sigma))
    assert out.dtype == dtype
    # Rounding the exact output to `dtype` errs by at most half an ulp of |D| <= eps/2 max|D|;
    # the bound allows eps max|D| (1-2 ulps of the largest output). Measured after the fix:
    # exactly the rounding error (bf16 at sigma = 30: 4.6e-4, bound 1.7e-3); before it: 0.37.
    bound = torch.finfo(dtype).eps * float(ref.abs().max())
    assert float((out.double() - ref).abs().max()) <= bound


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("t", [0.5, 0.02])
def test_score_from_denoiser_in_half_precision_is_as_good_as_rounding(t: float, dtype: torch.dtype) -> None:
    vp = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1), dtype=F64).to(dtype)
    tt = torch.full((256,), t, dtype=torch.float32)
    ref = target.score_fn(vp)(x.double(), tt.double())
    out = score_from_denoiser(_exact_denoiser(target, vp), vp)(x, tt)
    assert out.dtype == dtype
    # As above: eps max|score| is 1-2 ulps of the largest output (before the fix, bf16 at
    # t = 0.02: error 10 on scores of size 61, the time itself rounded to bfloat16).
    bound = torch.finfo(dtype).eps * float(ref.abs().max())
    assert float((out.double() - ref).abs().max()) <= bound


# --- 2 and 5. torchsde: dt in the recipes, the Brownian motion's time range -------------------


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_torchsde_recipes_give_brownian_interval_its_dt() -> None:
    import scoresde.interop.torchsde_sde as mod

    guide = (Path(__file__).resolve().parents[3] / "docs" / "guide.md").read_text(encoding="utf-8")
    calls = [c for b in _python_blocks(guide) for c in re.findall(r"BrownianInterval\((.*?)\)\n", b)]
    calls += re.findall(r"BrownianInterval\((.*?)\)\n", mod.__doc__ or "")
    assert calls and all("dt=" in c for c in calls), calls


def test_recipe_with_dt_survives_torchsde_sliver_last_step() -> None:
    # eps = 1e-5, 100 steps: torchsde's s += dt loop ends with a ~5e-15 step; without dt the
    # BrownianInterval refined its tree without end (a hang, 14 GB). With dt: 0.1 s.
    torchsde = pytest.importorskip("torchsde")
    vp = sd.VPSDE(eps=1e-5)
    score = sd.targets.eight_gaussians().score_fn(vp)
    rev = ReverseTorchSDE(vp, score, data_shape=(2,))
    x_T = vp.prior_sample((5, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    ts = solvers.grids.uniform(vp, 100)
    dt = float(ts[0] - ts[1])
    bm = torchsde.BrownianInterval(t0=-vp.T, t1=-vp.eps, size=(5, 2), dtype=F64, dt=dt, entropy=0)
    ys = torchsde.sdeint(rev, rev.state(x_T), rev.times(ts), method="euler", dt=dt, bm=bm)
    ours = solvers.EulerMaruyama(final_noise=True).solve(
        solvers.ReverseSDE(vp, score), x_T, ts, noise=TorchsdeBrownianNoise(bm))
    # Not the same steps (torchsde's drift from the grid by rounding): measured 8e-6 at B = 500.
    assert float((rev.unstate(ys[-1]) - ours.samples).abs().max()) < 1e-4


def test_torchsde_noise_refuses_a_forward_time_brownian_motion() -> None:
    torchsde = pytest.importorskip("torchsde")
    with pytest.raises(ValueError, match=r"\[0, 1\], forward time.*t0=-T, t1=-eps"):
        TorchsdeBrownianNoise(torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(4, 2), dtype=F64))
    with pytest.raises(ValueError, match="forward time"):  # BrownianTree wraps a BrownianInterval
        TorchsdeBrownianNoise(torchsde.BrownianTree(t0=0.0, t1=1.0, w0=torch.zeros(4, 2, dtype=F64)))


@pytest.mark.parametrize("t0, t1", [(-0.5, -1e-3), (-1.0, -0.1)], ids=["starts-late", "ends-early"])
def test_torchsde_noise_refuses_a_brownian_motion_short_of_the_run(t0: float, t1: float) -> None:
    torchsde = pytest.importorskip("torchsde")
    vp = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(vp)
    x_T = vp.prior_sample((4, 2), generator=torch.Generator().manual_seed(0), dtype=F64)
    bm = torchsde.BrownianInterval(t0=t0, t1=t1, size=(4, 2), dtype=F64, entropy=0)
    with pytest.raises(ValueError, match=r"t0=-T = -1 and t1=-eps"):
        solvers.EulerMaruyama(final_noise=True).solve(
            solvers.ReverseSDE(vp, score), x_T, solvers.grids.uniform(vp, 20), noise=TorchsdeBrownianNoise(bm))


def test_torchsde_noise_reads_a_covering_brownian_motion_unchanged() -> None:
    torchsde = pytest.importorskip("torchsde")
    bm = torchsde.BrownianInterval(t0=-1.0, t1=-1e-3, size=(4, 2), dtype=F64, entropy=3)
    ref = torchsde.BrownianInterval(t0=-1.0, t1=-1e-3, size=(4, 2), dtype=F64, entropy=3)
    noise = TorchsdeBrownianNoise(bm)
    like = torch.zeros(4, 2, dtype=F64)
    for a, b in [(1.0, 0.5), (0.5, 1e-3)]:
        torch.testing.assert_close(noise.increment(a, b, like), ref(-a, -b), rtol=0, atol=0)


# --- 6. k-diffusion's sample_lms: round-off without a final 0, not with one -------------------


@pytest.mark.parametrize("sde", [sd.EDMSDE(), sd.VPSDE()], ids=["edm", "vp"])
def test_lms_agrees_with_k_diffusion_only_without_a_final_zero(sde: sd.AffineSDE) -> None:
    kd = load_k_diffusion_sampling()
    if kd is None:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1)")
    score = sd.targets.eight_gaussians().score_fn(sde)
    den = denoiser_from_score(score, sde)
    lo, hi = (float(v) for v in sde.edm_sigma(torch.tensor([sde.eps, sde.T], dtype=F64)))
    sigmas = torch.cat([torch.logspace(math.log10(hi), math.log10(lo), 10, dtype=F64), torch.zeros(1, dtype=F64)])
    sigmas[0], sigmas[-2] = hi, lo  # exact ends (logspace rounds them)
    x = hi * torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    # Without the final 0 both stop at sigma_n: float64 round-off (measured 3e-15 / 5e-15).
    ours = sample_sigmas(sde, score, sigmas[:-1], "lms", x=x.clone())
    theirs = kd.sample_lms(den, x.clone(), sigmas[:-1], disable=True)
    torch.testing.assert_close(ours.samples, theirs, rtol=1e-12, atol=1e-12)
    # With it, ours ends with the denoiser D(x, sigma_n), k-diffusion with an Adams step to 0.
    ours0 = sample_sigmas(sde, score, sigmas, "lms", x=x.clone())
    theirs0 = kd.sample_lms(den, x.clone(), sigmas, disable=True)
    torch.testing.assert_close(ours0.samples, den(ours.samples, sigmas[-2]), rtol=1e-12, atol=1e-12)
    assert float((ours0.samples - theirs0).abs().max()) > 1e-5  # the documented difference is real
    guide = (Path(__file__).resolve().parents[3] / "docs" / "guide.md").read_text(encoding="utf-8")
    assert "`sample_lms` agrees with our `\"lms\"` to round-off only on a list\nwithout the final 0" in guide


class _ExactGaussianEps(torch.nn.Module):
    """The exact eps-prediction for data N(0, s^2 I) under ``sde``; records the timesteps it gets."""

    def __init__(self, sde: sd.DiscreteVPSDE, s: float) -> None:
        super().__init__()
        self.sde, self.s = sde, s
        self.seen: list[float] = []

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        self.seen.append(float(k.min()))
        alpha, sigma = self.sde.marginal_coeffs(self.sde.time(k.double()).to(x.dtype))
        a, sg = alpha.view(-1, 1, 1, 1), sigma.view(-1, 1, 1, 1)
        return sg * x / (a**2 * self.s**2 + sg**2)


def test_likelihood_of_a_diffusers_network_stays_on_its_trained_timesteps() -> None:
    # The data-density ODE ran down to t = 1e-5, timestep k = N t - 1 = -0.99: the network was
    # called where it was never trained. It now ends at t = 1/N (k = 0), the analytic end piece
    # covering [0, 1/N], and stays exact for Gaussian data.
    from scoresde.likelihood import likelihood
    cfg = {"beta_schedule": "linear", "num_train_timesteps": 1000}
    sde = sd.DiscreteVPSDE.from_config(cfg)
    net = _ExactGaussianEps(sde, 0.5)
    score = DiffusersScore(net, cfg)
    x = 0.5 * torch.randn(16, 1, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    alpha_T, sigma_T = sde.marginal_coeffs(torch.ones(1, dtype=F64))
    std_T = float((0.25 * alpha_T**2 + sigma_T**2).sqrt())  # p_T exactly, so only the flow's error is left

    def log_p_T(z: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(0.0, std_T).log_prob(z).flatten(1).sum(1)

    r = likelihood(sde, score, x, seed=0, prior=log_p_T)
    assert min(net.seen) >= -1e-6
    exact = torch.distributions.Normal(0.0, 0.5).log_prob(x).flatten(1).sum(1)
    assert float((r.log_prob - exact).abs().max()) < 1.5e-4  # measured 8.4e-5
    with pytest.raises(ValueError, match="timestep -0.99"):
        score(x, 1e-5)


@pytest.mark.parametrize("other", ["vp", "cosine_table", "ve"])
def test_a_diffusers_score_with_another_sde_is_refused(other: str) -> None:
    # The score converts the network's output with its own schedule's alpha, sigma; paired with
    # sd.VPSDE() the samples of N(0, 0.5^2) data came out with std 0.106, with no warning.
    from scoresde.likelihood import likelihood
    cfg = {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000}
    own = sd.DiscreteVPSDE.from_config(cfg)
    score = DiffusersScore(_ExactGaussianEps(own, 0.5), cfg)
    sde = {"vp": sd.VPSDE(), "ve": sd.VESDE(),
           "cosine_table": sd.DiscreteVPSDE.from_config({**cfg, "beta_schedule": "linear"})}[other]
    with pytest.raises(ValueError, match=r"the score was made for .*score\.sde.*solve with the score's own SDE"):
        solvers.sample(sde, score, shape=(8, 1, 2, 2), solver="ddim", steps=5, seed=0, dtype=F64)
    x = 0.5 * torch.randn(4, 1, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="the score was made for"):
        likelihood(sde, score, x, seed=0)
    # an equal SDE built again is the same process, and the right one samples the data's law
    r = solvers.sample(sd.DiscreteVPSDE.from_config(cfg), score, shape=(4000, 1, 2, 2), solver="dpmpp_2m",
                       steps=50, seed=0, dtype=F64)
    assert abs(float(r.samples.std()) - 0.5) < 0.015  # 16,000 values: the sample std's own std is 0.003


def test_reverse_torchsde_refuses_times_outside_eps_T() -> None:
    # rev.times accepted a grid from t = 2 (T = 1) and one below 0, and torchsde then had the score
    # evaluated there: at t = 2 without a word, below 0 as a "NaN score" error.
    torchsde = pytest.importorskip("torchsde")
    sde = sd.VPSDE()
    seen: list[float] = []

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(float(t.max()))
        return -x

    rev = ReverseTorchSDE(sde, score, data_shape=(2,))
    for ts in (torch.linspace(2.0, 0.001, 50), [1.0, 0.5, -1.0], [1.0, 1e-4]):
        with pytest.raises(ValueError, match=r"ts must lie in \[eps=0.001, T=1\]"):
            rev.times(ts)
    # torchsde driven over times that were not negated: the first call names the mistake
    y0 = rev.state(torch.randn(8, 2))
    with pytest.raises(ValueError, match=r"t = -0.5, outside \[0, T=1\].*rev.times"):
        torchsde.sdeint(rev, y0, torch.tensor([0.5, 1.0]), method="euler", dt=0.1)
    assert seen == []
    ys = torchsde.sdeint(rev, y0, rev.times([1.0, 0.5, 0.001]), method="euler", dt=0.05)
    assert ys.shape == (3, 8, 2) and max(seen) <= 1.0


def test_score_from_denoiser_refuses_t_where_sigma_is_zero() -> None:
    # At t = 0 (sigma = 0) it divided by sigma^2: NaN from our own denoiser, +-inf from another.
    sde = sd.VPSDE()
    for denoiser in (denoiser_from_score(sd.targets.two_gaussians().score_fn(sde), sde), lambda x, s: 0.5 * x):
        score = score_from_denoiser(denoiser, sde)
        with pytest.raises(ValueError, match=r"t = 0 has sigma\(t\) = 0.*undefined"):
            score(torch.randn(4, 2), torch.zeros(4))
        assert bool(torch.isfinite(score(torch.randn(4, 2), torch.full((4,), sde.eps))).all())


def test_sample_sigmas_refuses_a_shape_other_than_x_and_an_integer_x() -> None:
    sde = sd.EDMSDE() if hasattr(sd, "EDMSDE") else sd.VESDE()
    score = sd.targets.two_gaussians().score_fn(sde)
    sigmas = [10.0, 1.0, 0.1, 0.0]
    with pytest.raises(ValueError, match=r"shape \(10, 2\) does not match x.shape \(5, 2\)"):
        sample_sigmas(sde, score, sigmas, x=torch.randn(5, 2) * 10, shape=(10, 2))
    with pytest.raises(ValueError, match="floating-point dtype"):
        sample_sigmas(sde, score, sigmas, x=torch.ones(5, 2, dtype=torch.int64))
    out = sample_sigmas(sde, score, sigmas, x=torch.randn(5, 2) * 10, shape=(5, 2))
    assert out.samples.shape == (5, 2)


def test_trained_betas_of_another_length_than_num_train_timesteps_are_refused() -> None:
    # 3 betas under num_train_timesteps=5 built a 3-step SDE without a word; the scheduler's
    # timesteps 0..4 would index past the table.
    with pytest.raises(ValueError, match="trained_betas has 3 entries but num_train_timesteps is 5"):
        sde_from_scheduler({"num_train_timesteps": 5, "trained_betas": [0.1, 0.2, 0.3]})
    assert sde_from_scheduler({"num_train_timesteps": 3, "trained_betas": [0.1, 0.2, 0.3]}, prior="matched").num_timesteps == 3
