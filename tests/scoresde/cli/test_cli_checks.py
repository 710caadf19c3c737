"""CLI checks of `compare`, `sample` and `plot --results`: repeated list entries dropped, bad
seeds and solver options refused up front naming the option, a sweep whose every cell failed
ends non-zero, damaged or all-failed results named, solvers named as the user typed them."""

from __future__ import annotations

import json

import solvers
from scoresde import compare
from scoresde.cli import main

BASE = ["compare", "--n", "50", "--metrics", "sliced_w2", "--floor-repeats", "1", "--no-plots", "--no-progress"]


def test_cli_compare_drops_repeated_list_entries(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main([*BASE, "--target", "two_gaussians,two_gaussians", "--solvers", "ddim,ddim", "--steps", "5,5",
                 "--seeds", "0,0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("## two_gaussians") == 1 and "(1 cells computed, 0 reused)" in printed
    assert len((out / "results.csv").read_text().strip().splitlines()) == 2  # header + one cell
    row = next(line for line in (out / "table.md").read_text().splitlines() if line.startswith("| ddim"))
    assert row.rstrip().endswith("| 1 |")  # seeds: 1
    config = json.loads((out / "config.json").read_text())
    assert (config["solvers"], config["steps"], config["seeds"]) == (["ddim"], [5], [0])


def test_cli_compare_refuses_bad_seeds_and_option_values_before_any_work(tmp_path, capsys):
    base = [*BASE, "--target", "two_gaussians", "--solvers", "ddim", "--steps", "5", "--out", str(tmp_path)]
    cases = [
        (["--seeds", "0", "--option", "ddim:eta=abc"],
         "--option ddim:eta=abc: eta must be a real number, got the string 'abc'"),
        (["--seeds", "99999999999999999999999"], "--seeds 99999999999999999999999: seed must lie in"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before any work


def test_cli_compare_exits_1_when_every_cell_failed(tmp_path, capsys, monkeypatch):
    def failing(*args, **kwargs):
        raise ValueError("simulated solver failure")

    monkeypatch.setattr(solvers, "sample", failing)
    out = tmp_path / "cmp"
    assert main([*BASE, "--target", "two_gaussians", "--solvers", "ddim", "--steps", "5", "--seeds", "0",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "every cell failed for two_gaussians (1 cells; first: ValueError: simulated solver failure" in err
    assert (out / "results.json").is_file()  # the failures are still recorded


def test_cli_sample_names_the_bad_option_and_the_solver_as_typed(tmp_path, capsys):
    base = ["sample", "--target", "two_gaussians", "--n", "50", "--steps", "5", "--no-plot", "--no-progress",
            "--out", str(tmp_path / "s")]
    assert main([*base, "--solver", "ddim", "--option", "eta=abc"]) == 2
    assert "--option eta=abc: eta must be a real number, got the string 'abc'" in capsys.readouterr().err
    assert main([*base, "--solver", "dpmpp_2m", "--lam", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--lam 0.5: 'dpmpp_2m' is an ODE solver; lam must be 0" in err and "DPMSolverPP2M" not in err
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())


def test_cli_plot_results_names_a_damaged_file_and_reports_all_failed_cells(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text('{"bad\x01', encoding="utf-8")
    assert main(["plot", "--results", str(bad), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert f"{bad / 'results.json'} is not valid JSON" in err

    problem = compare.Problem.from_target("two_gaussians", "vp")

    def boom(x, t):
        raise RuntimeError("simulated score failure")

    problem.score = boom
    failed = tmp_path / "failed"
    compare.run_comparison(problem, ["ddim"], steps=[5], seeds=[0], n=50, metrics=["sliced_w2"],
                           floor_repeats=1, progress=False, plots=False, out=failed)
    assert main(["plot", "--results", str(failed), "--metric", "sliced_w2", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err
    assert "every cell failed in" in err and "RuntimeError: simulated score failure" in err
    assert str(failed / "table.md") in err and "not in" not in err
