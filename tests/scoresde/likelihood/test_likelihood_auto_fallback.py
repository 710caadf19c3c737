"""`steps="auto"` when no step count meets the target: the fixed grid is not used.

The fast path (`integrator="rk4_simpson", steps="auto"`) measures fixed-grid trials of the
pilot's samples against the pilot's adaptive answers. When the last count's error is far above
`target_error` (`pilot.FALLBACK_FACTOR`), or still above it at `pilot.MAX_AUTO_STEPS`, the grid
is known to miss: the samples the pilot did not solve are solved by the adaptive `dopri5`
instead, and the pilot's own answers that are looser than the default's limits are solved
again alone. Before (e4f760f) the missed grid was used with a warning: with points spread
around a sharp two-mode mixture, points came back 4.7-1,570 nats off.
"""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import likelihood, pilot
from scoresde.likelihood.pilot import FALLBACK_FACTOR, MAX_AUTO_STEPS, grid_fails

# Small pilots keep these tests fast; what they check does not depend on the pilot's size.
pytestmark = pytest.mark.filterwarnings("ignore:steps='auto' chooses the step count:RuntimeWarning")


def test_a_count_is_not_used_far_above_the_target_or_above_it_at_the_step_limit():
    target = 5e-4
    assert not grid_fails(40, target, target)  # met
    assert not grid_fails(40, FALLBACK_FACTOR * target, target)  # a stall near the target: used
    assert grid_fails(40, 1.01 * FALLBACK_FACTOR * target, target)
    assert grid_fails(40, math.nan, target) and grid_fails(40, math.inf, target)
    assert grid_fails(MAX_AUTO_STEPS, 1.01 * target, target)  # no speed left to offer there
    assert not grid_fails(MAX_AUTO_STEPS, target, target)


def test_a_missed_grid_falls_back_to_the_adaptive_solve(monkeypatch: pytest.MonkeyPatch):
    sde = sd.VPSDE()
    t = sd.targets.get_target("sharp_8")
    x = t.sample(60, generator=torch.Generator().manual_seed(0)).double()
    exact = t.log_prob(x)

    def p_T(z: torch.Tensor) -> torch.Tensor:
        return t.marginal_log_prob(z, sde.T, sde)

    # A step limit the tight target cannot be met under: 8 steps, then 12, still above 1e-5.
    monkeypatch.setattr(pilot, "MAX_AUTO_STEPS", 12)
    with pytest.warns(RuntimeWarning, match="12 steps still give.*solved by the adaptive dopri5"):
        r = likelihood(sde, t.score_fn(sde), x, prior=p_T, integrator="rk4_simpson", steps="auto",
                       target_error=1e-5, pilot_size=40)
    st = r.stats[0]
    history = st["auto_steps"]
    assert [h["steps"] for h in history] == [8, 12] and history[-1]["error"] > 1e-5
    assert st["auto_fallback"] and st["integrator"] == "dopri5"
    # The 20 samples outside the pilot got the default's adaptive answer, not a 12-step one.
    err = (r.log_prob - exact).abs()
    assert float(err.mean()) < 2e-4 and float(err.max()) < 2e-3, (float(err.mean()), float(err.max()))
    fixed = likelihood(sde, t.score_fn(sde), x, prior=p_T, integrator="rk4_simpson", steps=12)
    assert float((fixed.log_prob - exact).abs().mean()) > 10 * float(err.mean())
    # Every evaluation is counted: pilot, trials, the pilot samples solved again, the chunk.
    assert r.score_calls == (st["pilot_nfe"] + sum(h["nfe"] for h in history) + st.get("pilot_outlier_nfe", 0)
                     + st["nfe"])
