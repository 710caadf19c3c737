"""The likelihood default estimates the data density log p_0, also on sharp mixtures; options,
integrator names, chunking and refused dtypes.

Sharp targets: mode std 1/25 of the distance between neighbouring modes (2-D) or 1/20 (16-D),
built with `GaussianMixture`, whose exact `log_prob` is the answer. The prior at `T` is the
exact `p_T` so that only the end-time treatment and the ODE are measured (the N(0, I)
mismatch is a separate term, reported by `LikelihoodResult.prior_log_prob`).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import (
    INTEGRATOR_TABLE,
    LikelihoodOptions,
    data_end_time,
    endpoint,
    likelihood,
    log_likelihood,
    resolve_integrator,
)
from scoresde.likelihood.endpoint import data_correction
from scoresde.likelihood.flow import AugmentedFlow
from scoresde.likelihood.options import IntegratorOptions
from scoresde.targets import GaussianMixture


def circle8() -> GaussianMixture:
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = torch.stack([2.0 * ang.cos(), 2.0 * ang.sin()], dim=1)
    return GaussianMixture(means, 2 * 2.0 * math.sin(math.pi / 8) / 25, name="circle8")


def grid25() -> GaussianMixture:
    g = torch.arange(-2, 3, dtype=torch.float64)
    return GaussianMixture(torch.cartesian_prod(g, g), 1 / 25, torch.linspace(1, 4, 25, dtype=torch.float64),
                           name="grid25")


def mix16() -> GaussianMixture:
    means = torch.randn(8, 16, generator=torch.Generator().manual_seed(16), dtype=torch.float64)
    nearest = float((torch.cdist(means, means) + 1e9 * torch.eye(8, dtype=torch.float64)).min())
    return GaussianMixture(means, nearest / 20, torch.linspace(1, 2, 8, dtype=torch.float64), name="mix16")


def _errors(target: GaussianMixture, sde_name: str, n: int, **kw) -> tuple[float, float]:
    """(mean |default - log p_0|, mean |log p_eps at sde.eps - log p_0|) over n exact samples."""
    sde = sd.get_sde(sde_name)
    x = target.sample(n, generator=torch.Generator().manual_seed(0))
    exact = target.log_prob(x.double())

    def p_T(z: torch.Tensor) -> torch.Tensor:
        return target.marginal_log_prob(z, sde.T, sde)

    r = likelihood(sde, target.score_fn(sde), x, prior=p_T, **kw)
    assert r.density == "data" and r.eps == data_end_time(sde)
    blurred = target.marginal_log_prob(x.double(), sde.eps, sde)
    return float((r.log_prob.double() - exact).abs().mean()), float((blurred - exact).abs().mean())


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("make", [circle8, grid25])
def test_default_is_the_data_density_on_sharp_2d_mixtures(make, sde_name):
    err, blur = _errors(make(), sde_name, 300)
    # Issue target: within 1e-3 nats per point of log p_0 (measured 4e-6 to 2e-5: the ODE's
    # tolerance, the [0, 1e-5] term's own error is ~1e-6).
    assert err <= 1e-3, err
    if sde_name == "vp":
        # What the old default (log p_eps at eps = 1e-3) missed by: 2e-2 to 5e-2 nats here.
        assert blur > 10 * 1e-3


def aniso8(std_minor: float, std_major: float) -> GaussianMixture:
    """8 modes on a circle of radius 2, each with stds ``(std_minor, std_major)`` along the axes."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = torch.stack([2.0 * ang.cos(), 2.0 * ang.sin()], dim=1)
    stds = torch.tensor([[std_minor, std_major]], dtype=torch.float64).expand(8, 2)
    return GaussianMixture(means, stds, name="aniso8")


@pytest.mark.parametrize("t_end", [1e-5, 1e-3, 2e-2])
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
def test_gaussian_end_piece_is_exact_on_gaussian_modes(sde_name, t_end):
    # The [0, t_end] piece alone, against the closed form: log p_{t_end}(x_e) + c = log p_0(x)
    # for modes far narrower than the end noise (std 0.002 and 0.05; at t_end = 2e-2 under VP
    # nu_e / s = 31 along the narrow axis), where the first-order piece is far off.
    sde = sd.get_sde(sde_name)
    target = aniso8(0.002, 0.05)
    x = target.sample(200, generator=torch.Generator().manual_seed(0)).double()
    flow = AugmentedFlow(sde, target.score_fn(sde), (2,))
    x_e, c = data_correction(flow, sde, x, t_end)
    got = target.marginal_log_prob(x_e, t_end, sde) + c[:, 0]
    torch.testing.assert_close(got, target.log_prob(x), atol=1e-8, rtol=0)
    assert flow.nfe == 1  # one score evaluation with its Jacobian


def test_first_order_end_piece_fails_where_the_gaussian_one_does_not(monkeypatch):
    # Control: with the first-order piece (the path for Hutchinson divergences and d > 64) the
    # same check misses by far more than 1e-3 nats per point at VP's t_end = 1e-5 once the
    # modes are as narrow as the end noise's std (std 0.002 against 1e-3: 2e-2 nats measured).
    sde = sd.get_sde("vp")
    target = aniso8(0.002, 0.05)
    x = target.sample(200, generator=torch.Generator().manual_seed(0)).double()
    monkeypatch.setattr(endpoint, "GAUSSIAN_END_MAX_DIM", 0)
    flow = AugmentedFlow(sde, target.score_fn(sde), (2,))
    with pytest.warns(RuntimeWarning, match=r"first order here \(d = 2 > 0.*neglects a second-order term of at least") as caught:
        x_e, c = data_correction(flow, sde, x, data_end_time(sde))
    err = (target.marginal_log_prob(x_e, data_end_time(sde), sde) + c[:, 0] - target.log_prob(x)).abs().mean()
    assert float(err) > 5e-3
    bound = float(str(caught[0].message).split("neglects a second-order term of at least ")[1].split(" nats")[0])
    assert bound <= float(err)  # a lower bound on what is missing


def _sharp_mixture(dim: int, std: float) -> GaussianMixture:
    g = torch.Generator().manual_seed(dim)
    means = torch.randn(3, dim, generator=g, dtype=torch.float64)
    return GaussianMixture(means, std, weights=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))


@pytest.mark.parametrize("dim", [65, 130])
def test_gaussian_end_piece_above_64_dimensions(dim, monkeypatch):
    # A user pass found the error of log p_0 jump from 8e-4 at d = 64 to 1.3e-2 at d = 65 (std
    # 0.005, VP): the end piece fell back to first order above 64 dimensions. The Jacobians are
    # now formed in chunks of points, and the Gaussian piece is used up to d = 256.
    sde = sd.get_sde("vp")
    target = _sharp_mixture(dim, 0.005)
    x = target.sample(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t_end = data_end_time(sde)
    flow = AugmentedFlow(sde, target.score_fn(sde), (dim,))
    x_e, c = data_correction(flow, sde, x, t_end)
    err = (target.marginal_log_prob(x_e, t_end, sde) + c[:, 0] - target.log_prob(x)).abs().max()
    assert float(err) < 1e-6 and flow.nfe == 1
    monkeypatch.setattr(endpoint, "JACOBIAN_CHUNK_FLOATS", 3 * dim * dim)  # chunks of 3 points
    chunked = AugmentedFlow(sde, target.score_fn(sde), (dim,))
    x_c, c_c = data_correction(chunked, sde, x, t_end)
    torch.testing.assert_close((x_c, c_c), (x_e, c), atol=1e-12, rtol=0)
    assert chunked.nfe == 1  # one evaluation per point, whatever the chunks


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("stds", [(0.001, 0.001), (0.002, 0.1)])
def test_default_is_the_data_density_on_very_sharp_modes(sde_name, stds):
    # Modes as narrow as VP's end noise at t_end = 1e-5 (sigma ~ 1e-3). The first-order end
    # piece was 0.16 nats per point off for std 0.001 and 1.5e-2 for the anisotropic modes.
    err, _ = _errors(aniso8(*stds), sde_name, 200)
    assert err <= 1e-3, err


def test_end_piece_falls_back_to_first_order_between_modes():
    # Points between two modes: the score's Jacobian has a positive eigenvalue (no local
    # Gaussian), so the first-order piece is used; it is accurate there because the density
    # varies on the scale of the mode spacing, not of the end noise.
    sde = sd.get_sde("vp")
    target = aniso8(0.3, 0.3)
    x = 0.5 * (target.means[0] + target.means[1]) + torch.tensor([[0.0, 0.0], [0.01, -0.02]], dtype=torch.float64)
    flow = AugmentedFlow(sde, target.score_fn(sde), (2,))
    x_e, c = data_correction(flow, sde, x, data_end_time(sde))
    assert torch.isfinite(x_e).all() and torch.isfinite(c).all()
    got = target.marginal_log_prob(x_e, data_end_time(sde), sde) + c[:, 0]
    torch.testing.assert_close(got, target.log_prob(x), atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_default_is_the_data_density_on_a_sharp_16d_mixture(sde_name):
    err, _ = _errors(mix16(), sde_name, 150)
    assert err <= 1e-3, err  # measured ~1e-5


def test_the_default_tolerance_does_not_depend_on_the_dimension():
    # The goal holds the answer's own error per step to atol in any dimension (next test).
    assert LikelihoodOptions().integration.tolerances() == (1e-5, 1e-5)
    assert IntegratorOptions(rtol=1e-4).tolerances() == (1e-4, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vp", "subvp"])
def test_default_is_the_data_density_on_a_sharp_32d_mixture(sde_name, monkeypatch):
    # 10 modes in 32-D (std 1/30 to 1/20 of the closest pair's distance). At rtol = atol = 1e-5
    # the state's norm alone is 2.1e-4 (VP) and 1.8e-4 (sub-VP) nats per point off (1.1e-3 and
    # 2.2e-3 before the log-density column got its own tolerance), an error that grows with the
    # dimension: the RMS over d + 1 entries counts that column 1/sqrt(d + 1). The default's goal
    # holds s . dx + dl per step at the same tolerance.
    target = sd.targets.get_target("sharp_32d")
    err, _ = _errors(target, sde_name, 300)
    assert err <= 1e-4, err  # measured 1.5e-5 (VP), 1.4e-5 (sub-VP)
    import scoresde.likelihood.integrators as integrators

    real = integrators.solve_adaptive

    def state_only(*a, **kw):
        kw.pop("goal", None)
        return real(*a, **kw)

    monkeypatch.setattr(integrators, "solve_adaptive", state_only)
    loose, _ = _errors(target, sde_name, 300)
    assert loose > 5 * err, (loose, err)  # measured 14x, 13x


def test_fast_path_meets_the_target_on_a_sharp_mixture():
    err, _ = _errors(grid25(), "vp", 600, integrator="rk4_simpson", steps="auto")
    # The fast path's own target (target_error = 5e-4 on the pilot) also holds against log p_0.
    assert err <= 1e-3, err


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vp", "subvp"])
def test_fast_path_pilot_with_fixed_probes_in_16d_chooses_like_the_exact_pilot(sde_name, monkeypatch):
    import scoresde.likelihood.runner as runner

    target, sde = mix16(), sd.get_sde(sde_name)
    x = target.sample(400, generator=torch.Generator().manual_seed(0))
    exact = target.log_prob(x.double())
    score = _MaxBatch(target.score_fn(sde))

    def p_T(z: torch.Tensor) -> torch.Tensor:
        return target.marginal_log_prob(z, sde.T, sde)

    opts = dict(prior=p_T, integrator="rk4_simpson", steps="auto")
    probe = likelihood(sde, score, x, **opts)
    # 16 > 2 x 2 probes: the pilot uses fixed probes, and its samples are solved again exactly.
    assert probe.stats[0]["pilot_divergence"].startswith("hutchinson") and score.largest == 400
    monkeypatch.setattr(runner, "PILOT_PROBES", 16)  # 16 > 2 x 16 fails: the exact pilot
    full = likelihood(sde, score, x, **opts)
    assert full.stats[0]["pilot_divergence"] == "exact"
    steps = probe.stats[0]["steps"], full.stats[0]["steps"]
    # Both measure the same discretisation error (measured 26 vs 26 steps under VP, 30 vs 30
    # under sub-VP on 1,000 points); the probe-chosen count lands within a fifth of it and
    # within the 1e-3 budget of log p_0 (measured 4.6e-4 to 6.8e-4 on 1,000 points).
    assert abs(steps[0] - steps[1]) <= 0.2 * steps[1], steps
    err = float((probe.log_prob.double() - exact).abs().mean())
    assert err <= 1e-3, err


def test_explicit_eps_gives_the_marginal_and_density_can_be_forced():
    target, sde = circle8(), sd.VPSDE()
    x = target.sample(200, generator=torch.Generator().manual_seed(1)).double()
    score = target.score_fn(sde)

    def p_T(z: torch.Tensor) -> torch.Tensor:
        return target.marginal_log_prob(z, sde.T, sde)

    r = likelihood(sde, score, x, prior=p_T, eps=1e-3)
    assert r.density == "marginal" and r.end_correction is None
    assert float((r.log_prob - target.marginal_log_prob(x, 1e-3, sde)).abs().mean()) <= 1e-3
    # density="data" with an explicit end time: still log p_0 (the [0, 1e-4] term is added).
    d = likelihood(sde, score, x, prior=p_T, eps=1e-4, density="data")
    assert d.density == "data" and d.eps == 1e-4
    assert float((d.log_prob - target.log_prob(x)).abs().mean()) <= 1e-3
    torch.testing.assert_close(d.log_prob, d.prior_log_prob + d.delta_log_prob + d.end_correction)


def test_data_density_needs_marginal_coefficients():
    class DriftOnly:
        """A drift/diffusion-only SDE (no marginal_coeffs): VP's coefficients."""

        def __init__(self) -> None:
            self.vp = sd.VPSDE()
            self.T, self.eps = self.vp.T, self.vp.eps

        def drift(self, x, t):
            return self.vp.drift(x, t)

        def diffusion(self, t):
            return self.vp.diffusion(t)

        def prior_log_prob(self, x):
            return self.vp.prior_log_prob(x)

    target, sde = sd.targets.two_gaussians(), DriftOnly()
    x = target.sample(20, generator=torch.Generator().manual_seed(0))
    score = target.score_fn(sde.vp)
    # A clear message naming the fix, not an AttributeError from inside the end-piece term.
    with pytest.raises(ValueError, match="marginal_coeffs.*pass eps="):
        likelihood(sde, score, x)


# --- chunking -----------------------------------------------------------------------------------
class _MaxBatch:
    """Wraps a score and records the largest batch it was called with."""

    def __init__(self, score) -> None:
        self.score, self.largest = score, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.largest = max(self.largest, x.shape[0])
        return self.score(x, t)


def test_chunks_give_the_unchunked_result_with_bounded_batches():
    target, sde = sd.targets.eight_gaussians(), sd.VPSDE()
    x = target.sample(500, generator=torch.Generator().manual_seed(0)).double()
    score = _MaxBatch(target.score_fn(sde))
    opts = dict(integrator="rk4_simpson", steps=12, pilot_size=64)
    whole = likelihood(sde, score, x, **opts)
    assert score.largest == 500 - 64  # the pilot's samples keep their adaptive result
    score.largest = 0
    chunked = likelihood(sde, score, x, batch_size=100, **opts)
    assert score.largest == 100 and len(chunked.stats) == math.ceil((500 - 64) / 100)
    # One shared grid: the same per-point result (float64 round-off of batched linear algebra).
    torch.testing.assert_close(chunked.log_prob, whole.log_prob, rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked.x_T, whole.x_T, rtol=0, atol=1e-10)


def test_hutchinson_chunks_are_reproducible_for_a_seed():
    target, sde = sd.targets.high_dim(dim=6, n_components=3, seed=3), sd.VPSDE()
    x = target.sample(120, generator=torch.Generator().manual_seed(0))
    score = target.score_fn(sde)
    opts = dict(divergence="hutchinson", n_probes=2, integrator="rk4", grid="quadratic", steps=8, batch_size=50)
    a = likelihood(sde, score, x, seed=3, **opts)
    b = likelihood(sde, score, x, seed=3, **opts)
    c = likelihood(sde, score, x, seed=4, **opts)
    assert torch.equal(a.log_prob, b.log_prob) and not torch.equal(a.log_prob, c.log_prob)


# --- options, names, dtypes ---------------------------------------------------------------------
def test_grouped_options_equal_flat_keywords():
    target, sde = sd.targets.two_gaussians(), sd.VPSDE()
    x = target.sample(50, generator=torch.Generator().manual_seed(0))
    score = target.score_fn(sde)
    opts = LikelihoodOptions.from_kwargs(integrator="rk4", grid="quadratic", steps=10)
    assert opts.integration.steps == 10 and opts.divergence.divergence == "exact"
    flat = likelihood(sde, score, x, integrator="rk4", grid="quadratic", steps=10)
    grouped = likelihood(sde, score, x, opts)
    torch.testing.assert_close(flat.log_prob, grouped.log_prob, rtol=0, atol=0)
    # Flat keywords override the object's fields.
    assert likelihood(sde, score, x, opts, steps=5).stats[0]["steps"] == 5
    with pytest.raises(TypeError, match="unknown likelihood option.*valid:.*batch_size"):
        likelihood(sde, score, x, stepz=5)


@pytest.mark.parametrize("alias,name", [("ode_rk45", "rk45"), ("RK45", "rk45"), ("ode_dopri5", "dopri5"),
                                        ("rk4_simpson", "rk4_simpson"), ("ode_rk4", "rk4"), ("DOP853", "dop853")])
def test_integrator_names_accept_solver_spellings(alias, name):
    assert resolve_integrator(alias) is INTEGRATOR_TABLE[name]


def test_unknown_integrator_lists_the_valid_names():
    target, sde = sd.targets.two_gaussians(), sd.VPSDE()
    x = target.sample(10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"unknown integrator 'rk5'; did you mean 'rk45'\? valid integrators: dopri5, bosh3, rk45"):
        likelihood(sde, target.score_fn(sde), x, integrator="rk5")
    # A solver-style name runs the same integrator as the canonical one.
    a = likelihood(sde, target.score_fn(sde), x, integrator="ode_rk4", grid="quadratic", steps=6)
    b = likelihood(sde, target.score_fn(sde), x, integrator="rk4", grid="quadratic", steps=6)
    assert torch.equal(a.log_prob, b.log_prob)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_with_the_fix(dtype):
    target, sde = sd.targets.two_gaussians(), sd.VPSDE()
    x = target.sample(10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=rf"x is {dtype}.*torch.float32 or torch.float64"):
        log_likelihood(sde, target.score_fn(sde), x.to(dtype))
    with pytest.raises(ValueError, match=rf"dtype is {dtype}"):
        log_likelihood(sde, target.score_fn(sde), x, dtype=dtype)


def test_cli_batch_size(tmp_path, capsys):
    from scoresde.cli import main

    out = tmp_path / "lp.csv"
    args = ["likelihood", "--target", "two_gaussians", "--n", "60", "--integrator", "rk4_simpson",
            "--steps", "8", "--no-progress", "--out", str(out)]
    assert main([*args, "--batch-size", "16"]) == 0
    assert "estimating log p_0" in capsys.readouterr().out
    chunked = out.read_text()
    assert main(args) == 0
    # Same fixed grid (the pilot's), same per-point numbers in the written file.
    assert out.read_text() == chunked
    assert main([*args, "--batch-size", "0"]) == 2


def test_the_probe_pilot_does_not_warn_about_an_end_piece_it_does_not_return() -> None:
    # 32-D, weights 0.9 / 0.09 / 0.01, stds 1/200 to 1/50 of the spacing, fast path with the
    # (default) exact divergence: the pilot takes 2 fixed Hutchinson probes, and its first-order
    # end piece warned "divergence='hutchinson' ... at least 0.0014 nats per point; pass
    # divergence='exact'", which the user had; the returned values (solved again with the exact
    # divergence and the Gaussian end piece) were off by 2.6e-4 per point.
    g = torch.Generator().manual_seed(0)
    d = 32
    means = torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=torch.float64))[0].T / math.sqrt(2)
    weights = torch.tensor([0.9, 0.09, 0.01], dtype=torch.float64)
    means = means - weights @ means
    stds = torch.exp(math.log(1 / 200) + torch.rand(3, d, generator=g, dtype=torch.float64) * math.log(4))
    target, sde = GaussianMixture(means, stds, weights), sd.VPSDE()
    x = target.sample(300, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = likelihood(sde, target.score_fn(sde), x, integrator="rk4", steps="auto",
                       prior=lambda z: target.marginal_log_prob(z, sde.T, sde))
    assert r.stats[0]["pilot_divergence"].startswith("hutchinson")
    assert float((r.log_prob - target.log_prob(x)).abs().mean()) < 1e-3
