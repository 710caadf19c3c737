"""Exact Gaussian-mixture targets: densities, scores and samples against independent checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import scoresde as sd
from scoresde.targets import GaussianMixture

SDES = [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(sigma_min=0.01, sigma_max=10.0), sd.CosineVPSDE()]


def _diag_mixture() -> GaussianMixture:
    return GaussianMixture(
        [[0.0, 1.0, -1.0], [2.0, -1.0, 0.5]], [[0.3, 0.5, 0.2], [0.4, 0.1, 0.6]], [0.25, 0.75]
    )


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("target", [sd.targets.eight_gaussians(), _diag_mixture(), sd.targets.high_dim(16)],
                         ids=["8g", "diag3d", "hd16"])
def test_score_is_gradient_of_log_density(sde, target):
    g = torch.Generator().manual_seed(0)
    n = 64
    t = sde.eps + (sde.T - sde.eps) * torch.rand(n, generator=g, dtype=torch.float64)
    x = target.sample_marginal(n, sde, 0.5, generator=g, dtype=torch.float64)
    x = x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    logp = target.marginal_log_prob(x, t, sde)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    # float64 closed form vs autograd of the log-sum-exp: agreement to round-off.
    torch.testing.assert_close(target.marginal_score(x.detach(), t, sde), grad, rtol=1e-9, atol=1e-9)


def test_log_prob_matches_torch_distributions():
    target = _diag_mixture()
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=target.weights),
        torch.distributions.Independent(torch.distributions.Normal(target.means, target.stds), 1),
    )
    x = mix.sample((100,))
    torch.testing.assert_close(target.log_prob(x), mix.log_prob(x))


def test_marginal_log_prob_is_normalised_in_2d():
    """Riemann sum of p_t over a fine grid integrates to 1."""
    target, sde = sd.targets.two_gaussians(), sd.VPSDE()
    lin = torch.linspace(-5, 5, 401, dtype=torch.float64)
    gx, gy = torch.meshgrid(lin, lin, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    dens = target.marginal_log_prob(pts, 0.3, sde).exp()
    mass = float(dens.sum()) * float(lin[1] - lin[0]) ** 2
    assert abs(mass - 1) < 1e-4  # grid spacing 0.025 resolves every component


def test_marginal_at_zero_is_data_density():
    target, sde = _diag_mixture(), sd.VPSDE()
    x = target.sample(20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(target.marginal_log_prob(x, 0.0, sde), target.log_prob(x))


def test_sample_moments():
    target = sd.targets.grid_25()
    x = target.sample(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cov = target.covariance()
    se = torch.sqrt(torch.diag(cov) / x.shape[0])
    assert ((x.mean(0) - target.mean()).abs() < 5 * se).all()  # 5 standard errors
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0.02, atol=0.02)  # ~1% MC error


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_sample_marginal_matches_forward_noising(sde):
    """Exact p_t samples have the closed-form mixture moments alpha mu, alpha^2 C + sigma^2 I."""
    target = _diag_mixture()
    t = 0.4
    x = target.sample_marginal(100_000, sde, t, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    alpha, sigma = (float(v) for v in sde.marginal_coeffs(torch.tensor([t], dtype=torch.float64)))
    cov = alpha**2 * target.covariance() + sigma**2 * torch.eye(3, dtype=torch.float64)
    se = torch.sqrt(torch.diag(cov) / x.shape[0])
    assert ((x.mean(0) - alpha * target.mean()).abs() < 5 * se).all()  # 5 standard errors
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0.03, atol=0.03 * float(cov.diag().max()))


def test_score_is_stable_far_from_modes():
    target, sde = sd.targets.ring(), sd.VPSDE()
    x = torch.tensor([[1e3, -1e3], [0.0, 0.0]])
    s = target.marginal_score(x, torch.full((2,), sde.eps), sde)
    assert torch.isfinite(s).all()
    assert s[0, 0] < 0 < s[0, 1]  # points back towards the data


def test_score_fn_and_dtypes():
    target, sde = sd.targets.eight_gaussians(), sd.VESDE()
    score = target.score_fn(sde)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(7, 2, dtype=dtype)
        out = score(x, torch.full((7,), 0.5, dtype=dtype))
        assert out.dtype == dtype and out.shape == (7, 2)


def test_bad_inputs():
    target, sde = sd.targets.eight_gaussians(), sd.VPSDE()
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        target.marginal_score(torch.randn(4, 3), torch.full((4,), 0.5), sde)
    with pytest.raises(ValueError, match=r"t must lie in"):
        target.marginal_score(torch.randn(4, 2), torch.full((4,), 1.5), sde)
    with pytest.raises(ValueError, match=r"shape"):
        target.marginal_score(torch.randn(4, 2), torch.full((3,), 0.5), sde)
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture([[0.0, 0.0]], [-1.0])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([[0.0], [1.0]], 1.0, [1.0, -1.0])
    with pytest.raises(ValueError, match="valid targets"):
        sd.targets.get_target("nope")


def test_presets_are_valid():
    for name in sd.targets.PRESETS:
        t = sd.targets.get_target(name)
        assert abs(float(t.weights.sum()) - 1) < 1e-12
        x = t.sample(10, generator=torch.Generator().manual_seed(0))
        assert x.shape == (10, t.dim) and torch.isfinite(t.log_prob(x)).all()
    assert sd.targets.high_dim(16).dim == 16
    w = sd.targets.grid_25().weights
    assert float(w.max() / w.min()) > 3  # unequal weights, by design
    assert math.isclose(float(sd.targets.eight_gaussians().means.norm(dim=1).mean()), 2.0)


def test_bad_weights_are_refused():
    # NaN / inf weights, or a sum overflowing float64, used to give NaN or zero weights silently.
    for w in ([float("nan"), 1.0], [float("inf"), 1.0], [1e308, 1e308]):
        with pytest.raises(ValueError, match="weights must be finite"):
            GaussianMixture([[0.0], [1.0]], 1.0, w)


def test_sample_refuses_bad_n_generator_dtype_device():
    target = sd.targets.eight_gaussians()
    with pytest.raises(TypeError, match="n must be an integer"):
        target.sample(2.5)  # was a TypeError from torch.multinomial naming num_samples
    with pytest.raises(ValueError, match="n must be a positive integer"):
        target.sample(0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        target.sample(3, generator=3)  # was AttributeError: 'int' has no attribute 'device'
    with pytest.raises(ValueError, match="floating-point dtype"):
        target.sample(3, dtype=torch.int64)  # was silently rounded integer samples
    with pytest.raises(ValueError, match="unknown device"):
        target.sample(3, device="bogus")  # was a RuntimeError from torch
    assert target.sample(np.int64(3)).shape == (3, 2)


def test_sample_marginal_refuses_bad_t_and_sde():
    target, sde = sd.targets.eight_gaussians(), sd.VPSDE()
    with pytest.raises(ValueError, match=r"t must be a finite time in \[0, T=1\]"):
        target.sample_marginal(3, sde, float("nan"))  # was NaN samples
    with pytest.raises(TypeError, match="sde must be an SDE"):
        target.sample_marginal(3, None, 0.5)  # was AttributeError
    with pytest.raises(TypeError, match="sde must be an SDE"):
        target.score_fn("vp")  # was AttributeError on the first call


def test_integer_x_is_refused():
    # int64 x used to cast the means to int64 too: truncated means, NaN scores.
    target = sd.targets.eight_gaussians()
    with pytest.raises(ValueError, match="floating-point dtype"):
        target.log_prob(torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="floating-point dtype"):
        target.marginal_score(torch.zeros(4, 2, dtype=torch.int64), 0.5, sd.VPSDE())


def test_preset_sizes_must_be_positive_integers():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        sd.targets.ring(0)  # was ZeroDivisionError
    with pytest.raises(TypeError, match="n must be an integer"):
        sd.targets.ring(2.5)  # was silently 3 components
    with pytest.raises(TypeError, match="dim must be an integer"):
        sd.targets.high_dim(2.5)


def _torch_marginal(target: GaussianMixture, t: torch.Tensor, sde) -> torch.distributions.Distribution:
    """The noised marginal p_t as a torch.distributions mixture, one per sample time ``t: (B,)``."""
    alpha, sigma = sde.marginal_coeffs(t)
    loc = alpha[:, None, None] * target.means[None]
    scale = (alpha[:, None, None] ** 2 * target.stds[None] ** 2 + sigma[:, None, None] ** 2).sqrt()
    return torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=target.weights.expand(t.shape[0], -1)),
        torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1),
    )


@pytest.mark.parametrize("dim", [1, 2, 4, 5, 16])
@pytest.mark.parametrize("isotropic", [True, False], ids=["isotropic", "diagonal"])
def test_noised_density_score_and_posterior_match_torch_distributions(dim, isotropic):
    """Both layouts of the per-component terms ((K, D, B) up to COMPONENTS_FIRST_MAX_DIM
    dimensions, (B, K, D) above) and both variance shapes (one per isotropic component, or D),
    against torch.distributions and its autograd, with a different time per sample."""
    g = torch.Generator().manual_seed(dim)
    k, n, sde = 5, 300, sd.VPSDE()
    stds = 0.02 + 0.3 * torch.rand(k, 1 if isotropic else dim, generator=g, dtype=torch.float64)
    target = GaussianMixture(2 * torch.randn(k, dim, generator=g, dtype=torch.float64), stds.expand(k, dim),
                             1 + torch.rand(k, generator=g, dtype=torch.float64))
    t = sde.eps + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    x = target.sample_marginal(n, sde, 0.2, generator=g, dtype=torch.float64).requires_grad_(True)
    ref = _torch_marginal(target, t, sde)
    logp = ref.log_prob(x)
    (grad,) = torch.autograd.grad(logp.sum(), x)
    x = x.detach()
    torch.testing.assert_close(target.marginal_log_prob(x, t, sde), logp.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(target.marginal_score(x, t, sde), grad, rtol=1e-9, atol=1e-9)
    assert target.marginal_score(x, t, sde).is_contiguous()
    # p_0's posterior over components: Bayes' rule on the torch component densities.
    comp = torch.distributions.Independent(torch.distributions.Normal(target.means, target.stds), 1)
    joint = comp.log_prob(x[:, None, :]) + target.weights.log()
    resp = target.responsibilities(x)
    torch.testing.assert_close(resp, torch.softmax(joint, dim=1), rtol=1e-12, atol=1e-12)
    assert resp.shape == (n, k) and resp.is_contiguous()


@pytest.mark.parametrize("target", [sd.targets.sharp_25(), _diag_mixture(), sd.targets.high_dim(16)],
                         ids=["grid25", "diag3d", "hd16"])
def test_a_samples_score_and_density_do_not_depend_on_its_batch(target):
    """Bit for bit: what chunked sampling relies on to return the unchunked samples
    (docs/solvers.md). torch's reductions over an outer axis can order their additions by
    batch size, so the component sums are folded in a fixed order."""
    sde, g = sd.VPSDE(), torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        x = target.sample_marginal(1001, sde, 0.3, generator=g, dtype=dtype)
        t = (sde.eps + torch.rand(1001, generator=g, dtype=torch.float64)).clamp(max=1.0).to(dtype)
        for lo, hi in [(0, 13), (13, 333), (333, 1001)]:
            assert torch.equal(target.marginal_score(x, t, sde)[lo:hi], target.marginal_score(x[lo:hi], t[lo:hi], sde))
            assert torch.equal(target.marginal_log_prob(x, t, sde)[lo:hi],
                               target.marginal_log_prob(x[lo:hi], t[lo:hi], sde))
            assert torch.equal(target.responsibilities(x)[lo:hi], target.responsibilities(x[lo:hi]))


@pytest.mark.parametrize("target", [sd.targets.eight_gaussians(), sd.targets.high_dim(16)], ids=["8g", "hd16"])
def test_points_at_infinity_have_log_density_minus_infinity(target):
    """In both layouts: a point at +-inf has density 0 (log -inf), a NaN point gives NaN,
    and a finite point far from every mode a finite value (no floor from the shifted exp)."""
    x = torch.zeros(4, target.dim, dtype=torch.float64)
    x[1], x[2, 0], x[3] = math.inf, math.nan, -math.inf
    for logp in (target.log_prob(x), target.marginal_log_prob(x, 0.5, sd.VPSDE())):
        assert torch.isfinite(logp[0]) and logp[1] == -math.inf and torch.isnan(logp[2]) and logp[3] == -math.inf
    far = torch.full((1, target.dim), 1e3, dtype=torch.float64)
    exact = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=target.weights),
        torch.distributions.Independent(torch.distributions.Normal(target.means, target.stds), 1),
    ).log_prob(far)
    torch.testing.assert_close(target.log_prob(far), exact, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dim", [2, 16])
def test_a_component_of_weight_zero_has_posterior_exactly_zero(dim):
    """Its logit is -inf; the far-component flush (subnormals are slow) must not give it mass."""
    means = torch.zeros(3, dim, dtype=torch.float64)
    means[1, 0], means[2, 1] = 1.0, 1.0
    target = GaussianMixture(means, 0.1, [0.5, 0.0, 0.5])
    x = means[:2] + 0.05
    resp = target.responsibilities(x)
    assert bool((resp[:, 1] == 0).all()) and torch.allclose(resp.sum(1), torch.ones(2, dtype=torch.float64))
    kept = GaussianMixture(means[[0, 2]], 0.1, [0.5, 0.5])
    sde = sd.VPSDE()
    torch.testing.assert_close(target.marginal_score(x, 0.3, sde), kept.marginal_score(x, 0.3, sde), rtol=1e-12, atol=0)
    torch.testing.assert_close(target.log_prob(x), kept.log_prob(x), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["eight_gaussians", "sharp_32d"])  # both layouts of the terms
def test_huge_inputs_in_single_precision_give_the_float64_answer(name: str) -> None:
    # At |x| = 1e20 in float32 every squared distance overflowed: the score was NaN and the
    # responsibilities summed to 0, where the exact values are finite in float32 too.
    target, sde = sd.targets.get_target(name), sd.VPSDE()
    x = torch.full((3, target.dim), 1e20)
    x[1] = -3e15
    x[2] = 0.5  # an ordinary row in the same batch keeps its value
    t = torch.tensor([0.5, 0.5, 0.5])
    score = target.marginal_score(x, t, sde)
    assert score.dtype == torch.float32 and bool(torch.isfinite(score).all())
    torch.testing.assert_close(score, target.marginal_score(x.double(), t.double(), sde).float())
    resp = target.responsibilities(x)
    assert resp.dtype == torch.float32
    torch.testing.assert_close(resp.sum(1), torch.ones(3))
    # log p is below float32's range there: -inf is its rounding, not a failure
    assert target.log_prob(x)[0] == -math.inf and bool(torch.isfinite(target.log_prob(x)[2]))
    half = target.marginal_score(torch.full((1, target.dim), 300.0, dtype=torch.float16), 0.5, sde)
    assert half.dtype == torch.float16 and bool(torch.isfinite(half).all())
