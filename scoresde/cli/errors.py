"""One error path for every command: a one-line message naming the cause and the fix.

Exit codes (documented in docs/training.md, "Robustness"):

* 0 success; 2 usage error (bad option, path or file: `ValueError`, `TypeError`,
  `FileExistsError`, including damaged or mismatched checkpoints, and a missing input file or
  folder: a `FileNotFoundError` not under the command's ``--out``);
* 1 runtime failure (disk full, permission or other `OSError`, an output vanished while writing, NaN/inf scores, out of memory,
  device errors, anything unexpected);
* 3 training diverged (NaN/inf loss or gradients; nothing non-finite was saved);
* 128 + N stopped by signal N after a checkpoint: 130 for SIGINT (Ctrl-C), 143 for SIGTERM.

``--debug`` (or ``SCORESDE_DEBUG=1``) re-raises instead, so the full traceback shows.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["run_guarded", "Terminated", "debugging", "describe", "cli_advice", "cli_warning_text", "report_error", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_DIVERGED"]

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


def _written_by(path: str | os.PathLike[str], outputs: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether a command writing ``outputs`` (folders or files) writes ``path``.

    That is an output itself, a path inside one, or a file beside one named after it (its
    temporary files ``.NAME.*.tmp``, ``NAME.chunks``, the settings ``STEM.json``).
    """
    p = Path(path).resolve()
    for out in (Path(o).resolve() for o in outputs):
        if p == out or out in p.parents:
            return True
        beside = out.parent in (p.parent, *p.parents)
        if beside and p.relative_to(out.parent).parts[0].lstrip(".").startswith((out.name, out.stem)):
            return True
    return False


def missing_input(err: BaseException, outputs: Sequence[str | os.PathLike[str]] = ()) -> bool:
    """Whether ``err`` says an input path does not exist (a usage error, exit 2).

    A `FileNotFoundError` raised by the data or checkpoint loaders (no file name attached) or
    naming a path outside the command's ``outputs`` is a missing input; one naming a path
    under ``outputs`` is a failure while writing (the output folder vanished mid-run, exit 1).
    """
    if not isinstance(err, FileNotFoundError):
        return False
    return err.filename is None or not _written_by(os.fsdecode(err.filename), outputs)


def describe(err: BaseException, outputs: Sequence[str | os.PathLike[str]] = ()) -> tuple[int, str]:
    """``(exit code, one-line message)`` for an exception escaping a command.

    ``outputs``: the command's output paths (``--out``), to tell a missing input (exit 2)
    from a file that vanished while writing (exit 1).
    """
    from ..train.signals import TrainingDiverged, TrainingInterrupted

    if isinstance(err, TrainingInterrupted):
        return err.exit_code, str(err)
    if isinstance(err, Terminated):
        return 128 + int(signal.SIGTERM), "stopped by SIGTERM"
    if isinstance(err, KeyboardInterrupt):
        return 130, "interrupted by Ctrl-C (SIGINT)"
    if isinstance(err, TrainingDiverged):
        return EXIT_DIVERGED, str(err)
    if isinstance(err, (ValueError, TypeError, FileExistsError)):
        return EXIT_USAGE, str(err)
    if missing_input(err, outputs):
        assert isinstance(err, FileNotFoundError)
        return EXIT_USAGE, str(err) if err.filename is None else _os_message(err)
    if isinstance(err, FileNotFoundError):
        return EXIT_FAILURE, (f"{err.filename} vanished while writing the output; was the --out folder moved "
                              "or deleted during the run? Rerun the command")
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


# Library messages name both the Python argument and the option; the command line keeps the option.
_PYTHON_ADVICE: tuple[tuple[str, str], ...] = (
    (r"--resume \(resume=True\)", "--resume"),
    (r"\(resume=True / --resume\)", "(--resume)"),
    (r"resume=True \(--resume\)", "--resume"),
    (r"overwrite=True \(--overwrite\)", "--overwrite"),
    (r"--data PATH on the command line, data=\.\.\. in Python", "--data PATH"),
)


def cli_advice(message: str, command: str) -> str:
    """``message`` with command-line advice only: Python arguments dropped where an option is named.

    For commands that read a checkpoint (all but ``train``), "resume from one with --resume F"
    becomes "use one with --checkpoint F": ``--resume`` is an option of ``train``.
    """
    for pattern, replacement in _PYTHON_ADVICE:
        message = re.sub(pattern, replacement, message)
    if command != "train":
        message = re.sub(r"resume from one with --resume (\S+?)\)", r"use one with --checkpoint \1)", message)
    return message


PRIOR_WARNING = "p_T is far from the prior"
"""The opening of `scoresde.schedules.PriorCheck.message`, whose fix names Python arguments."""

PRIOR_CLI_FIX = (
    "Fix: centre the data and rescale them to about unit spread (subtract the mean of each "
    "coordinate, divide by its std; add the mean back to samples) and retrain with `scoresde train` "
    "on the new file; with --sde ve, a --sigma-max well above the data's root-mean-square also helps "
    "for centred data. The command line has no option to choose the prior (in Python: prior=...)."
)


def cli_warning_text(message: str, command: str = "train") -> str:
    """A warning's text for the command line: Python-only advice replaced by command-line advice
    (the prior check's fix, the toy recipe's ``VESDE(sigma_max=...)``, then `cli_advice`)."""
    if message.startswith(PRIOR_WARNING) and " Fix: " in message:
        message = f"{message.split(' Fix: ')[0]} {PRIOR_CLI_FIX}"
    elif message.startswith("VE sigma_max = "):  # the toy recipe's check: name the option
        message = re.sub(r"VESDE\(sigma_max=([^)]+)\)", r"--sigma-max \1", message)
    return cli_advice(message, command)


def debugging(args: object = None) -> bool:
    """Whether ``--debug`` (on ``args``) or ``SCORESDE_DEBUG=1`` asks for full tracebacks: a
    command that reports its own errors re-raises them then."""
    return bool(getattr(args, "debug", False)) or os.environ.get("SCORESDE_DEBUG", "") not in ("", "0")


def report_error(command: str, err: BaseException | str) -> None:
    """Print ``scoresde COMMAND: error: MESSAGE`` on stderr, with command-line advice (`cli_advice`)."""
    print(f"scoresde {command}: error: {cli_advice(str(err), command)}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is: its Ctrl-C handling (finished chunks and cells kept,
    the message on how to resume) runs for it too; the exit code is 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While active (main thread only), SIGTERM raises `Terminated` instead of killing the
    process outright; training installs its own handler (checkpoint, then stop) inside it."""
    term = getattr(signal, "SIGTERM", None)
    if term is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(term, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(term, old)


def _silence_stdout() -> None:
    """Point the process's stdout (file descriptor 1) at devnull after a broken pipe, when
    ``sys.stdout`` is the process's own (not a caller's or a test's replacement of it)."""
    try:
        if sys.stdout is not sys.__stdout__ or sys.stdout.fileno() != 1:
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor
        pass


def run_guarded(command: str, fn: Callable[[], int], *, debug: bool = False,
                outputs: Sequence[str | os.PathLike[str]] = ()) -> int:
    """Run ``fn()``; map an escaping exception to a one-line stderr message and an exit code.

    ``outputs``: the command's output paths, as for `describe`.
    """
    debug = debug or debugging()
    try:
        with _sigterm_as_interrupt():
            return int(fn() or 0)
    except BrokenPipeError:
        # The reader went away (`scoresde solvers | head`): stop quietly, as a command killed by
        # SIGPIPE does (exit 128 + 13), with stdout pointed at devnull so that the interpreter's
        # final flush does not fail again.
        _silence_stdout()
        return 141
    except (Exception, KeyboardInterrupt) as err:
        if debug:
            raise
        code, message = describe(err, outputs)
        report_error(command, message)
        return code
