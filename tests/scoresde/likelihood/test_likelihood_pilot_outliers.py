"""The fast path's pilot and a point far outside the data that lands in the pilot's sample.

The pilot (`dopri5` under the batch norm) of `integrator="rk4_simpson", steps="auto"` shapes
the fixed grid and measures the step count. A point 3 units from a sharp two-mode mixture runs
along a stiff ridge between the modes; in the pilot it held 97-100% of the squared error and
every sample took its steps. Before (24f31cc) the grid was shaped for that one point, 512
steps were chosen, and the point kept the pilot's answer: 0.05-8,300 nats off, and with it the
rest of the batch up to 0.34 nats off on average. The pilot now sets such samples aside
(`pilot.dominating_samples`), runs again without them, and solves them alone.
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import likelihood
from scoresde.likelihood.pilot import MAX_OUTLIER_FRACTION, OUTLIER_SHARE, dominating_samples
from scoresde.targets import GaussianMixture

# Small pilots keep these tests fast; what they check does not depend on the pilot's size.
pytestmark = pytest.mark.filterwarnings("ignore:steps='auto' chooses the step count:RuntimeWarning")


def _rms(*large: float, n: int = 256, small: float = 0.2) -> torch.Tensor:
    values = torch.full((n,), small, dtype=torch.float64)
    values[: len(large)] = torch.tensor(large, dtype=torch.float64)
    return values.flip(0)  # the large ones last: the mask must follow the values, not positions


def test_one_sample_holding_the_batch_error_is_set_aside():
    rms = _rms(9.0)  # 81 of 81 + 255 * 0.04 = 91.2: 89%, just under the share
    assert float(rms.max() ** 2 / rms.pow(2).sum()) < OUTLIER_SHARE
    assert not dominating_samples(rms, 2.0).any()
    rms = _rms(10.0)  # 100 / 110.2 = 91%
    mask = dominating_samples(rms, 2.0)
    assert mask.tolist() == (rms == 10.0).tolist()


def test_the_few_that_hold_it_together_are_set_aside_but_not_a_population():
    # 256 samples: at most MAX_OUTLIER_FRACTION * 256 = 2 may be set aside.
    assert int(MAX_OUTLIER_FRACTION * 256) == 2
    mask = dominating_samples(_rms(8.0, 8.0), 2.0)
    assert int(mask.sum()) == 2
    assert not dominating_samples(_rms(6.0, 6.0, 6.0), 2.0).any()  # three needed: data, not outliers


def test_a_dominating_sample_within_the_error_limit_or_an_ordinary_spread_is_kept():
    # Below the limit the sample took no more than its share of the tolerance.
    assert not dominating_samples(_rms(1.9, small=0.01), 2.0).any()
    # Ordinary pilots: the largest holder had 14-58% of the squared error (docs/likelihood.md).
    assert not dominating_samples(_rms(4.0, 3.0, 2.5), 2.0).any()
    assert not dominating_samples(torch.zeros(256, dtype=torch.float64), 2.0).any()
    assert not dominating_samples(_rms(float("nan")), 2.0).any()


@pytest.fixture(scope="module")
def far_and_bulk():
    sde = sd.VPSDE()
    target = GaussianMixture([[-1.0, 0.0], [1.0, 0.0]], [[0.03, 0.3], [0.25, 0.03]], [0.8, 0.2], name="aniso")
    bulk = target.sample(120, generator=torch.Generator().manual_seed(0)).double()
    x = torch.cat([bulk, torch.tensor([[0.0, 3.0]], dtype=torch.float64)])

    def p_T(z: torch.Tensor) -> torch.Tensor:
        return target.marginal_log_prob(z, sde.T, sde)

    def fast(points: torch.Tensor):
        return likelihood(sde, target.score_fn(sde), points, prior=p_T, integrator="rk4_simpson",
                          steps="auto", pilot_size=100)

    return target, x, fast(x), fast(bulk)


def test_a_far_point_in_the_pilot_neither_shapes_the_grid_nor_keeps_a_loose_answer(far_and_bulk):
    target, x, r, r_bulk = far_and_bulk
    exact = target.log_prob(x)
    err = (r.log_prob - exact).abs()
    st = r.stats[0]
    # The step count is the bulk's (19 with the point and without it; 512 before): its grid too.
    steps, bulk_steps = st["auto_steps"][-1]["steps"], r_bulk.stats[0]["auto_steps"][-1]["steps"]
    assert steps <= 2 * bulk_steps, (steps, bulk_steps)
    # exact log p_0 = -603 at (0, 3): 0.0057 nats off now (the default dopri5's answer), 0.049 before.
    assert float(exact[-1]) < -500 and float(err[-1]) < 0.02, float(err[-1])
    assert float(err[:-1].mean()) < 5e-4
    assert st["pilot_outliers"] == 1 and st["pilot_outlier_nfe"] > 0
    assert "pilot_outliers" not in r_bulk.stats[0]  # the same data without the point: nothing set aside
    # Every evaluation is counted: both pilot solves, the point's own solve, trials, main solve.
    assert st["pilot_nfe"] > st["pilot_first_nfe"] > 0
    assert r.score_calls == st["pilot_nfe"] + st["pilot_outlier_nfe"] + sum(h["nfe"] for h in st["auto_steps"]) + st["nfe"]
