"""Command-line interface: ``scoresde <command> [options]`` (``scoresde --help`` lists them).

Each command lives in its own module ``scoresde.cli.<module>`` exposing
``add_arguments(parser)`` and ``run(args) -> int``. Building the parser imports every
command module, so those modules keep heavy imports (matplotlib, training) inside ``run``.
Every command runs through `errors.run_guarded`: an anticipated failure is one line on
stderr and a documented exit code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from .errors import cli_warning_text

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "train on a 2D toy, sample with several solvers, write plots and a table"),
    "train": ("train", "train a score network (2D toys or digits), with checkpoints and resume"),
    "sample": ("sample", "sample a trained checkpoint or an exact target with any solver"),
    "compare": ("compare", "sweep solvers x step budgets x seeds; write tables and curves"),
    "plot": ("plot", "plot trajectories, marginals and score fields"),
    "likelihood": ("likelihood", "exact log-likelihood / bits-per-dim via the probability-flow ODE"),
    "solvers": ("solvers_cmd", "list the solver names with one line each"),
    "train-classifier": ("conditional", "train a time-dependent classifier for classifier guidance"),
}


# Commands whose --out is a folder / a file: checked writable before any work (pre-flight).
OUT_FOLDER_COMMANDS = frozenset({"demo", "train", "sample", "compare", "plot"})
OUT_FILE_COMMANDS = frozenset({"likelihood", "train-classifier"})


def _missing_folders(folder: Path | None) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first."""
    missing: list[Path] = []
    while folder is not None and not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _preflight(args: argparse.Namespace) -> None:
    """Fail before any work when the device is unusable or the output cannot be written."""
    from pathlib import Path

    from ..atomic import check_writable_dir

    device = getattr(args, "device", None)
    if isinstance(device, str) and device != "auto":
        from ..train.distributed import resolve_device

        resolve_device(device)  # "cuda" on a CPU build etc.: a clear ValueError before any work
    out = getattr(args, "out", None)
    if out is None:
        return
    if args.command in OUT_FOLDER_COMMANDS:
        check_writable_dir(out, "output folder (--out)")
    elif args.command in OUT_FILE_COMMANDS:
        if Path(out).is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name (e.g. {Path(out) / 'out'}"
                             f"{'.csv' if args.command == 'likelihood' else '.pt'})")
        if args.command == "likelihood" and Path(out).suffix not in (".csv", ".json", ".npy"):
            raise ValueError(f"--out {out}: the file type is chosen by its suffix; use .csv, .json or .npy")
        check_writable_dir(Path(out).parent, "folder of --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scoresde",
        description="Score-based generative modeling with SDEs.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"scoresde {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as err:  # command not built yet in this checkout
            if err.name != f"{__name__}.{module}":
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback on errors")
    return parser


@contextlib.contextmanager
def cli_warnings(command: str) -> Iterator[None]:
    """Show warnings as ``scoresde COMMAND: warning: ...`` lines, without the Python source line.

    Each distinct text is shown once per command: the same check can run from several call
    sites (an SDE built by the config, then by the trainer), which Python's own once-per-location
    filter lets through.
    """
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        stream = sys.stderr if file is None else file
        text = cli_warning_text(str(message), command)
        if text in shown:
            return
        shown.add(text)
        try:
            print(f"scoresde {command}: warning: {text}", file=stream)
        except OSError:  # stderr closed: nothing to tell
            pass

    saved = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        print(f"scoresde {args.command}: not available in this version", file=sys.stderr)
        return 2
    from .errors import run_guarded

    mod = importlib.import_module(f"{__name__}.{args._module}")

    def command() -> int:
        from ..folder_lock import LOCK_NAME, FolderLock

        out = getattr(args, "out", None)
        # Under torchrun every rank runs this; rank 0 alone writes the output (and holds its lock).
        main_rank = os.environ.get("RANK", "0").strip() in ("", "0")
        writes_folder = args.command in OUT_FOLDER_COMMANDS
        writes_file = args.command in OUT_FILE_COMMANDS
        folder = (Path(out) if writes_folder else Path(out).parent) if out is not None and main_rank and (
            writes_folder or writes_file) else None
        made = _missing_folders(folder)  # made for this command: removed again if left empty
        _preflight(args)
        # One command writing an output folder (or file, with its pieces beside it) at a time: a
        # relaunched run beside a live one would interleave its files. The lock goes with the process.
        what = f"`scoresde {args.command}` output"
        lock = None if folder is None else (
            FolderLock(folder, what) if writes_folder else FolderLock.for_file(out, what)).acquire()
        try:
            return int(mod.run(args) or 0)
        finally:
            if lock is not None:
                lock.release(remove=True)  # no lock file is left in the user's output folder
            for made_dir in made:  # innermost first: made for a command that wrote nothing there
                if not made_dir.is_dir() or any(
                        p.name not in (LOCK_NAME, getattr(lock, "lock_name", LOCK_NAME)) for p in made_dir.iterdir()):
                    break
                made_dir.rmdir()

    with cli_warnings(args.command):
        out = getattr(args, "out", None)
        return run_guarded(args.command, command, debug=args.debug, outputs=() if out is None else (out,))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
