"""The fast path (`rk4_simpson`, `steps="auto"`) and the samples its pilot did not measure.

`steps="auto"` measures the fixed grid's error on the pilot's samples only. A sample whose path
the grid fits far worse than any of theirs (its error indicator, `rk4_simpson_with_path_error`,
above `OUTSIDE_FACTOR` times the pilot's largest) is solved again adaptively. Before (5167290),
a point 3 units from modes of std 0.02-0.3 came back 888 nats off its exact log-density
(-603), silently, and the mean error over 301 points was 2.95 nats.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import AugmentedFlow, likelihood, runner
from scoresde.likelihood.simpson import integrate_rk4_simpson, rk4_simpson_with_path_error
from scoresde.targets import GaussianMixture

# Small pilots keep these tests fast; what they check does not depend on the pilot's size.
pytestmark = pytest.mark.filterwarnings("ignore:steps='auto' chooses the step count:RuntimeWarning")


def _aniso() -> GaussianMixture:
    return GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], [[0.02, 0.3], [0.25, 0.03]], [0.8, 0.2], name="aniso")


def test_path_error_is_the_embedded_third_order_estimate():
    # A Gaussian target makes the probability-flow ODE linear and smooth: the summed local
    # error of the embedded third-order solution falls as h^3 (eight-fold per halving).
    sde = sd.VPSDE()
    target = GaussianMixture([[0.5, -0.3]], [[0.4, 0.7]], [1.0])
    x = target.sample(64, generator=torch.Generator().manual_seed(0)).double()
    flow = AugmentedFlow(sde, target.score_fn(sde), (2,))
    sums = []
    for n in (8, 16, 32):
        ts = torch.linspace(sde.eps, sde.T, n + 1, dtype=torch.float64)
        with torch.no_grad():
            x_T, l, err = rk4_simpson_with_path_error(flow, x, ts)
            x_T2, l2 = integrate_rk4_simpson(flow, x, ts)
        torch.testing.assert_close(x_T, x_T2, rtol=0, atol=0)
        torch.testing.assert_close(l, l2, rtol=0, atol=0)
        assert err.shape == (64,) and bool((err > 0).all())
        sums.append(float(err.sum()))
    for coarse, fine in zip(sums[:-1], sums[1:], strict=True):
        assert 6.5 < coarse / fine < 9.5, sums


def test_a_point_the_pilot_did_not_measure_is_solved_adaptively():
    sde = sd.VPSDE()
    target = _aniso()
    bulk = target.sample(300, generator=torch.Generator().manual_seed(0)).double()
    x = torch.cat([bulk, torch.tensor([[0.0, 3.0]], dtype=torch.float64)])
    exact = target.log_prob(x)
    score = target.score_fn(sde)

    def p_T(z: torch.Tensor) -> torch.Tensor:
        return target.marginal_log_prob(z, sde.T, sde)

    r = likelihood(sde, score, x, prior=p_T, integrator="rk4_simpson", steps="auto", pilot_size=64)
    st = r.stats[0]
    assert st["redone_adaptive"] >= 1 and st["path_error_limit"] > 0
    err = (r.log_prob - exact).abs()
    # exact log p_0 of the outside point: -603; the fixed grid alone was hundreds of nats off.
    assert float(exact[-1]) < -600 and float(err[-1]) < 2e-2
    assert float(err.mean()) < 1e-3
    # Only the samples above the limit changed: the rest is the fixed-grid solve as before.
    factor = runner.OUTSIDE_FACTOR
    try:
        runner.OUTSIDE_FACTOR = math.inf
        before = likelihood(sde, score, x, prior=p_T, integrator="rk4_simpson", steps="auto", pilot_size=64)
    finally:
        runner.OUTSIDE_FACTOR = factor
    assert float((before.log_prob[-1] - exact[-1]).abs()) > 10.0
    changed = (r.log_prob != before.log_prob)
    assert int(changed.sum()) == st["redone_adaptive"] and bool(changed[-1])
    assert r.score_calls == before.score_calls + st["redone_nfe"]


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_the_re_solve_keeps_the_divergence_and_the_probes(divergence):
    sde = sd.VPSDE()
    target = _aniso()
    x = torch.cat([target.sample(200, generator=torch.Generator().manual_seed(1)),
                   torch.tensor([[0.0, 3.0]])]).double()
    exact = target.log_prob(x)
    kw = {"divergence": divergence, "n_probes": 2} if divergence == "hutchinson" else {}
    r = likelihood(sde, target.score_fn(sde), x, integrator="rk4_simpson", steps="auto", pilot_size=64,
                   prior=lambda z: target.marginal_log_prob(z, sde.T, sde), seed=3, **kw)
    assert r.stats[0]["redone_adaptive"] >= 1
    assert torch.isfinite(r.log_prob).all()
    if divergence == "hutchinson":
        # Two probes per sample, their mean is the estimate: each column is a finished solve,
        # and the re-solved sample kept its own probes (an unbiased estimate of its log-density).
        assert r.probe_log_probs is not None and r.probe_log_probs.shape == (201, 2)
        torch.testing.assert_close(r.probe_log_probs.mean(1), r.log_prob)
        assert float((r.log_prob[-1] - exact[-1]).abs()) < 1.0
    else:
        assert float((r.log_prob[-1] - exact[-1]).abs()) < 2e-2


def test_in_distribution_samples_are_left_to_the_fixed_grid():
    # The factor keeps the re-solve (a few hundred evaluations) for samples far outside what
    # the pilot measured: a sample set of the data itself has none.
    sde = sd.VPSDE()
    target = sd.targets.get_target("sharp_8")
    x = target.sample(2000, generator=torch.Generator().manual_seed(0)).double()
    r = likelihood(sde, target.score_fn(sde), x, integrator="rk4_simpson", steps="auto",
                   prior=lambda z: target.marginal_log_prob(z, sde.T, sde))
    assert r.stats[0]["redone_adaptive"] == 0 and r.stats[0]["redone_nfe"] == 0
    assert float((r.log_prob - target.log_prob(x)).abs().mean()) < 1e-3
