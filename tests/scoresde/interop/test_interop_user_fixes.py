"""Interop fixes from a user-style pass (report D1-D6): EDM churn normalisation against
k-diffusion, a bounded per-sigma cache, clear errors for diffusers objects in the wrong place
and wrong layouts, reversible Heun through torchsde, ignored diffusers options, and warnings
that name the caller's line."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.interop import (
    DiffusersScore,
    ReverseTorchSDE,
    denoiser_from_score,
    load_k_diffusion_sampling,
    sample_sigmas,
    sde_from_scheduler,
    unet_score,
)

F64 = torch.float64
DOCS = Path(__file__).resolve().parents[3] / "docs"


def _kd():
    kd = load_k_diffusion_sampling()
    if kd is None:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1)")
    return kd


def _diffusers():
    return pytest.importorskip("diffusers")


class _ListNormal:
    """A noise source handing out a fixed list of normal draws, in order."""

    def __init__(self, draws: list[torch.Tensor]) -> None:
        self.draws, self.used = list(draws), 0

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        z = self.draws[self.used]
        self.used += 1
        return z.clone()

    def increment(self, t_from: float, t_to: float, like: torch.Tensor) -> torch.Tensor:
        raise AssertionError("edm_heun draws normals only")


# --- D1. edm_heun churn: gamma = S_churn / N, N = number of positive noise levels -------------

SDES = [sd.EDMSDE(), sd.VPSDE()]


@pytest.mark.parametrize("final_zero", [True, False], ids=["final-0", "no-final-0"])
@pytest.mark.parametrize("sde", SDES, ids=["edm", "vp"])
def test_edm_heun_churn_reproduces_k_diffusion_sample_heun(
        sde: sd.AffineSDE, final_zero: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    kd = _kd()
    score = sd.targets.eight_gaussians().score_fn(sde)
    lo, hi = (float(v) for v in solvers.grids.edm_sigma(sde, torch.tensor([sde.eps, sde.T], dtype=F64)))
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)  # k-diffusion builds its list in the default dtype
    try:
        sigmas = kd.get_sigmas_karras(10, lo, hi)  # 10 positive levels, then 0
    finally:
        torch.set_default_dtype(default)
    if not final_zero:
        sigmas = sigmas[:-1]
    x = sigmas[0] * torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    opts = {"s_churn": 2.0, "s_tmin": 0.05, "s_tmax": 10.0}  # last positive level 0.002 < s_tmin
    steps = len(sigmas) - 1
    draws = [torch.randn(300, 2, generator=torch.Generator().manual_seed(100 + i), dtype=F64) for i in range(steps)]
    feed = iter(draws)
    monkeypatch.setattr(torch, "randn_like", lambda t, **kw: next(feed).clone())  # sample_heun draws every step
    theirs = kd.sample_heun(denoiser_from_score(score, sde), x.clone(), sigmas, disable=True, **opts)
    monkeypatch.undo()
    # Ours draws only on the churned steps: give it k-diffusion's draws of those steps.
    churned = [i for i in range(steps)
               if float(sigmas[i + 1]) > 0 and opts["s_tmin"] <= float(sigmas[i]) <= opts["s_tmax"]]
    assert churned  # the comparison exercises churn
    noise = _ListNormal([draws[i] for i in churned])
    ours = sample_sigmas(sde, score, sigmas, solvers.EDMHeun(**opts), x=x.clone(), noise=noise)
    assert noise.used == len(churned)
    # Same algorithm, same gamma = min(2/10, sqrt(2) - 1) (2/9 without the final 0, k-diffusion's
    # len(sigmas) - 1), same draws: float64 round-off (measured 1e-13 / 2e-14 on states of size ~2).
    # Before the fix, with the final 0: gamma = 2/9 against 2/10, max diff 1.22 (EDM) / 1.03 (VP).
    torch.testing.assert_close(ours.samples, theirs, rtol=1e-12, atol=1e-12)


def test_edm_heun_churn_is_karras_n_positive_levels() -> None:
    # gamma = S_churn / N with N = len(grid) (the positive levels), on every churned step.
    sde = sd.EDMSDE()
    ts = solvers.grids.karras(sde, 9)  # 10 levels
    solver = solvers.EDMHeun(s_churn=1.0)
    ex = solver.precompute(sde, solvers.exponential.schedule_table(sde, ts))
    ratio = [h / s - 1.0 for h, s in zip(ex["s_hat"], ex["s_edm"][:-1], strict=False)]
    churned = [r for r in ratio[1:]]  # step 0 starts at sigma(T): capped there, no churn
    assert ratio[0] == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(torch.tensor(churned, dtype=F64), torch.full((8,), 1.0 / 10, dtype=F64),
                               rtol=1e-9, atol=1e-12)  # bisection round-off only; before: 1/9
    assert "S_churn / N" in (solvers.EDMHeun.__doc__ or "") and "positive noise levels" in (solvers.EDMHeun.__doc__ or "")


# --- D2. denoiser_from_score: bounded per-sigma cache ------------------------------------------


def _closure_dicts(fn: Callable, depth: int = 2) -> list[dict]:
    """The dicts a closure (or the closures it calls, ``depth`` levels down) holds."""
    found: list[dict] = []
    for cell in fn.__closure__ or ():
        value = cell.cell_contents
        if isinstance(value, dict):
            found.append(value)
        elif depth > 0 and callable(value) and getattr(value, "__closure__", None):
            found += _closure_dicts(value, depth - 1)
    return found


def _cache_len(fn: Callable) -> int:
    dicts = _closure_dicts(fn)
    assert dicts, "the denoiser keeps no per-sigma cache in its closure"
    return max(len(d) for d in dicts)


def test_denoiser_cache_stays_bounded_with_per_sample_sigmas() -> None:
    vp = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(vp)
    den = denoiser_from_score(score, vp)
    g = torch.Generator().manual_seed(0)
    for i in range(25):  # a training loop: fresh per-sample sigma every batch
        x = torch.randn(256, 2, generator=g, dtype=F64)
        sig = torch.exp(torch.randn(256, generator=g, dtype=F64)).clamp(0.05, 100.0)
        out = den(x, sig)
        if i % 8 == 0:  # unchanged results: a fresh denoiser (empty cache) gives the same values
            torch.testing.assert_close(out, denoiser_from_score(score, vp)(x, sig), rtol=1e-14, atol=1e-14)
    # Before the fix: 6400 entries, growing by 256 per call (a memory leak over a long run).
    assert _cache_len(den) <= 512


def test_denoiser_cache_still_spares_a_sampler_its_bisections(monkeypatch: pytest.MonkeyPatch) -> None:
    import scoresde.interop.kdiffusion as kdmod

    vp = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(vp)
    den = denoiser_from_score(score, vp)
    calls = []
    orig = kdmod._times
    monkeypatch.setattr(kdmod, "_times", lambda sde, s: (calls.append(s.numel()), orig(sde, s))[1])
    levels = torch.logspace(-1, 2, 40, dtype=F64)
    x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    first = [den(x, s) for s in levels]
    for _ in range(3):  # a sampler run repeated: every level is cached after the first pass
        den(torch.randn(64, 2, dtype=F64), torch.exp(torch.randn(64, dtype=F64)).clamp(0.05, 100.0))
        again = [den(x, s) for s in levels]
    assert sum(1 for c in calls if c == 1) == len(levels)  # one bisection per level, ever
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert _cache_len(den) <= 512


# --- D3/D4/D5. clear errors ---------------------------------------------------------------------


def test_diffusers_objects_in_the_wrong_slot_are_named(small_unet) -> None:
    diffusers = _diffusers()
    unet = small_unet()
    sch = diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=False)
    with pytest.raises(TypeError, match=r"scheduler_or_config must be a diffusers scheduler.*UNet2DModel"):
        unet_score(unet, unet)  # was NotAnIntegerError: num_train_timesteps ... NoneType
    with pytest.raises(TypeError, match=r"unet must be a torch.nn.Module.*DDPMScheduler.*swapped"):
        unet_score(sch, unet)
    with pytest.raises(TypeError, match=r"unet must be a torch.nn.Module.*got DDPMScheduler"):
        unet_score(sch, sch)  # constructed, then AttributeError ... 'parameters' at the first call
    with pytest.raises(TypeError, match=r"got the config of .*model keys in_channels"):
        sde_from_scheduler(unet.config)
    with pytest.raises(TypeError, match=r"scheduler_or_config must be a diffusers scheduler"):
        DiffusersScore(unet, unet)
    sde, score = unet_score(unet, sch)  # the right order still works
    assert isinstance(sde, sd.DiscreteVPSDE) and score.unet is unet


class _OutputObject:
    def __init__(self, sample: torch.Tensor) -> None:
        self.sample = sample


def test_denoiser_from_score_names_a_score_that_returns_no_tensor(small_unet) -> None:
    edm = sd.EDMSDE()
    x = torch.randn(2, 1, 8, 8, dtype=F64)
    den = denoiser_from_score(lambda x, t: _OutputObject(torch.zeros_like(x)), edm)
    with pytest.raises(TypeError, match=r"score\(x, t\) must return a tensor.*_OutputObject.*unet_score"):
        den(x, torch.tensor(1.0))  # was AttributeError: ... has no attribute 'to'
    # A wrong shape was broadcast silently ((B, 1) against (B, 2) data).
    flat = torch.randn(4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"shape of x, \(4, 2\); got \(4, 1\)"):
        denoiser_from_score(lambda x, t: x[:, :1], edm)(flat, torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"UNet2DOutput.*unet_score"):
        denoiser_from_score(small_unet(), edm)(x, torch.tensor(1.0))


def test_diffusers_score_names_the_expected_layout(small_unet) -> None:
    diffusers = _diffusers()
    unet = small_unet()
    sde, score = unet_score(unet, diffusers.DDPMScheduler(num_train_timesteps=1000, clip_sample=False))
    t = torch.tensor([0.5, 0.5], dtype=F64)
    want = r"x must be \(B, C, H, W\) = \(B, 1, 8, 8\) for UNet2DModel \(config in_channels=1, sample_size=8\)"
    with pytest.raises(ValueError, match=want + r".*got \(2, 64\).*flat"):
        score(torch.randn(2, 64, dtype=F64), t)  # was conv2d's "Expected 3D ... or 4D ... input"
    with pytest.raises(ValueError, match=want + r".*got \(2, 8, 8, 1\).*channels-last"):
        score(torch.randn(2, 8, 8, 1, dtype=F64), t)
    with pytest.raises(ValueError, match=want):
        solvers.sample(sde, score, shape=(2, 64), solver="ddim", steps=3, seed=0, dtype=F64)
    assert score(torch.randn(2, 1, 8, 8, dtype=F64), t).shape == (2, 1, 8, 8)


def test_a_module_without_a_config_gets_any_layout() -> None:
    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    score = DiffusersScore(Flat(), {"beta_schedule": "linear", "num_train_timesteps": 1000})
    assert score(torch.randn(3, 5), 0.5).shape == (3, 5)


# --- D6. reversible Heun through torchsde, lam, ignored diffusers options, docs, warning lines ---


def test_reverse_torchsde_warns_for_reversible_heun_at_the_users_line() -> None:
    torchsde = pytest.importorskip("torchsde")
    vp = sd.VPSDE(eps=2**-7)
    score = sd.targets.eight_gaussians().score_fn(vp)
    ts = solvers.grids.uniform(vp, 16)
    dt = float(ts[0] - ts[1])
    x_T = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    rev = ReverseTorchSDE(vp, score, data_shape=(2,), sde_type="stratonovich")
    with pytest.warns(UserWarning, match=r"reversible_heun is biased on the reverse SDE.*'euler'") as rec:
        torchsde.sdeint(rev, rev.state(x_T), rev.times(ts), method="reversible_heun", dt=dt)
    hits = [w for w in rec if "reversible_heun" in str(w.message)]
    assert len(hits) == 1 and hits[0].filename == __file__  # once, at the sdeint line above
    for method, sde_type in [("euler", "ito"), ("srk", "ito"), ("midpoint", "stratonovich")]:
        rev = ReverseTorchSDE(vp, score, data_shape=(2,), sde_type=sde_type)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            torchsde.sdeint(rev, rev.state(x_T), rev.times(ts), method=method, dt=dt)


def test_reverse_torchsde_lam_range_is_documented_and_checked() -> None:
    vp = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(vp)
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\]"):
        ReverseTorchSDE(vp, score, data_shape=(2,), lam=1.5)
    doc = ReverseTorchSDE.__doc__ or ""
    assert "``lam`` outside ``[0, 1]``" in doc and "negative or not finite" not in doc
    assert ReverseTorchSDE(vp, score, data_shape=(2,), lam=1.0).lam == 1.0


def test_guide_no_longer_says_any_torchsde_method_works() -> None:
    guide = (DOCS / "guide.md").read_text(encoding="utf-8")
    assert "Any torchsde method works" not in guide
    assert "`method=\"reversible_heun\"` is the exception" in guide


def test_clip_sample_and_thresholding_warn_at_the_users_line(small_unet) -> None:
    diffusers = _diffusers()
    with pytest.warns(UserWarning, match=r"clip_sample=True.*not applied|clip_sample=True.*never clip") as rec:
        sde_from_scheduler(diffusers.DDIMScheduler())  # diffusers' default: clip_sample=True
    assert any("clip_sample" in str(w.message) and w.filename == __file__ for w in rec)
    with pytest.warns(UserWarning, match=r"thresholding=True") as rec:
        unet_score(small_unet(), diffusers.DDPMScheduler(clip_sample=False, thresholding=True))
    assert any("thresholding" in str(w.message) and w.filename == __file__ for w in rec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sde_from_scheduler(diffusers.DDIMScheduler(clip_sample=False))
        unet_score(small_unet(), diffusers.DDPMScheduler(clip_sample=False))
        sde_from_scheduler({"beta_schedule": "linear", "num_train_timesteps": 1000})


def test_warnings_through_the_interop_wrappers_name_the_callers_line() -> None:
    edm = sd.EDMSDE()
    score = sd.targets.two_gaussians().score_fn(edm)
    sigmas = torch.tensor([80.0, 20.0, 5.0, 1.0, 0.3, 0.05, 0.002, 0.0], dtype=F64)  # 6 Heun steps
    with pytest.warns(UserWarning, match=r"EDMHeun") as rec:
        sample_sigmas(edm, score, sigmas, "edm_heun", shape=(10, 2), seed=0)
    assert [w.filename for w in rec if "EDMHeun" in str(w.message)] == [__file__]  # was kdiffusion.py
    cfg = {"beta_schedule": "linear", "num_train_timesteps": 10}  # stops short of the prior
    with pytest.warns(UserWarning, match="short of the prior") as rec:
        sde_from_scheduler(cfg)
    assert [w.filename for w in rec] == [__file__]  # was diffusers_unet.py

    class Zero(torch.nn.Module):
        def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    with pytest.warns(UserWarning, match="short of the prior") as rec:
        unet_score(Zero(), cfg)
    assert [w.filename for w in rec] == [__file__]


def test_a_warning_from_the_users_score_keeps_its_own_line() -> None:
    edm = sd.EDMSDE()
    exact = sd.targets.two_gaussians().score_fn(edm)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        warnings.warn("from the score", UserWarning, stacklevel=1)
        return exact(x, t)

    line = score.__code__.co_firstlineno + 1
    sigmas = torch.tensor([80.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.05, 0.002, 0.0], dtype=F64)
    with pytest.warns(UserWarning, match="from the score") as rec:
        sample_sigmas(edm, score, sigmas, "edm_heun", shape=(4, 2), seed=0)
    assert {(w.filename, w.lineno) for w in rec if "from the score" in str(w.message)} == {(__file__, line)}


def test_defaults_doc_states_the_diffusers_lower_order_final_correspondence() -> None:
    text = " ".join((DOCS / "defaults.md").read_text(encoding="utf-8").split())
    assert "(`lower_order_final`, as in DPM-Solver++ and diffusers)" not in text
    assert ("diffusers' default, `final_sigmas_type=\"zero\"`, lowers only its step to sigma = 0, and "
            "equals ours with `lower_order_final=False, denoise=True`") in text


class _EpsNet(torch.nn.Module):
    """The exact eps of a 2-D Gaussian mixture at a diffusers timestep k (sigma linear in k)."""

    def __init__(self, sde: sd.DiscreteVPSDE) -> None:
        super().__init__()
        self.sde = sde
        self.p = torch.nn.Parameter(torch.zeros(1, dtype=F64))
        self.target = sd.targets.eight_gaussians()

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        k = torch.as_tensor(k, dtype=F64).reshape(-1).expand(x.shape[0])
        t = self.sde.time(k)
        _, s = self.sde.marginal_coeffs(t)
        flat = x.reshape(x.shape[0], 2)
        return (-s[:, None] * self.target.score_fn(self.sde)(flat, t)).reshape(x.shape)


@pytest.mark.parametrize("final_sigmas_type", ["zero", "sigma_min"])
def test_dpmpp_2m_matches_diffusers_dpm_solver_multistep_as_documented(final_sigmas_type: str) -> None:
    diffusers = _diffusers()
    sch = diffusers.DPMSolverMultistepScheduler(final_sigmas_type=final_sigmas_type)  # lower_order_final=True
    sde = sde_from_scheduler(sch)
    net = _EpsNet(sde)
    score = DiffusersScore(net, sch, round_timesteps=True)
    sch.alphas_cumprod = sde.alphas_cumprod.clone()  # the same float64 table on both sides
    sch.set_timesteps(10)
    x_T = torch.randn(200, 1, 1, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    x = x_T.clone()
    for k in sch.timesteps:
        x = sch.step(net(x, k), k, x).prev_sample
    ts = (sch.timesteps.to(F64) + 1) / sde.num_timesteps
    if final_sigmas_type == "zero":  # its last step goes to sigma = 0: our final denoise
        kw = {"grid": ts, "denoise": True, "lower_order_final": False}
    else:  # its last step goes to sigma(k = 0), t = 1/N, at first order
        kw = {"grid": torch.cat([ts, torch.tensor([1.0 / sde.num_timesteps], dtype=F64)]), "denoise": False,
              "lower_order_final": True}
    ours = solvers.sample(sde, score, x_T=x_T.clone(), solver="dpmpp_2m", **kw)
    # diffusers keeps sigma in float32: measured 1.0e-6 (zero) / 1.0e-6 (sigma_min) on states of size ~2.
    assert float((ours.samples - x).abs().max()) < 1e-5
    if final_sigmas_type == "zero":  # and the default lower_order_final=True is not it
        other = solvers.sample(sde, score, x_T=x_T.clone(), solver="dpmpp_2m", grid=ts, denoise=True)
        assert float((other.samples - x).abs().max()) > 1e-2
    assert math.isfinite(float(x.abs().max()))


@pytest.mark.parametrize("sde", SDES, ids=["edm", "vp"])
def test_edm_heun_churns_a_first_level_below_the_top_as_sample_heun_does(
        sde: sd.AffineSDE, monkeypatch: pytest.MonkeyPatch) -> None:
    # A sigma list from half the SDE's top level down, default s_tmax = inf: EDM's Alg. 2 (and
    # sample_heun) churns the first step too, to 1.2 S_0 < S(T). The churned level used to be
    # capped at the list's first level, so that step was not churned (7 draws against 8, max
    # difference 3.4 on eight_gaussians under EDM).
    kd = _kd()
    score = sd.targets.eight_gaussians().score_fn(sde)
    lo, hi = (float(v) for v in solvers.grids.edm_sigma(sde, torch.tensor([sde.eps, sde.T], dtype=F64)))
    default = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        sigmas = kd.get_sigmas_karras(10, lo, hi / 2)
    finally:
        torch.set_default_dtype(default)
    x = sigmas[0] * torch.randn(300, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    opts = {"s_churn": 2.0, "s_tmin": 0.05}
    steps = len(sigmas) - 1
    draws = [torch.randn(300, 2, generator=torch.Generator().manual_seed(100 + i), dtype=F64) for i in range(steps)]
    feed = iter(draws)
    monkeypatch.setattr(torch, "randn_like", lambda t, **kw: next(feed).clone())
    theirs = kd.sample_heun(denoiser_from_score(score, sde), x.clone(), sigmas, disable=True, **opts)
    monkeypatch.undo()
    churned = [i for i in range(steps) if float(sigmas[i + 1]) > 0 and float(sigmas[i]) >= opts["s_tmin"]]
    assert churned[0] == 0
    noise = _ListNormal([draws[i] for i in churned])
    ours = sample_sigmas(sde, score, sigmas, solvers.EDMHeun(**opts), x=x.clone(), noise=noise)
    assert noise.used == len(churned)
    torch.testing.assert_close(ours.samples, theirs, rtol=1e-12, atol=1e-12)


def test_edm_heun_churn_is_capped_at_the_top_level_not_the_grid_start() -> None:
    sde = sd.EDMSDE()  # S(T) = 80
    ts = solvers.grids.time_from_edm_sigma(sde, torch.tensor([70.0, 10.0, 1.0, 0.1], dtype=F64))
    solver = solvers.EDMHeun(s_churn=3.0)  # gamma = min(3/4, sqrt(2) - 1) = 0.414: 70 -> 99 capped at 80
    ex = solver.precompute(sde, solvers.exponential.schedule_table(sde, ts))
    assert ex["s_hat"][0] == pytest.approx(80.0, rel=1e-9)
    assert ex["s_hat"][1] == pytest.approx(10.0 * math.sqrt(2.0), rel=1e-9)
    assert solver.reverse_level(0.0, sde, ts) > solvers.EDMHeun(s_churn=3.0, s_tmax=60.0).reverse_level(0.0, sde, ts)
