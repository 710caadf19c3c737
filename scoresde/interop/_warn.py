"""Warnings that point at the user's line, not at the library frame that raised them.

Python 3.10/3.11 have no ``warnings.warn(..., skip_file_prefixes=...)``, and a fixed
``stacklevel`` is right for one call path only (``sample_sigmas`` -> ``solvers.sample`` ->
solver, or ``unet_score`` -> ``DiffusersScore`` -> ``sde_from_scheduler`` -> ``DiscreteVPSDE``
are one or several frames deeper than the direct calls those levels were chosen for). Here the
level is counted: the first frame outside this package's and its dependencies' directories
is the caller's line.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import torch

import solvers

__all__ = ["OWN_DIRS", "LIBRARY_DIRS", "user_stacklevel", "warn_at_user", "reemit_at_user"]

OWN_DIRS: tuple[str, ...] = (
    str(Path(__file__).resolve().parents[1]),  # scoresde/
    str(Path(solvers.__file__).resolve().parent),
)
"""Directories of ``scoresde`` and ``solvers``: warnings raised there are re-attributed."""

LIBRARY_DIRS: tuple[str, ...] = (*OWN_DIRS, str(Path(torch.__file__).resolve().parent))
"""`OWN_DIRS` and ``torch``'s: frames there are library frames, skipped to find the user's line."""


def _in(filename: str, dirs: Iterable[str]) -> bool:
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return False
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def user_stacklevel(extra_dirs: Iterable[str] = ()) -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made *by the caller of this function* that
    names the first frame outside `LIBRARY_DIRS` (and ``extra_dirs``).

    Level 1 is the frame calling ``warnings.warn`` (the caller of this function, itself a
    library frame); each library frame above it adds one, so the level returned names the
    first frame outside the library (``warnings.warn``'s own counting).
    """
    dirs = (*LIBRARY_DIRS, *extra_dirs)
    frame: FrameType | None = sys._getframe(1)  # the caller, which will call warnings.warn: level 1
    level = 1
    while frame is not None and _in(frame.f_code.co_filename, dirs):
        frame = frame.f_back
        level += 1
    return level


def warn_at_user(message: str | Warning, category: type[Warning] = UserWarning,
                 extra_dirs: Iterable[str] = ()) -> None:
    """``warnings.warn(message, category)`` attributed to the first frame outside the library."""
    warnings.warn(message, category, stacklevel=user_stacklevel(extra_dirs))


def reemit_at_user(caught: Iterable[warnings.WarningMessage]) -> None:
    """Re-issue warnings recorded by ``warnings.catch_warnings(record=True)``.

    Ours (raised in `OWN_DIRS`) are re-issued at the user's line; any other (the user's score,
    torch, a third-party model) at its original file and line. They go through the user's
    filters again (``"error"`` raises here, ``"once"`` dedupes).
    """
    for w in caught:
        if _in(w.filename, OWN_DIRS):
            warnings.warn(w.message, w.category, stacklevel=user_stacklevel())
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno or 0)
