"""Faults that used to surface as raw errors (an outside faults pass): each is named now."""

from __future__ import annotations

import json

import pytest
import torch

import scoresde as sd
import solvers
from scoresde.compare.cache import load_or_compute_floors
from scoresde.likelihood import likelihood


@pytest.mark.parametrize("solver", ["ode_dopri5", "ode_bosh3"])
def test_adaptive_ode_names_a_huge_finite_score(solver):
    # 1e30 is finite in float32 but its square is not: the initial step size was 0 and the
    # next line divided by it (ZeroDivisionError).
    with pytest.raises(solvers.NonFiniteScoreError, match=r"too large for torch.float32.*score returned huge values"):
        solvers.sample(sd.VPSDE(), lambda x, t: torch.full_like(x, 1e30), (8, 2), solver, seed=0)


@pytest.mark.parametrize("integrator", ["rk45", "dop853", "dopri5", "rk4_simpson"])
def test_likelihood_names_a_non_finite_score_for_every_integrator(integrator):
    # SciPy's integrators reported "All components of the initial state y0 must be finite" for
    # finite data: the end piece [0, t_end] had turned the inf score into the ODE's start.
    with pytest.raises(solvers.NonFiniteScoreError, match="score returned NaN/inf"):
        likelihood(sd.VPSDE(), lambda x, t: x * 0 + float("inf"), torch.randn(10, 2), integrator=integrator)


@pytest.mark.parametrize("content", ["[]", "null", "3", '{"key": 1, "floors": []}', '{"floors": {"a": 1}}'])
def test_compare_floors_file_that_is_valid_json_of_another_shape_is_recomputed(tmp_path, content):
    (tmp_path / "floors.json").write_text(content, encoding="utf-8")
    calls = []

    def compute():
        calls.append(1)
        return {"sliced_w2": (0.1, 0.01)}

    floors = load_or_compute_floors(compute, {"problem": "x"}, 4, tmp_path)
    assert floors == {"sliced_w2": (0.1, 0.01)} and calls == [1]
    stored = json.loads((tmp_path / "floors.json").read_text(encoding="utf-8"))
    assert stored["floors"] == {"sliced_w2": [0.1, 0.01]}
    # and the rewritten file is reused
    assert load_or_compute_floors(compute, {"problem": "x"}, 4, tmp_path) == floors and calls == [1]


@pytest.mark.parametrize("name", ["quality", "mode_metrics", "schedules", "discrete", "atomic"])
def test_documented_submodules_resolve_as_attributes(name):
    # The docs write scoresde.quality.CombinedMetric; after `import scoresde as sd`,
    # sd.quality raised AttributeError.
    import importlib

    assert getattr(sd, name) is importlib.import_module(f"scoresde.{name}")


def _tiny_comparison(out):
    from scoresde import compare

    problem = compare.Problem.from_target("eight_gaussians", "vp")
    return compare.run_comparison(problem, ["ode_euler"], steps=[3], seeds=[0], n=40, metrics=["sliced_w2"],
                                  floor_repeats=2, out=out, progress=False, plots=False)


def test_compare_cell_with_a_changed_digit_is_recomputed_not_reused(tmp_path):
    first = _tiny_comparison(tmp_path)
    (cell,) = (tmp_path / "cells").glob("*.json")
    record = json.loads(cell.read_text(encoding="utf-8"))
    record["sliced_w2"] = record["sliced_w2"] + 0.03  # a flipped digit
    cell.write_text(json.dumps(record, indent=1), encoding="utf-8")
    again = _tiny_comparison(tmp_path)
    assert (again.computed, again.reused) == (1, 0)
    assert again.records[0]["sliced_w2"] == first.records[0]["sliced_w2"]
    third = _tiny_comparison(tmp_path)
    assert (third.computed, third.reused) == (0, 1)


def test_compare_cells_path_that_is_a_file_is_named(tmp_path):
    tmp_path.joinpath("cells").write_text("not a folder")
    with pytest.raises(ValueError, match=r"cells is a file, but the comparison stores its cells in a folder"):
        _tiny_comparison(tmp_path)


def test_compare_removes_stale_temp_files_of_killed_writes(tmp_path):
    import os
    import time

    _tiny_comparison(tmp_path)
    stale = [tmp_path / ".results.json.abcd1234.tmp", tmp_path / "cells" / ".x.json.abcd1234.tmp"]
    old = time.time() - 3 * 3600
    for p in stale:
        p.write_text("partial")
        os.utime(p, (old, old))
    _tiny_comparison(tmp_path)
    assert not any(p.exists() for p in stale)


def test_a_prior_that_overflows_at_a_far_x_T_names_how_far_it_is():
    # A huge score drove x_T to ~1e20; the built-in float32 prior overflowed there and the message
    # pointed at the prior alone.
    from scoresde.likelihood.options import checked_prior

    sde = sd.VPSDE()
    prior = checked_prior(lambda z: sde.prior_log_prob(z))
    x_T = torch.tensor([[0.5, -0.2], [1e20, 3.0]], dtype=torch.float32)
    with pytest.raises(ValueError, match=r"finite x_T \(rows 1\).*largest \|x_T\| there is 1e\+20.*huge score"):
        prior(x_T)
