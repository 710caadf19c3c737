"""`Solution.stats["end_step"]` says what the samples follow, chunked or not, and the sample
panels of `plot_solver_grid` outline that density (p_0 after an end step, p_eps without)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.plotting import solver_grid


@pytest.mark.parametrize(("denoise", "expected"), [(None, "ode"), ("tweedie", "tweedie"), ("none", "none")])
@pytest.mark.parametrize("batch_size", [None, 16])
def test_end_step_is_recorded(denoise: str | None, expected: str, batch_size: int | None) -> None:
    sde = sd.VPSDE()
    target = sd.targets.get_target("sharp_8")
    r = solvers.sample(sde, target.score_fn(sde), shape=(40, 2), solver="dpmpp_2m", steps=4, seed=0,
                       denoise=denoise, batch_size=batch_size)
    assert r.stats["end_step"] == expected


def test_sample_panels_outline_p0_after_the_end_step(monkeypatch: pytest.MonkeyPatch) -> None:
    sde = sd.VPSDE()
    target = sd.targets.get_target("sharp_8")
    seen: list[float] = []
    monkeypatch.setattr(solver_grid, "plot_density", lambda *a, t, **k: seen.append(t))
    runs = {d: solvers.sample(sde, target.score_fn(sde), shape=(20, 2), solver="ddim", steps=3, seed=0, denoise=d)
            for d in ("ode", "none")}
    solver_grid.plot_solver_grid(runs, target=target, sde=sde, rows=("samples",))
    assert seen == [0.0, pytest.approx(sde.eps)]
    assert torch.isfinite(runs["ode"].samples).all()
