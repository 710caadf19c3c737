"""`LikelihoodResult.nfe` counts score evaluations per point, as `solvers.sample` does: the same
for any ``batch_size``, and a re-solve of a few points costs a few points' evaluations, not a
whole batch's. `score_calls` keeps the number of batched calls."""

from __future__ import annotations

import math

import torch

import scoresde as sd
from scoresde.likelihood import likelihood


class _Counted:
    """A score that counts its calls and the points it was evaluated at."""

    def __init__(self, score):
        self.score, self.calls, self.points = score, 0, 0

    def __call__(self, x, t):
        self.calls += 1
        self.points += x.shape[0]
        return self.score(x, t)


def _setup(n: int):
    sde = sd.VPSDE()
    target = sd.targets.sharp_8()
    x = target.sample(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sde, target.score_fn(sde), x


def test_fixed_grid_nfe_is_per_point_and_independent_of_batch_size():
    sde, score, x = _setup(120)
    opts = dict(integrator="rk4_simpson", steps=12, grid="quadratic")
    whole, chunked = _Counted(score), _Counted(score)
    a = likelihood(sde, whole, x, **opts)
    b = likelihood(sde, chunked, x, batch_size=25, **opts)
    # 5 evaluations per step, the last node's, and the [0, eps] term's: per point, any chunking.
    assert a.nfe == b.nfe == 5 * 12 + 1 + 1
    assert whole.points == chunked.points == a.nfe * 120
    # The batched calls are what the chunks multiply (5 chunks of 25 points and one of 20).
    assert a.score_calls == whole.calls == a.nfe
    assert b.score_calls == chunked.calls == 5 * a.nfe
    torch.testing.assert_close(a.log_prob, b.log_prob)


def test_adaptive_default_counts_resolved_points_by_their_number():
    sde, score, x = _setup(200)
    counted = _Counted(score)
    r = likelihood(sde, counted, x)
    st = r.stats[0]
    assert r.score_calls == counted.calls
    # Per point: every evaluation, pilot and re-solves included, spread over the 200 points.
    assert r.nfe == math.ceil(counted.points / 200)
    if st.get("redone_per_sample", 0):
        # the few re-solved points' calls count for their share of the batch only
        assert r.nfe < r.score_calls
        assert r.nfe >= r.score_calls - st["redone_nfe"]
