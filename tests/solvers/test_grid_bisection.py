"""The grids' batched bisection stops once its brackets stall, with the full loop's result.

Every log-SNR and Karras grid inverts ``log_snr(t)`` or ``sigma(t)/alpha(t)`` by bisection in
float64. Its brackets reach adjacent floats after about 60 halvings; the other 40 of the 100
iterations changed nothing and cost about 40% of a grid's construction (a third of a 20-step
``solvers.sample`` call on a small batch).
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from solvers.marginals import edm_sigma, invert_monotone, log_snr

F64 = torch.float64


def _full_bisection(fn, targets, lo, hi, iters=100):
    lo_t, hi_t = torch.full_like(targets, lo), torch.full_like(targets, hi)
    ends = fn(torch.tensor([lo, hi], dtype=F64))
    increasing = bool(ends[1] > ends[0])
    for _ in range(iters):
        mid = 0.5 * (lo_t + hi_t)
        above = fn(mid) > targets
        go_left = above if increasing else ~above
        hi_t, lo_t = torch.where(go_left, mid, hi_t), torch.where(go_left, lo_t, mid)
    return 0.5 * (lo_t + hi_t)


@pytest.mark.parametrize("sde", [sd.VPSDE(), sd.SubVPSDE(), sd.VESDE(), sd.CosineVPSDE()],
                         ids=["vp", "subvp", "ve", "cosine"])
@pytest.mark.parametrize("level", ["log_snr", "edm_sigma"])
def test_early_stop_gives_the_full_loops_result(sde, level):
    fn = (lambda t: log_snr(sde, t)) if level == "log_snr" else (lambda t: edm_sigma(sde, t))
    t_ref = torch.linspace(sde.eps, sde.T, 257, dtype=F64)
    # Targets at grid levels, at the ends and beyond them (they clip to the ends).
    ends = fn(torch.tensor([sde.eps, sde.T], dtype=F64))
    targets = torch.cat([fn(t_ref), ends + torch.tensor([-1.0, 1.0], dtype=F64), ends - ends.sign() * 5])
    calls = []

    def counted(t):
        calls.append(1)
        return fn(t)

    got = invert_monotone(counted, targets, sde.eps, sde.T)
    assert torch.equal(got, _full_bisection(fn, targets, sde.eps, sde.T))
    assert len(calls) < 80  # one for the ends, then about 60 halvings instead of 100
