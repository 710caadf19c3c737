"""`scoresde sample --out DIR` into a folder of an earlier run with other settings says what it
replaced (an outside study lost a `pc` run's samples to a `ddim` run without a word)."""

from __future__ import annotations

import pytest

from scoresde.cli import main

BASE = ["sample", "--target", "eight_gaussians", "--steps", "5", "--n", "16", "--no-progress", "--no-plot"]


def test_replacing_an_earlier_run_names_what_changed(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path)]
    assert main([*BASE, "--solver", "pc", *out]) == 0
    assert "note: replaced" not in capsys.readouterr().out
    assert main([*BASE, "--solver", "pc", *out]) == 0  # the same run again: nothing to say
    assert "note: replaced" not in capsys.readouterr().out
    assert main([*BASE, "--solver", "ddim", "--seed", "3", *out]) == 0
    text = capsys.readouterr().out
    assert f"note: replaced the samples of an earlier run in {tmp_path}" in text
    assert "solver: pc -> ddim" in text and "seed: 0 -> 3" in text
