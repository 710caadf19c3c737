"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Temporary files are named ``.<target name>.<8 random characters>.tmp`` in the target's folder.
A process killed while writing (SIGKILL, power loss) leaves one behind;
`clean_stale_temps` removes those, and only those, once they are old enough that no live
writer can own them.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write_bytes", "atomic_write_with", "atomic_link", "clean_stale_temps", "check_writable_dir",
           "OutputPathError", "STALE_TEMP_AGE_S"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)

# mkstemp(prefix=".NAME.", suffix=".tmp") names: 8 characters from [a-z0-9_].
_TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.gif|\.mp4)?$")  # an animation's keeps its format
STALE_TEMP_AGE_S = 60.0
"""A temporary file untouched this long (seconds) belongs to no live writer."""


class OutputPathError(ValueError):
    """An output path cannot be used (not a folder, not writable, a folder where a file goes)."""


def _fsync_dir(folder: Path) -> None:
    try:  # persist a rename
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and rename.

    The folder is created if needed and the rename itself is made durable (directory fsync
    where the platform allows it), so a process killed mid-write leaves the old file intact.
    A failed write (disk full, file-size limit) removes its temporary file and re-raises.
    """
    return atomic_write_with(path, lambda f: f.write(data))


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """`atomic_write_bytes` for a writer that streams into the open file (``np.save(f, a)``),
    so a large array is not first copied into a ``bytes`` object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # name the file asked for, not the temporary name it never got
        raise type(err)(err.errno, f"cannot create a file in {path.parent} ({err.strerror or err})",
                        str(path)) from err
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # name the file we were writing, not its temporary name
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None or err.filename == tmp:
            raise type(err)(err.errno, err.strerror or str(err), str(path)) from err
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Make ``dst`` an atomic replacement holding the bytes of ``src`` (a hard link if possible).

    Both files are then safe to read; neither is ever modified in place by this module, so
    sharing one inode is safe. Falls back to an atomic copy where hard links are refused.
    """
    src, dst = Path(src), Path(dst)
    tmp = dst.parent / f".{dst.name}.{os.urandom(4).hex()[:8]}.tmp"
    try:
        os.link(src, tmp)
    except OSError:
        return atomic_write_bytes(dst, src.read_bytes())
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)
    return dst


def clean_stale_temps(folder: str | os.PathLike[str], *, older_than_s: float = STALE_TEMP_AGE_S,
                      target: str | None = None) -> list[Path]:
    """Remove this module's temporary files in ``folder`` not modified for ``older_than_s`` s.

    Only names of the pattern ``.<name>.<8 characters>.tmp`` (or ``.tmp.gif`` / ``.tmp.mp4``,
    `scoresde.plotting.animation`'s) are touched (with ``target``, only
    those of that file name, for a folder the command does not own); returns what was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for p in folder.iterdir():
        if not _TEMP_RE.match(p.name):
            continue
        if target is not None and not (p.name.startswith(f".{target}.") and len(p.name) == len(target) + 14):
            continue
        try:
            if p.is_file() and now - p.stat().st_mtime >= older_than_s:
                p.unlink()
                removed.append(p)
        except OSError:  # vanished or not ours to delete: leave it
            continue
    return removed


def check_writable_dir(folder: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove it writable with a probe file; returns it.

    Raises:
        OutputPathError: ``folder`` is a file, or cannot be created or written (the message
            names it and the fix).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"{what} {folder} exists and is not a directory; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(
            f"{what} {folder} is not writable ({err.strerror or err}); choose a writable path"
        ) from None
    return folder
