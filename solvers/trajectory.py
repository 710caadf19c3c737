"""Recording a solve's states for trajectory plots, within a frame budget."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["TrajectoryRecorder"]


class _Frame(NamedTuple):
    """One held frame of an adaptive run: its index among the offered frames, time and states."""

    number: int
    t: float
    x: Tensor
    sample_t: Tensor | None


class TrajectoryRecorder:
    """Keeps at most ``max_frames`` evenly spaced states of a solve (first and last included).

    The frames kept out of ``F`` offered are those at the indices
    ``round(linspace(0, F - 1, max_frames))`` (all of them when ``F <= max_frames`` or
    ``max_frames`` is ``None``). Memory stays within the budget while recording:

    * Known number of steps (fixed grids, ``n_steps``): the indices to keep are chosen up front,
      one ``(F, B, *D)`` tensor is allocated at the first frame and every kept frame is copied
      into it; `result` returns that tensor (no second copy of the trajectory).
    * Unknown number of steps (adaptive solvers, ``n_steps=None``): frames are thinned as they
      arrive. The recorder holds the frames whose index is a multiple of a stride ``s``
      (initially 1) plus the newest frame; when ``2 max_frames - 1`` strided frames are held,
      every other one is dropped and ``s`` doubles. So at most ``2 max_frames - 1`` states
      are held at any time (the one being added aside). `result` picks, for each index
      ``round(linspace(0, F - 1, max_frames))``, the nearest held frame (ties to the earlier
      one). While ``F <= 2 max_frames - 2`` nothing has been dropped and these are exactly the
      indices above; beyond, every pick is within ``s / 2`` iterations of its index, with
      ``s < (F - 1) / (max_frames - 1)`` (the spacing of the picks), so the picks are distinct,
      still evenly spread over the run's iterations and include the first and the last frame.

    The returned times (and per-sample times) are those of the returned frames.
    """

    def __init__(self, enabled: bool, n_steps: int | None, max_frames: int | None) -> None:
        if enabled and max_frames is not None and max_frames < 2:
            raise ValueError("max_frames must be at least 2")
        self.enabled = enabled
        self.max_frames = max_frames
        self.times: list[float] = []
        self.sample_times: list[Tensor | None] = []
        self._count = 0  # frames offered so far
        self._has_sample_t = False  # some stored frame had per-sample times
        # Fixed grids: which offered index goes to which slot of the preallocated buffer.
        self._fixed = n_steps is not None
        self._slots: dict[int, int] | None = None
        self._n_slots = 0 if n_steps is None else n_steps + 1
        self._buffer: Tensor | None = None
        self._filled = 0
        if enabled and n_steps is not None and max_frames is not None and n_steps + 1 > max_frames:
            keep = sorted(set(torch.linspace(0, n_steps, max_frames).round().long().tolist()))
            self._slots = {index: slot for slot, index in enumerate(keep)}
            self._n_slots = len(keep)
        # Unknown step count: strided frames, the newest frame if it is off the stride.
        self._stride = 1
        self._held: list[_Frame] = []
        self._newest: _Frame | None = None

    @property
    def held_frames(self) -> int:
        """Number of states stored right now (slots filled of a fixed grid's buffer)."""
        if self._fixed:
            return self._filled
        return len(self._held) + (self._newest is not None)

    def add(self, t: float, x: Tensor, sample_t: Tensor | None = None) -> None:
        """Store ``x: (B, *D)`` at time ``t`` (and per-sample times ``sample_t: (B,)``) if kept."""
        index, self._count = self._count, self._count + 1
        if not self.enabled:
            return
        if self._fixed:
            self._add_fixed(index, t, x, sample_t)
        else:
            self._add_thinned(index, t, x, sample_t)

    def _add_fixed(self, index: int, t: float, x: Tensor, sample_t: Tensor | None) -> None:
        if self._slots is not None:
            if index not in self._slots:
                return
            slot = self._slots[index]
        else:
            slot = self._filled
        x = x.detach()
        if self._buffer is None:
            self._buffer = torch.empty((max(self._n_slots, 1), *x.shape), dtype=x.dtype, device=x.device)
        elif x.shape != self._buffer.shape[1:] or x.device != self._buffer.device:
            raise RuntimeError(
                f"trajectory frames differ in shape or device: {tuple(x.shape)} on {x.device} after "
                f"{tuple(self._buffer.shape[1:])} on {self._buffer.device}"
            )
        elif x.dtype != self._buffer.dtype:  # as torch.stack would: promote
            self._buffer = self._buffer.to(torch.promote_types(x.dtype, self._buffer.dtype))
        if slot >= self._buffer.shape[0]:  # more frames than the grid announced: grow
            self._buffer = torch.cat([self._buffer, self._buffer.new_empty((slot + 1 - self._buffer.shape[0], *x.shape))])
        self._buffer[slot].copy_(x)
        self._filled = slot + 1
        self.times.append(t)
        self.sample_times.append(None if sample_t is None else sample_t.detach().clone())
        self._has_sample_t |= sample_t is not None

    def _add_thinned(self, index: int, t: float, x: Tensor, sample_t: Tensor | None) -> None:
        self._has_sample_t |= sample_t is not None
        self._newest = None  # the previous newest frame is off the stride: no longer needed
        frame = _Frame(index, t, x.detach().clone(), None if sample_t is None else sample_t.detach().clone())
        if index % self._stride:
            self._newest = frame
            return
        self._held.append(frame)
        if self.max_frames is not None and len(self._held) >= 2 * self.max_frames - 1:
            # Indices 0, s, ..., (2M - 2) s: keep the multiples of 2 s (M frames, the newest included).
            self._held = self._held[::2]
            self._stride *= 2

    def _per_sample(self, times: list[float], sample_times: list[Tensor | None], b: int) -> Tensor:
        return torch.stack(
            [torch.full((b,), t, dtype=torch.float64) if st is None else st.cpu().to(torch.float64)
             for t, st in zip(times, sample_times, strict=True)]
        )

    def result(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """``(frames (F, B, *D), times (F,), per-sample times (F, B) or None)``, thinned.

        Per-sample times are returned when some stored frame had them; a frame without them has
        every sample at the frame's time.
        """
        if not self.enabled:
            return None, None, None
        if self._fixed:
            if self._buffer is None or self._filled == 0:
                return None, None, None
            traj = self._buffer if self._filled == self._buffer.shape[0] else self._buffer[: self._filled]
            times, sample_times = self.times, self.sample_times
        else:
            frames = self._held + ([self._newest] if self._newest is not None else [])
            if not frames:
                return None, None, None
            frames = [frames[i] for i in self._pick([f.number for f in frames])]
            traj = torch.stack([f.x for f in frames])
            times, sample_times = [f.t for f in frames], [f.sample_t for f in frames]
        per = self._per_sample(times, sample_times, traj.shape[1]) if self._has_sample_t else None
        return traj, torch.tensor(times, dtype=torch.float64), per

    def _pick(self, held: list[int]) -> list[int]:
        """Positions in ``held`` (increasing frame indices, the last one ``F - 1``) of the frames to return."""
        if self.max_frames is None or len(held) <= self.max_frames:
            return list(range(len(held)))
        idx = torch.tensor(held, dtype=torch.float64)
        targets = torch.linspace(0, held[-1], self.max_frames).round().to(torch.float64)
        hi = torch.searchsorted(idx, targets).clamp(max=len(held) - 1)  # first held index >= target
        lo = (hi - 1).clamp(min=0)
        # Nearest held frame, ties to the earlier one.
        pick = torch.where(idx[hi] - targets < targets - idx[lo], hi, lo)
        pick = torch.where(idx[hi] == targets, hi, pick)
        return [int(p) for p in pick.tolist()]
