"""One writer per run folder (an outside pass: two processes training into one folder
interleaved their metrics logs and pruned each other's checkpoints)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scoresde.folder_lock import LOCK_NAME, FolderInUseError, FolderLock
from scoresde.train import Trainer, toy_config

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
HOLD = textwrap.dedent("""
    import sys, time
    from scoresde.folder_lock import FolderLock
    lock = FolderLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def _holder(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_folder_held_by_another_process_is_refused_with_its_pid(tmp_path: Path) -> None:
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(FolderInUseError, match=f"pid {proc.pid}"):
            Trainer(toy_config("eight_gaussians", steps=3), out_dir=tmp_path / "run", progress=False)
    finally:
        proc.kill()
        proc.wait()
    # the holder is gone (killed): the lock went with it
    trainer = Trainer(toy_config("eight_gaussians", steps=3), out_dir=tmp_path / "run", progress=False)
    trainer.fit()
    trainer.close()
    assert (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / LOCK_NAME).exists()


def test_the_same_process_may_reopen_and_close_releases(tmp_path: Path) -> None:
    first = Trainer(toy_config("eight_gaussians", steps=2), out_dir=tmp_path, progress=False)
    first.fit()
    again = Trainer(toy_config("eight_gaussians", steps=4), out_dir=tmp_path, resume=True, progress=False)
    again.close()
    first.close()
    with FolderLock(tmp_path):  # released: taken again at once
        pass


def test_the_cli_refuses_a_second_writer_of_an_output_folder(tmp_path: Path, capsys) -> None:
    from scoresde.cli import main

    proc = _holder(tmp_path / "S")
    try:
        code = main(["sample", "--target", "two_gaussians", "--n", "8", "--steps", "2", "--no-plot",
                     "--no-progress", "--out", str(tmp_path / "S")])
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and f"pid {proc.pid}" in capsys.readouterr().err
    assert main(["sample", "--target", "two_gaussians", "--n", "8", "--steps", "2", "--no-plot",
                 "--no-progress", "--out", str(tmp_path / "S")]) == 0
    assert not (tmp_path / "S" / LOCK_NAME).exists()  # no lock file left in the user's folder
