"""A progress bar for long sampling runs (``solvers.sample(..., progress=True)``).

Every solver, fixed-grid or adaptive, ODE or SDE, calls the score at times that fall from
``T`` to ``eps``; the bar follows those times. After a score call at ``t`` (per-sample
``t: (B,)``: its largest entry, the sample furthest behind) a chunk is done by the fraction
of the run's grid ``ts`` above ``t``, interpolated between grid points: the fraction of
steps taken on a fixed grid, ``(T - t) / (T - eps)`` for adaptive solvers (whose grid is the
two end points). It needs nothing from the solver, and takes the smaller of two consecutive
calls' fractions, so a trial evaluation far ahead (an adaptive solver's step-size probe)
does not jump it. With ``batch_size`` the bar counts chunks: ``k + fraction`` after ``k`` finished chunks.
The pilot solve of ``grid="auto"`` runs before the bar starts and is not shown.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from .protocol import ScoreFn

__all__ = ["SamplingProgress"]


class SamplingProgress:
    """tqdm bar over ``n_chunks`` chunks, each advanced by the times the score is called at.

    Args:
        ts: the run's decreasing time grid ``(n + 1,)`` from ``T`` to ``eps``.
        n_chunks: chunks the batch is solved in (1 without ``batch_size``).
        desc: the bar's label (e.g. the solver's name).
    """

    def __init__(self, ts: Tensor, n_chunks: int, desc: str) -> None:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        grid = ts.detach().to("cpu").double().numpy()[::-1]  # increasing, for np.interp
        self._times = np.ascontiguousarray(grid)
        self._fraction_above = np.linspace(1.0, 0.0, grid.size)  # grid[k]: this much of the run done
        self.chunk = 0
        self.done = 0.0
        self.calls = 0
        self._last = 0.0
        fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total} [{elapsed}<{remaining}{postfix}]"
        self.bar = tqdm(total=n_chunks, desc=desc, unit="chunk", bar_format=fmt)

    def wrap(self, score: ScoreFn) -> ScoreFn:
        """``score`` with the bar advanced after every call (same outputs, same call count)."""

        def score_with_progress(x: Tensor, t: Tensor) -> Tensor:
            out = score(x, t)
            self.calls += 1
            latest = float(t.max()) if t.numel() > 1 else float(t)
            frac = float(np.interp(latest, self._times, self._fraction_above))
            # the smaller of this call's and the previous call's fraction: one trial evaluation
            # far ahead (an adaptive solver's first step-size probe) does not jump the bar
            self.advance(self.chunk + min(frac, self._last))
            self._last = frac
            return out

        return score_with_progress

    def advance(self, to: float) -> None:
        """Move the bar forward to ``to`` chunks (never back; steps below 1e-3 are skipped)."""
        if to > self.done + 1e-3:
            self.bar.update(to - self.done)
            self.done = to
            self.bar.set_postfix(score_calls=self.calls, refresh=False)

    def finish_chunk(self) -> None:
        """Mark the current chunk done (the end-of-run step may stop short of ``eps``'s time)."""
        self.chunk += 1
        self._last = 0.0
        self.bar.update(self.chunk - self.done)
        self.done = float(self.chunk)
        self.bar.set_postfix(score_calls=self.calls)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> SamplingProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
