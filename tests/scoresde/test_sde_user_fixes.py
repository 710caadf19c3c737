"""Regression tests for the SDE / schedule / discrete-table defects of the SDE report (A1-A6, B1-B8)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import Tensor

import scoresde as sd
import solvers
from scoresde.losses.dsm import _same_sde
from scoresde.train.config import SDEConfig, config_diff

F64 = torch.float64
JUMP = 0.37  # not on an initial panel edge (j/16) of the quadrature


def _step_beta(t: Tensor) -> Tensor:
    """``beta = 1`` before ``JUMP``, 20 after: a two-phase schedule with a jump."""
    return torch.where(t < JUMP, torch.full_like(t, 1.0), torch.full_like(t, 20.0))


def _step_integral(t: Tensor) -> Tensor:
    return torch.where(t < JUMP, t, JUMP + 20.0 * (t - JUMP))


# --- A1: BetaSDE's default integral of a non-smooth beta ---------------------------------------
def test_beta_sde_default_integral_of_a_jumping_beta_is_exact_continuous_and_monotone() -> None:
    sde = sd.BetaSDE(_step_beta)
    t = torch.linspace(0.0, 1.0, 20001, dtype=F64)
    b = sde.integrated_beta(t)
    torch.testing.assert_close(b, _step_integral(t), rtol=1e-9, atol=1e-9)
    assert bool((b[1:] >= b[:-1]).all())
    # No jump of B across times 2.5e-6 apart anywhere (the exact B moves by <= 20 * 2.5e-6 = 5e-5).
    fine = torch.linspace(0.3, 0.5, 80001, dtype=F64)
    assert float(sde.integrated_beta(fine).diff().abs().max()) <= 20.0 * 2.5e-6 + 1e-8
    # dB/dt = beta (autograd through the quadrature).
    tt = torch.tensor([0.2, 0.6], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(sde.integrated_beta(tt).sum(), tt)
    torch.testing.assert_close(grad, torch.tensor([1.0, 20.0], dtype=F64))
    # A smooth beta still matches its closed form to round-off.
    lin = sd.BetaSDE(lambda u: 0.1 + 19.9 * u)
    torch.testing.assert_close(lin.integrated_beta(t), sd.VPSDE().integrated_beta(t), rtol=1e-13, atol=1e-13)


def test_beta_sde_with_a_jumping_beta_samples_on_the_default_log_snr_grid() -> None:
    sde = sd.BetaSDE(_step_beta)
    tg = sd.targets.eight_gaussians()
    r = solvers.sample(sde, tg.score_fn(sde), (64, 2), "dpmpp_2m", steps=100, seed=0)
    assert r.samples.shape == (64, 2) and bool(torch.isfinite(r.samples).all())


# --- A2: config() identifies the schedule -------------------------------------------------------
def test_config_tells_discrete_tables_and_schedule_callables_apart() -> None:
    lin = sd.DiscreteVPSDE.from_config({"beta_schedule": "linear"})
    lin2 = sd.DiscreteVPSDE.from_config({"beta_schedule": "linear"})
    cos = sd.DiscreteVPSDE.from_config({"beta_schedule": "squaredcos_cap_v2"})
    assert not _same_sde(lin, cos) and _same_sde(lin, lin2)
    with pytest.raises(ValueError, match="trained with the SDE"):
        SDEConfig.from_sde(lin).with_instance(cos)
    assert SDEConfig.from_sde(lin).with_instance(lin2).name == "custom"
    b1 = sd.BetaSDE(lambda t: 0.1 + 19.9 * t)
    b2 = sd.BetaSDE(lambda t: 0.1 + 19.9 * t**2, prior=1.0)
    assert not _same_sde(b1, b2) and _same_sde(b1, sd.BetaSDE(lambda t: 0.1 + 19.9 * t))
    s1 = sd.SigmaSDE(lambda t: 0.01 * (50 / 0.01) ** t)
    s2 = sd.SigmaSDE(lambda t: 0.01 + 49.99 * t**2, prior=50.0)
    assert not _same_sde(s1, s2)
    with pytest.raises(ValueError, match="trained with the SDE"):
        SDEConfig.from_sde(s1).with_instance(s2)
    # The probe is JSON-exact, and floats are compared with a relative tolerance, not exactly.
    cfg = b1.config()
    probe = cfg[sd.sde.SCHEDULE_PROBE_KEY]
    assert len(probe) == 9 and all(isinstance(v, float) and math.isfinite(v) for v in probe)
    nudged = {**cfg, sd.sde.SCHEDULE_PROBE_KEY: [v * (1 + 1e-12) for v in probe]}
    assert sd.sde.configs_match(cfg, nudged) and not sd.sde.configs_match(cfg, {**nudged, "T": 2.0})


def test_a_config_stored_before_the_schedule_probe_still_loads() -> None:
    lin = sd.DiscreteVPSDE.from_config({"beta_schedule": "linear"})
    stored = SDEConfig.from_sde(lin)
    old = SDEConfig(name=stored.name, params={**stored.params, "config": {"num_timesteps": 1000}})
    assert old.with_instance(lin).name == "custom"
    # ... but a stored config with another prior, or another probe, is still refused.
    with pytest.raises(ValueError, match="trained with the SDE"):
        SDEConfig(name="custom", params={**old.params, "config": {"num_timesteps": 1000, "prior_std": 2.0}}
                  ).with_instance(lin)
    cos = sd.DiscreteVPSDE.from_config({"beta_schedule": "squaredcos_cap_v2"})
    with pytest.raises(ValueError, match="trained with the SDE"):
        stored.with_instance(cos)
    # Resuming: a checkpoint config without the probe is not a difference.
    from scoresde.train import TrainConfig

    current = TrainConfig(sde=SDEConfig.from_sde(lin))
    saved = TrainConfig.from_json(current.to_json())
    saved.sde.params["config"].pop(sd.sde.SCHEDULE_PROBE_KEY)
    assert config_diff(saved, current) == []
    other = TrainConfig(sde=SDEConfig.from_sde(cos))
    assert any(sd.sde.SCHEDULE_PROBE_KEY in line for line in config_diff(other, current))


# --- A3: DiscreteVPSDE in 16-bit floats -----------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_discrete_vp_sde_in_16_bit_floats(dtype: torch.dtype) -> None:
    d = sd.DiscreteVPSDE.from_config({})
    t = torch.tensor([1e-3, 0.5, 1.0], dtype=dtype)
    a, s = d.marginal_coeffs(t)
    a64, s64 = d.marginal_coeffs(t.to(F64))
    assert a.dtype == dtype and s.dtype == dtype
    torch.testing.assert_close(a.to(F64), a64, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(s.to(F64), s64, rtol=1e-2, atol=1e-3)
    d4k = sd.DiscreteVPSDE.from_config({"num_train_timesteps": 4000, "beta_start": 2.5e-5, "beta_end": 0.005})
    assert bool(torch.isfinite(d4k.marginal_coeffs(torch.tensor([1.0], dtype=dtype))[0]).all())
    tt = torch.tensor([0.3], dtype=dtype, requires_grad=True)
    d.marginal_coeffs(tt)[0].sum().backward()
    assert tt.grad is not None and float(tt.grad[0]) < 0  # alpha decreases
    r = solvers.sample(d, sd.targets.eight_gaussians().score_fn(d), (10, 2), "dpmpp_2m", steps=10, seed=0,
                       dtype="bfloat16")
    assert r.samples.dtype == torch.bfloat16


# --- A4: a custom SDE with float64 marginal coefficients in a float32 run -------------------------
class _Float64CoeffsVP:
    """A protocol VP SDE (beta = 0.1 + 29.9 t^2) whose marginal_coeffs compute in float64."""

    T, eps = 1.0, 1e-3

    @staticmethod
    def _beta(t: Tensor) -> Tensor:
        return 0.1 + 29.9 * t**2

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return (-0.5 * self._beta(t)).reshape(-1, *([1] * (x.ndim - 1))) * x

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self._beta(t))

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = t.double()
        b = 0.1 * t + 29.9 * t**3 / 3
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                     dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


@pytest.mark.parametrize("denoise", [None, "none"])
def test_every_solver_keeps_a_float32_run_float32_with_float64_marginal_coeffs(denoise: str | None) -> None:
    sde = _Float64CoeffsVP()
    score = sd.targets.eight_gaussians().score_fn(sde)
    kw = {} if denoise is None else {"denoise": denoise}
    wrong = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few steps: coarse-grid warnings
        for name in solvers.available():
            r = solvers.sample(sde, score, (4, 2), name, steps=6, seed=0, dtype=torch.float32, **kw)
            if r.samples.dtype != torch.float32:
                wrong[name] = r.samples.dtype
    assert len(solvers.available()) >= 30 and not wrong


# --- A5: SigmaSDE's autograd diffusion under inference_mode ---------------------------------------
def test_sigma_sde_without_closed_form_derivative_works_under_inference_mode() -> None:
    s = sd.SigmaSDE(lambda t: 0.01 * (50 / 0.01) ** t, eps=1e-5)
    ve = sd.VESDE(0.01, 50.0)
    t = torch.tensor([0.1, 0.7], dtype=F64)
    with torch.inference_mode():
        g = s.diffusion(t)
        r = solvers.sample(s, sd.targets.eight_gaussians().score_fn(s), (16, 2), "euler_maruyama", steps=20, seed=0)
    torch.testing.assert_close(g, ve.sigma_v(t) * math.sqrt(2 * math.log(5000.0)), rtol=1e-10, atol=0)
    assert bool(torch.isfinite(r.samples).all())


# --- A6: built-in SDEs far from their prior warn ---------------------------------------------------
@pytest.mark.parametrize("make", [
    pytest.param(lambda: sd.VPSDE(T=0.1), id="vp-short-T"),
    pytest.param(lambda: sd.SubVPSDE(T=0.1), id="subvp-short-T"),
    pytest.param(lambda: sd.VPSDE(beta_max=1.0), id="vp-small-beta"),
    pytest.param(lambda: sd.CosineVPSDE(T=0.5), id="cosine-short-T"),
    pytest.param(lambda: sd.VESDE(sigma_max=0.5), id="ve-small-sigma-max"),
    pytest.param(lambda: sd.get_sde("ve", sigma_max=2.0), id="ve-by-name"),
    # EDM's prior is VE's N(0, sigma_max^2 I): an outside check found it silent where VE warns
    pytest.param(lambda: sd.EDMSDE(sigma_max=0.5), id="edm-small-sigma-max"),
    pytest.param(lambda: sd.EDMSDE(sigma_max=3.0), id="edm-sigma-max-3"),
])
def test_built_in_sde_far_from_its_prior_warns(make: object) -> None:
    with pytest.warns(UserWarning, match=r"p_T is far from the prior.*nats per dimension.*Fix:"):
        make()  # type: ignore[operator]


def test_built_in_sde_defaults_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cls in (sd.VPSDE, sd.SubVPSDE, sd.VESDE, sd.CosineVPSDE, sd.EDMSDE):
            cls()
        sd.EDMSDE(sigma_max=30.0)
        sd.VPSDE(T=1.05)  # sigma/alpha 331 at T: a few steps above the forgotten level, not many
        sd.VESDE(sigma_max=80.0, T=3.0)


@pytest.mark.parametrize("make", [lambda: sd.VPSDE(T=2.0), lambda: sd.SubVPSDE(T=2.0),
                                  lambda: sd.VPSDE(beta_max=40.0)])
def test_vp_type_sde_far_past_forgetting_warns_about_the_grids(make: object) -> None:
    # VPSDE(T=2): sigma/alpha = 4.9e8 at T; the default grids start there, and edm_heun at 20
    # steps (19 of them above sigma/alpha = 80) left modes 290x too wide, without a word.
    with pytest.warns(UserWarning, match=r"sigma/alpha at T is .* default sampling grids .* Use T = ") as rec:
        sde = make()  # type: ignore[operator]
    advice = [str(w.message) for w in rec if "Use T = " in str(w.message)][0]
    t_use = float(advice.split("Use T = ")[1].split(" ")[0])
    # the suggested T is where sigma/alpha reaches the forgotten level, and it is quiet
    s_use = solvers.marginals.edm_sigma(sde, torch.tensor([t_use], dtype=torch.float64))
    assert float(s_use[0]) == pytest.approx(sd.sde.FORGOTTEN_EDM_SIGMA, rel=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        type(sde)(**{**sde.config(), "T": t_use})


# --- B1, B2, B3, B5 -------------------------------------------------------------------------------
@pytest.mark.parametrize("make, name", [
    pytest.param(lambda: sd.VPSDE(0.1, math.inf), "beta_max", id="vp-beta_max"),
    pytest.param(lambda: sd.SubVPSDE(math.nan, 20.0), "beta_min", id="subvp-beta_min"),
    pytest.param(lambda: sd.VESDE(0.01, math.inf), "sigma_max", id="ve-sigma_max"),
    pytest.param(lambda: sd.CosineVPSDE(s=math.inf), "s", id="cosine-s"),
    pytest.param(lambda: sd.VPSDE(T=math.inf), "T", id="vp-T"),
    pytest.param(lambda: sd.VESDE(eps=math.nan), "eps", id="ve-eps"),
])
def test_non_finite_constructor_parameters_are_refused_by_name(make: object, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number"):
        make()  # type: ignore[operator]


def test_marginal_coeffs_refuses_nan_time() -> None:
    for sde in (sd.VPSDE(), sd.VESDE(), sd.DiscreteVPSDE.from_config({})):
        with pytest.raises(ValueError, match="NaN"):
            sde.marginal_coeffs(torch.tensor([0.5, math.nan], dtype=F64))


def test_transition_refuses_a_start_after_the_end() -> None:
    vp = sd.VPSDE()
    with pytest.raises(ValueError, match="s <= t"):
        vp.transition(torch.tensor([0.6], dtype=F64), torch.tensor([0.5], dtype=F64))
    a, b = vp.transition(torch.tensor([0.5], dtype=F64), torch.tensor([0.5], dtype=F64))
    torch.testing.assert_close(a, torch.ones(1, dtype=F64))
    torch.testing.assert_close(b, torch.zeros(1, dtype=F64))


def test_prior_log_prob_of_an_empty_batch_is_empty() -> None:
    for sde in (sd.VPSDE(), sd.VESDE()):
        for shape in ((0, 2), (0, 3, 4, 4)):
            out = sde.prior_log_prob(torch.zeros(shape, dtype=F64))
            assert out.shape == (0,)


# --- B7, B8: the docs' VE formulas and alpha(1) -------------------------------------------------------
def test_docs_ve_formulas_include_T_and_vp_alpha_1() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "sdes.md").read_text(encoding="utf-8")
    assert "(σ_max/σ_min)^(t/T)" in text and "√(2 ln(σ_max/σ_min) / T)" in text
    assert "What `T` means" in text
    vp = sd.VPSDE()
    alpha1 = float(vp.alpha(torch.tensor(1.0, dtype=F64)))
    assert f"≈ {alpha1:.4f}" in text and "≈ 0.0067" not in text
    doc = sd.VESDE.__doc__ or ""
    assert "^(t/T)" in doc and "/ T)" in doc
