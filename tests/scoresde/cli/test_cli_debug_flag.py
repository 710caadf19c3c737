"""``--debug`` / ``SCORESDE_DEBUG=1`` show the traceback in every command, also for the errors a
command reports itself (``sample``, ``compare``, ``demo`` and ``train-classifier`` printed one line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoresde.cli import main


def _commands(tmp: Path) -> dict[str, list[str]]:
    return {
        "sample": ["sample", "--target", "eight_gaussians", "--solver", "ddim", "--option", "eta=abc", "--n", "8",
                   "--out", str(tmp / "s"), "--no-plot"],
        "compare": ["compare", "--target", "eight_gaussians", "--solvers", "ddim", "--option", "ddim:eta=abc",
                    "--steps", "4", "--seeds", "0", "--n", "50", "--out", str(tmp / "c")],
        "demo": ["demo", "--quick", "--solvers", "nope", "--out", str(tmp / "d")],
        "train-classifier": ["train-classifier", "--target", "eight_gaussians", "--classes", "0,99",
                             "--steps", "2", "--out", str(tmp / "clf.pt")],
    }


@pytest.mark.parametrize("command", ["sample", "compare", "demo", "train-classifier"])
def test_debug_shows_the_traceback_of_an_error_the_command_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    argv = _commands(tmp_path)[command]
    assert main(argv) == 2  # without --debug: one line
    assert f"scoresde {command}: error: " in capsys.readouterr().err
    with pytest.raises((ValueError, TypeError)):
        main(["--debug", *argv])
    monkeypatch.setenv("SCORESDE_DEBUG", "1")
    with pytest.raises((ValueError, TypeError)):
        main(argv)
