"""What every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["Solution"]

@dataclass
class Solution:
    """Result of one solve.

    Attributes:
        samples: final state ``(B, *D)`` (at ``eps``, or denoised to ``t = 0`` if requested).
        nfe: score evaluations actually made (counted by the score wrapper).
        times: ``(K,)`` times at which the state was visited, from ``T`` down (accepted
            steps for adaptive solvers).
        trajectory: ``(F, B, *D)`` states at ``trajectory_times`` (thinned), or ``None``.
        trajectory_times: ``(F,)`` times of the stored frames, or ``None``. With per-sample
            steps (``adaptive_sde``'s default) a frame holds each sample at its own time,
            ``stats["trajectory_sample_times"]`` ``(F, B)``, and this is their batch mean.
        seconds: wall time of the solve.
        stats: solver-specific counters (e.g. ``accepted``/``rejected`` steps), and
            ``end_step``: the end-of-run step taken (``"ode"``, ``"tweedie"``: ``samples``
            approximate ``p_0``; ``"none"``: they are at ``times[-1]``) and ``end_pair``: what
            the ``"ode"`` step fitted its Gaussian to (``"history"``; ``"probe"`` after a run
            that drew noise and ended with a step shorter than ``S/2``; ``"mixed"`` when
            per-sample steps put samples on both sides; ``None`` for the other steps;
            `solvers.end`). With ``grid="auto"``: ``pilot_nfe`` (its pilot's evaluations, on
            ``pilot_batch`` samples, not counted in ``nfe``), ``pilot_seconds`` (spent on it in
            this call, not in ``seconds``) and ``pilot_cached``. ``prior_shift``: for a prior draw
            of at least 16 samples, how far ``p_T`` is off the prior, in data stds per coordinate
            (`solvers.prior_match`), ``prior_shift_error``, its sampling error, and
            ``prior_shift_carried``, the part of it this run carries to its samples (all of it
            without fresh noise; less for the reverse SDE, the less the wider the data are
            against ``sigma(T)``); a run warns when that is above 0.05. ``prior_shift_norm`` and
            ``prior_shift_norm_carried``: the same as lengths of the shift vector (data stds
            along its direction, sampling noise removed): in many dimensions an offset along one
            direction reads ``sqrt(D)`` times smaller per coordinate. Not warned on (a trained
            network's own error at ``T`` adds to it; `solvers.prior_match`).
    """

    samples: Tensor
    nfe: int
    times: Tensor
    trajectory: Tensor | None = None
    trajectory_times: Tensor | None = None
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
