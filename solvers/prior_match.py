"""Is the prior draw a sample of ``p_T``? Read off the score at ``T``, at no extra evaluation.

Sampling starts from the SDE's prior ``pi``, which stands in for the forward marginal ``p_T``.
For data of mean ``mu`` the marginal is centred at ``alpha(T) mu``; a centred prior is off by
that much. On a Gaussian mode of std ``s`` the probability-flow ODE maps ``x_T`` to
``mu + (s / sqrt(v_T)) (x_T - alpha(T) mu)`` with ``v_T = alpha(T)^2 s^2 + sigma(T)^2``, so the
offset reaches the samples as a mean shift of ``alpha(T) |mu| / sqrt(v_T)`` data stds. Every
deterministic solver converges to that shifted law (a mode of std 5 at ``(20, 20)``: 0.13 std
under VP, 0.40 under VE); the reverse SDE forgets most of it. ``alpha(T) |mu| / sigma(T)`` is
small for data near the origin (default VP SDE, ``|mu| = 3``: 0.02).

The score at ``T`` measures it: ``E_{x ~ pi}[s(x, T)] = (alpha(T) mu - E_pi x) / v_T``, so over
the prior draw the mean of ``u = sigma(T) (s(x_T, T) + x_T / p^2)`` (``p^2`` the draw's second
moment; the second term removes the spread of ``s`` when ``pi`` matches ``p_T``) estimates the
shift per coordinate. `PriorMatchProbe` reads it from the evaluations at ``T`` of the prior
draw (every chunk's first) and `warn_if_off_prior` warns, for a deterministic run, when its root
mean square over coordinates exceeds `PRIOR_SHIFT_LIMIT` and four times its own sampling error.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .protocol import HasMarginals, ReverseSDEParts, ScoreFn

__all__ = ["PriorMatchProbe", "warn_if_off_prior", "PRIOR_SHIFT_LIMIT", "MIN_PROBE_SAMPLES", "PROBE_ROWS"]

PRIOR_SHIFT_LIMIT = 0.05
"""Mean shift (data stds per coordinate) a deterministic run would carry, above which it warns."""

MIN_PROBE_SAMPLES = 16
"""Fewer prior samples than this give no estimate."""

PROBE_ROWS = 256
"""Chunks of the prior draw are read until this many rows are in (or the draw is done); later
calls pass through unchecked (no host read of their times)."""


class PriorMatchProbe:
    """Wraps a run's score; from its first call at ``t = T`` on each chunk of the prior draw
    ``x_start`` (rows taken in order, as `solvers.sample` solves them; until `PROBE_ROWS` rows)
    accumulates ``u`` (module docstring) on its first rows, `PROBE_ROWS` in all. ``shift`` is the RMS over coordinates of its mean over every such call, ``error``
    its sampling error. Outputs and call count are unchanged; other calls at ``T`` (a corrector's
    second evaluation, a rejected adaptive step) are not counted; nothing is recorded for an SDE
    without marginals or fewer than `MIN_PROBE_SAMPLES` prior samples.
    """

    def __init__(self, sde: ReverseSDEParts, score: ScoreFn, x_start: Tensor) -> None:
        self.sde, self.score, self.x_start = sde, score, x_start
        self._active = isinstance(sde, HasMarginals) and x_start.shape[0] >= MIN_PROBE_SAMPLES
        self._offset = 0  # rows of x_start seen so far
        self._sum: Tensor | None = None
        self._sum_sq: Tensor | None = None
        self._n = 0
        if self._active:
            with torch.no_grad():
                self._p2 = _second_moment(x_start.detach())
                _, sigma = sde.marginal_coeffs(torch.tensor([float(sde.T)], dtype=torch.float64))  # type: ignore[attr-defined]
                self._sigma_T = float(sigma[0])
            self._active = self._p2 > 0 and math.isfinite(self._p2)

    @property
    def shift(self) -> float | None:
        if self._sum is None or self._n < MIN_PROBE_SAMPLES:
            return None
        return float((self._sum / self._n).pow(2).mean().sqrt())

    @property
    def error(self) -> float | None:
        if self._sum is None or self._sum_sq is None or self._n < MIN_PROBE_SAMPLES:
            return None
        mean = self._sum / self._n
        var = (self._sum_sq / self._n - mean.pow(2)).clamp(min=0.0) * self._n / (self._n - 1)
        return float((var.mean() / self._n).sqrt())

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.score(x, t)
        if self._active and self._offset < self.x_start.shape[0] and self._n < PROBE_ROWS:
            self._measure(x, t, out)
        return out

    def _measure(self, x: Tensor, t: Tensor, out: Tensor) -> None:
        n = x.shape[0]
        flat_t = t.detach().reshape(-1)
        if (not isinstance(out, Tensor) or out.shape != x.shape or flat_t.numel() == 0
                or not bool((flat_t == flat_t[0]).all())
                or not math.isclose(float(flat_t[0]), float(self.sde.T), rel_tol=1e-5, abs_tol=0.0)):
            return
        rows = self.x_start[self._offset:self._offset + n]
        k = min(n, PROBE_ROWS - self._n)  # only the rows still wanted are compared and read
        if rows.shape != x.shape or not torch.equal(rows[:k], x.detach()[:k]):
            return  # not the next rows of the prior draw (a state moved on at T)
        self._offset += n
        with torch.no_grad():
            u = self._sigma_T * (out.detach()[:k].reshape(k, -1).to(torch.float64)
                                 + x.detach()[:k].reshape(k, -1).to(torch.float64) / self._p2)
            if not bool(torch.isfinite(u).all()):
                self._active = False  # the run's own finiteness check reports it
                return
            self._sum = u.sum(dim=0) if self._sum is None else self._sum + u.sum(dim=0)
            sq = u.pow(2).sum(dim=0)
            self._sum_sq = sq if self._sum_sq is None else self._sum_sq + sq
            self._n += k


SECOND_MOMENT_BLOCK = 1 << 22
"""Entries of the prior draw read per float64 block for its second moment (32 MB): a large draw
is never copied whole."""


def _second_moment(x: Tensor) -> float:
    """``mean(x^2)`` over every entry, accumulated in float64 block by block of rows."""
    flat = x.reshape(x.shape[0], -1)
    rows = max(1, SECOND_MOMENT_BLOCK // max(1, flat.shape[1]))
    total = 0.0
    for start in range(0, flat.shape[0], rows):
        total += float(flat[start:start + rows].to(torch.float64).pow(2).sum())
    return total / max(1, flat.numel())


def warn_if_off_prior(probe: PriorMatchProbe, deterministic: bool, stacklevel: int = 3) -> None:
    """Warn, for a deterministic run, when the probe's shift exceeds `PRIOR_SHIFT_LIMIT` and four
    times its error (a stochastic run forgets most of the offset: no warning, the number stays in
    the stats)."""
    shift, error = probe.shift, probe.error
    if not deterministic or shift is None or error is None:
        return
    if not (shift > PRIOR_SHIFT_LIMIT and shift > 4 * error):
        return
    sde = probe.sde
    alpha, sigma = sde.marginal_coeffs(torch.tensor([float(sde.T)], dtype=torch.float64))  # type: ignore[attr-defined]
    level = float(sigma[0] / alpha[0])
    warnings.warn(
        f"the prior draw x_T is not a sample of p_T: the score at T says p_T is off the prior by "
        f"about {shift:.3g} of its spread per coordinate (sigma(T) x the batch mean of "
        f"score(x_T, T) + x_T/p^2; solvers.prior_match). The probability-flow ODE carries that offset "
        f"to the samples: the mean off by about {shift:.2g} of the data's std per coordinate (the reverse "
        f"SDE, lam=1, forgets most of it). Usual causes: data far from the origin (centre it, and add "
        f"the mean back to the samples), or a conditional or guided score whose class lies off the "
        f"origin. The offset falls as 1/(sigma(T)/alpha(T)): a noise level of about "
        f"{level * shift / PRIOR_SHIFT_LIMIT:.3g} at T instead of {level:.3g} brings it to "
        f"{PRIOR_SHIFT_LIMIT} (under VE: sigma_max)",
        RuntimeWarning,
        stacklevel=stacklevel,
    )
