"""``scoresde demo --quick`` end to end: training, both sampling stages, every file, the table.

One run (module-scoped fixture) is shared by the checks; ``--quick`` keeps it to seconds.
Also covers ``scoresde plot`` in both of its modes on small inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

import solvers
from scoresde.cli import main

EXACT_FIGURES = ["solver_grid.png", "forward_reverse.png", "snapshots.png", "fields.png",
                 "forward_reverse.gif"]


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out, buf.getvalue()


def _image_ok(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as im:
        assert im.size[0] >= 150 and im.size[1] >= 150, path


def test_demo_writes_every_figure_for_both_scores(demo_out):
    out, _ = demo_out
    data = json.loads((out / "results.json").read_text())
    names = data["solvers"]
    assert len(names) == 3 and all(n in solvers.available() for n in names)
    for sub in ("exact", "trained"):
        expected = [f for f in EXACT_FIGURES if sub == "exact" or not f.endswith(".gif")]
        expected += [f"trajectories_{n}.png" for n in names]
        for name in expected:
            _image_ok(out / sub / name)
    _image_ok(out / "exact_vs_trained.png")
    _image_ok(out / "training_loss.png")  # docs/index.md promises it, --quick included
    assert (out / "train" / "checkpoint.pt").is_file()  # the training stage ran first


def test_demo_table_reports_quality_nfe_and_noise_floor(demo_out):
    out, stdout = demo_out
    table = (out / "table.md").read_text()
    assert table in stdout  # printed as well as written
    assert "## exact score" in table and "## trained network" in table
    assert "| solver | budget | NFE | sliced W2 | MMD² | mode coverage | SW2 / floor | time [s] | seeds |" in table
    data = json.loads((out / "results.json").read_text())
    records = data["records"]
    assert {r["score"] for r in records} == {"exact", "trained"}
    assert len(records) == 2 * len(data["solvers"])
    for r in records:
        assert r["status"] == "ok" and r["nfe"] >= 1 and r["seconds"] > 0
        row = next(line for line in table.splitlines() if line.startswith(f"| {r['solver']} |"))
        assert f"| {r['nfe']} |" in row  # the NFE each solver actually spent
    assert table.count("| *noise floor* |") == 2
    # The exact score reaches the modes: full coverage of the 8 Gaussians by every solver.
    assert all(r["coverage"] == 1.0 for r in records if r["score"] == "exact")
    assert data["training"]["steps"] == 100


def test_plot_command_samples_and_replots_results(tmp_path, capsys):
    assert main(["plot", "--out", str(tmp_path / "figs"), "--target", "ring", "--n", "200",
                 "--steps", "5", "--frames", "6", "--solvers", "euler_maruyama",
                 "--what", "solver_grid,fields", "--kind", "stream", "--fields-at", "0.5",
                 "--dpi", "50"]) == 0
    written = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in written) == ["fields.png", "solver_grid.png"]
    _image_ok(tmp_path / "figs" / "solver_grid.png")
    records = [{"solver": "x", "budget": b, "budget_kind": "steps", "seed": 0, "nfe": b,
                "seconds": 0.1 * b, "sliced_w2": 1.0 / b, "status": "ok"} for b in (2, 4, 8)]
    run_dir = tmp_path / "cmp"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(
        {"problem": "p", "records": records, "floors": {"sliced_w2": [0.1, 0.01]}}))
    assert main(["plot", "--results", str(run_dir), "--out", str(tmp_path / "curves"),
                 "--metric", "sliced_w2", "--dpi", "50"]) == 0
    for x in ("nfe", "seconds"):
        _image_ok(tmp_path / "curves" / f"curves_sliced_w2_{x}.png")
    assert main(["plot", "--results", str(tmp_path / "empty"), "--out", str(tmp_path)]) == 2
    assert main(["plot", "--out", str(tmp_path), "--solvers", "nope"]) == 2


def test_every_option_is_explained_in_help(capsys):
    import argparse

    from scoresde.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("demo", "compare", "plot"):
        parser = sub.choices[command]
        options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
        assert len(options) >= 5, command
        for action in options:
            assert action.help and len(action.help) > 10, (command, action.option_strings)
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(a.option_strings[0] in text for a in options)


def test_a_rerun_into_the_same_folder_leaves_only_its_own_figures(demo_out, tmp_path, capsys):
    # An earlier run's GIF, other solvers' trajectories and the trained-score figures stayed
    # beside the new ones, so the folder described two runs.
    import shutil

    out = tmp_path / "again"
    shutil.copytree(demo_out[0], out)
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--no-gif", "--train-steps", "0",
                 "--solvers", "ddim", "--n", "200", "--steps", "8"]) == 0
    assert "figure(s) of an earlier demo" in capsys.readouterr().out
    assert not (out / "trained").exists() or not any((out / "trained").iterdir())
    assert not (out / "exact" / "forward_reverse.gif").exists()
    assert not (out / "exact_vs_trained.png").exists() and not (out / "training_loss.png").exists()
    left = sorted(p.name for p in (out / "exact").iterdir())
    assert [n for n in left if n.startswith("trajectories_")] == ["trajectories_ddim.png"]
    for name in EXACT_FIGURES[:-1]:
        _image_ok(out / "exact" / name)
