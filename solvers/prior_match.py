"""Is the prior draw a sample of ``p_T``? Read off the score at ``T``, at no extra evaluation.

Sampling starts from the SDE's prior ``pi``, which stands in for the forward marginal ``p_T``.
For data of mean ``mu`` the marginal is centred at ``alpha(T) mu``; a centred prior is off by
that much. On a Gaussian mode of std ``s`` the probability-flow ODE maps ``x_T`` to
``mu + (s / sqrt(v_T)) (x_T - alpha(T) mu)`` with ``v_T = alpha(T)^2 s^2 + sigma(T)^2``, so the
offset reaches the samples as a mean shift of ``alpha(T) |mu| / sqrt(v_T)`` data stds. Every
deterministic solver converges to that shifted law (a mode of std 5 at ``(20, 20)``: 0.13 std
under VP, 0.40 under VE). ``alpha(T) |mu| / sigma(T)`` is small for data near the origin (default
VP SDE, ``|mu| = 3``: 0.02).

The reverse family with noise level ``lam`` (drift ``f - (1 + lam^2)/2 g^2 s``) contracts the
offset by ``alpha(T)^(lam^2) (v_0 / v_T)^((1 + lam^2)/2)`` on the way down (``alpha = 1`` under
VE), so in data stds it keeps
``shift r^(lam^2 / 2)`` of it, with ``r = alpha(T)^2 s^2 / v_T`` the data's share of ``p_T``'s
variance: the reverse SDE (``lam = 1``) forgets most of the offset when the data are narrow
against ``sigma(T)`` (``r ~ 1e-4``: 1% is left), but not when they are wide (data of std 11
under VE with ``sigma_max = 50``: ``r = 0.05``, a fifth is left, and mode weights move with it).

The score at ``T`` measures it: ``E_{x ~ pi}[s(x, T)] = (alpha(T) mu - E_pi x) / v_T``, so over
the prior draw the mean of ``u = sigma(T) (s(x_T, T) + x_T / p^2)`` (``p^2`` the draw's second
moment; the second term removes the spread of ``s`` when ``pi`` matches ``p_T``) is
``sigma(T) alpha(T) mu / v_T``, the shift times ``sigma(T) / sqrt(v_T) = sqrt(1 - r)``. The same
evaluations give ``r``: the score's slope against ``x`` over the draw is ``-1/v_T`` per
coordinate, and ``r = 1 - sigma(T)^2 / v_T``. `PriorMatchProbe` reads both from the evaluations
at ``T`` of the prior draw (every chunk's first): ``shift`` is ``RMS_j(mean_j u / sqrt(1 - r_j))``,
`PriorMatchProbe.carried` the part a run at ``lam`` keeps, ``RMS_j(shift_j r_j^(lam^2 / 2))``,
and `solvers.prior_warnings.warn_if_off_prior` warns when that exceeds `PRIOR_SHIFT_LIMIT` and the shift exceeds four
times its own sampling error. For a run that draws noise the warning reads ``r`` less
`SLOPE_TOLERANCE` (at least `SHARE_FLOOR`): a network's slope at ``T`` a few percent off would
otherwise pass for wide data (``r ~ 1e-4`` read as 0.02 makes ``sqrt(r)`` 0.14, not 0.01).
In bfloat16 the score's own rounding puts the slope a few percent off (``r = 0.046`` read as
0.011 on a Gaussian of std 11 under VE with ``sigma_max = 50``), so a stochastic run's
``prior_shift_carried`` and warning are only as good as that there (float32: 0.046).

In many dimensions the RMS per coordinate hides an offset along one direction: it reads
``sqrt(D)`` times smaller than the offset's length, which is what moves mode weights (three modes
at radius 3 in ``D = 128`` under VE at ``suggest_sigma_max``'s ``sigma_max``: a length of 0.24, an
RMS of 0.021, weights 0.562 / 0.320 / 0.118 for 0.6 / 0.3 / 0.1 with `dpmpp_2m`). `PriorMatchProbe.norm`
gives the length, with the probe's sampling noise taken out (it adds ``D`` times a coordinate's
squared error to the squared length). No warning tests it: a trained network's own error at ``T``
adds to the length over every coordinate in the same way (a digits U-Net, ``D = 64``, 1500 steps
under VP, read 0.10-0.11 where the data's mean makes 0.034), so a limit on it would warn on
ordinary image models. The run reports it (``stats["prior_shift_norm"]``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .protocol import HasMarginals, ReverseSDEParts, ScoreFn

__all__ = [
    "PriorMatchProbe", "PRIOR_SHIFT_LIMIT", "PRIOR_SPREAD_LIMIT", "SLOPE_TOLERANCE", "MIN_PROBE_SAMPLES", "PROBE_ROWS",
]

PRIOR_SHIFT_LIMIT = 0.05
"""Mean shift (data stds per coordinate) a run would carry to its samples, above which it warns."""

PRIOR_SPREAD_LIMIT = 0.025
"""Relative error in the samples' spread (per coordinate, RMS) a run would carry from a prior whose
variance is not ``p_T``'s, above which it warns: a 3x3 grid of modes 20 apart under VE with
``sigma_max = 50`` (``p_T``'s variance 1.107 times the prior's, 4.9% of spread) put 0.13 of the
samples in the centre mode instead of 0.111 with every deterministic solver at 1000 NFE."""

SLOPE_TOLERANCE = 0.02
"""Error in the score's slope at ``T`` (relative) that a run drawing noise allows before its
warning counts ``r``: the decision uses ``max(r - SLOPE_TOLERANCE, SHARE_FLOOR)``."""

SHARE_FLOOR = 1e-6
"""Least ``r`` the warning assumes after the tolerance (data of std 1e-3 of ``sigma(T)``): the reverse
SDE then keeps 0.1% of the shift, DDIM at ``eta = 0.3`` still 54%."""

MAX_SHARE = 0.99
"""``r`` is capped here where it divides (``sqrt(1 - r)``)."""

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
        self._moments: Tensor | None = None  # per coordinate: sums of x, x^2, s, s x (for r)
        self._n = 0
        if self._active:
            with torch.no_grad():
                self._p2 = _second_moment(x_start.detach())
                _, sigma = sde.marginal_coeffs(torch.tensor([float(sde.T)], dtype=torch.float64))  # type: ignore[attr-defined]
                self._sigma_T = float(sigma[0])
            self._active = self._p2 > 0 and math.isfinite(self._p2)
            self._prior_var = _isotropic_prior_variance(sde, tuple(x_start.shape[1:])) if self._active else None

    def _shifts(self) -> Tensor:
        """Per-coordinate shift in data stds ``(D,)``: ``mean_j u / sqrt(1 - r_j)``."""
        assert self._sum is not None
        keep = (1.0 - self.data_share().clamp(max=MAX_SHARE)).sqrt()
        return self._sum / self._n / keep

    def _shift_variances(self) -> Tensor:
        """Sampling variance of each entry of `_shifts` ``(D,)``."""
        assert self._sum is not None and self._sum_sq is not None
        mean = self._sum / self._n
        var = (self._sum_sq / self._n - mean.pow(2)).clamp(min=0.0) * self._n / (self._n - 1)
        return var / (1.0 - self.data_share().clamp(max=MAX_SHARE)) / self._n

    def _weights(self, lam: float, slope_tolerance: float) -> Tensor | float:
        """``r_j^(lam^2)`` per coordinate, the share of a squared shift a run at level ``lam`` keeps
        (`carried`); 1 at ``lam = 0``."""
        if lam == 0.0:
            return 1.0
        r = self.data_share()
        if slope_tolerance > 0:  # floored above 0: at lam < 1 a share of 0 would claim all is forgotten
            r = (r - slope_tolerance).clamp(min=SHARE_FLOOR)
        return r.pow(lam * lam)

    def norm(self, lam: float = 0.0, slope_tolerance: float = 0.0) -> float | None:
        """Length of the shift vector a run at level ``lam`` keeps (data stds along its direction;
        ``sqrt(D)`` times `carried`), less its sampling noise: ``sqrt(sum_j w_j (shift_j^2 - e_j^2))``
        with ``e_j`` each entry's sampling error (``shift_j^2`` overestimates ``E[shift_j]^2`` by
        ``e_j^2``, which adds up over many coordinates) and ``w_j = r_j^(lam^2)``; 0 where the noise
        is all there is. ``None`` before an estimate."""
        if self._sum is None or self._moments is None or self._n < MIN_PROBE_SAMPLES:
            return None
        excess = self._shifts().pow(2) - self._shift_variances()
        return math.sqrt(max(float((excess * self._weights(lam, slope_tolerance)).sum()), 0.0))

    @property
    def shift(self) -> float | None:
        if self._sum is None or self._moments is None or self._n < MIN_PROBE_SAMPLES:
            return None
        return float(self._shifts().pow(2).mean().sqrt())

    def carried(self, lam: float, slope_tolerance: float = 0.0) -> float | None:
        """The shift (data stds per coordinate, RMS) a run at reverse-family level ``lam`` keeps:
        ``RMS_j(shift_j r_j^(lam^2 / 2))``, ``r_j`` from `data_share`, less ``slope_tolerance``
        when one is given (then at least `SHARE_FLOOR`); ``shift`` at ``lam = 0``."""
        if self._sum is None or self._moments is None or self._n < MIN_PROBE_SAMPLES:
            return None
        shifts = self._shifts()
        if lam == 0.0:
            return float(shifts.pow(2).mean().sqrt())
        return float((shifts.pow(2) * self._weights(lam, slope_tolerance)).mean().sqrt())  # (shift r^(lam^2/2))^2

    def data_share(self) -> Tensor:
        """``r_j = 1 - sigma(T)^2 / v_j`` per coordinate ``(D,)``, in ``[0, 1]``: the data's share of
        ``p_T``'s variance, from the slope ``-1/v_j`` of the score at ``T`` against ``x`` over the
        draw (exact for a Gaussian ``p_T``, the best linear fit otherwise)."""
        if self._moments is None or self._n < MIN_PROBE_SAMPLES:
            raise ValueError("no estimate yet: fewer than MIN_PROBE_SAMPLES prior samples were read")
        share: Tensor = (1.0 - self._sigma_T**2 * self._inverse_variance()).clamp(0.0, 1.0)
        return share

    def _inverse_variance(self) -> Tensor:
        """``1 / v_j`` per coordinate ``(D,)``: minus the slope of the score at ``T`` against ``x``
        over the draw (least squares; call only with an estimate)."""
        assert self._moments is not None
        m: Tensor = self._moments / self._n
        sx, sxx, ss, ssx = m[0], m[1], m[2], m[3]
        return -(ssx - ss * sx) / (sxx - sx * sx).clamp(min=1e-300)

    def _prior_ratio(self) -> Tensor:
        """``p^2 / v_j`` per coordinate (`spread_carried`), at least 0."""
        p2 = self._prior_var if self._prior_var is not None else self._p2
        return (p2 * self._inverse_variance()).clamp(min=0.0)

    def spread_carried(self, lam: float, slope_tolerance: float = 0.0) -> float | None:
        """The relative error in the samples' spread (RMS over coordinates) that a run at level
        ``lam`` carries from a prior draw of second moment ``p^2`` where ``p_T`` has variance
        ``v_j``: ``|1 - sqrt(p^2 / v_j)|`` (exact for Gaussian data under the probability-flow ODE:
        it maps ``x_T`` to ``mu + (s / sqrt(v)) (x_T - alpha mu)``), times ``r_j^(lam^2)`` for a
        run that draws noise (a variance error contracts as the square of a mean offset).
        ``p^2`` is the prior's variance where ``prior_log_prob`` is an ``N(0, p^2 I)`` density, else
        the draw's second moment (then 0 when the mean ratio is within four of its sampling
        errors of 1: chance). ``slope_tolerance`` moves each ratio ``p^2 / v_j`` that much towards
        1 first (a network's slope at ``T`` a few percent off), and floors ``r`` as in `carried`."""
        if self._moments is None or self._n < MIN_PROBE_SAMPLES:
            return None
        # against the prior's own variance where its density says it is N(0, p^2 I): the draw's
        # second moment adds chance (relative std sqrt(2 / entries)) to a bias this is about
        ratio = self._prior_ratio()
        if slope_tolerance > 0:
            ratio = torch.where(ratio < 1, (ratio + slope_tolerance).clamp(max=1.0),
                                (ratio - slope_tolerance).clamp(min=1.0))
        # the draw's own second moment is noisy (relative std sqrt(2 / entries) for a Gaussian
        # draw): a ratio within 4 of those of 1 is chance, not a prior of the wrong variance
        entries = self.x_start.numel()
        if self._prior_var is None and abs(float(ratio.mean()) - 1.0) <= 4.0 * math.sqrt(2.0 / max(entries, 1)):
            return 0.0
        deficit = (1.0 - ratio.sqrt()).abs()
        if lam != 0.0:
            r = self.data_share()
            if slope_tolerance > 0:
                r = (r - slope_tolerance).clamp(min=SHARE_FLOOR)
            deficit = deficit * r.pow(lam * lam)
        return float(deficit.pow(2).mean().sqrt())

    def prior_ratios(self) -> Tensor:
        """``p^2 / v_j`` per coordinate ``(D,)`` (`spread_carried`; call only with an estimate)."""
        return self._prior_ratio()

    def unpulled(self) -> Tensor:
        """Coordinates ``(D,)`` (bool) where the score's slope against ``x`` over the draw is not
        negative: ``1 / v_j <= 0``. A Gaussian ``p_T`` pulls every coordinate towards its centre;
        a ``p_T`` with separate modes, the draw lying between them, pushes apart. There ``v_j``
        (and every number derived from it) means nothing (call only with an estimate)."""
        unpulled: Tensor = self._inverse_variance() <= 0
        return unpulled

    def prior_variance_ratio(self) -> float | None:
        """Mean over coordinates of ``p^2 / v_j`` (`spread_carried`), or ``None`` before an estimate."""
        if self._moments is None or self._n < MIN_PROBE_SAMPLES:
            return None
        return float(self._prior_ratio().mean())

    @property
    def error(self) -> float | None:
        if self._sum is None or self._sum_sq is None or self._n < MIN_PROBE_SAMPLES:
            return None
        return float(self._shift_variances().mean().sqrt())  # in the units of `shift`

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
        # Not the next rows of the prior draw: a state moved on at T. A solver may hand the score
        # a rounded copy (EDM's step evaluates at alpha (x / alpha)), hence a relative tolerance.
        if rows.shape != x.shape or not torch.allclose(rows[:k], x.detach()[:k].to(rows.dtype), rtol=1e-5, atol=0.0):
            return
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
            xs = x.detach()[:k].reshape(k, -1).to(torch.float64)
            ss = out.detach()[:k].reshape(k, -1).to(torch.float64)
            mom = torch.stack([xs.sum(0), xs.pow(2).sum(0), ss.sum(0), (ss * xs).sum(0)])
            self._moments = mom if self._moments is None else self._moments + mom
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


def _isotropic_prior_variance(sde: object, shape: tuple[int, ...]) -> float | None:
    """``p^2`` when ``sde.prior_log_prob`` is the ``N(0, p^2 I)`` density on points of ``shape``
    (its drop from ``z = 0`` to ``z = 1`` is ``D / (2 p^2)``, and four times that to ``z = 2``), else ``None``."""
    log_prob = getattr(sde, "prior_log_prob", None)
    if not callable(log_prob):
        return None
    z = torch.ones((3, *shape), dtype=torch.float64) * torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64).reshape(
        3, *([1] * len(shape)))
    try:
        with torch.no_grad():
            lp = log_prob(z)
        lp0, lp1, lp2 = (float(v) for v in torch.as_tensor(lp, dtype=torch.float64).reshape(3))
    except Exception:  # a prior density of another form or signature: the draw's moment stands in
        return None
    drop = lp0 - lp1
    if not (drop > 0 and math.isfinite(drop) and math.isclose(lp0 - lp2, 4 * drop, rel_tol=1e-6)):
        return None
    return math.prod(shape) / (2.0 * drop)
