"""Adaptive reverse-SDE solver with error control ("Gotta Go Fast", Jolicoeur-Martineau et al. 2021).

Algorithm 1 of the paper, on the reverse SDE ``dx = F(x, t) dt + g(t) dW_bar`` with
``F = f - g^2 s`` integrated from ``T`` down to ``eps``. One attempted step of size ``h``
from ``(x, t)`` takes one Brownian increment ``dW`` (``sqrt(h) z``, ``z ~ N(0, I)``) and forms::

    x'  = x - h F(x, t)     + g(t)   dW                    Euler–Maruyama proposal
    x~  = x - h F(x', t-h)  + g(t-h) dW                    (same dW)
    x'' = (x' + x~) / 2                                  stochastic improved Euler (Heun)

The local error is ``E = x' - x''``; with the mixed tolerance
``delta = max(atol, rtol * max(|x'|, |x'_prev|))`` (element-wise; ``x'_prev`` is the
EM proposal of the previous accepted step) its scaled L2 norm per sample is
``E_2 = ||E / delta||_2 / sqrt(n)``, ``n`` the number of elements of one sample. The step is
accepted when ``E_2 <= 1``; then ``x <- x''`` (extrapolation: the higher-order solution is
kept), ``t <- t - h``, ``x'_prev <- x'``. Accepted or not, the next step is
``h <- min(t - eps, theta h E_2^(-r))`` with ``theta = 0.9``, ``r = 0.9`` (paper defaults and
those of the authors' code; the last step lands exactly on ``eps``).

Steps where ``g^2`` changes fast (``g2_change``, not in the paper). Both stages see ``g`` only at
the two ends of the step, so the step integrates ``int g^2 dt`` (the score term) and the noise
variance with a two-node rule, which is accurate only while ``g^2`` changes by a bounded factor
over the step. The error estimate ``E`` does not see this: near ``t = 0`` on the sub-VP SDE
(``g^2 = beta (1 - exp(-2 B))`` vanishes like ``t``) the accepted steps grow to ``h ~ 0.8 t``,
``g^2`` changes 30-fold within one step, ``E`` stays below the tolerance and the last ~3 steps
(t from 0.02 to ``eps``) over-shrink a Gaussian mode of std 0.03-0.05 by 2-3%. Every step is
therefore also capped by the time scale on which ``ln g^2`` changes::

    h <= g2_change / |d ln g(t)^2 / dt|          (g2_change = 0.5 by default)

with the derivative taken at the step's start (backward difference, float64). The cap uses
only ``g``, so it holds for any SDE, and it is scale-free (unchanged by rescaling ``t`` or
``g``). Measured (exact score, 8-mode mixtures of std 0.05 and 0.03, n = 4000, 3 seeds; within-mode
spread 1 = exact): sub-VP 0.981 / 0.976 without the cap, 1.005 / 1.002 with it, for 659 -> 678
NFE; on VP (643 NFE) and VE (1414 NFE) it rarely binds and both stay within 0.01 of 1.
The same argument applies to the noise level of the marginals, ``S(t) = sigma(t)/alpha(t)``,
which near ``t = 0`` falls like ``sqrt(t)`` under VP and VE while ``g`` stays almost constant:
a step of ``h ~ t`` there changes the injected variance relative to the state's by O(1), and the
improved-Euler stage damps that noise (it is evaluated at the noisy proposal). So every step
is also capped at::

    h <= noise_change / |d ln S(t)^2 / dt|       (noise_change = 0.1 by default)

(same backward difference; no cap for SDEs without ``marginal_coeffs``), so that ``S`` changes
by at most about 5% per step near ``t = 0``. On modes of std 0.005 under VE (8 modes, 1/230
of their spacing, exact score) the spread went from 0.82 without the cap to 0.98-1.01 with
it; with the current end step, 0.1 against the earlier 0.25 moved the within-mode spread
error from 0.74% to 0.53% on average over ten target/SDE cells (sharp, 64-D anisotropic and
0.005-std mixtures under VP, sub-VP and VE), for 2-18% fewer evaluations under VP and 8-17%
more under sub-VP and VE (docs/defaults.md). Under VP on the 0.005-std modes the state at
``eps`` then has the spread of exact ``p_eps`` samples (1.000 of it against 0.989 at 0.25; 3
seeds, float64), and the default end step, which fits its Gaussian per sample
(`CountedScore.previous_other_time`), returns a spread of 0.99.

The tolerance's scale (``noise_tolerance``, not in the paper). The mixed tolerance is taken per
element, so a sample with one coordinate near 0 is held to ``atol`` in that coordinate, whatever
the scale of the state. Under VE the state at ``t ~ T`` has the scale ``sigma(t)`` (up to 50),
the local error of every coordinate is of that scale too, and such samples were refused step
after step: half of all iterations on an 8-mode target were spent at ``t > T/2`` (``sigma > 0.7``,
acceptance 0.71, steps of 7e-4). Every coordinate of a sample of ``p_t`` carries Gaussian noise
of std ``sigma(t)`` (``x_t = alpha x_0 + sigma z``), so an error that is a fraction ``rtol`` of
``sigma(t)`` is, relative to the marginal, as small as one of ``rtol |x|`` is to the state. The
default therefore never takes the tolerance below that::

    delta = max(atol, rtol * max(|x'|, |x'_prev|), rtol * max(sigma(t), sigma(t - h)))

(no floor for SDEs without ``marginal_coeffs``). Measured (8 modes of std 0.05, exact score,
n = 2000): under VE 1616 -> 1007 NFE, with the combined metric at the level of exact samples
either way (40-seed median 1.46 without, 1.40-1.44 with; spread, mode weights and MMD unchanged
within seed noise); under VP 598 -> 526 and sub-VP 774 -> 704 NFE. ``noise_tolerance=False``
restores the per-element rule.

``g2_change=None, noise_change=None, noise_tolerance=False`` gives Algorithm 1 verbatim.

Rejected steps. The paper draws a fresh ``z`` after a rejection (``rejection="redraw"``).
Because ``E`` depends on ``z`` (through ``(g(t-h) - g(t)) dW`` and ``F(x') - F(x)``), this
selects the accepted noise: with few elements per sample the law of the samples is biased,
and the bias does not vanish as the tolerance shrinks (the accumulated noise is too small;
measurements in docs/solvers.md). The default ``rejection="bridge"`` keeps what a rejected
attempt revealed of the Brownian path and draws later increments from the Brownian bridge
(Rejection Sampling with Memory, Rackauckas & Nie 2017), so every increment has its exact
law. In high dimension the per-sample norm averages over many elements and the selection
effect shrinks (the paper's image setting); batch-shared steps (one norm over the whole
batch) reject rarely and also make it small.

Per-sample mode (the paper's choice): every sample has its own ``t`` and ``h`` (vectors);
the score is evaluated on the whole batch with a ``(B,)`` time vector and finished samples
are frozen (their ``h`` is 0). Batch mode shares one ``t, h``, with ``E_2`` the scaled
L2 norm over the whole batch (``n`` = all elements), i.e. the RMS of the per-sample norms. NFE counts batched score calls: 2 per iteration, 1 when no sample
moved since the last iteration (all rejected; ``F(x, t)`` is re-used), and 1 per
iteration after the first with ``extrapolate=False`` (then ``F(x', t-h)`` is the next
``F(x, t)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from .base import DynamicsKind, SolveContext, Solver
from .brownian_memory import BrownianMemory
from .dynamics import CountedScore, ReverseDynamics
from .inputs import as_real, check_flag
from .protocol import HasMarginals
from .step_control import MaxStepsExceeded, StepSizeUnderflow, check_max_steps, check_tolerances
from .utils import append_dims

__all__ = ["AdaptiveSDE"]


class AdaptiveSDE(Solver):
    """Adaptive reverse-SDE solver of Jolicoeur-Martineau et al. (2021): EM + stochastic Heun, error control.

    Implements Algorithm 1 of "Gotta Go Fast When Generating Data with Score-Based Models"
    (see the module docstring for the equations). Two batched score evaluations per
    iteration; per-sample or batch-shared step sizes. Adds two step-size caps, where ``g^2``
    changes fast (``g2_change``) and where the marginals' noise level does (``noise_change``),
    and a tolerance never tighter than ``rtol`` times the marginals' noise std (``noise_tolerance``).

    ``Solution.stats``: ``iterations``, ``accepted`` / ``rejected`` (mean per sample),
    ``accepted_per_sample`` / ``rejected_per_sample`` ``(B,)``. ``Solution.times`` holds the
    batch-mean time after each iteration (the exact accepted times in batch mode). So does
    ``Solution.trajectory_times`` for the stored frames: with per-sample steps each frame holds
    every sample at its own time, ``stats["trajectory_sample_times"]`` ``(F, B)`` (the plotting
    helpers warn; ``per_sample=False`` gives frames at one time each).

    Args:
        rtol: relative tolerance (the paper's ``eps_rel``: 0.01 default, 0.05 faster).
        atol: absolute tolerance (the paper's ``eps_abs``: 0.0078 = 1/128 for data in [-1, 1];
            scale it with your data).
        h_init: first step size (paper: 0.01).
        safety: ``theta`` (paper: 0.9).
        exponent: ``r`` in ``h E_2^(-r)`` (paper: 0.9).
        per_sample: per-sample ``t`` and ``h`` (default, as in the paper) or one step size
            for the whole batch (largest error of the batch).
        extrapolate: keep the improved-Euler solution ``x''`` (paper) instead of ``x'``.
        use_prev: include ``|x'_prev|`` in the relative tolerance (paper).
        factor_max: optional cap of ``h_new / h`` (paper: none).
        rejection: ``"bridge"`` (default; rejected Brownian increments are remembered and
            refined with the Brownian bridge, unbiased) or ``"redraw"`` (the paper: a fresh
            ``z``; biased in low dimension, see the module docstring).
        g2_change: cap every step at ``g2_change / |d ln g(t)^2/dt|`` (default 0.5; ``None``: no
            cap, the paper). Keeps the two-node quadrature of ``g^2`` accurate where ``g``
            changes fast (sub-VP near ``t = 0``); see the module docstring.
        noise_change: cap every step at ``noise_change / |d ln S(t)^2/dt|``, ``S = sigma/alpha``
            the marginals' noise level (default 0.1; ``None``: no cap; SDEs without
            ``marginal_coeffs`` are not capped). See the module docstring.
        noise_tolerance: never take the tolerance below ``rtol sigma(t)``, the marginals' noise
            std over the step (default ``True``; ``False``: the paper's per-element mixed
            tolerance). See the module docstring.
        max_steps: maximum number of batched iterations (accepted + rejected).

    Raises:
        ValueError: a tolerance, ``h_init``, ``exponent``, ``safety``, ``factor_max``,
            ``g2_change``, ``noise_change``, ``rejection`` or ``max_steps`` out of range.
    """

    order: float = 1.0
    strong_order: float | None = 1.0
    dynamics_kind: DynamicsKind = "sde"
    stochastic: bool = True
    adaptive: bool = True

    def __init__(
        self,
        *,
        rtol: float = 0.01,
        atol: float = 0.0078,
        h_init: float = 0.01,
        safety: float = 0.9,
        exponent: float = 0.9,
        per_sample: bool = True,
        extrapolate: bool = True,
        use_prev: bool = True,
        factor_max: float | None = None,
        rejection: Literal["bridge", "redraw"] = "bridge",
        g2_change: float | None = 0.5,
        noise_change: float | None = 0.1,
        noise_tolerance: bool = True,
        max_steps: int = 10_000,
    ) -> None:
        self.rtol, self.atol = check_tolerances(rtol, atol)
        h_init, safety, exponent = as_real(h_init, "h_init"), as_real(safety, "safety"), as_real(exponent, "exponent")
        if rejection not in ("bridge", "redraw"):
            raise ValueError(f"rejection must be 'bridge' or 'redraw', got {rejection!r}")
        self.rejection = rejection
        if self.atol == 0:
            raise ValueError("atol must be > 0 for the mixed tolerance max(atol, rtol |x|)")
        for name, v in (("h_init", h_init), ("exponent", exponent)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be positive and finite, got {v}")
        if not (0 < safety <= 1):
            raise ValueError(f"safety must lie in (0, 1], got {safety}")
        if g2_change is not None and not (math.isfinite(g2_change) and g2_change > 0):
            raise ValueError(f"g2_change must be positive and finite (or None), got {g2_change}")
        self.g2_change = g2_change
        if noise_change is not None and not (math.isfinite(noise_change) and noise_change > 0):
            raise ValueError(f"noise_change must be positive and finite (or None), got {noise_change}")
        self.noise_change = noise_change
        self.noise_tolerance = check_flag(noise_tolerance, "noise_tolerance")
        if factor_max is not None and not factor_max > 1:
            raise ValueError(f"factor_max must be > 1, got {factor_max}")
        check_max_steps(max_steps)
        self.h_init, self.safety, self.exponent = h_init, safety, exponent
        self.per_sample = check_flag(per_sample, "per_sample")
        self.extrapolate = check_flag(extrapolate, "extrapolate")
        self.use_prev = check_flag(use_prev, "use_prev")
        self.factor_max = factor_max
        self.max_steps = max_steps

    def integrate(self, dynamics: ReverseDynamics, x: Tensor, ctx: SolveContext) -> Tensor:
        """Integrate the reverse SDE from ``x: (B, *D)`` at ``ctx.t_start`` down to ``ctx.t_end``.

        ``ctx.noise.normal`` supplies one fresh ``N(0, I)`` draw per attempted step (the new part
        of the Brownian increment); the ``after_step`` hook gets the per-sample times ``t: (B,)``.
        """
        if self.per_sample and isinstance(dynamics.score, CountedScore):
            # Samples reach t_end at different iterations: the end step's Gaussian fit needs each
            # sample's own newest evaluation at another time (`CountedScore.previous_other_time`).
            dynamics.score.track_per_sample = True
        run = _Run(self, dynamics, x, ctx)
        while True:
            if run.iterations >= self.max_steps:
                raise MaxStepsExceeded(
                    f"max_steps={self.max_steps} iterations reached before every sample reached "
                    f"t={ctx.t_end:g}; loosen rtol/atol or raise max_steps"
                )
            if run.iterate():
                break
        ctx.visited = torch.tensor(run.mean_times, dtype=torch.float64)
        ctx.stats.update(
            iterations=run.iterations,
            accepted=float(run.acc_count.double().mean()),
            rejected=float(run.rej_count.double().mean()),
            accepted_per_sample=run.acc_count.cpu(),
            rejected_per_sample=run.rej_count.cpu(),
        )
        return run.x


class _Run:
    """State of one `AdaptiveSDE` solve: per-sample times ``t``, steps ``h`` (float64) and counters."""

    def __init__(self, solver: AdaptiveSDE, dynamics: ReverseDynamics, x: Tensor, ctx: SolveContext) -> None:
        self.s, self.dynamics, self.ctx = solver, dynamics, ctx
        self.t_end = ctx.t_end
        b = x.shape[0]
        # Times and step sizes live in float64 (exact landing on eps); cast for the score.
        self.t = torch.full((b,), ctx.t_start, dtype=torch.float64, device=x.device)
        self.h = torch.full_like(self.t, min(solver.h_init, ctx.t_start - ctx.t_end))
        self.acc_count = torch.zeros(b, dtype=torch.long, device=x.device)
        self.rej_count = torch.zeros_like(self.acc_count)
        self.x, self.x_prev = x, x
        self.f1: Tensor | None = None
        self.memory = BrownianMemory(x) if solver.rejection == "bridge" else None
        self.max_depth = 0
        self.iterations = 0
        self.noise_floor = solver.noise_tolerance and isinstance(dynamics.sde, HasMarginals)
        self.mean_times = [ctx.t_start]

    def noise_scale(self, t_next: Tensor) -> Tensor:
        """``max(sigma(t), sigma(t_next))`` per sample ``(B,)`` (float64; the SDE has ``marginal_coeffs``)."""
        sde = self.dynamics.sde
        assert isinstance(sde, HasMarginals)  # noise_floor is set only then
        _, sigma = sde.marginal_coeffs(torch.cat([self.t, t_next]).to(torch.float64))
        n = self.t.shape[0]
        return torch.maximum(sigma[:n], sigma[n:]).to(torch.float64)

    def _log_rate_cap(self, kappa: float | None, log_q: Callable[[Tensor], Tensor]) -> Tensor:
        """Largest step ``(B,)`` over which ``log_q(t)`` changes by at most ``kappa`` (first order).

        ``h <= kappa / |d log_q / dt|``, the derivative by a backward difference in float64
        (relative spacing 1e-6, never below ``t_end``; ``inf`` where ``log_q`` is locally constant
        or not finite, and everywhere when ``kappa`` is ``None``).
        """
        if kappa is None:
            return torch.full_like(self.t, math.inf)
        # Backward difference that never evaluates below t_end (finished samples: dt = 0).
        t_lo = torch.clamp(self.t * (1.0 - 1e-6), min=self.t_end)
        vals = log_q(torch.cat([self.t, t_lo]))
        n = self.t.shape[0]
        rate = (vals[:n] - vals[n:]).abs() / (self.t - t_lo)
        ok = torch.isfinite(rate) & (rate > 0)  # dt = 0, or g = 0 at a node: no cap
        return torch.where(ok, kappa / rate, torch.full_like(rate, math.inf))

    def g2_cap(self) -> Tensor:
        """Largest step ``(B,)`` over which ``ln g^2`` changes by at most ``g2_change``."""
        sde = self.dynamics.sde
        return self._log_rate_cap(self.s.g2_change, lambda t: sde.diffusion(t).double().pow(2).log())

    def noise_cap(self) -> Tensor:
        """Largest step ``(B,)`` over which ``ln S^2`` (``S = sigma/alpha``) changes by at most ``noise_change``.

        No cap (``inf``) when the SDE has no ``marginal_coeffs``.
        """
        sde = self.dynamics.sde
        if not isinstance(sde, HasMarginals):
            return torch.full_like(self.t, math.inf)

        def log_s2(t: Tensor) -> Tensor:
            alpha, sigma = sde.marginal_coeffs(t.to(torch.float64))
            return 2.0 * (sigma.double().log() - alpha.double().log())

        return self._log_rate_cap(self.s.noise_change, log_s2)

    def attempt(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One EM proposal and its improved-Euler partner; returns ``(x_em, x_heun, f2, dw, t_next, err)``."""
        s, x, h, nd, dtype = self.s, self.x, self.h, self.x.ndim, self.x.dtype
        # Where each sample would land: exactly t_end on its last step (a step within a
        # relative 1e-9 of the rest lands too, so rounding never leaves a sliver).
        lands = h >= (self.t - self.t_end) * (1.0 - 1e-9)
        t_next = torch.where(lands, torch.full_like(self.t, self.t_end), self.t - h)
        tx, tnx = self.t.to(dtype), t_next.to(dtype)
        hx = append_dims(h.to(dtype), nd)
        # Brownian increment dW = sqrt(h) z, shared by both stages.
        xi = self.ctx.noise.normal(x)
        dw = self.memory.increment(h, xi) if self.memory is not None else hx.sqrt() * xi
        # Euler–Maruyama proposal x' (one score call unless F(x, t) is cached).
        if self.f1 is None:
            self.f1 = self.dynamics.drift(x, tx)
        k1 = -hx * self.f1 + append_dims(self.dynamics.diffusion(tx), nd) * dw
        x_em = x + k1
        # Improved-Euler stage at (x', t - h) with the same increment.
        f2 = self.dynamics.drift(x_em, tnx)
        k2 = -hx * f2 + append_dims(self.dynamics.diffusion(tnx), nd) * dw
        x_heun = x + 0.5 * (k1 + k2)
        # Scaled L2 error per sample with the mixed tolerance.
        ref = torch.maximum(x_em.abs(), self.x_prev.abs()) if s.use_prev else x_em.abs()
        delta = torch.clamp(ref * s.rtol, min=s.atol)
        if self.noise_floor:
            # Never tighter than rtol times the marginals' noise std over the step (module docstring).
            delta = torch.maximum(delta, append_dims(s.rtol * self.noise_scale(t_next).to(dtype), nd))
        sq = ((0.5 * (k2 - k1)) / delta).reshape(x.shape[0], -1).pow(2).sum(dim=1).to(torch.float64)
        n_elem = x[0].numel()
        # Per sample, or one scaled L2 norm over the whole batch (the batch is one big state).
        err = sq.div(n_elem).sqrt() if s.per_sample else sq.mean().div(n_elem).sqrt().expand(x.shape[0])
        err = torch.where(torch.isfinite(err), err, torch.full_like(err, math.inf))
        return x_em, x_heun, f2, dw, t_next, err

    def iterate(self) -> bool:
        """One batched iteration (accept per sample, next step sizes); True when every sample landed."""
        s, ctx = self.s, self.ctx
        self.iterations += 1
        # The two-node quadrature of g^2 over a step is good only while g^2 changes little.
        self.h = torch.minimum(self.h, self.g2_cap())
        # The noise level may change by a bounded factor per step (resolves modes narrower
        # than the end noise; module docstring).
        self.h = torch.minimum(self.h, self.noise_cap())
        if self.memory is not None:
            # Steps never straddle the end of an already revealed Brownian piece.
            self.memory.reserve(self.max_depth)
            self.h, _, _ = self.memory.clip(self.h)
        x_em, x_heun, f2, dw, t_next, err = self.attempt()
        active = self.t > self.t_end
        accept = (err <= 1.0) & active
        # Accept per sample: extrapolate with x'' (or keep x'), advance t.
        acc_x = append_dims(accept, self.x.ndim)
        self.x = torch.where(acc_x, x_heun if s.extrapolate else x_em, self.x)
        self.x_prev = torch.where(acc_x, x_em, self.x_prev)
        self.t = torch.where(accept, t_next, self.t)
        self.acc_count += accept
        self.rej_count += active & ~accept
        if self.memory is not None:
            self.memory.update(dw, self.h, accept, active)
        # Next step: h <- min(t - eps, theta h E_2^(-r)); finished samples get h = 0.
        factor = s.safety * err.clamp(min=1e-10).pow(-s.exponent)
        if s.factor_max is not None:
            factor = factor.clamp(max=s.factor_max)
        self.h = torch.minimum((self.t - self.t_end).clamp(min=0.0), self.h * factor)
        self.x = ctx.hook(self.x, self.t)
        # The one host sync of the iteration: how many samples remain / moved, min h.
        still = self.t > self.t_end
        depth = self.memory.depth.max() if self.memory is not None else self.t.new_zeros(())
        n_left, n_moved, h_min, mean_t, max_depth = torch.stack(
            [
                still.sum().to(torch.float64),
                accept.sum().to(torch.float64),
                torch.where(still, self.h, torch.full_like(self.h, math.inf)).min(),
                self.t.mean(),
                depth.to(torch.float64),
            ]
        ).tolist()
        self.max_depth = int(max_depth)
        # Re-use F(x, t) next time where possible (no score call is wasted).
        if ctx.after_step is not None:
            self.f1 = None
        elif n_moved == 0:
            pass  # nobody moved: f1 is still F(x, t)
        elif not s.extrapolate and self.f1 is not None:
            self.f1 = torch.where(acc_x, f2, self.f1)  # F(x', t - h) is the new F(x, t)
        else:
            self.f1 = None
        if n_moved:
            frame_t = self.t_end if n_left == 0 else mean_t
            self.mean_times.append(frame_t)
            ctx.record(frame_t, self.x, self.t if ctx.recorder.enabled else None)
        if n_left == 0:
            return True
        if not h_min > 4.0 * math.ulp(max(abs(ctx.t_start), 1.0)):
            raise StepSizeUnderflow(
                f"step size {h_min:.3g} underflowed after {self.iterations} iterations; the problem may "
                "be stiff or the score non-finite (with check_finite=False a NaN/inf score is not named)")
        return False
