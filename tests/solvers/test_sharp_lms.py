"""LMS in EDM sigma (solvers.lms) and the end-of-run step to sigma = 0 (solvers.end)."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
import solvers
from solvers.end import final_step
from solvers.grids import edm_sigma
from solvers.lms import LMS, adams_coefficients


def test_adams_coefficients_closed_forms() -> None:
    # Euler: c = end - start.
    assert adams_coefficients([1.0], 1.0, 0.5) == pytest.approx([-0.5])
    # Variable-step AB2, h = -0.5 after a previous step of -1: c_n = h (1 + h / (2 h_prev)),
    # c_{n-1} = -h^2 / (2 h_prev).
    assert adams_coefficients([1.0, 2.0], 1.0, 0.5) == pytest.approx([-0.625, 0.125])
    # Exact for polynomials of degree < 4: integrate s^3 over [1, 0.3].
    nodes = [1.0, 1.7, 2.5, 4.0]
    c = adams_coefficients(nodes, 1.0, 0.3)
    assert sum(ci * n**3 for ci, n in zip(c, nodes, strict=True)) == pytest.approx((0.3**4 - 1.0) / 4, rel=1e-12)
    with pytest.raises(ValueError, match="distinct"):
        adams_coefficients([1.0, 1.0], 1.0, 0.5)


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
def test_lms_converges_to_the_exact_flow_at_order_about_four(sde_name: str) -> None:
    # One Gaussian N(mu, s^2): the probability-flow ODE in EDM variables moves y - mu by
    # sqrt(s^2 + S^2) / sqrt(s^2 + S_T^2), so the exact end point at S = 0 is known.
    mix = sd.GaussianMixture([[0.5, -0.3]], 0.2)
    sde = sd.get_sde(sde_name)
    x_T = sde.prior_sample((32, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    end = torch.tensor([sde.T], dtype=torch.float64)
    s_T, a_T = float(edm_sigma(sde, end)[0]), float(sde.marginal_coeffs(end)[0][0])
    exact = mix.means[0] + (x_T / a_T - mix.means[0]) * 0.2 / math.sqrt(0.04 + s_T**2)
    errs = []
    for n in (40, 80, 160):
        r = solvers.sample(sde, mix.score_fn(sde), solver=LMS(), steps=n, x_T=x_T)
        assert r.nfe == n + 1  # one evaluation per step plus the final step to S = 0
        errs.append(float((r.samples - exact).abs().max()))
    # Measured ratios 10-11 then 13 (order 4 gives 16 asymptotically; the order ramps up
    # over the first steps): > 6 for both doublings means order > 2.5.
    assert errs[0] / errs[1] > 6 and errs[1] / errs[2] > 6, errs
    assert errs[2] < 1e-3


def _exact_adams(nodes: list[float], start: float, end: float) -> list[float]:
    """The Adams weights in exact rational arithmetic (monomial expansion, then integration)."""
    from fractions import Fraction

    fn, a, b = [Fraction(v) for v in nodes], Fraction(start), Fraction(end)
    out = []
    for j, n_j in enumerate(fn):
        coeffs, denom = [Fraction(1)], Fraction(1)  # l_j's numerator, lowest degree first
        for m, n_m in enumerate(fn):
            if m != j:
                coeffs = [Fraction(0), *coeffs]
                for k in range(len(coeffs) - 1):
                    coeffs[k] -= n_m * coeffs[k + 1]
                denom *= n_j - n_m
        anti = [c / (k + 1) for k, c in enumerate(coeffs)]
        out.append(float((sum(c * b ** (k + 1) for k, c in enumerate(anti))
                          - sum(c * a ** (k + 1) for k, c in enumerate(anti))) / denom))
    return out


@pytest.mark.parametrize("level, h", [(1.0, 1e-3), (50.0, 1e-2), (50.0, 1e-3), (152.0, 1e-4), (80.0, 0.3)])
def test_adams_coefficients_keep_their_digits_for_short_steps_at_high_noise(level: float, h: float) -> None:
    # Fine grids at high noise: the weights are O(h) differences of O(S^4) values when
    # integrated in s; at S = 50, h = 1e-3 the old code returned 24 c / h = [-1863, 2794, 2794, 0]
    # for AB4's [-55, 59, -37, 9].
    nodes = [level + k * h * (1 + 0.1 * k) for k in range(4)]  # non-uniform, as on a real grid
    got, want = adams_coefficients(nodes, level, level - h), _exact_adams(nodes, level, level - h)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-14 * h)


def test_lms_keeps_converging_on_fine_grids_in_float64() -> None:
    # An outside pass found the float64 error of lms bottoming out near 1e-8 and growing with
    # steps (VP: 3.2e-8 at 1024 steps, 1.4e-7 at 4096) from the weights' lost digits.
    mix = sd.GaussianMixture([[0.5, -0.3]], 0.5)
    sde = sd.VPSDE()
    x_T = sde.prior_sample((16, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    end = torch.tensor([sde.T], dtype=torch.float64)
    s_T, a_T = float(edm_sigma(sde, end)[0]), float(sde.marginal_coeffs(end)[0][0])
    exact = mix.means[0] + (x_T / a_T - mix.means[0]) * 0.5 / math.sqrt(0.25 + s_T**2)
    errs = [float((solvers.sample(sde, mix.score_fn(sde), solver="lms", steps=n, x_T=x_T).samples - exact)
                  .abs().max()) for n in (1024, 2048)]
    # measured after the fix: 2.9e-8, 1.9e-9 (order 4 gives 16x per doubling)
    assert errs[1] < errs[0] / 8 and errs[1] < 1e-8, errs


def test_lms_options() -> None:
    with pytest.raises(ValueError, match="order"):
        LMS(order=5)
    mix = sd.targets.get_target("sharp_8")
    sde = sd.get_sde("vp")
    r = solvers.sample(sde, mix.score_fn(sde), shape=(8, 2), solver="lms", steps=7, seed=0, denoise="none")
    assert r.nfe == 7 and torch.isfinite(r.samples).all()
    r = solvers.sample(sde, mix.score_fn(sde), shape=(8, 2), solver="lms", steps=7, seed=0, denoise="tweedie")
    assert r.nfe == 8


@pytest.mark.parametrize("s", [0.05, 0.2])
def test_final_ode_step_is_second_order_for_a_gaussian(s: float) -> None:
    # Exact states of p_eps for N(0, s^2) under VP (S = sigma/alpha at eps ~ 0.0105).
    sde = sd.get_sde("vp")
    mix = sd.GaussianMixture([[0.0]], s)
    t = sde.eps
    x = mix.sample_marginal(200_000, sde, t, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    dyn = solvers.ProbabilityFlowODE(sde, mix.score_fn(sde))
    a, sig = (float(v[0]) for v in sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64)))
    r = (sig / a) ** 2 / (s**2 + (sig / a) ** 2)
    # Per-sample maps are linear for a Gaussian: compare the scale factors, not sample noise.
    scale = lambda y: float((y / (x / a)).mean())  # noqa: E731
    assert scale(final_step(dyn, x, t, "ode")) == pytest.approx(1 - r / 2, rel=1e-9)
    assert scale(final_step(dyn, x, t, "tweedie")) == pytest.approx(1 - r, rel=1e-9)
    # Exact flow factor sqrt(1 - r) = 1 - r/2 - r^2/8 - r^3/16 - ...: the trapezoid misses
    # it by r^2/8 (1 + r/2 + ...), i.e. within 10% of r^2/8 for r < 0.2.
    assert abs((1 - r / 2) - math.sqrt(1 - r)) < r**2 / 8 * 1.1
    assert torch.equal(final_step(dyn, x, t, "none"), x)
    with pytest.raises(ValueError, match="final step"):
        final_step(dyn, x, t, "euler")  # type: ignore[arg-type]
