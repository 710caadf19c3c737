"""Chunked sampling (``solvers.sample(..., batch_size=b)``): what stays identical to an unchunked solve.

* ``x_T`` is drawn for the whole batch up front, in one call, exactly as without chunking, and
  the results are written into one output tensor allocated once (the buffer of the drawn
  ``x_T`` itself, or of the copy of a user's ``x_T``, which is never modified, chunked or not;
  a score that writes into its input is refused at its first call, `ScoreModifiedInputError`). Memory is that tensor plus the working
  state and score evaluations of one chunk.
* Deterministic fixed-grid solvers (``ode_*`` fixed-step, ``ddim``, ``dpm_solver_*``,
  ``dpmpp_*``, ``unipc``, ``edm_heun`` without churn, any solver on ``lam = 0``) give the same
  samples as without chunking, for any ``batch_size``: every sample is integrated by the same
  operations (bit for bit when the score treats samples independently; a score network may
  reorder floating-point sums with the batch size).
* Stochastic solvers draw their noise chunk after chunk from the one generator that drew
  ``x_T``; the samples are reproducible for a given ``(seed, batch_size)`` and have the same
  law as unchunked ones, but are not the same draws.
* Solvers that couple the batch depend on the chunk: adaptive solvers with a batch-shared
  step (``ode_dopri5``, ``ode_bosh3``, ``ode_rk45``, ``ode_dop853``: same tolerance, steps
  chosen per chunk) and the Langevin corrector's batch-averaged step size (``pc``).

The result's ``nfe`` is the largest per-chunk count (score evaluations per sample);
``stats["score_calls"]`` is the total number of batched calls and ``stats["chunks"]`` the
per-chunk ``nfe``, ``seconds`` and stats; ``stats["end_step"]`` is the end-of-run step (as unchunked).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import AfterStep, Solver
from .dynamics import ReverseDynamics
from .inputs import as_count
from .noise import NoiseSource
from .progress import SamplingProgress
from .result import Solution

__all__ = ["check_batch_size", "sample_in_chunks"]


def check_batch_size(batch_size: int | None) -> int | None:
    """Validate ``batch_size``: ``None`` or a positive integer.

    Raises:
        ValueError: anything else.
    """
    return None if batch_size is None else as_count(batch_size, "batch_size")


def sample_in_chunks(
    solver: Solver,
    dynamics: ReverseDynamics,
    x_T: Tensor,
    ts: Tensor,
    *,
    batch_size: int,
    noise: NoiseSource,
    keep_trajectory: bool = False,
    max_frames: int | None = 101,
    after_step: AfterStep | None = None,
    denoise: bool | str | None = None,
    progress: SamplingProgress | None = None,
) -> Solution:
    """Solve ``x_T: (B, *D)`` in consecutive chunks of ``batch_size`` and join the results.

    Args:
        solver, dynamics, ts, noise, max_frames, after_step, denoise: as for `Solver.solve`
            (the hook gets each chunk's states).
        x_T: the whole initial state, the run's own tensor: the samples are written into its
            buffer (no second ``(B, *D)`` tensor).
        batch_size: samples per chunk (the last chunk may be smaller).
        keep_trajectory: join the chunks' trajectories along the batch (fixed-grid solvers).
        progress: a bar told when each chunk is done (its score wrapper is in ``dynamics``).

    Returns:
        One `Solution` for the whole batch (``nfe`` and ``stats``: see the module docstring).

    Raises:
        ValueError: ``keep_trajectory`` with an adaptive solver (frames differ per chunk).
    """
    if keep_trajectory and solver.adaptive:
        raise ValueError("keep_trajectory with batch_size needs a fixed-grid solver (adaptive steps differ per chunk)")
    out = x_T
    chunks: list[dict[str, Any]] = []
    frames: list[Tensor] = []
    times: list[Tensor] = []
    frame_times: Tensor | None = None
    calls0 = dynamics.nfe
    for start in range(0, x_T.shape[0], batch_size):
        part = solver.solve(
            dynamics, x_T[start : start + batch_size], ts, noise=noise,
            keep_trajectory=keep_trajectory, max_frames=max_frames, after_step=after_step,
            denoise=denoise,
        )
        out[start : start + part.samples.shape[0]].copy_(part.samples)
        if progress is not None:
            progress.finish_chunk()
        chunks.append({"nfe": part.nfe, "seconds": part.seconds, "times": part.times, **part.stats})
        times.append(part.times)
        if part.trajectory is not None:
            frames.append(part.trajectory)
            frame_times = part.trajectory_times
        del part  # the chunk's samples are in `out` now
    return Solution(
        samples=out,
        nfe=max(c["nfe"] for c in chunks),
        times=times[0],
        trajectory=torch.cat(frames, dim=1) if frames else None,
        trajectory_times=frame_times,
        seconds=sum(c["seconds"] for c in chunks),
        stats={"chunks": chunks, "score_calls": dynamics.nfe - calls0, "batch_size": batch_size,
               "end_step": chunks[0].get("end_step", "none"), "end_pair": chunks[0].get("end_pair")},
    )
