"""`LikelihoodResult`: what `likelihood` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

__all__ = ["LikelihoodResult"]


@dataclass
class LikelihoodResult:
    """Output of `likelihood` (all per-sample tensors follow the input order).

    Attributes:
        log_prob: `(B,)` estimate in nats (mean over probes) of `log p_0(x)` (`density="data"`)
            or `log p_eps(x)` (`density="marginal"`).
        prior_log_prob: `(B,)` `log prior(x_T)`.
        delta_log_prob: `(B,)` `int_eps^T div F dt` (mean over probes).
        x_T: `(B, *D)` end point of the ODE.
        probe_log_probs: `(B, M)` one estimate per probe (Hutchinson), `None` if exact.
        std_err: `(B,)` standard error of `log_prob` over the `M >= 2` probes, else `None`.
        nfe: score evaluations per point, as `solvers.sample` counts them: the points the
            score was evaluated at, summed over every call (the pilot, its trials, every chunk,
            the samples solved again alone), divided by the number of points and rounded up.
            It does not depend on ``batch_size``. Each evaluation also costs the divergence's
            backward passes (``D`` exact, one per probe for Hutchinson), which are not counted.
        score_calls: batched calls of the score, summed over the pilot, the chunks and the
            re-solves (a call on 3 points counts as one, as a call on all of them does).
        seconds: wall time. A run resumed from a store (``scoresde likelihood --batch-size
            --out`` after an interruption) adds the recorded time of the pieces it reused, so
            that it reports the whole computation's time, as its ``nfe`` does.
        eps, T: the integration interval of the ODE.
        stats: per-chunk integrator information (accepted/rejected steps, pilot, ...).
        density: `"data"` or `"marginal"`: which density `log_prob` estimates.
        end_correction: `(B,)` the `[0, eps]` term added for `density="data"` (mean over
            probes; see `data_correction`), `None` for `"marginal"`.
    """

    log_prob: Tensor
    prior_log_prob: Tensor
    delta_log_prob: Tensor
    x_T: Tensor
    probe_log_probs: Tensor | None
    std_err: Tensor | None
    nfe: int
    seconds: float
    eps: float
    T: float
    stats: list[dict[str, Any]] = field(default_factory=list)
    density: str = "marginal"
    end_correction: Tensor | None = None
    score_calls: int = 0
