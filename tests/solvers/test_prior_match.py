"""A prior draw that is not a sample of p_T (data far from the origin): the probability-flow
ODE carries the offset to the samples; the score at T measures it and the run warns."""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers
from solvers.prior_match import PRIOR_SHIFT_LIMIT

F64 = torch.float64


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.VESDE()], ids=["vp", "ve"])
def test_off_centre_data_warns_and_the_shift_is_the_flows(sde):
    mix = sd.GaussianMixture([[20.0, 20.0]], 5.0)
    with pytest.warns(RuntimeWarning, match="not a sample of p_T"):
        r = solvers.sample(sde, mix.score_fn(sde), (4000, 2), "dpmpp_2m", steps=400, seed=0, dtype=F64,
                           keep_trajectory=True)
    # Gaussian data: the flow maps x_T to mu + (s / sqrt(v_T)) (x_T - alpha_T mu), so the mean is
    # off by alpha_T mu / sqrt(v_T) data stds: the probe's number.
    a, sig = sde.marginal_coeffs(torch.tensor([sde.T], dtype=F64))
    root_v = float((a[0] ** 2 * 25.0 + sig[0] ** 2).sqrt())
    theory = float(a[0]) * 20.0 / root_v
    assert r.stats["prior_shift"] == pytest.approx(theory, rel=0.05)
    x_T = r.trajectory[0]
    exact = 20.0 + (5.0 / root_v) * (x_T - float(a[0]) * 20.0)
    torch.testing.assert_close(r.samples, exact, atol=2e-3 * 5.0, rtol=0.0)  # second order: 0.02 at 100 steps
    assert float((20.0 - exact.mean(0)).min() / 5.0) > theory - 4 * 4000**-0.5


@pytest.mark.parametrize("target", ["eight_gaussians", "grid_25", "sharp_25", "checker_mixture"])
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve", "cosine"])
def test_centred_data_is_quiet(target, sde_name):
    sde = sd.get_sde(sde_name)
    mix = sd.targets.get_target(target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = solvers.sample(sde, mix.score_fn(sde), (2000, 2), "ddim", steps=5, seed=0)
    assert r.stats["prior_shift"] < PRIOR_SHIFT_LIMIT / 3


def test_no_estimate_without_a_prior_draw_at_T():
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    given = solvers.sample(sde, score, solver="ddim", steps=3, x_T=torch.randn(64, 2), seed=0)
    small = solvers.sample(sde, score, (8, 2), "ddim", steps=3, seed=0)
    assert "prior_shift" not in given.stats and "prior_shift" not in small.stats


def test_every_chunk_counts_and_stochastic_runs_keep_quiet():
    sde = sd.VESDE()
    mix = sd.GaussianMixture([[20.0, 20.0]], 5.0)
    score = mix.score_fn(sde)
    with pytest.warns(RuntimeWarning, match="not a sample of p_T"):
        whole = solvers.sample(sde, score, (256, 2), "dpmpp_2m", steps=10, seed=0)
    with pytest.warns(RuntimeWarning, match="under VE: sigma_max"):
        chunked = solvers.sample(sde, score, (256, 2), "dpmpp_2m", steps=10, seed=0, batch_size=8)
    assert chunked.stats["prior_shift"] == pytest.approx(whole.stats["prior_shift"], rel=1e-6)
    assert 0 < chunked.stats["prior_shift_error"] < 0.1 * chunked.stats["prior_shift"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reverse SDE forgets the offset: the number, no warning
        em = solvers.sample(sde, score, (256, 2), "euler_maruyama", steps=200, seed=0)
    assert em.stats["prior_shift"] > PRIOR_SHIFT_LIMIT


def test_the_spread_warning_names_both_directions_for_anisotropic_data() -> None:
    # An OU process that has not forgotten N((1, -2), diag(0.25, 4)) by T: the ODE maps the prior
    # draw to coordinate 0 about 18% too wide and coordinate 1 about 31% too narrow. The warning
    # said "too narrow by about 24% per coordinate", wrong for coordinate 0.
    import math
    import warnings

    class OU:
        T, eps, theta = 1.0, 1e-3, 0.5

        def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return -self.theta * x

        def diffusion(self, t: torch.Tensor) -> torch.Tensor:
            return torch.full_like(t, math.sqrt(2 * self.theta))

        def marginal_coeffs(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.exp(-self.theta * t), torch.sqrt(-torch.expm1(-2 * self.theta * t))

        def prior_sample(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                         dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
            return torch.randn(shape, generator=generator, dtype=dtype, device=device)

        def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
            return -0.5 * z.flatten(1).pow(2).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)

    sde = OU()
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, sig = sde.marginal_coeffs(t)
        return (a[:, None] * mu - x) / (a[:, None] ** 2 * s**2 + sig[:, None] ** 2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = solvers.sample(sde, score, (2000, 2), "dpmpp_2m", steps=50, seed=0, dtype=torch.float64)
    spread = [str(w.message) for w in caught if "does not have p_T's variance" in str(w.message)]
    assert len(spread) == 1
    assert "in both directions: too wide in 1 coordinate(s), by up to 18%, and too narrow in 1, by up to 31%" \
        in spread[0]
    ratio = r.samples.std(0) / s  # what the samples show
    assert 1.12 < float(ratio[0]) < 1.24 and 0.62 < float(ratio[1]) < 0.74


def _runtime_warnings(sde: object, target: sd.targets.GaussianMixture, solver: str) -> list[str]:
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        solvers.sample(sde, target.score_fn(sde), (1000, 2), solver=solver, steps=20, seed=0)
    return [str(w.message) for w in rec if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("solver", ["dpmpp_2m", "euler_maruyama"])
def test_a_p_T_with_separate_modes_is_named_without_false_numbers(solver: str) -> None:
    # Modes 60 apart under VE with sigma_max = 10: p_T has two modes and the draw lies between
    # them, where the score pushes apart. The warning read "too narrow by about 60.7% per
    # coordinate ... a noise level of about 4.39e+07 at T" (the samples' spread was right, their
    # weights 0.57 / 0.43 for 0.7 / 0.3); four modes at the corners gave no warning at all.
    two = sd.GaussianMixture([[-30.0, 0.0], [30.0, 0.0]], 1.0, [0.7, 0.3])
    four = sd.GaussianMixture([[-30.0, -30.0], [30.0, 30.0], [-30.0, 30.0], [30.0, -30.0]], 1.0)
    for target, count in ((two, "1 of 2"), (four, "2 of 2")):
        msgs = _runtime_warnings(sd.VESDE(sigma_max=10.0), target, solver)
        assert len(msgs) == 1 and f"does not pull it towards a centre along {count} coordinate(s)" in msgs[0]
        assert "times the prior's" not in msgs[0] and "brings it within" not in msgs[0]
    # a noise level above the largest distance: no such warning
    assert not any("does not pull" in m for m in _runtime_warnings(sd.VESDE(sigma_max=120.0), four, solver))


def _three_modes(dim: int) -> sd.targets.GaussianMixture:
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(3, dim, generator=g, dtype=torch.float64)
    return sd.GaussianMixture(3.0 * dirs / dirs.norm(dim=1, keepdim=True), 0.3, [0.6, 0.3, 0.1])


def test_an_offset_along_one_direction_of_many_is_reported_by_its_length() -> None:
    # Three modes at radius 3 in 128-D (mean of length 2.0), VE with sigma_max = 8.35 (the
    # largest distance, suggest_sigma_max): the offset is 0.24 data stds along its direction but
    # 0.021 per coordinate (RMS), below PRIOR_SHIFT_LIMIT: the run is silent (a limit on the
    # length would also flag trained networks' error at T, solvers.prior_match) and the mode
    # weights come out 0.562 / 0.320 / 0.118 for 0.6 / 0.3 / 0.1. The length says so.
    target, sde = _three_modes(128), sd.VESDE(sigma_max=8.35)
    r = solvers.sample(sde, target.score_fn(sde), (1000, 128), "dpmpp_2m", steps=20, seed=0)
    assert r.stats["prior_shift"] < PRIOR_SHIFT_LIMIT
    # the length is alpha(T) |mu| / sqrt(v_T) for this (nearly Gaussian) p_T
    theory = float(target.mean().norm()) / (8.35**2 + 0.3**2) ** 0.5
    assert r.stats["prior_shift_norm"] == pytest.approx(theory, rel=0.05)
    assert r.stats["prior_shift_norm"] == pytest.approx(r.stats["prior_shift"] * 128**0.5, rel=0.02)
    weights = target.responsibilities(r.samples.double()).mean(0)
    assert float(weights[0]) < 0.6 - 3 * (0.24 / 1000) ** 0.5  # what the length is about
    # the reverse SDE forgets it (r ~ 1e-3 per coordinate)
    em = solvers.sample(sde, target.score_fn(sde), (1000, 128), "euler_maruyama", steps=50, seed=0)
    assert em.stats["prior_shift_norm_carried"] < 0.2 * em.stats["prior_shift_norm"]
    assert float(target.responsibilities(em.samples.double()).mean(0)[0]) > float(weights[0])


def test_the_length_leaves_out_sampling_noise() -> None:
    # Centred data and a score with independent noise (std 0.3) in each of 1024 coordinates: each
    # coordinate's mean over 256 rows is off by chance, and the plain length of those means
    # (about 0.6 here) would pass for an offset. The probe subtracts the noise's expected share
    # (what is left is chance of order (2 D)^(1/4) e, about 0.13 here) and does not warn.
    sde = sd.VPSDE()
    target = sd.GaussianMixture(torch.zeros(1, 1024, dtype=torch.float64), 0.5)
    exact = target.score_fn(sde)
    g = torch.Generator().manual_seed(1)

    def noisy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return exact(x, t) + 0.3 * torch.randn(x.shape, generator=g, dtype=x.dtype)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = solvers.sample(sde, noisy, (256, 1024), "ddim", steps=3, seed=0, dtype=torch.float64)
    raw = r.stats["prior_shift"] * 1024**0.5
    assert raw > 0.3
    assert r.stats["prior_shift_norm"] < raw / 3


@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "chunks"])
def test_a_run_that_blows_up_names_the_prior_mismatch_before_the_error(chunked: bool) -> None:
    """A run from a prior draw that p_T does not fit can break down before its end (a network
    evaluated far from its data returns NaN); the probe's verdict, read at the first evaluation,
    is reported before the NaN error instead of being lost with the run."""
    sde = sd.VPSDE()
    mix = sd.GaussianMixture([[500.0, -300.0]], 0.5)
    exact = mix.score_fn(sde)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = exact(x, t)
        return out if float(t[0]) > 0.5 else torch.full_like(out, float("nan"))

    options = {"batch_size": 1000} if chunked else {}
    with pytest.warns(RuntimeWarning, match="not a sample of p_T") as record:
        with pytest.raises(solvers.NonFiniteScoreError):
            solvers.sample(sde, score, (2000, 2), "ddim", steps=100, seed=0, dtype=F64, **options)
    assert any("data far from the origin" in str(w.message) for w in record)
    assert {w.filename for w in record if "p_T" in str(w.message)} == {__file__}  # at the caller's line


def test_a_run_that_blows_up_from_a_fitting_prior_draw_adds_no_prior_warning() -> None:
    sde = sd.VPSDE()
    exact = sd.targets.eight_gaussians().score_fn(sde)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = exact(x, t)
        return out if float(t[0]) > 0.5 else torch.full_like(out, float("nan"))

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(solvers.NonFiniteScoreError):
            solvers.sample(sde, score, (2000, 2), "ddim", steps=100, seed=0, dtype=F64)
    assert not [w for w in record if "p_T" in str(w.message)]
