"""BetaSDE / SigmaSDE construction-time checks of the closed forms and callables they are given."""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd

F64 = torch.float64
LINEAR = lambda t: 0.1 + 19.9 * t  # noqa: E731


def _quiet(fn, *a, **k):  # the construction-time prior warning is not under test
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def test_beta_sde_refuses_an_integral_that_is_not_the_integral_of_beta() -> None:
    # Right closed form (float64 and float32 constants) is accepted and used as given.
    sde = _quiet(sd.BetaSDE, LINEAR, integral=lambda t: 0.1 * t + 9.95 * t**2)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    torch.testing.assert_close(sde.integrated_beta(t), 0.1 * t + 9.95 * t**2, rtol=0, atol=0)
    _quiet(sd.BetaSDE, LINEAR, integral=lambda t: (0.1 * t + 9.95 * t**2).float())
    with pytest.raises(ValueError, match=r"integral.*does not match"):
        _quiet(sd.BetaSDE, LINEAR, integral=lambda t: 0.1 * t + 5 * t**2)  # half the t^2 term
    with pytest.raises(ValueError, match=r"integral.*non-decreasing"):
        _quiet(sd.BetaSDE, LINEAR, integral=lambda t: 20 * t - 15 * t**2)
    with pytest.raises(ValueError, match=r"integral.*B\(0\) = 0"):
        _quiet(sd.BetaSDE, LINEAR, integral=lambda t: 1.0 + 0.1 * t + 9.95 * t**2)
    with pytest.raises(TypeError, match="integral"):
        _quiet(sd.BetaSDE, LINEAR, integral=lambda t: 3.0)


def test_sigma_sde_checks_sigma_and_dsigma2_dt_at_construction() -> None:
    with pytest.raises(ValueError, match=r"dsigma2_dt.*>= 0"):
        _quiet(sd.SigmaSDE, lambda t: 10 * t, dsigma2_dt=lambda t: -t)
    with pytest.raises(TypeError, match=r"sigma\(t\) must return a tensor.*float"):
        _quiet(sd.SigmaSDE, lambda t: 5.0)
    with pytest.raises(TypeError, match=r"sigma.*autograd.*dsigma2_dt"):
        _quiet(sd.SigmaSDE, lambda t: torch.as_tensor(t.detach().numpy() ** 2 + 1e-3))
    # The same schedule with its closed form works, and the valid default is unchanged.
    sde = _quiet(sd.SigmaSDE, lambda t: torch.as_tensor(t.detach().numpy() ** 2 + 1e-3),
                 dsigma2_dt=lambda t: 2 * (t**2 + 1e-3) * 2 * t)
    assert torch.isfinite(sde.diffusion(torch.tensor([0.5], dtype=F64))).all()
    ve = _quiet(sd.SigmaSDE, lambda t: 10.0 * t**2, eps=1e-3)
    torch.testing.assert_close(ve.diffusion(torch.tensor([0.5], dtype=F64)),
                               torch.tensor([(400 * 0.5**3) ** 0.5], dtype=F64), rtol=1e-12, atol=0)


# --- SigmaSDE: a closed-form dsigma2_dt must integrate to sigma^2 --------------------------------


def _sigma_pow(t: torch.Tensor) -> torch.Tensor:
    return 25.0 * t**1.5 + 5.0 * t**3 + 0.01


def _ds2_pow(t: torch.Tensor) -> torch.Tensor:
    s = 25.0 * t**1.5 + 5.0 * t**3 + 0.01
    return 2.0 * s * (37.5 * t**0.5 + 15.0 * t**2)


def test_sigma_sde_refuses_a_dsigma2_dt_that_is_not_the_derivative() -> None:
    # Three times the derivative used to be accepted: sampling warned, and the likelihood came out
    # off by -5e7 nats per point with only the prior-mismatch warning.
    with pytest.raises(ValueError, match=r"dsigma2_dt\(t\) is not the derivative of sigma\(t\)\^2"):
        sd.SigmaSDE(_sigma_pow, lambda t: 3.0 * _ds2_pow(t), prior=50.0)
    with pytest.raises(ValueError, match="not the derivative"):
        sd.SigmaSDE(_sigma_pow, lambda t: 1.01 * _ds2_pow(t), prior=50.0)  # 1% off: above 1e-3


def test_sigma_sde_accepts_correct_closed_forms_also_with_a_kink() -> None:
    sde = sd.SigmaSDE(_sigma_pow, _ds2_pow, prior=50.0)
    t = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    torch.testing.assert_close(sde.diffusion(t) ** 2, _ds2_pow(t))
    # sigma with a kink at t = 0.4 (slope 10 -> 40) and its piecewise derivative.
    kink = lambda t: torch.where(t < 0.4, 0.1 + 10.0 * t, 4.1 + 40.0 * (t - 0.4))  # noqa: E731
    dkink = lambda t: 2.0 * kink(t) * torch.where(t < 0.4, 10.0, 40.0)  # noqa: E731
    sd.SigmaSDE(kink, dkink, prior=30.0)
