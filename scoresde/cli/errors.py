"""One error path for every command: a one-line message naming the cause and the fix.

Exit codes (documented in docs/training.md, "Robustness"):

* 0 success; 2 usage error (bad option, path or file: `ValueError`, `TypeError`,
  `FileExistsError`, including damaged or mismatched checkpoints);
* 1 runtime failure (disk full, permission or other `OSError`, NaN/inf scores, out of memory,
  device errors, anything unexpected);
* 3 training diverged (NaN/inf loss or gradients; nothing non-finite was saved);
* 128 + N stopped by signal N after a checkpoint: 130 for SIGINT (Ctrl-C), 143 for SIGTERM.

``--debug`` (or ``SCORESDE_DEBUG=1``) re-raises instead, so the full traceback shows.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

__all__ = ["run_guarded", "describe", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_DIVERGED"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3


def _os_message(err: OSError) -> str:
    where = f" while writing {err.filename}" if err.filename else ""
    what = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        return f"disk full{where}; free space or choose another output folder (previous files are intact)"
    if err.errno == errno.EFBIG:
        return f"file too large{where} (file-size limit, ulimit -f); raise the limit or write elsewhere"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied: {err.filename or what}; choose a writable path"
    if err.errno == errno.ENOENT:
        return f"no such file or directory: {err.filename or what}; check the path"
    return f"{what}{': ' + str(err.filename) if err.filename else ''}"


def describe(err: BaseException) -> tuple[int, str]:
    """``(exit code, one-line message)`` for an exception escaping a command."""
    from ..train.signals import TrainingDiverged, TrainingInterrupted

    if isinstance(err, TrainingInterrupted):
        return err.exit_code, str(err)
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted by Ctrl-C (SIGINT)"
    if isinstance(err, TrainingDiverged):
        return EXIT_DIVERGED, str(err)
    if isinstance(err, (ValueError, TypeError, FileExistsError)):
        return EXIT_USAGE, str(err)
    if isinstance(err, FloatingPointError):  # includes solvers.NonFiniteScoreError
        return EXIT_FAILURE, (f"{err}; the network may be undertrained or diverged (check the "
                              "checkpoint) or the step too large (try more --steps)")
    if isinstance(err, MemoryError):
        return EXIT_FAILURE, "out of memory; use a smaller --n or --batch-size"
    if isinstance(err, OSError):
        return EXIT_FAILURE, _os_message(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, RuntimeError) and "out of memory" in text.lower():
        return EXIT_FAILURE, f"out of memory ({text}); use a smaller --n or --batch-size"
    if isinstance(err, (RuntimeError, AssertionError)) and any(
            k in text for k in ("CUDA", "cuda", "MPS", "device")):
        return EXIT_FAILURE, f"device error: {text}; try --device cpu"
    return EXIT_FAILURE, (f"unexpected {type(err).__name__}: {text} (rerun with --debug for the "
                          "traceback and report it)")


def run_guarded(command: str, fn: Callable[[], int], *, debug: bool = False) -> int:
    """Run ``fn()``; map an escaping exception to a one-line stderr message and an exit code."""
    debug = debug or os.environ.get("SCORESDE_DEBUG", "") not in ("", "0")
    try:
        return int(fn() or 0)
    except (Exception, KeyboardInterrupt) as err:
        if debug:
            raise
        code, message = describe(err)
        print(f"scoresde {command}: error: {message}", file=sys.stderr)
        return code
