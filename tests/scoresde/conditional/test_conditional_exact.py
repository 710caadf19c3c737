"""Exact conditionals of Gaussian mixtures: Bayes identities, exact scores, samples, bad input."""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from scoresde.conditional import (
    ClassMixture,
    FullCovMixture,
    ObservedCoordinates,
    condition_on_measurement,
)

VP = sd.VPSDE()


def _mix4() -> sd.GaussianMixture:
    return sd.targets.high_dim(4, 3, seed=1)


def test_coordinates_bayes_identity() -> None:
    # log p(x_u | y_o) + log p(y_o) = log p(x_u, y_o): exact in float64 (rounding only).
    mix = _mix4()
    mask = torch.tensor([True, False, True, False])
    y = torch.tensor([0.3, 0.0, -0.5, 0.0], dtype=torch.float64)
    oc = ObservedCoordinates(mix, mask, y)
    xu = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lhs = oc.conditional.log_prob(xu) + oc.log_evidence
    torch.testing.assert_close(lhs, mix.log_prob(oc.embed(xu)), rtol=0, atol=1e-10)


def test_coordinates_noised_score_is_gradient_of_noised_density() -> None:
    mix = _mix4()
    mask = torch.tensor([False, True, True, False])
    oc = ObservedCoordinates(mix, mask, torch.tensor([0.0, 1.0, -1.0, 0.0]))
    x = torch.randn(20, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    for t in (0.01, 0.3, 1.0):
        alpha, sigma = VP.marginal_coeffs(torch.tensor([t], dtype=torch.float64))
        logp = oc.conditional.marginal_log_prob(oc.free(x), t, VP) + torch.distributions.Normal(
            alpha * oc.observed[mask], sigma
        ).log_prob(x[:, mask]).sum(1)
        (g,) = torch.autograd.grad(logp.sum(), x)
        torch.testing.assert_close(oc.marginal_score(x.detach(), t, VP), g, rtol=1e-9, atol=1e-9)


def test_measurement_selection_matches_coordinates() -> None:
    # A that selects coordinates, noiseless: the Kalman posterior is the coordinate conditional.
    mix = _mix4()
    mask = torch.tensor([True, False, False, True])
    y = torch.tensor([0.2, 0.0, 0.0, -0.7], dtype=torch.float64)
    oc = ObservedCoordinates(mix, mask, y)
    A = torch.eye(4, dtype=torch.float64)[mask]
    post = condition_on_measurement(mix, A, y[mask], 0.0)
    torch.testing.assert_close(post.weights, oc.conditional.weights, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(post.means[:, ~mask], oc.conditional.means, rtol=0, atol=1e-12)
    torch.testing.assert_close(post.means[:, mask], y[mask].expand(3, 2), rtol=0, atol=1e-12)
    torch.testing.assert_close(post.covs[:, ~mask][:, :, ~mask], torch.diag_embed(oc.conditional.stds**2),
                               rtol=0, atol=1e-12)
    assert float(post.covs[:, mask].abs().max()) < 1e-12  # observed coordinates are pinned


def test_measurement_bayes_identity_general_A() -> None:
    # log p(x | y) - log p(x) - log N(y; A x, s^2 I) is the same constant (-log p(y)) for every x.
    mix = _mix4()
    g = torch.Generator().manual_seed(2)
    A = torch.randn(2, 4, dtype=torch.float64, generator=g)
    y = torch.tensor([0.4, -1.0], dtype=torch.float64)
    post = condition_on_measurement(mix, A, y, 0.3)
    x = torch.randn(40, 4, dtype=torch.float64, generator=g)
    lik = torch.distributions.Normal(x @ A.T, 0.3).log_prob(y).sum(1)
    diff = post.log_prob(x) - mix.log_prob(x) - lik
    assert float(diff.max() - diff.min()) < 1e-9  # rounding of float64 Cholesky solves


def test_fullcov_score_and_samples() -> None:
    mix = _mix4()
    A = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    post = condition_on_measurement(mix, A, torch.tensor([0.5]), 0.0)  # singular covariances
    x = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    (gr,) = torch.autograd.grad(post.marginal_log_prob(x, 0.2, VP).sum(), x)
    torch.testing.assert_close(post.marginal_score(x.detach(), 0.2, VP), gr, rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="singular"):
        post.log_prob(x.detach())
    s = post.sample(20_000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    # Noiseless: every sample satisfies A x = y to rounding.
    assert float((s @ A.T - 0.5).abs().max()) < 1e-10
    # Mean within 5 standard errors (sample std / sqrt(n)).
    se = s.std(0) / 20_000**0.5
    assert bool(((s.mean(0) - post.mean()).abs() < 5 * se + 1e-12).all())


def test_class_posterior_and_guidance_identity() -> None:
    mix = sd.targets.eight_gaussians()
    cm = ClassMixture(mix, [0, 0, 1, 1, 2, 2, 3, 3])
    x = torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5), requires_grad=True)
    t = 0.4
    lp = cm.log_prob(x, t, VP)
    torch.testing.assert_close(lp.exp().sum(1), torch.ones(30, dtype=torch.float64))
    # Bayes: log p_t(c|x) = log p_t(x|c) + log pi_c - log p_t(x)
    cond = cm.conditional(2)
    ref = cond.marginal_log_prob(x, t, VP) + torch.log(cm.class_weights[2]) - mix.marginal_log_prob(x, t, VP)
    torch.testing.assert_close(lp[:, 2], ref, rtol=1e-10, atol=1e-10)
    # Classifier guidance at scale 1 is the conditional score.
    (gr,) = torch.autograd.grad(lp[:, 2].sum(), x)
    xd = x.detach()
    torch.testing.assert_close(mix.marginal_score(xd, t, VP) + gr, cond.marginal_score(xd, t, VP),
                               rtol=1e-9, atol=1e-9)


def test_bad_input_errors() -> None:
    mix = _mix4()
    with pytest.raises(ValueError, match="mask has shape"):
        ObservedCoordinates(mix, torch.tensor([True, False]), torch.zeros(4))
    with pytest.raises(ValueError, match="observes nothing"):
        ObservedCoordinates(mix, torch.zeros(4, dtype=torch.bool), torch.zeros(4))
    with pytest.raises(ValueError, match="every coordinate"):
        ObservedCoordinates(mix, torch.ones(4, dtype=torch.bool), torch.zeros(4))
    with pytest.raises(ValueError, match="observed has shape"):
        ObservedCoordinates(mix, torch.tensor([True, False, False, False]), torch.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(M, 4\)"):
        condition_on_measurement(mix, torch.ones(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="y must have shape"):
        condition_on_measurement(mix, torch.ones(2, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="full row rank"):
        condition_on_measurement(mix, torch.ones(2, 4), torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="noise_std"):
        condition_on_measurement(mix, torch.ones(1, 4), torch.zeros(1), -1.0)
    cm = ClassMixture(mix, [0, 1, 1])
    with pytest.raises(ValueError, match="unknown class 2"):
        cm.conditional(2)
    with pytest.raises(ValueError, match="one class per component"):
        ClassMixture(mix, [0, 1])
    with pytest.raises(ValueError, match="each used"):
        ClassMixture(mix, [0, 2, 2])
    assert isinstance(condition_on_measurement(mix, torch.ones(1, 4), torch.zeros(1), 0.1), FullCovMixture)


def test_fuzzed_exact_inputs_get_clear_errors() -> None:
    import numpy as np

    from scoresde.conditional import MatrixOperator, as_full_cov, colorization_matrix

    mix = sd.targets.eight_gaussians()
    oc = ObservedCoordinates(mix, [True, False], [1.0, 0.0])
    # Wrong state shapes were raw IndexError / RuntimeError from boolean indexing.
    with pytest.raises(ValueError, match=r"full states \(B, 2\)"):
        oc.free(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"full states \(B, 2\)"):
        oc.marginal_score(torch.randn(4, 3), 0.5, VP)
    with pytest.raises(ValueError, match=r"free coordinates \(B, 1\)"):
        oc.embed(torch.randn(4, 2))
    with pytest.raises(TypeError, match="GaussianMixture"):
        ObservedCoordinates(3, [True, False], [1.0, 0.0])  # AttributeError before
    with pytest.raises(TypeError, match="mask must be an array"):
        ObservedCoordinates(mix, None, [1.0, 0.0])
    # Float classes were truncated to 0 (one class instead of two); 1.7 was read as class 1.
    with pytest.raises(TypeError, match="classes must be integers"):
        ClassMixture(mix, [0.5] * 8)
    cm = ClassMixture(mix, [0, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="unknown class"):
        cm.conditional(torch.tensor(1.7))
    assert cm.conditional(np.int64(1)).n_components == 4
    with pytest.raises(TypeError, match="GaussianMixture or FullCovMixture"):
        as_full_cov(3)
    with pytest.raises(ValueError, match=r"shape \(M, D\), got \(\)"):
        MatrixOperator(1.0)  # IndexError before
    with pytest.raises(ValueError, match="height must be an integer"):
        colorization_matrix(2.5, 2)
