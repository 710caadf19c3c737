"""An outside study of samplers on trained models: what `compare` wrote and overwrote.

A comparison folder with other settings is refused, not silently overwritten: the study reran `scoresde compare` into the folder of an earlier sweep with another
`--n`: the shared cells were recomputed and replaced, and the results, table and config
rewritten, without a word (`sample` and `likelihood` refuse such a folder). A comparison written
into a subfolder of another made the parent's own rerun fail with "holds a comparison of
several targets". Its tables did not say which SDE, sample size or seeds they measured, nor
what ± and the time column mean (three trained models' tables read the same).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scoresde import compare
from scoresde.cli import main

KW = dict(steps=[4], seeds=[0], floor_repeats=2, progress=False, plots=False)


@pytest.fixture(scope="module")
def problem() -> compare.Problem:
    return compare.Problem.from_target("eight_gaussians", sde="vp")


def test_other_settings_are_refused_naming_what_changed(tmp_path: Path, problem: compare.Problem) -> None:
    first = compare.run_comparison(problem, ["ddim", "dpmpp_2m"], n=200, out=tmp_path, **KW)
    cell = tmp_path / "cells" / "ddim__steps-4__seed-0.json"
    before = cell.read_text()
    with pytest.raises(ValueError, match=r"holds a comparison with other settings \(n: 200 -> 300\).*overwrite"):
        compare.run_comparison(problem, ["ddim"], n=300, out=tmp_path, **KW)
    assert cell.read_text() == before  # nothing was replaced
    again = compare.run_comparison(problem, ["ddim", "dpmpp_2m"], n=200, out=tmp_path, **KW)
    assert again.reused == 2 and again.records == first.records


def test_more_solvers_or_seeds_with_the_same_settings_extend_the_sweep(tmp_path: Path,
                                                                     problem: compare.Problem) -> None:
    compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path, **KW)
    more = compare.run_comparison(problem, ["ddim", "dpmpp_2m"], n=200, out=tmp_path,
                                  **{**KW, "seeds": [0, 1]})
    assert (more.reused, more.computed) == (1, 3)


def test_overwrite_discards_the_stored_comparison(tmp_path: Path, problem: compare.Problem) -> None:
    compare.run_comparison(problem, ["ddim", "dpmpp_2m"], n=200, out=tmp_path, **KW)
    with pytest.warns(UserWarning, match=r"discarded the comparison stored in .* \(2 cell\(s\); n: 200 -> 300\)"):
        res = compare.run_comparison(problem, ["ddim"], n=300, out=tmp_path, overwrite=True, **KW)
    assert res.computed == 1 and res.records[0]["n"] == 300
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["ddim__steps-4__seed-0.json"]
    assert json.loads((tmp_path / "config.json").read_text())["n"] == 300


def test_an_interrupted_sweep_already_records_its_settings(tmp_path: Path, problem: compare.Problem,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from scoresde.compare import runner

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_sweep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path, **KW)
    assert json.loads((tmp_path / "config.json").read_text())["n"] == 200


def test_cli_refuses_then_overwrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "--target", "eight_gaussians", "--solvers", "ddim", "--steps", "4", "--seeds", "0",
            "--metrics", "sliced_w2", "--floor-repeats", "2", "--no-plots", "--no-progress", "--out", str(tmp_path)]
    assert main([*args, "--n", "200"]) == 0
    capsys.readouterr()
    assert main([*args, "--n", "300"]) == 2
    assert "other settings (n: 200 -> 300)" in capsys.readouterr().err
    assert main([*args, "--n", "300", "--overwrite"]) == 0


def test_a_comparison_nested_in_another_leaves_the_parent_usable(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "cmp"
    args = ["compare", "--target", "eight_gaussians", "--solvers", "ddim", "--seeds", "0", "--n", "200",
            "--metrics", "sliced_w2", "--floor-repeats", "2", "--no-plots", "--no-progress"]
    assert main([*args, "--steps", "4", "--out", str(parent)]) == 0
    assert main([*args, "--steps", "6", "--out", str(parent / "steps6")]) == 0
    assert main([*args, "--steps", "4", "--out", str(parent)]) == 0  # was refused: "several targets"
    capsys.readouterr()
    assert main([*args, "--steps", "4", "--out", str(parent / "cells")]) == 2
    assert "keeps its cells" in capsys.readouterr().err


def test_the_table_says_what_was_measured(tmp_path: Path) -> None:
    problem = compare.Problem.from_target("eight_gaussians", sde="ve")
    res = compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path, **{**KW, "seeds": [0, 1]})
    assert res.caption is not None
    for part in ("VESDE(", "200 samples per cell", "seeds [0, 1]", "exact samples of p_0", "mean ± std over seeds",
                 "time [s]: mean wall time"):
        assert part in res.caption
    assert res.caption in (tmp_path / "table.md").read_text()
    eps = compare.run_comparison(problem, ["ddim"], n=200, denoise="none", **KW)
    assert "exact samples of p_eps" in (eps.caption or "")


def test_a_folder_interrupted_before_its_first_cell_takes_other_settings(tmp_path: Path,
                                                                        problem: compare.Problem,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # An outside pass: Ctrl-C before the first cell ("nothing was kept"), then the same command
    # with a corrected --n, was refused for the config.json the first run had written.
    from scoresde.compare import runner

    real = runner._sweep
    monkeypatch.setattr(runner, "_sweep", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path, **KW)
    monkeypatch.setattr(runner, "_sweep", real)
    res = compare.run_comparison(problem, ["ddim"], n=300, out=tmp_path, **KW)
    assert res.records[0]["n"] == 300


def test_overwrite_discards_the_old_results_and_table_too(tmp_path: Path, problem: compare.Problem,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # --overwrite then Ctrl-C left results.json / table.md of the discarded n = 300 run beside
    # the new config (n = 3000), their cells gone.
    from scoresde.compare import runner

    compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path, **KW)
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setattr(runner, "_sweep", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.warns(UserWarning, match="discarded"), pytest.raises(KeyboardInterrupt):
        compare.run_comparison(problem, ["ddim"], n=300, out=tmp_path, overwrite=True, **KW)
    left = sorted(p.name for p in tmp_path.iterdir())  # (floors.json: the new run's, computed before its cells)
    assert left == ["cells", "config.json", "floors.json", "notes.txt"] and not list((tmp_path / "cells").iterdir())
    assert json.loads((tmp_path / "config.json").read_text())["n"] == 300


def test_the_python_api_refuses_a_comparison_inside_another_s_cells(tmp_path: Path,
                                                                    problem: compare.Problem) -> None:
    compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path, **KW)
    with pytest.raises(ValueError, match="keeps its cells"):
        compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path / "cells", **KW)


def test_a_checkpoint_is_the_same_problem_by_content(tmp_path: Path) -> None:
    # Its path and modification time were the key: `touch`, or `run` against `run/checkpoint.pt`,
    # or a comparison written inside the run folder (as docs/guide_data.md does), was another model.
    import os

    assert main(["train", "--data", "eight_gaussians", "--steps", "2", "--width", "16", "--depth", "1",
                 "--batch-size", "32", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    args = ["compare", "--checkpoint", str(tmp_path / "run"), "--solvers", "ddim", "--steps", "4", "--seeds", "0",
            "--n", "200", "--metrics", "sliced_w2", "--floor-repeats", "2", "--no-plots", "--no-progress"]
    out = tmp_path / "run" / "compare"
    assert main([*args, "--out", str(out)]) == 0
    ckpt = tmp_path / "run" / "checkpoint.pt"
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    assert main([*args, "--out", str(out)]) == 0
    args[2] = str(ckpt)
    assert main([*args, "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert len(cfg["problem"]["checkpoint"]) == 64


def test_changed_options_of_a_swept_solver_are_refused(tmp_path: Path, problem: compare.Problem) -> None:
    # A second pass: `--option ddim:eta=0.5`, then the same command without it, replaced the
    # eta = 0.5 cell silently (cells of one solver, budget and seed share a file name).
    compare.run_comparison(problem, ["ddim", "dpmpp_2m"], n=200, out=tmp_path, solver_options={"ddim": {"eta": 0.5}},
                           **KW)
    with pytest.raises(ValueError, match=r'solver_options.ddim: \{"eta": 0.5\} -> \{\}'):
        compare.run_comparison(problem, ["ddim"], n=200, out=tmp_path, **KW)
    more = compare.run_comparison(problem, ["ddim", "unipc"], n=200, out=tmp_path,
                                  solver_options={"ddim": {"eta": 0.5}, "unipc": {"lower_order_final": False}}, **KW)
    assert more.reused == 1 and more.computed == 1  # a solver new to the folder takes any options
