"""Recording a solve's states for trajectory plots, within a frame budget."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TrajectoryRecorder"]


class TrajectoryRecorder:
    """Keeps at most ``max_frames`` evenly spaced states of a solve (first and last included).

    With a known number of steps the frames to keep are chosen up front (no memory is spent on
    the others); otherwise every frame is kept and thinned by `result` with the same rule,
    ``round(linspace(0, F - 1, max_frames))``.
    """

    def __init__(self, enabled: bool, n_steps: int | None, max_frames: int | None) -> None:
        if enabled and max_frames is not None and max_frames < 2:
            raise ValueError("max_frames must be at least 2")
        self.enabled = enabled
        self.max_frames = max_frames
        self.frames: list[Tensor] = []
        self.times: list[float] = []
        self.sample_times: list[Tensor | None] = []
        self._count = 0
        self._keep: set[int] | None = None
        if enabled and n_steps is not None and max_frames is not None and n_steps + 1 > max_frames:
            self._keep = set(torch.linspace(0, n_steps, max_frames).round().long().tolist())

    def add(self, t: float, x: Tensor, sample_t: Tensor | None = None) -> None:
        """Store ``x: (B, *D)`` at time ``t`` (and per-sample times ``sample_t: (B,)``) if kept."""
        index, self._count = self._count, self._count + 1
        if self.enabled and (self._keep is None or index in self._keep):
            self.frames.append(x.detach().clone())
            self.times.append(t)
            self.sample_times.append(None if sample_t is None else sample_t.detach().cpu().clone())

    def result(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """``(frames (F, B, *D), times (F,), per-sample times (F, B) or None)``, thinned.

        Per-sample times are returned when some frame had them; a frame without them has every
        sample at the frame's time.
        """
        if not self.enabled or not self.frames:
            return None, None, None
        traj = torch.stack(self.frames)
        times = torch.tensor(self.times, dtype=torch.float64)
        per = None
        if any(st is not None for st in self.sample_times):
            b = traj.shape[1]
            per = torch.stack(
                [torch.full((b,), t, dtype=torch.float64) if st is None else st.to(torch.float64)
                 for t, st in zip(self.times, self.sample_times, strict=True)]
            )
        if self.max_frames is not None and traj.shape[0] > self.max_frames:
            keep = torch.linspace(0, traj.shape[0] - 1, self.max_frames).round().long()
            traj, times = traj[keep], times[keep]
            per = per[keep] if per is not None else None
        return traj, times, per
