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
shift per coordinate. `PriorMatchProbe` reads it from the run's first evaluation at ``T`` and
`warn_if_off_prior` warns when its root mean square over coordinates exceeds `PRIOR_SHIFT_LIMIT`
and four times its own sampling error.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from .protocol import HasMarginals, ReverseSDEParts, ScoreFn

__all__ = ["PriorMatchProbe", "warn_if_off_prior", "PRIOR_SHIFT_LIMIT", "MIN_PROBE_SAMPLES"]

PRIOR_SHIFT_LIMIT = 0.05
"""Mean shift (data stds per coordinate) a deterministic run would carry, above which it warns."""

MIN_PROBE_SAMPLES = 16
"""Fewer prior samples than this give no estimate."""


class PriorMatchProbe:
    """Wraps a run's score; from its first call made at ``t = T`` records ``shift`` (the RMS over
    coordinates of the batch mean of ``u``, module docstring) and ``error`` (its sampling error).
    Outputs and call count are unchanged; nothing is recorded for an SDE without marginals."""

    def __init__(self, sde: ReverseSDEParts, score: ScoreFn) -> None:
        self.sde, self.score = sde, score
        self.shift: float | None = None
        self.error: float | None = None
        self._pending = isinstance(sde, HasMarginals)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.score(x, t)
        if self._pending:
            self._pending = False
            self._measure(x, t, out)
        return out

    def _measure(self, x: Tensor, t: Tensor, out: Tensor) -> None:
        T = float(self.sde.T)
        flat_t = t.detach().reshape(-1)
        if (x.shape[0] < MIN_PROBE_SAMPLES or not isinstance(out, Tensor) or out.shape != x.shape
                or flat_t.numel() == 0 or not bool((flat_t == flat_t[0]).all())
                or not math.isclose(float(flat_t[0]), T, rel_tol=1e-5, abs_tol=0.0)):
            return
        with torch.no_grad():
            _, sigma = self.sde.marginal_coeffs(torch.tensor([T], dtype=torch.float64))  # type: ignore[attr-defined]
            xs = x.detach().reshape(x.shape[0], -1).to(torch.float64)
            p2 = float(xs.pow(2).mean())
            if not (p2 > 0 and math.isfinite(p2)):
                return
            u = float(sigma[0]) * (out.detach().reshape(x.shape[0], -1).to(torch.float64) + xs / p2)
            if not bool(torch.isfinite(u).all()):
                return  # the run's own finiteness check reports it
            n = u.shape[0]
            self.shift = float(u.mean(dim=0).pow(2).mean().sqrt())
            self.error = float((u.var(dim=0).mean() / n).sqrt())


def warn_if_off_prior(probe: PriorMatchProbe, stacklevel: int = 3) -> None:
    """Warn when the probe's shift exceeds `PRIOR_SHIFT_LIMIT` and four times its error."""
    if probe.shift is None or probe.error is None:
        return
    if not (probe.shift > PRIOR_SHIFT_LIMIT and probe.shift > 4 * probe.error):
        return
    warnings.warn(
        f"the prior draw x_T is not a sample of p_T: the score at T says p_T is off the prior by "
        f"about {probe.shift:.3g} of its spread per coordinate (sigma(T) x the batch mean of "
        f"score(x_T, T) + x_T/p^2; solvers.prior_match). The probability-flow ODE carries that offset "
        f"to the samples (deterministic solvers: the mean off by about {probe.shift:.2g} of the data's "
        f"std per coordinate); the reverse SDE forgets most of it. Usual cause: data far from the origin "
        f"against sigma(T)/alpha(T); centre the data (subtract its mean), or under VE raise sigma_max "
        f"(scoresde.data.suggest_sigma_max)",
        RuntimeWarning,
        stacklevel=stacklevel,
    )
