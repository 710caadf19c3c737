"""Comparison harness: NFE counting, resume without recomputation, tables, failures, CLI.

Score calls are counted with a wrapper around the exact score, independent of the solver's
own NFE counter, so "not recomputed" and "NFE recorded = NFE spent" are checked from the
outside. Problems are tiny (64 samples, a handful of steps) to keep the file fast.
"""

from __future__ import annotations

import json
import math
from typing import ClassVar

import pytest
import torch
from torch import Tensor

import scoresde as sd
import solvers
from scoresde import compare
from scoresde.cli import main
from solvers.base import Solver

N = 64


class CountingScore:
    """The exact score, counting batched calls; optionally fails after ``fail_after`` calls."""

    def __init__(self, score, fail_after: int | None = None, exc: type[BaseException] = KeyboardInterrupt):
        self.score = score
        self.calls = 0
        self.fail_after = fail_after
        self.exc = exc

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise self.exc("simulated interruption")
        return self.score(x, t)


def _problem(counter_kw: dict | None = None) -> tuple[compare.Problem, CountingScore]:
    problem = compare.Problem.from_target("eight_gaussians", "vp")
    counter = CountingScore(problem.score, **(counter_kw or {}))
    problem.score = counter
    return problem, counter


def _run(problem, out=None, **kw):
    kw = {"steps": [3, 5], "seeds": [0, 1], "n": N, "metrics": ["sliced_w2"], "floor_repeats": 2,
          "progress": False, "out": out, "plots": False, **kw}
    return compare.run_comparison(problem, ["euler_maruyama"], **kw)


def test_recorded_nfe_equals_score_calls_made():
    problem, counter = _problem()
    res = _run(problem)
    assert [(r["budget"], r["seed"]) for r in res.records] == [(3, 0), (3, 1), (5, 0), (5, 1)]
    # Euler-Maruyama: one score call per step, plus the default end-of-run step's one; the
    # noise floor never calls the score.
    assert [r["nfe"] for r in res.records] == [4, 4, 6, 6]
    assert counter.calls == sum(r["nfe"] for r in res.records)
    counter.calls = 0
    res = _run(problem, steps=[4], seeds=[0], denoise=True)
    assert res.records[0]["nfe"] == 5 == counter.calls  # + one call of the Tweedie denoiser


def test_resume_reuses_finished_cells_and_computes_only_new_ones(tmp_path):
    problem, counter = _problem()
    first = _run(problem, tmp_path)
    assert (first.computed, first.reused) == (4, 0) and counter.calls == 20
    assert len(list((tmp_path / "cells").glob("*.json"))) == 4
    counter.calls = 0
    again = _run(problem, tmp_path)
    assert counter.calls == 0 and (again.computed, again.reused) == (0, 4)
    assert again.records == first.records  # read back exactly
    # Extending the grid by one seed computes just the two new cells ((3 + 1) + (5 + 1) score
    # calls, each with its end-of-run step).
    more = _run(problem, tmp_path, seeds=[0, 1, 2])
    assert counter.calls == 10 and (more.computed, more.reused) == (2, 4)
    # A different sample size changes every cell's key: nothing stale is reused (the folder's
    # other settings are refused without overwrite, test_compare_study_pass.py).
    counter.calls = 0
    with pytest.warns(UserWarning, match="discarded the comparison"):
        other = _run(problem, tmp_path, n=N + 1, overwrite=True)
    assert other.reused == 0 and counter.calls == 20


def test_interrupted_sweep_keeps_finished_cells(tmp_path):
    # The score dies during the third cell (after 4 + 4 calls of the first two cells: 3 steps
    # and the end-of-run step each).
    problem, counter = _problem({"fail_after": 9})
    with pytest.raises(KeyboardInterrupt):
        _run(problem, tmp_path)
    stored = sorted(p.name for p in (tmp_path / "cells").glob("*.json"))
    assert stored == ["euler_maruyama__steps-3__seed-0.json", "euler_maruyama__steps-3__seed-1.json"]
    assert not list((tmp_path / "cells").glob(".*.tmp"))  # no half-written files left
    counter.fail_after, counter.calls = None, 0
    res = _run(problem, tmp_path)
    assert (res.computed, res.reused) == (2, 2) and counter.calls == 12


def test_failed_cell_is_recorded_and_the_sweep_goes_on(tmp_path):
    problem, counter = _problem({"fail_after": 4, "exc": RuntimeError})  # the first cell: 3 + 1 calls
    res = _run(problem, tmp_path, seeds=[0])
    assert [r["status"] for r in res.records] == ["ok", "error"]
    assert "RuntimeError: simulated interruption" in res.records[1]["error"]
    table = res.table()
    assert "1 failed cell(s):" in table and "euler_maruyama budget 5 seed 0" in table
    counter.fail_after = None
    assert _run(problem, tmp_path, seeds=[0]).reused == 2  # failures are kept ...
    assert _run(problem, tmp_path, seeds=[0], retry_failed=True).computed == 1  # ... unless retried


def test_outputs_and_table_contents(tmp_path):
    problem, _ = _problem()
    res = _run(problem, tmp_path, metrics=["sliced_w2", "mmd"], plots=True)
    for name in ("results.json", "results.csv", "table.md", "curves_nfe.png", "curves_seconds.png",
                 "floors.json", "config.json"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["records"] == res.records
    header, *rows = (tmp_path / "results.csv").read_text().splitlines()
    assert header.startswith("problem,solver,budget_kind,budget,seed,n,status,error,nfe,seconds")
    assert len(rows) == 4
    lines = res.table().splitlines()
    assert lines[0] == ("| solver | budget | NFE | sliced W2 | MMD² | modes covered | mode-weight err "
                        "| outliers | SW2 / floor | time [s] | seeds |")
    body = [line.split(" | ") for line in lines[2:]]
    assert [b[1] for b in body] == ["3 steps", "5 steps", "exact vs exact"]
    assert body[0][0] == "| euler_maruyama" and body[-1][0] == "| *noise floor*"
    sw = [r["sliced_w2"] for r in res.records if r["budget"] == 3]
    mean = sum(sw) / 2
    std = math.sqrt(sum((v - mean) ** 2 for v in sw))  # ddof=1 with two seeds
    assert body[0][3] == f"{mean:.3g} ± {std:.2g}"
    m_f, s_f = res.floors["sliced_w2"]  # ratio ± its standard error (2 seeds, 2 floor pairs)
    err = mean / m_f * math.sqrt((std / (math.sqrt(2) * mean)) ** 2 + (s_f / (math.sqrt(2) * m_f)) ** 2)
    assert body[0][8] == f"{mean / m_f:.2f} ± {err:.2f}"
    assert body[0][-1] == "2 |"  # seeds per row


def test_metrics_are_measured_against_independent_exact_samples():
    # Recompute one cell's sliced W2 from the same samples and reference draw.
    problem, _ = _problem()
    res = _run(problem, steps=[5], seeds=[0])
    r = solvers.sample(problem.sde, problem.score, (N, 2), "euler_maruyama", steps=5, seed=0)
    ref = problem.sample_reference(N, torch.Generator().manual_seed(compare._REF_SEED_OFFSET))
    expected = sd.metrics.sliced_wasserstein(r.samples, ref, seed=0)
    assert res.records[0]["sliced_w2"] == pytest.approx(expected, rel=1e-12)
    ms = sd.metrics.mode_stats(r.samples, problem.mixture)
    assert res.records[0]["coverage"] == ms["coverage"]


def test_cells_use_each_solvers_default_end_step_unless_told():
    # The sweep must measure what a plain `solvers.sample` call returns (the end-of-run step to
    # sigma = 0, one more NFE), not the state at eps; `denoise` still selects another end.
    problem, _ = _problem()
    for denoise, kind in ((None, "ode"), ("none", "none"), (False, "none"), ("tweedie", "tweedie")):
        res = _run(problem, steps=[5], seeds=[0], denoise=denoise)
        r = solvers.sample(problem.sde, problem.score, (N, 2), "euler_maruyama", steps=5, seed=0,
                           denoise=kind)
        ref = problem.for_end_step(kind).sample_reference(N, torch.Generator().manual_seed(compare._REF_SEED_OFFSET))
        assert res.records[0]["nfe"] == r.nfe == 5 + (kind != "none")
        assert res.records[0]["sliced_w2"] == pytest.approx(
            sd.metrics.sliced_wasserstein(r.samples, ref, seed=0), rel=1e-12)
    with pytest.raises(ValueError, match="unknown final step 'odd'.*ode, tweedie, none"):
        _run(problem, steps=[5], seeds=[0], denoise="odd")


def test_reference_law_is_p0_for_runs_that_end_at_sigma_zero_and_p_eps_for_runs_that_stop_at_eps():
    problem, _ = _problem()
    mixture, sde = problem.mixture, problem.sde
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    for end in ("ode", "tweedie"):
        assert torch.equal(problem.for_end_step(end).sample_reference(N, g()), mixture.sample(N, generator=g()))
    at_eps = problem.for_end_step("none")
    assert torch.equal(at_eps.sample_reference(N, g()), mixture.sample_marginal(N, sde, sde.eps, generator=g()))
    assert at_eps.for_end_step("none").sample_reference is at_eps.sample_reference
    # Data without a known p_eps: the data serves both.
    data_only = compare.Problem("d", sde, problem.score, problem.sample_reference, (2,))
    assert data_only.for_end_step("none") is data_only


class _FakeAdaptive(Solver):
    """Fake adaptive solver: spends round(1/rtol) score calls (tests budget handling)."""

    adaptive: ClassVar[bool] = True

    def __init__(self, rtol: float = 1e-3, atol: float = 1e-3) -> None:
        self.rtol, self.atol = rtol, atol

    def integrate(self, dynamics, x, ctx):
        t = torch.full((x.shape[0],), ctx.t_end, dtype=x.dtype)
        for _ in range(round(1 / self.rtol)):
            x0 = dynamics.x0_pred(x, t)
        return x0


def test_adaptive_solvers_sweep_tolerances_not_steps(monkeypatch):
    monkeypatch.setitem(solvers.SOLVERS, "fake_adaptive", solvers.SolverSpec(_FakeAdaptive))
    problem, counter = _problem()
    res = compare.run_comparison(problem, ["fake_adaptive"], steps=[3], tolerances=[0.5, 0.25],
                                 seeds=[0], n=N, metrics=["sliced_w2"], floor_repeats=1,
                                 progress=False)
    # round(1/rtol) calls, plus one for the default end-of-run step
    assert [(r["budget_kind"], r["budget"], r["nfe"]) for r in res.records] == [("tol", 0.5, 3),
                                                                                  ("tol", 0.25, 5)]
    assert counter.calls == 8
    assert "tol 0.5" in res.table()


def test_errors_and_helpers():
    problem, _ = _problem()
    with pytest.raises(ValueError, match="valid solvers"):
        compare.run_comparison(problem, ["no_such_solver"], progress=False)
    with pytest.raises(ValueError, match="unknown metric"):
        compare.run_comparison(problem, ["euler_maruyama"], metrics=["fid"], n=N, progress=False)
    assert compare.parse_solver_options(["pc:snr=0.16", "pc:corrector=langevin", "x:k=[1, 2]"]) == {
        "pc": {"snr": 0.16, "corrector": "langevin"}, "x": {"k": [1, 2]}}
    with pytest.raises(ValueError, match="solver:key=value"):
        compare.parse_solver_options(["pc-snr"])
    picked = compare.default_solvers(3)
    assert 1 <= len(picked) <= 3 and all(p in solvers.available() for p in picked)


def test_write_atomic_replaces_whole_file(tmp_path):
    path = compare.write_atomic(tmp_path / "a" / "x.json", "old")
    compare.write_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_sample_solvers_share_prior_draw_and_noise():
    problem, _ = _problem()
    res = compare.sample_solvers(problem.sde, problem.score, ["euler_maruyama"], shape=(N, 2),
                                 steps=4, seed=3, max_frames=None)
    again = compare.sample_solvers(problem.sde, problem.score, ["euler_maruyama"], shape=(N, 2),
                                   steps=4, seed=3)
    torch.testing.assert_close(res["euler_maruyama"].samples, again["euler_maruyama"].samples)
    assert res["euler_maruyama"].trajectory.shape == (5, N, 2)


def test_cli_compare_two_targets_and_resume(tmp_path, capsys):
    args = ["compare", "--target", "eight_gaussians,ring", "--solvers", "euler_maruyama",
            "--steps", "2,4", "--seeds", "0", "--n", str(N), "--metrics", "sliced_w2",
            "--plot-metric", "sliced_w2", "--floor-repeats", "1", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "## eight_gaussians  (2 cells computed, 0 reused)" in out and "## ring" in out
    for name in ("table.md", "curves_sliced_w2_nfe.png", "curves_sliced_w2_seconds.png",
                 "eight_gaussians/results.csv", "ring/cells"):
        assert (tmp_path / name).exists(), name
    assert main([*args, "--no-plots"]) == 0
    assert "(0 cells computed, 2 reused)" in capsys.readouterr().out
    assert main(["compare", "--solvers", "nope", "--out", str(tmp_path)]) == 2


def test_cli_compare_refuses_stray_options_bad_tolerances_and_unknown_plot_metrics(tmp_path, capsys):
    base = ["compare", "--target", "eight_gaussians", "--n", "50", "--steps", "5", "--seeds", "1",
            "--out", str(tmp_path)]
    cases = [
        (["--solvers", "ddim", "--option", "dim:eta=1"], "--option names solver(s) dim that are not in the sweep"),
        (["--solvers", "ode_dopri5", "--tolerances", "0"], "--tolerances must be positive and finite"),
        (["--solvers", "ddim", "--plot-metric", "bogus"], "--plot-metric bogus not among the computed --metrics"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work


def test_cli_plot_refuses_unknown_metrics_empty_figure_lists_and_times_beyond_T(tmp_path, capsys):
    run = tmp_path / "cmp"
    assert main(["compare", "--target", "eight_gaussians", "--solvers", "ddim", "--n", "50", "--steps", "5",
                 "--seeds", "1", "--no-plots", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["plot", "--results", str(run), "--metric", "bogus", "--out", str(tmp_path / "p")]) == 2
    assert "metric(s) bogus not in" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
    base = ["plot", "--target", "eight_gaussians", "--n", "50", "--steps", "5", "--out", str(tmp_path / "q")]
    assert main(base + ["--fields-at", "2"]) == 2
    assert "--fields-at times must lie in (0, T=1]" in capsys.readouterr().err
    assert main(base + ["--what", ""]) == 2
    assert "--what names no figure" in capsys.readouterr().err


def test_cli_compare_ends_runs_like_sample_and_denoise_none_stops_at_eps(tmp_path, capsys):
    base = ["compare", "--target", "eight_gaussians", "--solvers", "ddim", "--steps", "5", "--seeds", "0",
            "--n", str(N), "--metrics", "sliced_w2", "--floor-repeats", "1", "--no-plots", "--no-progress"]
    expect = {None: ("ode", 6), "none": ("none", 5), "": ("tweedie", 6)}  # "": the bare flag
    for flag, (end, nfe) in expect.items():
        out = tmp_path / f"run_{flag}"
        extra = [] if flag is None else (["--denoise"] if flag == "" else ["--denoise", flag])
        assert main([*base, *extra, "--out", str(out)]) == 0
        record = json.loads((out / "results.json").read_text())["records"][0]
        assert record["nfe"] == nfe
        problem = compare.Problem.from_target("eight_gaussians", "vp")
        r = solvers.sample(problem.sde, problem.score, (N, 2), "ddim", steps=5, seed=0, denoise=end)
        ref = problem.for_end_step(end).sample_reference(N, torch.Generator().manual_seed(compare._REF_SEED_OFFSET))
        assert record["sliced_w2"] == pytest.approx(sd.metrics.sliced_wasserstein(r.samples, ref, seed=0), rel=1e-6)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--denoise", "odd", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "invalid choice: 'odd'" in capsys.readouterr().err
