"""One writer per output folder: an advisory lock held while a run writes there.

Two processes training into one run folder (a scheduler restarting a job whose first copy is
still alive, a user relaunching a run that is still going) interleave their metrics logs and
prune each other's checkpoints. `FolderLock` takes an exclusive ``flock`` on
``<folder>/.scoresde.lock`` (a hidden file, so the folder still counts as empty) and records the
holder's process id in it; a second process is refused with that id. The lock goes with the
process: a killed run leaves the file but not the lock, so a rerun takes it again.

A second lock on the same folder from the *same* process is allowed (a notebook that builds a
new `Trainer` on a folder before the old object is collected), as is any folder on a platform
without ``fcntl``.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["FolderLock", "FolderInUseError", "LOCK_NAME"]

LOCK_NAME = ".scoresde.lock"


class FolderInUseError(FileExistsError):
    """Another process holds the folder's lock."""


class FolderLock:
    """``with FolderLock(folder, what="training run"):`` (or `acquire` / `release`).

    Raises (on `acquire`):
        FolderInUseError: another process holds it (the message names its process id).
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "output folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._file: IO[str] | None = None

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # no advisory locks here (Windows): nothing is held
            return self
        if self._file is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_NAME, "a+")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            if holder == str(os.getpid()):
                return self  # this process already writes here (an earlier object not yet freed)
            raise FolderInUseError(
                f"{self.folder} is in use: another scoresde process (pid {holder or '?'}) is writing this "
                f"{self.what}; wait for it to finish or stop it, or choose another output folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def release(self, *, remove: bool = False) -> None:
        """Give the lock up; ``remove=True`` also deletes the lock file (first, while still held:
        a process that opens the folder afterwards makes a fresh one)."""
        if self._file is None:
            return
        try:
            if remove:
                (self.folder / LOCK_NAME).unlink(missing_ok=True)
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
