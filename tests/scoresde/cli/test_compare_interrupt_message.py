"""Ctrl-C in `scoresde compare`: the message names the kept cells only when there are some."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoresde import compare
from scoresde.cli import main

ARGS = ["compare", "--target", "eight_gaussians", "--solvers", "dpmpp_2m", "--steps", "5", "--seeds", "0",
        "--n", "100", "--no-progress", "--no-plots"]


@pytest.mark.parametrize("cells", [0, 2])
def test_the_interrupt_message_matches_what_was_kept(tmp_path: Path, monkeypatch, capsys, cells: int) -> None:
    out = tmp_path / "cmp"

    def interrupted(*args, **kwargs):
        if cells:
            (out / "cells").mkdir(parents=True)
            for k in range(cells):
                (out / "cells" / f"c{k}.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_comparison", interrupted)
    assert main([*ARGS, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    if cells:
        assert f"{cells} finished cell(s) kept in {out / 'cells'}; rerun the same command to resume" in err
    else:  # it used to say "0 finished cell(s) kept in OUT/cells", a folder never made
        assert "nothing was kept" in err and "kept in" not in err
