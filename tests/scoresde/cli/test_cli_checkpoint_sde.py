"""``plot`` and ``compare`` refuse a ``--sde`` that contradicts the checkpoint, as ``sample`` and
``likelihood`` do (they ran with the checkpoint's SDE and said nothing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoresde.cli import main

SMALL = ["--width", "16", "--depth", "1", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def vp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    assert main(["train", "--steps", "3", "--out", str(out), *SMALL]) == 0
    return out


@pytest.mark.parametrize("command", [
    ["plot", "--what", "snapshots", "--n", "50", "--steps", "4", "--solvers", "ddim"],
    ["compare", "--solvers", "ddim", "--steps", "4", "--seeds", "0", "--n", "50", "--no-plots"],
])
def test_a_contradicting_sde_is_refused(vp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        command: list[str]) -> None:
    assert main([*command, "--checkpoint", str(vp_run), "--sde", "ve", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"--sde ve does not match checkpoint {vp_run}, which was trained with the vp SDE" in err
    assert not (tmp_path / "o").exists()


def test_the_matching_sde_is_accepted(vp_run: Path, tmp_path: Path) -> None:
    assert main(["plot", "--what", "snapshots", "--n", "50", "--steps", "4", "--solvers", "ddim",
                 "--checkpoint", str(vp_run), "--sde", "vp", "--out", str(tmp_path / "o")]) == 0
