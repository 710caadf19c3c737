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


def test_same_process_shares_and_the_last_release_unlocks(tmp_path: Path) -> None:
    first = FolderLock(tmp_path).acquire()
    second = FolderLock(tmp_path).acquire()  # shares the lock, holds it too
    first.release(remove=True)
    proc_code = ("import sys\nfrom scoresde.folder_lock import FolderLock, FolderInUseError\n"
                 "try:\n    FolderLock(sys.argv[1]).acquire(); print('acquired')\n"
                 "except FolderInUseError:\n    print('refused')\n")

    def other() -> str:
        return subprocess.run([sys.executable, "-c", proc_code, str(tmp_path)], env=ENV, capture_output=True,
                              text=True, check=True).stdout.strip()

    assert other() == "refused"  # still held through `second`
    second.release(remove=True)
    assert other() == "acquired"


def test_a_pid_equal_to_ours_in_the_file_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    # Containers give their entry point pid 1 each: the holder's pid is no proof of the same process.
    proc = _holder(tmp_path)
    try:
        (tmp_path / LOCK_NAME).write_text(f"pid {os.getpid()}")
        with pytest.raises(FolderInUseError):
            FolderLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_file_system_without_flock_runs_unlocked_with_a_warning(tmp_path: Path, monkeypatch) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(RuntimeWarning, match="cannot lock"):
        lock = FolderLock(tmp_path).acquire()
    lock.release()


def test_a_lock_taken_on_a_removed_file_is_taken_again_on_the_current_one(tmp_path: Path, monkeypatch) -> None:
    import fcntl

    real = fcntl.flock
    calls = {"n": 0}

    def flock_after_a_release(fd: int, op: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:  # the holder releases (and removes the file) between our open and our lock
            (tmp_path / LOCK_NAME).unlink()
        real(fd, op)

    (tmp_path / LOCK_NAME).write_text("pid 0")
    monkeypatch.setattr(fcntl, "flock", flock_after_a_release)
    lock = FolderLock(tmp_path).acquire()
    monkeypatch.setattr(fcntl, "flock", real)
    try:
        assert (tmp_path / LOCK_NAME).exists()  # the lock is on the file that is there now
        with pytest.raises(FolderInUseError):
            subprocess_lock = [sys.executable, "-c",
                               "import sys\nfrom scoresde.folder_lock import FolderLock\nFolderLock(sys.argv[1]).acquire()",
                               str(tmp_path)]
            out = subprocess.run(subprocess_lock, env=ENV, capture_output=True, text=True)
            if out.returncode != 0 and "FolderInUseError" in out.stderr:
                raise FolderInUseError("held")
    finally:
        lock.release(remove=True)


def test_torchrun_cli_training_is_not_refused_by_its_own_ranks(tmp_path: Path) -> None:
    # Every rank runs the CLI; only rank 0 writes the output, so only rank 0 may lock it (each
    # rank took the lock and one of them was refused, leaving the other waiting).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "scoresde",
           "train", "--data", "eight_gaussians", "--steps", "5", "--width", "16", "--depth", "1",
           "--out", str(tmp_path / "run"), "--no-progress"]
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / LOCK_NAME).exists()


def test_the_refusal_names_what_the_holder_writes(tmp_path: Path) -> None:
    trainer = Trainer(toy_config("eight_gaussians", steps=2), out_dir=tmp_path, progress=False)
    code_out = subprocess.run([sys.executable, "-m", "scoresde", "sample", "--checkpoint", str(tmp_path), "--n", "4",
                               "--steps", "2", "--no-plot", "--no-progress", "--out", str(tmp_path)],
                              env=ENV, capture_output=True, text=True, timeout=240)
    trainer.close()
    assert code_out.returncode == 2 and "writing a training run" in code_out.stderr
    with FolderLock(tmp_path):  # the context manager leaves no lock file behind
        pass
    assert not (tmp_path / LOCK_NAME).exists()


HOLD_FILE = textwrap.dedent("""
    import sys, time
    from scoresde.folder_lock import FolderLock
    lock = FolderLock.for_file(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def test_the_cli_refuses_a_second_writer_of_a_likelihood_output_file(tmp_path: Path, capsys) -> None:
    # An outside check: two `scoresde likelihood --batch-size --out a.csv` runs both went ahead,
    # sharing a.csv.chunks/ and overwriting each other's a.csv and a.json.
    from scoresde.cli import main

    args = ["likelihood", "--target", "two_gaussians", "--n", "8", "--integrator", "rk4", "--steps", "4",
            "--no-progress", "--batch-size", "4"]
    out = tmp_path / "a.csv"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_FILE, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    try:
        code = main([*args, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and f"pid {proc.pid}" in err and "a.csv is in use" in err
        assert not out.exists() and not (tmp_path / "a.csv.chunks").exists()
        # a.npy would write its settings to a.json too: refused as well.
        assert main([*args, "--out", str(tmp_path / "a.npy")]) == 2
        assert "a.npy is in use" in capsys.readouterr().err
        # Another file in the same folder is free.
        assert main([*args, "--out", str(tmp_path / "b.csv")]) == 0
    finally:
        proc.kill()
        proc.wait()
    assert main([*args, "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.json", "b.csv", "b.json"]


def test_a_failed_run_leaves_none_of_the_folders_it_made(tmp_path: Path, capsys) -> None:
    # An outside check: `--out n1/n2/a.json` failing removed n2 but left n1 behind empty.
    from scoresde.cli import main

    assert main(["likelihood", "--checkpoint", str(tmp_path / "none"), "--n", "5", "--out",
                 str(tmp_path / "n1" / "n2" / "a.json")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    assert main(["sample", "--checkpoint", str(tmp_path / "none"), "--n", "5", "--out",
                 str(tmp_path / "kept" / "m1" / "m2")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())
