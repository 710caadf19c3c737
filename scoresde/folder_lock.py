"""One writer per output folder: an advisory lock held while a run writes there.

Two processes training into one run folder (a scheduler restarting a job whose first copy is
still alive, a user relaunching a run that is still going) interleave their metrics logs and
prune each other's checkpoints. `FolderLock` takes an exclusive ``flock`` on
``<folder>/.scoresde.lock`` (a hidden file, so the folder still counts as empty) and records the
holder's process id in it; a second process is refused with that id. The lock goes with the
process: a killed run leaves the file but not the lock, so a rerun takes it again.

A second lock on the same folder from the *same* process is allowed and shares the first (a
notebook that builds a new `Trainer` on a folder before the old object is collected): the
folder is unlocked when the last of them is released. A platform without ``fcntl``, or a file
system that does not support ``flock``, runs without the lock (the latter with a warning).
"""

from __future__ import annotations

import errno
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["FolderLock", "FolderInUseError", "LOCK_NAME"]

LOCK_NAME = ".scoresde.lock"

_CONTENTION = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}

@dataclass
class _Held:
    """A lock this process holds: the open lock file and how many `FolderLock` objects share it."""

    handle: IO[str]
    count: int


_HELD: dict[tuple[int, int], _Held] = {}  # by the lock file's (device, inode)
_GUARD = threading.Lock()


class FolderInUseError(FileExistsError):
    """Another process holds the folder's lock."""


class FolderLock:
    """``with FolderLock(folder, what="training run"):`` (or `acquire` / `release`).

    Raises (on `acquire`):
        FolderInUseError: another process holds it (the message names its host and process id).
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "output folder", *,
                 lock_name: str = LOCK_NAME, subject: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder)
        self.what = what
        # A command writing one file (``scoresde likelihood --out FILE``) locks that file alone:
        # ``lock_name`` is then a hidden name derived from it, and ``subject`` the file.
        self.lock_name = lock_name
        self.subject = Path(subject) if subject is not None else self.folder
        self._key: tuple[int, int] | None = None

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], what: str = "output file") -> FolderLock:
        """A lock on one output file and the files named after its stem (its settings file,
        ``<stem>.json``): ``.<stem>.scoresde.lock`` beside it, so ``r.npy`` and ``r.csv``, which
        share ``r.json``, exclude each other. Files of other stems in the folder stay free."""
        path = Path(path)
        return cls(path.parent, what, lock_name=f".{path.stem}{LOCK_NAME}", subject=path)

    def acquire(self) -> FolderLock:
        try:
            import fcntl
        except ImportError:  # no advisory locks here (Windows): nothing is held
            return self
        if self._key is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.lock_name
        with _GUARD:
            for _ in range(10):
                handle = open(path, "a+")  # noqa: SIM115 (held until release)
                key = _file_key(handle)
                if key in _HELD:  # this process holds it already: share it
                    handle.close()
                    _HELD[key].count += 1
                    self._key = key
                    return self
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as err:
                    if err.errno not in _CONTENTION:  # no flock on this file system: go on unlocked
                        handle.close()
                        warnings.warn(f"cannot lock {self.subject} ({err.strerror or err}); a second process "
                                      f"writing this {self.what} would not be stopped", RuntimeWarning,
                                      stacklevel=2)
                        return self
                    handle.seek(0)
                    holder = handle.read().strip()
                    handle.close()
                    kind = "output folder" if self.subject == self.folder else "output file"
                    raise FolderInUseError(
                        f"{self.subject} is in use by another scoresde process ({holder or 'pid ?'}); wait "
                        "for it to finish (a Trainer in Python holds its folder until close()) or stop it, "
                        f"or choose another {kind}") from None
                if _is_current(handle, path):
                    break
                handle.close()  # locked a file a releasing holder had just removed: open anew
            else:  # pragma: no cover - a lock file removed ten times in a row
                raise FolderInUseError(f"{self.folder}: its lock file keeps changing; try again")
            handle.seek(0)
            handle.truncate()
            host = f" on {os.uname().nodename}" if hasattr(os, "uname") else ""
            handle.write(f"pid {os.getpid()}{host}, writing a {self.what}")
            handle.flush()
            _HELD[key] = _Held(handle, 1)
            self._key = key
        return self

    def release(self, *, remove: bool = False) -> None:
        """Give this object's share up; the last share unlocks the folder and, with ``remove=True``,
        deletes the lock file (first, while still held; a process that locked the removed file
        in between notices and opens a fresh one)."""
        if self._key is None:
            return
        with _GUARD:
            key = self._key
            self._key = None
            entry = _HELD.get(key)
            if entry is None:
                return
            entry.count -= 1
            if entry.count > 0:
                return
            del _HELD[key]
            handle = entry.handle
            try:
                if remove and _is_current(handle, self.folder / self.lock_name):
                    (self.folder / self.lock_name).unlink(missing_ok=True)
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            finally:
                handle.close()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release(remove=True)


def _file_key(handle: IO[str]) -> tuple[int, int]:
    st = os.fstat(handle.fileno())
    return st.st_dev, st.st_ino


def _is_current(handle: IO[str], path: Path) -> bool:
    """Whether the open ``handle`` is still the file at ``path`` (not one removed since it was opened)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == _file_key(handle) and os.fstat(handle.fileno()).st_nlink > 0
