"""``Solution.seconds`` times the solver, not its diagnostics (an outside pass).

Euler-Maruyama's stability analysis searches for a stable step count when a grid is too
coarse (about 19 ms), and it ran inside the solve's clock: in a time-vs-quality plot a
6-NFE run looked slower than a 21-NFE one.
"""

from __future__ import annotations

import time

import torch

import scoresde as sd
import solvers
from solvers.euler_maruyama import EulerMaruyama


class SlowDiagnosis(EulerMaruyama):
    def diagnose(self, dynamics, ctx) -> None:  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        super().diagnose(dynamics, ctx)


def test_the_diagnosis_runs_outside_the_clock() -> None:
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    start = time.perf_counter()
    out = solvers.sample(sde, score, (64, 2), SlowDiagnosis(), steps=5, seed=0, dtype=torch.float64)
    assert time.perf_counter() - start >= 0.3
    assert out.seconds < 0.25
