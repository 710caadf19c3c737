"""Checks of the comparison API and the 2-D-only field figures: repeated list entries, bad
seeds and solver options refused before any work, fields refused (or skipped) for D != 2."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest

import scoresde as sd
import solvers
from scoresde import compare, plotting

N = 50


def _run(**kw):
    problem = compare.Problem.from_target("two_gaussians", "vp")
    kw = {"steps": [5], "seeds": [0], "n": N, "metrics": ["sliced_w2"], "floor_repeats": 1,
          "progress": False, "plots": False, **kw}
    return compare.run_comparison(problem, kw.pop("names", ["ddim"]), **kw)


def test_run_comparison_drops_repeated_solvers_budgets_and_seeds(tmp_path):
    res = _run(names=["ddim", "ddim"], steps=[5, 5], seeds=[0, 0], out=tmp_path)
    assert [(r["solver"], r["budget"], r["seed"]) for r in res.records] == [("ddim", 5, 0)]
    assert (res.computed, res.reused) == (1, 0)
    assert len((tmp_path / "results.csv").read_text().strip().splitlines()) == 2  # header + one row
    assert "| 1 |" in res.table()  # one seed, not four copies of it
    # Order is kept: first occurrences only.
    res = _run(names=["ddim", "dpmpp_2m", "ddim"], steps=[5, 3, 5], seeds=[1, 0, 1])
    assert [(r["solver"], r["budget"], r["seed"]) for r in res.records] == [
        ("ddim", 5, 1), ("ddim", 5, 0), ("ddim", 3, 1), ("ddim", 3, 0),
        ("dpmpp_2m", 5, 1), ("dpmpp_2m", 5, 0), ("dpmpp_2m", 3, 1), ("dpmpp_2m", 3, 0)]


def test_run_comparison_refuses_bad_seeds_and_option_values_before_any_work(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("sampled although the arguments were bad")

    monkeypatch.setattr(solvers, "sample", never)
    with pytest.raises(ValueError, match="torch.Generator's range"):
        _run(seeds=[10**20], out=tmp_path)
    with pytest.raises(TypeError, match="ddim:eta=abc: eta must be a real number, got the string 'abc'"):
        _run(solver_options={"ddim": {"eta": "abc"}}, out=tmp_path)
    with pytest.raises(TypeError, match="ddim:bogus=1: solver 'ddim' got unknown option"):
        _run(solver_options={"ddim": {"eta": 0.5, "bogus": 1}}, out=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was written: refused before any work


def _high_dim_results():
    sde, target = sd.VPSDE(), sd.targets.high_dim(16)
    r = solvers.sample(sde, target.score_fn(sde), (N, 16), "ddim", steps=5, seed=0, keep_trajectory=True)
    return sde, target, {"a": r}


def test_sampling_figures_skip_fields_by_default_and_refuse_them_explicitly_for_d_not_2(tmp_path):
    sde, target, results = _high_dim_results()
    kw = {"sde": sde, "score": target.score_fn(sde), "x0": target.sample(N), "gif": False}
    files = plotting.write_sampling_figures(tmp_path / "all", results, **kw)
    assert "fields" not in files and {"solver_grid", "snapshots", "forward_reverse"} <= set(files)
    with pytest.raises(ValueError, match="score/velocity fields need 2-D data, got D=16"):
        plotting.write_sampling_figures(tmp_path / "f", results, which=["fields"], **kw)
    assert not (tmp_path / "f" / "fields.png").exists()


def test_score_and_velocity_fields_refuse_data_that_is_not_2d():
    sde, target, _ = _high_dim_results()
    with pytest.raises(ValueError, match="score/velocity fields need 2-D data, got D=16"):
        plotting.plot_score_field(target.score_fn(sde), 0.5, sde=sde, target=target)
    with pytest.raises(ValueError, match="score/velocity fields need 2-D data"):
        plotting.plot_score_field(target.score_fn(sde), 0.5, sde=sde)
    with pytest.raises(ValueError, match="score/velocity fields need 2-D data"):
        plotting.plot_velocity_field(sde, target.score_fn(sde), 0.5)
    # 2-D data draws as before.
    two = sd.targets.eight_gaussians()
    assert plotting.plot_score_field(two.score_fn(sde), 0.5, sde=sde, target=two, density=5) is not None
