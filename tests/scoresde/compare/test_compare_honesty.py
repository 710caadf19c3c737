"""What a comparison reports must be what it measured: a floor precise enough to divide by,
ratios with their uncertainty, the user's options applied or refused (never overwritten),
cells recomputed when any code they depend on changes, one file per cell, and notes where
rows are not comparable (fewer seeds, different thread counts)."""

from __future__ import annotations

import argparse
import inspect
import math
from pathlib import Path

import pytest
import torch

from scoresde import compare
from scoresde.cli import compare as cli_compare
from scoresde.cli import main
from scoresde.compare import cache, tables

N = 64
DOCS = Path(__file__).resolve().parents[3] / "docs" / "comparisons.md"


def _run(out=None, names=("euler_maruyama",), **kw):
    problem = compare.Problem.from_target("eight_gaussians", "vp")
    kw = {"steps": [3], "seeds": [0, 1], "n": N, "metrics": ["sliced_w2"], "floor_repeats": 4,
          "progress": False, "out": out, "plots": False, **kw}
    return compare.run_comparison(problem, list(names), **kw)


# --- 1. the noise floor -------------------------------------------------------------------------


def test_default_floor_repeats_keep_the_floor_standard_error_small():
    # 5 pairs gave the sliced-W2 floor 13% off its 30-pair mean with a 4x too small std; 32
    # pairs (as scoresde.quality.CombinedMetric) put its standard error near 5%.
    assert compare.DEFAULT_FLOOR_REPEATS >= 32
    for fn in (compare.run_comparison, compare.evaluate_results):
        assert inspect.signature(fn).parameters["floor_repeats"].default == compare.DEFAULT_FLOOR_REPEATS
    parser = argparse.ArgumentParser()
    cli_compare.add_arguments(parser)
    assert parser.parse_args(["--out", "x"]).floor_repeats == compare.DEFAULT_FLOOR_REPEATS


def test_ratio_standard_error_combines_seeds_and_floor():
    # r = m / m_f; se(r) = r sqrt((s / (sqrt(k) m))^2 + (s_f / (sqrt(R) m_f))^2).
    r, err = tables.ratio_and_error(0.06, 0.012, 4, (0.05, 0.02), 16)
    assert r == pytest.approx(1.2)
    assert err == pytest.approx(1.2 * math.hypot(0.012 / (2 * 0.06), 0.02 / (4 * 0.05)))
    assert tables.ratio_and_error(0.06, 0.0, 1, (0.05, 0.02), 16)[1] is None  # one seed: spread unknown
    assert tables.ratio_and_error(0.06, 0.01, 3, (0.05, 0.02), None)[1] is None  # floor's pairs unknown


def test_table_prints_ratios_with_standard_errors_and_the_floor_standard_error(tmp_path):
    res = _run(tmp_path)
    assert res.floor_repeats == 4
    lines = res.table().splitlines()
    col = lines[0].split(" | ").index("SW2 / floor")
    row, floor_row = lines[2].split(" | "), lines[3].split(" | ")
    m_f, s_f = res.floors["sliced_w2"]
    assert floor_row[col] == f"1.00 ± {s_f / (2 * m_f):.2f}"  # relative s.e. of the floor (4 pairs)
    sw = [r["sliced_w2"] for r in res.records]
    mean, std = sum(sw) / 2, abs(sw[0] - sw[1]) / math.sqrt(2)
    r, err = tables.ratio_and_error(mean, std, 2, (m_f, s_f), 4)
    assert row[col] == f"{r:.2f} ± {err:.2f}"
    assert '"floor_repeats": 4' in (tmp_path / "results.json").read_text()


# --- 3. rtol / atol of solvers on the tolerance axis --------------------------------------------


@pytest.mark.parametrize("key", ["rtol", "atol"])
def test_tolerance_options_of_adaptive_solvers_are_refused(key):
    # The grid sets rtol = atol = tol in every cell: the option would be silently overwritten.
    with pytest.raises(ValueError, match=rf"ode_rk45:{key}=1e-06.*tolerances=\[1e-06\]"):
        _run(names=["ode_rk45"], tolerances=[1e-2], solver_options={"ode_rk45": {key: 1e-6}})
    compare.check_tolerance_options({"euler_maruyama": {"snr": 0.1}, "ode_rk45": {"max_steps": 10}})


def test_cli_refuses_tolerance_options_naming_tolerances(tmp_path, capsys):
    code = main(["compare", "--solvers", "ode_rk45", "--tolerances", "1e-2", "--option", "ode_rk45:rtol=1e-6",
                 "--n", "32", "--seeds", "0", "--no-plots", "--no-progress", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--option ode_rk45:rtol=1e-06" in err and "--tolerances 1e-06" in err
    assert not (tmp_path / "o" / "cells").exists()  # refused before any work


# --- 4. the cache key covers every file a cell depends on ---------------------------------------


def test_code_files_cover_the_solvers_package_and_the_scoring_modules():
    names = {(p.parent.name, p.name) for p in cache.code_files()}
    for helper in ("correctors.py", "end.py", "predictors.py", "grids.py", "base.py", "dynamics.py",
                   "step_control.py", "tableaus.py"):
        assert ("solvers", helper) in names, helper
    for module in (("scoresde", "metrics.py"), ("scoresde", "mode_metrics.py"), ("compare", "scoring.py")):
        assert module in names, module


def test_code_files_follow_the_imports_of_the_scoring_modules():
    # scoresde.component_sums makes the exact score's sums: an edit to it changed the score at
    # a test point (-0.9068 -> -0.7716) while the stored cells were reused.
    names = {(p.parent.name, p.name) for p in cache.code_files()}
    for module in ("component_sums.py", "schedules.py", "quality.py"):
        assert ("scoresde", module) in names, module
    # what stores and draws the results does not decide a cell's numbers
    assert not any(parent == "plotting" for parent, _ in names)


def test_an_edit_to_the_code_recomputes_the_floors(tmp_path, monkeypatch):
    # floors.json was keyed on the settings only: an edit to a metric recomputed every cell but
    # read back the old floor, and each cell's value / floor mixed the two versions.
    import json

    def floors_key() -> str:
        _run(tmp_path / "o")
        return str(json.loads((tmp_path / "o" / "floors.json").read_text())["key"])

    helper = tmp_path / "metric.py"
    helper.write_text("N_PROJECTIONS = 512\n")
    monkeypatch.setattr(cache, "code_files", lambda: (helper,))
    cache.code_digest.cache_clear()
    try:
        key = floors_key()
        assert floors_key() == key  # reused
        helper.write_text("N_PROJECTIONS = 16\n")
        cache.code_digest.cache_clear()  # a new process
        assert floors_key() != key  # recomputed
    finally:
        cache.code_digest.cache_clear()


def test_editing_a_dependency_recomputes_the_cells(tmp_path, monkeypatch):
    helper = tmp_path / "helper.py"
    helper.write_text("STEP = 1\n")
    monkeypatch.setattr(cache, "code_files", lambda: (helper,))
    cache.code_digest.cache_clear()
    try:
        assert _run(tmp_path / "o").computed == 2
        assert _run(tmp_path / "o").reused == 2
        helper.write_text("STEP = 2\n")  # not the file of the solver's class
        cache.code_digest.cache_clear()  # a new process
        again = _run(tmp_path / "o")
        assert (again.computed, again.reused) == (2, 0)
    finally:
        cache.code_digest.cache_clear()


# --- 5. one file per cell --------------------------------------------------------------------------


def test_close_tolerances_get_distinct_files_and_resume(tmp_path):
    a, b = (compare.Cell("ode_rk45", "tol", t, 0) for t in (1e-3, 1.0004e-3))
    assert a.filename != b.filename
    kw = {"names": ["ode_rk45"], "tolerances": [1e-3, 1.0004e-3], "seeds": [0]}
    assert _run(tmp_path, **kw).computed == 2
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2
    again = _run(tmp_path, **kw)
    assert (again.computed, again.reused) == (0, 2)


# --- 6. rows that do not compare --------------------------------------------------------------------


def _record(seed: int, threads: int, status: str = "ok") -> dict:
    return {"solver": "ddim", "budget_kind": "steps", "budget": 5 + 5 * (seed > 1), "seed": seed,
            "nfe": 6, "seconds": 0.1, "status": status, "error": None if status == "ok" else "boom",
            "sliced_w2": 0.1 + 0.01 * seed, "threads": threads}


def test_cells_record_their_thread_count_and_the_table_flags_mixed_counts_and_missing_seeds():
    res = _run()
    assert all(r["threads"] == torch.get_num_threads() for r in res.records)
    records = [_record(0, 1), _record(1, 2), _record(2, 1), _record(3, 1, "error")]
    table = compare.markdown_table(records, {"sliced_w2": (0.1, 0.01)}, ["sliced_w2"], floor_repeats=32)
    assert "different torch thread counts (1, 2)" in table
    assert "fewer seeds than 2" in table and "ddim 10" in table


# --- 2. what the docs claim ---------------------------------------------------------------------


def test_docs_do_not_overclaim_the_floor():
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "indistinguishable from exact sampling" not in text
    assert "best any sampler can show" not in text
    assert "from every mixture component" not in text  # the code uses the most responsible one
    assert "CombinedMetric" in text and "chi-square" in text and "standard error" in text


@pytest.mark.parametrize(("tolerances", "message"), [([], "give at least one tolerance for ode_rk45"),
                                                     ([1e-3, 0.0], "tolerances must be finite and positive")])
def test_adaptive_solvers_need_a_usable_tolerance(tolerances, message) -> None:
    # An empty tolerance list gave an adaptive solver no cells at all, without a word.
    import scoresde as sd
    from scoresde.compare import Problem

    problem = Problem.from_target(sd.targets.eight_gaussians(), sd.VPSDE())
    with pytest.raises(ValueError, match=message):
        compare.run_comparison(problem, ["ode_rk45"], tolerances=tolerances, seeds=[0], n=50, progress=False,
                               plots=False)


@pytest.mark.parametrize(("kw", "err", "match"), [
    ({"steps": [2.5]}, TypeError, "step budget .* must be an integer"),      # ran 2 steps
    ({"steps": [2, 2.5]}, TypeError, "step budget .* must be an integer"),   # one cell counted twice
    ({"steps": 3}, TypeError, r"steps must be a sequence, got the number 3 \(pass \[3\]\)"),
    ({"metrics": []}, ValueError, "give at least one metric"),               # only mode statistics
    ({"noise": "foo"}, ValueError, "unknown noise 'foo'"),                   # every cell failed
])
def test_run_comparison_refuses_budgets_metrics_and_noise_it_cannot_run(kw, err, match):
    with pytest.raises(err, match=match):
        _run(**kw)


def test_one_string_is_one_solver_or_metric_name():
    # "ddim" was read as the solvers 'd', 'd', 'i', 'm'
    problem = compare.Problem.from_target("eight_gaussians", "vp")
    r = compare.run_comparison(problem, "ddim", steps=[3], seeds=[0], n=N, metrics="sliced_w2",
                               floor_repeats=2, progress=False, plots=False)
    assert {rec["solver"] for rec in r.records} == {"ddim"} and r.metrics[0] == "sliced_w2"
