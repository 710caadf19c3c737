"""Denoising score matching: weightings, importance-sampled t, unbiasedness against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import scoresde as sd
from scoresde.losses import (
    DSMLoss,
    ImportanceTimeSampler,
    LossConfig,
    dsm_loss,
    dsm_per_sample,
    eps_loss,
    loss_weight,
)
from scoresde.models import ModelConfig
from solvers.utils import append_dims

SDES = [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE()]
IDS = ["VP", "subVP", "VE"]


def _log_snr2(sde: sd.AffineSDE, t: float) -> float:
    """ln(sigma^2 / alpha^2) at t: its derivative is g^2 / sigma^2 (from g^2 = d sigma^2/dt - 2 (d ln alpha/dt) sigma^2)."""
    return float(-2.0 * sde.log_snr(torch.tensor(t, dtype=torch.float64)))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_importance_sampler_matches_the_closed_form_cdf(sde: sd.AffineSDE) -> None:
    s = ImportanceTimeSampler(sde, "likelihood")
    lo, hi = sde.eps, sde.T
    z = _log_snr2(sde, hi) - _log_snr2(sde, lo)
    # Trapezoid on 4097 log-spaced points: relative error ~1e-6 on a smooth integrand.
    assert s.normalizer == pytest.approx(z, rel=1e-5)
    t, w = s.sample(20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(t.min()) >= lo and float(t.max()) <= hi

    def cdf(xs: np.ndarray) -> np.ndarray:
        tt = torch.as_tensor(xs, dtype=torch.float64).clamp(lo, hi)
        return ((-2.0 * sde.log_snr(tt)).numpy() - _log_snr2(sde, lo)) / z

    # KS test of the draws against F(t) = [ln(sigma^2/alpha^2)]_lo^t / Z; p < 1e-3 would flag a bug.
    assert stats.kstest(t.numpy(), cdf).pvalue > 1e-3
    # The unbiasing weight h/((T - lo) q) is the constant Z/(T - lo) up to the table's resolution.
    torch.testing.assert_close(w, torch.full_like(w, z / (hi - lo)), rtol=5e-3, atol=0.0)


def _c(sde: sd.AffineSDE, t: torch.Tensor, kappa: float, s0: float) -> torch.Tensor:
    """Slope of the test score s(x, t) = -c(t) x: kappa times the exact slope 1/(alpha^2 s0^2 + sigma^2)."""
    a, s = sde.marginal_coeffs(t)
    return kappa / (a**2 * s0**2 + s**2)


def _gaussian_case(sde: sd.AffineSDE, weighting: str, kappa: float, s0: float, d: int, lo: float) -> float:
    """Exact uniform-t DSM loss for x0 ~ N(0, s0^2 I_d) and the linear score s(x, t) = -c(t) x.

    sigma s + z = -c sigma alpha x0 + (1 - c sigma^2) z, so per t
    l(t) = d [(c sigma alpha s0)^2 + (1 - c sigma^2)^2]  (reduce="sum"), and
    L = 1/(T - lo) int_lo^T (w/sigma^2) l(t) dt, integrated in u = ln t.
    """

    def integrand(u: float) -> float:
        t = torch.tensor([math.exp(u)], dtype=torch.float64)
        a, s = (float(v) for v in sde.marginal_coeffs(t))
        h = float(loss_weight(sde, t, weighting))
        c = float(_c(sde, t, kappa, s0))
        ell = d * ((c * s * a * s0) ** 2 + (1 - c * s * s) ** 2)
        return h * ell * math.exp(u)

    val, _ = integrate.quad(integrand, math.log(lo), math.log(sde.T), limit=200, epsabs=0, epsrel=1e-10)
    return val / (sde.T - lo)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@pytest.mark.parametrize("weighting", ["likelihood", "sigma2"])
def test_uniform_and_importance_estimators_are_unbiased(sde: sd.AffineSDE, weighting: str) -> None:
    kappa, s0, d, lo, n = 0.9, 1.5, 3, 1e-3, 200_000
    exact = _gaussian_case(sde, weighting, kappa, s0, d, lo)
    x0 = s0 * torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -append_dims(_c(sde, t, kappa, s0), x.ndim) * x

    results = {}
    for importance in (False, True):
        per = dsm_per_sample(score, sde, x0, weighting=weighting, importance=importance, t_min=lo,
                             reduce="sum", generator=torch.Generator().manual_seed(2))
        mean, se = float(per.mean()), float(per.std()) / math.sqrt(n)
        # Unbiased: within 4.5 standard errors of the exact integral (false alarm ~1e-5).
        assert abs(mean - exact) < 4.5 * se, (importance, mean, exact, se)
        results[importance] = se
    if weighting == "likelihood":
        # Importance sampling is the point: it must cut the standard error substantially.
        assert results[True] < 0.5 * results[False]


def test_dsm_is_minimised_by_the_exact_score() -> None:
    """For x0 ~ N(0, s0^2), s*(x, t) = -x / (alpha^2 s0^2 + sigma^2); l*(t) = d alpha^2 s0^2 / v."""
    sde, s0, d, n = sd.VPSDE(), 0.8, 2, 100_000
    g = torch.Generator().manual_seed(0)
    x0 = s0 * torch.randn(n, d, generator=g, dtype=torch.float64)
    for tv in (0.05, 0.3, 0.9):
        t = torch.full((n,), tv, dtype=torch.float64)
        a, s = sde.marginal_coeffs(t)
        v = a**2 * s0**2 + s**2
        z = torch.randn(n, d, generator=g, dtype=torch.float64)

        def exact(x: torch.Tensor, t_: torch.Tensor, scale: float = 1.0, v: torch.Tensor = v) -> torch.Tensor:
            return -scale * x / append_dims(v, x.ndim)

        per = dsm_per_sample(exact, sde, x0, t=t, z=z, reduce="sum")
        closed = float(d * a[0] ** 2 * s0**2 / v[0])
        # Monte-Carlo mean of 1e5 terms of O(1) variance: 4.5 standard errors.
        assert abs(float(per.mean()) - closed) < 4.5 * float(per.std()) / math.sqrt(n)
        for scale in (0.9, 1.1):
            worse = dsm_per_sample(lambda x, t_, k=scale: exact(x, t_, k), sde, x0, t=t, z=z, reduce="sum")
            assert float(worse.mean()) > float(per.mean())


def test_eps_loss_equals_sigma2_dsm_and_reductions() -> None:
    sde = sd.VPSDE()
    model = ModelConfig(net={"width": 16, "depth": 1, "zero_out": False}).build(seed=0)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    a = eps_loss(model, sde, x0, generator=torch.Generator().manual_seed(5))
    b = dsm_loss(model, sde, x0, weighting="sigma2", generator=torch.Generator().manual_seed(5))
    c = dsm_loss(model, sde, x0, weighting="sigma2", reduce="sum", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    torch.testing.assert_close(c, 2 * b)  # sum over D=2 dims = 2 x mean
    # The model path (eps output) and the score-callable path agree on the same draws.
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    via_model = dsm_loss(model, sde, x0, weighting="likelihood", generator=g1)
    via_score = dsm_loss(model.score_fn(sde), sde, x0, weighting="likelihood", generator=g2)
    torch.testing.assert_close(via_model, via_score, rtol=1e-5, atol=0.0)  # float32 rounding


def test_loss_object_and_errors() -> None:
    sde = sd.VESDE()
    loss = DSMLoss(sde, LossConfig(weighting="likelihood", importance=True, t_min=1e-3))
    model = ModelConfig(net={"width": 8, "depth": 1}).build(seed=0)
    value = loss(model, torch.randn(16, 2), torch.Generator().manual_seed(0))
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    with pytest.raises(ValueError, match="weighting"):
        LossConfig(weighting="snr")
    with pytest.raises(ValueError, match="reduce"):
        dsm_loss(model, sde, torch.randn(4, 2), reduce="max")
    with pytest.raises(ValueError, match="t_min"):
        dsm_loss(model, sde, torch.randn(4, 2), t_min=2.0)
    with pytest.raises(ValueError, match="shape"):
        dsm_loss(model, sde, torch.randn(4, 2), t=torch.rand(3))


def test_fuzzed_bad_input_gets_a_clear_error() -> None:
    sde = sd.VPSDE()
    x0 = torch.randn(4, 2)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -x

    # A model output of the wrong shape broadcast silently ((4, 1) vs (4, 2)) or failed deep in torch.
    with pytest.raises(ValueError, match=r"model must return .* shape \(4, 2\); got \(4, 1\)"):
        dsm_loss(lambda x, t: x[:, :1], sde, x0)
    with pytest.raises(ValueError, match=r"got \(2, 2\)"):
        dsm_loss(lambda x, t: x[:2], sde, x0)
    with pytest.raises(ValueError, match="B >= 1"):
        dsm_loss(score, sde, torch.randn(0, 2))  # a reshape RuntimeError before
    with pytest.raises(ValueError, match="B >= 1"):
        dsm_loss(score, sde, torch.tensor(1.0))  # IndexError before
    with pytest.raises(TypeError, match="floating-point"):
        dsm_loss(score, sde, torch.zeros(4, 2, dtype=torch.long))  # NotImplementedError before
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        dsm_loss(score, sde, x0, t=[0.5] * 4)  # AttributeError before
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        dsm_loss(score, sde, x0, z=[1.0])
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        dsm_loss(score, sde, x0, generator=3)
    with pytest.raises(TypeError, match="sampler must be an ImportanceTimeSampler"):
        dsm_loss(score, sde, x0, importance=True, sampler=3)
    with pytest.raises(TypeError, match="sde must be a DiffusionSDE"):
        dsm_loss(score, "vp", x0)
    with pytest.raises(TypeError, match="t_min must be a real number"):
        dsm_loss(score, sde, x0, t_min="a")
    # sigma_data <= 0 gave inf or a silently wrong (sign-blind) loss; NaN gave NaN.
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sigma_data"):
            dsm_loss(score, sde, x0, weighting="edm", sigma_data=bad)
        with pytest.raises(ValueError, match="sigma_data"):
            LossConfig(sigma_data=bad)
    # LossConfig accepted anything until the first training step.
    with pytest.raises(TypeError, match="importance must be True or False"):
        LossConfig(importance="yes")
    with pytest.raises(ValueError, match="t_min must be a finite time > 0"):
        LossConfig(t_min=-1.0)
    with pytest.raises(ValueError, match="n_grid"):
        ImportanceTimeSampler(sde, n_grid=2.5)
    its = ImportanceTimeSampler(sde)
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        its.sample(-1)  # a raw negative-dimension RuntimeError before
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        its.sample(2, device="gpu")
    with pytest.raises(ValueError, match="floating-point dtype"):
        its.sample(2, dtype=torch.long)  # returned t = 0 and integer weights before
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        loss_weight(sde, [0.5], "likelihood")
    from scoresde.losses import edm_time_sample

    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        edm_time_sample(sde, -1)
    with pytest.raises(ValueError, match="p_std"):
        edm_time_sample(sde, 3, p_std=float("nan"))  # returned t = T silently before
    with pytest.raises(ValueError, match="p_mean"):
        edm_time_sample(sde, 3, p_mean=float("nan"))
    assert edm_time_sample(sde, 3, dtype="float32").dtype == torch.float32  # a device error before
