"""Stop a training run cleanly on SIGTERM / SIGINT: finish the step, checkpoint, exit.

Schedulers send SIGTERM before preempting a job and Ctrl-C sends SIGINT. While
`StopOnSignal` is active the first such signal only sets `StopOnSignal.signum`; the trainer
checks it after every step, writes a checkpoint and raises `TrainingInterrupted`. The
handlers are restored at the first signal, so a second Ctrl-C / SIGTERM acts as usual
(the checkpoint write is atomic, so even that never leaves a damaged file).

Exit codes used by the CLI: ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopOnSignal", "TrainingInterrupted", "TrainingDiverged", "EXIT_DIVERGED"]

EXIT_DIVERGED = 3
"""CLI exit code of a run stopped because its loss or gradients became NaN/inf."""

_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None)) if s)


class TrainingInterrupted(RuntimeError):
    """A signal stopped training after a complete step (and a checkpoint, if the run has a folder).

    Attributes: ``signum``, ``step``, ``path`` (checkpoint written, or None), ``exit_code``
    (``128 + signum``).
    """

    def __init__(self, signum: int, step: int, path: Any | None,
                 how_to_continue: str = "continue with --resume (resume=True)") -> None:
        self.signum, self.step, self.path = int(signum), int(step), path
        self.exit_code = 128 + self.signum
        name = signal.Signals(self.signum).name
        where = (f"checkpoint written to {path}; {how_to_continue}"
                 if path is not None else "no output folder, nothing saved")
        super().__init__(f"stopped by {name} after step {step}; {where}")


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient norm became NaN/inf; nothing non-finite was written."""

    exit_code = EXIT_DIVERGED


class StopOnSignal:
    """Context manager recording the first SIGTERM/SIGINT instead of dying (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, tp: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()
