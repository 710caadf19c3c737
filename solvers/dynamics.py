"""Reverse-time dynamics built from a forward SDE and a score: written once, used by every solver.

The reverse family (Song et al. 2021, eq. 6 and 13; Zhang & Chen 2022 for the family),
integrated from ``T`` down to ``eps``::

    dx = [f(x, t) - (1 + lam^2)/2 * g(t)^2 * s(x, t)] dt + lam * g(t) dW_bar,   lam in [0, 1]

``lam = 1`` is the reverse SDE (`ReverseSDE`), ``lam = 0`` the probability-flow ODE
(`ProbabilityFlowODE`). Every score evaluation goes through `CountedScore`, so the number of
function evaluations (NFE) a solver reports is counted, never self-reported. The dynamics ask
the SDE only for ``T, eps, drift, diffusion``; the Tweedie conversions need
``marginal_coeffs`` too and say so when it is missing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .marginals import (
    forward_transition,
    marginals_of,
    noise_from_score,
    require_marginals,
    x0_from_score,
)
from .protocol import ReverseSDEParts, ScoreFn
from .utils import append_dims, batch_time

__all__ = [
    "CountedScore",
    "NonFiniteScoreError",
    "ReverseDynamics",
    "ScoreModifiedInputError",
    "ReverseSDE",
    "ProbabilityFlowODE",
    "forward_transition",
    "note_calling_convention",
]


class NonFiniteScoreError(FloatingPointError):
    """The score callable returned NaN or inf."""


RECENT = 4
"""How far back (in calls) `CountedScore` looks for an evaluation at another time: enough to
reach past the stages that an explicit Runge-Kutta step (Dormand-Prince: three) evaluates at
its end time."""

SAME_TIME = 1e-5
"""Relative distance below which two evaluation times of a sample count as the same time
(above float32 round-off of ``t``, 1.2e-7; below any grid step)."""


class ScoreModifiedInputError(RuntimeError):
    """The score callable wrote into its input ``x`` or ``t`` (the solver's state)."""


def _check_inputs_unchanged(before: tuple[Tensor, Tensor], x: Tensor, t: Tensor) -> None:
    """Raise `ScoreModifiedInputError` when ``x`` or ``t`` differ from their copies ``before``."""
    for name, old, new in (("x", before[0], x), ("t", before[1], t)):
        new = new.detach()
        same = (old == new) | (old.isnan() & new.isnan()) if old.shape == new.shape else None
        if same is None or not bool(same.all()):  # (NaN entries left as NaN are unchanged)
            changed = int((~same).sum()) if same is not None else new.numel()
            raise ScoreModifiedInputError(
                f"the score changed its input {name} in place ({changed} of {new.numel()} entries): {name} is the "
                f"solver's state, so this changes the samples silently. Work on a copy ({name} = {name}.clone()) "
                f"or use out-of-place operations ({name} * c instead of {name}.mul_(c))")


def note_calling_convention(err: BaseException, x: Tensor, t: Tensor) -> None:
    """Add to ``err`` (raised by a score's first call) how scores are called: ``x (B, *D)``, ``t (B,)``."""
    err.add_note(f"(the score is called as score(x, t) with x of shape {tuple(x.shape)} and t of shape "
                 f"{tuple(t.shape)}, one time per sample, dtype {t.dtype}; a score written for a "
                 "Python-float t can take float(t[0]) when all are equal, or broadcast t[:, None])")


class CountedScore:
    """Wraps a score callable: counts calls (NFE) and checks shape and finiteness of outputs.

    ``calls`` is the number of batched evaluations made. Of the last `RECENT` it keeps (as
    references, no copies; copies once the score returns memory it returned before, as a
    preallocated output buffer does) those `previous_other_time` can still return: when the newest was
    made at one time ``a`` for the whole batch, an older evaluation is never the answer if a
    newer one of the same batch was made at ``a`` too, or lies behind one made at a single
    other time ``b`` (a query at ``a`` gets that one, any other query the newest); so a
    fixed-grid run holds two evaluations, not four. Per sample it also keeps the newest
    evaluation and the newest one at another time than that (`previous_other_time`): the
    end-of-run step fits a local Gaussian to one of them (`solvers.end`), also when samples
    move on their own clocks (per-sample adaptive steps) and some finished long ago. ``check_finite=True`` raises
    `NonFiniteScoreError` when the score returns NaN/inf (on an accelerator this is a host sync
    per call; pass ``check_finite=False`` to skip it).
    """

    def __init__(self, score: ScoreFn, *, check_finite: bool = True) -> None:
        if not callable(score):  # a user's CountedScore is wrapped like any callable: it counts too
            raise TypeError(f"score must be callable (x, t) -> tensor, got {type(score).__name__}")
        self.score: ScoreFn = score
        self.check_finite = check_finite
        self.calls = 0
        # (call index, x, t, score, (min t, max t)), newest last: the ones still answerable.
        self._recent: list[tuple[int, Tensor, Tensor, Tensor, tuple[float, float]]] = []
        self.track_per_sample = False  # set by solvers whose samples move on their own clocks
        self._current: tuple[Tensor, Tensor, Tensor] | None = None
        self._previous: tuple[Tensor, Tensor, Tensor] | None = None
        # Set once the score returns memory it returned before (a preallocated output buffer,
        # CUDA graphs, torch.compile's "reduce-overhead"): from then on outputs are kept as copies.
        self._copy_outputs = False

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        # The score must leave its inputs alone: they are the solver's state, so a score that
        # writes into x (an in-place input scaling) changes the samples silently. The first call
        # compares x and t with copies (one copy per run); every later call compares the sums of
        # x before and after it (read with the call's other numbers below, no extra host sync).
        before = (x.detach().clone(), t.detach().clone()) if self.calls == 1 else None
        read = (self.check_finite or x.device.type == "cpu") and t.numel() > 0
        x_sum = x.detach().sum(dtype=torch.float64) if read and before is None else None
        try:
            out = self.score(x, t)
        except Exception as err:
            if self.calls == 1:  # a score written for another calling convention fails at once
                note_calling_convention(err, x, t)
            if isinstance(err, RuntimeError) and torch.is_inference_mode_enabled() and "grad" in str(err):
                err.add_note("(the score ran under torch.inference_mode(), where autograd stays off even inside "
                             "torch.enable_grad(): a score that differentiates, e.g. guidance by a classifier's "
                             "gradient, must be sampled under torch.no_grad() or no context instead)")
            raise
        if before is not None:
            _check_inputs_unchanged(before, x, t)
        if not isinstance(out, Tensor):
            raise TypeError(f"score returned a {type(out).__name__}, expected a tensor of the shape of x "
                            f"{tuple(x.shape)} (a model's output object or tuple must be unpacked by the score)")
        if out.shape != x.shape:
            raise ValueError(f"score returned shape {tuple(out.shape)}, expected the shape of x {tuple(x.shape)}")
        if out.device != x.device:
            raise ValueError(f"score returned a tensor on device {out.device}, but x is on {x.device}: the score "
                             f"must return its output on the device of its input (move the model there, or "
                             f"pass device= to solvers.sample)")
        if out.dtype != x.dtype:
            if not out.is_floating_point():
                raise ValueError(f"score returned dtype {out.dtype}; it must return floating-point values")
            out = out.to(x.dtype)  # the state's dtype decides the run's precision
        # One host read per call: the output's sum and the call's time range. A finite sum means
        # every entry is finite (a NaN or inf makes it NaN or inf): one reduction instead of an
        # element-wise test, which runs only when the sum is not finite (NaN/inf, or finite
        # values whose sum overflows). The time range lets `_keep` drop evaluations. With
        # check_finite=False on an accelerator nothing is read (and all RECENT calls are kept).
        total, t_lo, t_hi = math.nan, math.nan, math.nan
        flat_t = t.detach().reshape(-1)
        if read:
            f64 = torch.float64
            sums = [] if x_sum is None else [x_sum, x.detach().sum(dtype=f64)]
            total, t_lo, t_hi, *x_sums = torch.stack(
                [out.detach().sum().to(f64), flat_t.min().to(f64), flat_t.max().to(f64), *sums]).tolist()
            if x_sums and x_sums[0] != x_sums[1] and not (math.isnan(x_sums[0]) and math.isnan(x_sums[1])):
                raise ScoreModifiedInputError(
                    f"the score changed its input x in place at evaluation {self.calls} (the sum of x went from "
                    f"{x_sums[0]:.17g} to {x_sums[1]:.17g}): x is the solver's state, so this changes the samples "
                    "silently. Work on a copy (x = x.clone()) or use out-of-place operations (x * c instead of "
                    "x.mul_(c))")
        elif flat_t.numel() == 0:
            total = 0.0
        if self.check_finite and not math.isfinite(total) and not bool(torch.isfinite(out).all()):
            if not bool(torch.isfinite(x).all()):  # the state was already broken: not the score's fault
                raise NonFiniteScoreError(
                    f"the state passed to the score at t in [{t_lo:.4g}, {t_hi:.4g}] (evaluation {self.calls}) "
                    "already held NaN/inf, so the score returned NaN/inf too: an earlier step broke it (the "
                    "SDE's drift or diffusion not finite at a time the solver visited, e.g. a beta(t) < 0 or "
                    "a sigma(t) that stops growing; or a step outside the solver's stability region)"
                )
            raise NonFiniteScoreError(
                f"score returned NaN/inf at t in [{t_lo:.4g}, {t_hi:.4g}] (evaluation {self.calls}); "
                "check the model, the time range and the dtype"
            )
        kept = self._kept_copy(out)
        self._keep(x, t, kept, t_lo, t_hi)
        if self.track_per_sample:
            self._remember(x, t, kept)
        return out

    def _kept_copy(self, out: Tensor) -> Tensor:
        """What to keep of ``out``: itself, or a copy once the score has been seen to write its
        outputs into memory it returned before. Held outputs keep their memory alive, so a new
        output can share storage with one only if the score reuses a buffer; the records that
        buffer held are overwritten by now and are dropped."""
        if not self._copy_outputs:
            ptr = _storage_ptr(out)
            held = [e[3] for e in self._recent] + ([self._current[2]] if self._current is not None else [])
            if ptr is None or not any(_storage_ptr(h) == ptr for h in held):
                return out
            self._copy_outputs = True
            self._recent = [e for e in self._recent if _storage_ptr(e[3]) != ptr]
            if self._current is not None and _storage_ptr(self._current[2]) == ptr:
                self._current, self._previous = None, None  # (`_previous` is always a fresh tensor)
        return out.detach().clone()

    def _keep(self, x: Tensor, t: Tensor, out: Tensor, lo: float, hi: float) -> None:
        """Record this call (its times span ``[lo, hi]``; NaN when not read) and drop the
        evaluations no query can return any more."""
        kept = [e for e in self._recent if e[0] > self.calls - RECENT]
        if lo == hi:  # one time a for the whole batch
            older: list[tuple[int, Tensor, Tensor, Tensor, tuple[float, float]]] = []
            for e in reversed(kept):
                same = _same_batch(e[1], x)
                e_lo, e_hi = e[4]
                if same and e_lo == e_hi == lo:
                    continue  # a newer evaluation at the same time answers for it
                older.append(e)
                if same and e_lo == e_hi and abs(e_lo - lo) > 3 * SAME_TIME * max(abs(lo), 1e-12):
                    break  # a query at a gets this one; nothing behind it is ever returned
            kept = older[::-1]
        kept.append((self.calls, x, t, out, (lo, hi)))
        self._recent = kept

    def _remember(self, x: Tensor, t: Tensor, out: Tensor) -> None:
        """Per sample: the newest evaluation, and the newest one at another time than it."""
        b = x.shape[0]
        tt = t.detach().reshape(-1).to(torch.float64)
        tt = tt.expand(b) if tt.numel() == 1 else tt
        cur = self._current
        if cur is None or cur[0].shape != x.shape or cur[0].dtype != x.dtype or cur[0].device != x.device:
            self._current, self._previous = (x.detach(), tt, out.detach()), None
            return
        cx, ct, co = cur
        moved = (tt - ct).abs() > SAME_TIME * ct.abs().clamp_min(1e-12)
        if self._previous is None:
            px, pt, po = cx, torch.full_like(ct, math.nan), co
        else:
            px, pt, po = self._previous
        m = moved.reshape((b,) + (1,) * (x.ndim - 1))
        self._previous = (torch.where(m, cx, px), torch.where(moved, ct, pt), torch.where(m, co, po))
        self._current = (x.detach(), tt, out.detach())

    def previous_other_time(self, x: Tensor, t: float) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """Per sample, the newest evaluation at a time other than ``t``: ``(x, t, score, valid)``.

        ``x, score: (B, *D)``, ``t: (B,)`` float64, ``valid: (B,)`` bool (``False`` where the sample
        has no evaluation at another time). ``None`` when nothing was recorded for a batch like ``x``.
        Per sample when ``track_per_sample`` was set before the run (``AdaptiveSDE`` sets it: a few
        element-wise operations per call); otherwise the newest of the `RECENT` evaluations whose
        times all differ from ``t`` (solvers that evaluate the whole batch at one time).
        """
        if not self.track_per_sample:
            return self._previous_shared(x, t)
        cur = self._current
        if cur is None or cur[0].shape != x.shape or cur[0].dtype != x.dtype or cur[0].device != x.device:
            return None
        cx, ct, co = cur
        tol = SAME_TIME * max(abs(t), 1e-12)
        cur_ok = (ct - t).abs() > tol
        if self._previous is None:
            return cx, ct, co, cur_ok
        px, pt, po = self._previous
        prev_ok = torch.isfinite(pt) & ((pt - t).abs() > tol)
        m = cur_ok.reshape((x.shape[0],) + (1,) * (x.ndim - 1))
        return (torch.where(m, cx, px), torch.where(cur_ok, ct, pt), torch.where(m, co, po), cur_ok | prev_ok)

    def _previous_shared(self, x: Tensor, t: float) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        """The newest of the last `RECENT` calls for a batch like ``x`` with every time other than
        ``t`` (or ``None``)."""
        for calls, xp, tp, score_p, _ in reversed(self._recent):
            if calls <= self.calls - RECENT or not _same_batch(xp, x):
                continue
            tt = tp.detach().reshape(-1).to(torch.float64)
            if float((tt - t).abs().min()) > SAME_TIME * max(abs(t), 1e-12):
                tt = tt.expand(x.shape[0]) if tt.numel() == 1 else tt
                return xp, tt, score_p, torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return None


def _storage_ptr(a: Tensor) -> int | None:
    """Address of the memory behind ``a`` (``None`` where it has none to compare, e.g. meta)."""
    try:
        return int(a.untyped_storage().data_ptr())
    except (RuntimeError, NotImplementedError):
        return None


def _same_batch(a: Tensor, b: Tensor) -> bool:
    """Two states of one batch: same shape, dtype and device."""
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device


class ReverseDynamics:
    """The reverse-time family ``dx = [f - (1+lam^2)/2 g^2 s] dt + lam g dW_bar``.

    Args:
        sde: any object with ``T``, ``eps``, ``drift`` and ``diffusion`` (`ReverseSDEParts`).
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``; wrapped once in `CountedScore`.
        lam: noise level in ``[0, 1]``; 1 = reverse SDE, 0 = probability-flow ODE.
        check_finite: raise on NaN/inf scores.

    Raises:
        TypeError: ``sde`` lacks one of ``T``, ``eps``, ``drift``, ``diffusion``.
        ValueError: ``lam`` outside ``[0, 1]``.
    """

    def __init__(
        self, sde: ReverseSDEParts, score: ScoreFn, lam: float = 1.0, *, check_finite: bool = True
    ) -> None:
        missing = [name for name in ("T", "eps", "drift", "diffusion") if not hasattr(sde, name)]
        if missing:
            raise TypeError(
                f"{type(sde).__name__} cannot define reverse dynamics: missing {missing} "
                "(an SDE needs T, eps, drift(x, t) and diffusion(t))"
            )
        if not (0.0 <= lam <= 1.0):
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        self.sde = sde
        self.lam = float(lam)
        self.score = CountedScore(score, check_finite=check_finite)

    @property
    def is_ode(self) -> bool:
        """True for the deterministic probability-flow ODE (``lam = 0``)."""
        return self.lam == 0.0

    @property
    def nfe(self) -> int:
        """Score evaluations made so far through this object."""
        return self.score.calls

    def drift_from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """``f(x, t) - (1 + lam^2)/2 g(t)^2 score`` for a score already evaluated at ``(x, t)``."""
        # The state's dtype decides the run's precision: an SDE computing in float64 (its own
        # buffers) must not turn a float32 run into float64 part-way.
        g2 = self.sde.diffusion(t).to(x.dtype) ** 2
        return self.sde.drift(x, t).to(x.dtype) - append_dims(0.5 * (1.0 + self.lam**2) * g2, x.ndim) * score

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Reverse drift at ``(x: (B, *D), t: (B,))``; one score evaluation."""
        return self.drift_from_score(x, t, self.score(x, t))

    def velocity(self, t: float, x: Tensor) -> Tensor:
        """The reverse drift as a vector field ``(t, x) -> F(x, t)`` at one time for the batch.

        The signature ODE integrators take (`solvers.ode.integrate_fixed`,
        `solvers.adaptive_ode.solve_adaptive`, `solvers.scipy_ode.solve_ivp_torch`); on the
        probability-flow ODE it is ``f - g^2 s / 2`` (Song et al. 2021, eq. 13). One NFE.
        """
        return self.drift(x, batch_time(t, x))

    def diffusion(self, t: Tensor) -> Tensor:
        """``lam g(t)``, shape ``(B,)``, in ``t``'s dtype."""
        return self.lam * self.sde.diffusion(t).to(t.dtype)

    def x0_from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Tweedie's denoiser ``E[x_0 | x_t]`` (see `solvers.marginals.x0_from_score`)."""
        return x0_from_score(require_marginals(self.sde, "the Tweedie denoiser"), x, t, score)

    def noise_from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Noise prediction ``eps_hat = -sigma s`` (see `solvers.marginals.noise_from_score`)."""
        return noise_from_score(require_marginals(self.sde, "the noise prediction"), x, t, score)

    def x0_pred(self, x: Tensor, t: Tensor) -> Tensor:
        """Data prediction at ``(x: (B, *D), t: (B,))``; one score evaluation."""
        return self.x0_from_score(x, t, self.score(x, t))

    def noise_pred(self, x: Tensor, t: Tensor) -> Tensor:
        """Noise prediction ``eps_hat`` at ``(x: (B, *D), t: (B,))``; one score evaluation."""
        return self.noise_from_score(x, t, self.score(x, t))

    def x0_at(self, x: Tensor, t: float, coeffs: tuple[float, float] | None = None) -> Tensor:
        """``E[x_0 | x_t]`` for ``x: (B, *D)`` at a time ``t`` shared by the batch; one NFE.

        The score sees ``t`` as a ``(B,)`` tensor; the Tweedie conversion gets a ``(1,)`` time,
        so the schedule is evaluated once instead of once per sample (it broadcasts). For
        solvers that declared ``needs_marginals`` (checked once per solve). ``coeffs``:
        ``(alpha(t), sigma(t))`` when the solver already holds them (a schedule table evaluated
        once per grid); the conversion then costs no schedule evaluation, which at small
        batches was a third of the per-step overhead.
        """
        tt = batch_time(t, x)
        if coeffs is None:
            return x0_from_score(marginals_of(self), x, tt[:1], self.score(x, tt))
        alpha, sigma = coeffs
        return (x + (sigma * sigma) * self.score(x, tt)) / alpha

    def noise_pred_at(self, x: Tensor, t: float) -> Tensor:
        """Noise prediction ``-sigma(t) s(x, t)`` for ``x: (B, *D)`` at a shared ``t``; one NFE."""
        tt = batch_time(t, x)
        return noise_from_score(marginals_of(self), x, tt[:1], self.score(x, tt))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sde={self.sde!r}, lam={self.lam})"


class ReverseSDE(ReverseDynamics):
    """Reverse-time SDE ``dx = [f - g^2 s] dt + g dW_bar`` (Song et al. 2021, eq. 6): ``lam = 1``."""

    def __init__(self, sde: ReverseSDEParts, score: ScoreFn, *, check_finite: bool = True) -> None:
        super().__init__(sde, score, 1.0, check_finite=check_finite)


class ProbabilityFlowODE(ReverseDynamics):
    """Probability-flow ODE ``dx/dt = f - g^2 s / 2`` (Song et al. 2021, eq. 13): ``lam = 0``."""

    def __init__(self, sde: ReverseSDEParts, score: ScoreFn, *, check_finite: bool = True) -> None:
        super().__init__(sde, score, 0.0, check_finite=check_finite)
