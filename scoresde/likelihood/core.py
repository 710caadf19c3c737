"""``log_likelihood``: log-density of data under a score model through the probability-flow ODE.

What is computed (Song et al. 2021, App. D.2; Grathwohl et al. 2019): for ``x`` treated as a
sample at time ``eps``, integrate ``[x, l]`` from ``eps`` up to ``T`` along the augmented ODE
of :class:`~scoresde.likelihood.flow.AugmentedFlow`, then::

    log p_eps(x) = log prior(x_T) + l(T),      l(T) = int_eps^T div F(x_t, t) dt.

How it is integrated (all integrators are the function-level ones of :mod:`solvers`):

* default ``integrator="dopri5"``, ``rtol = atol = 1e-5``: torch-native Dormand–Prince with
  error control on the whole batch (the number comes with a tolerance you can tighten).
* ``integrator="rk4_simpson", grid="auto"`` (the fast path for smooth scores and large
  batches): a ``dopri5`` pilot solve (same tolerances) on a random subset of ``pilot_size``
  samples finds where the steps are needed (for a mixture: the window of ``t`` where the
  modes merge); its accepted times, resampled to ``steps`` intervals (:func:`resample_grid`),
  are the grid of a fixed-step solve of the whole batch, which then pays for no error
  estimates, rejected steps or host syncs. ``rk4_simpson``
  (:func:`~scoresde.likelihood.simpson.integrate_rk4_simpson`) moves ``x`` by classic RK4 and
  integrates the divergence by Simpson's rule at the nodes and Hermite midpoints: RK4's
  accuracy with half its divergences. On 2-D benchmark mixtures 16 steps give 1e-4 to 1.5e-3
  nats per point, 24 steps 3e-5 to 4e-4 (``benchmarks/likelihood.py``; ``docs/likelihood.md``).
  ``steps="auto"`` picks the count by measuring the error of trial solves of the pilot's
  samples against the pilot (:func:`choose_steps`, ``target_error``). For a score network that
  is rough in ``t`` the pilot spreads its steps evenly and a named grid (``"quadratic"``) can
  do better: check by doubling ``steps``. ``"rk4"`` is classic RK4
  on the augmented state (a divergence at every stage).
* ``"bosh3"``; ``"rk45"``/``"dop853"``/``"rk23"`` (SciPy; ``rk45`` at ``1e-5`` is the
  reference code's choice); ``"rk4"``/``"heun"``/``"euler"`` on a named or explicit grid.

Conventions users trip on:

* It is the density at ``eps``, not at ``0``: the ODE cannot start at ``t = 0`` (the score
  blows up there), so the model density is that of the marginal at ``eps``. For an exact
  mixture, ``target.marginal_log_prob(x, eps, sde)`` is the exact answer of this computation;
  ``target.log_prob(x)`` (``t = 0``) differs by ``O(sigma(eps)^2)`` times the curvature of
  ``log p_0`` (mean 3.6e-3 nats per point for ``eight_gaussians``, 7.4e-3 for
  ``high_dim(16)``, VP SDE, ``eps = 1e-3``). Pass a smaller ``eps`` to shrink that bias.
* The prior: the model's density uses ``sde.prior_log_prob`` (``N(0, I)`` for VP) at ``x_T``;
  the forward marginal ``p_T`` is only close to it (for ``high_dim(16)`` the two differ by
  ~1e-2 nats per point at ``T = 1``). Pass ``prior=`` (a callable ``x_T -> (B,)``) to use
  another density at ``T``, e.g. the exact ``p_T`` of a mixture (then the result estimates
  ``log p_eps`` itself); ``LikelihoodResult.prior_log_prob`` reports the term used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from solvers.adaptive_ode import solve_adaptive
from solvers.noise import make_generator
from solvers.ode import integrate_fixed
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.scipy_ode import solve_ivp_torch
from solvers.step_control import PIDController

from .divergence import PROBES, ProbeKind, make_probes
from .flow import AugmentedFlow, DivergenceKind, ProbeRefresh
from .simpson import integrate_rk4_simpson
from .time_grids import FIXED_ORDER, choose_steps, resample_grid, time_grid

__all__ = [
    "INTEGRATORS",
    "ADAPTIVE",
    "SCIPY",
    "FIXED",
    "LikelihoodResult",
    "likelihood",
    "log_likelihood",
]

ADAPTIVE: tuple[str, ...] = ("dopri5", "bosh3")
"""Torch-native embedded Runge–Kutta with error control (:func:`solvers.adaptive_ode.solve_adaptive`)."""
SCIPY: dict[str, str] = {"rk45": "RK45", "dop853": "DOP853", "rk23": "RK23"}
"""SciPy explicit methods (:func:`solvers.scipy_ode.solve_ivp_torch`); ``rk45`` is the
reference code's integrator."""
FIXED: tuple[str, ...] = ("rk4_simpson", "rk4", "heun", "euler")
"""Fixed-grid methods on :func:`time_grid` or the ``"auto"`` grid: ``rk4_simpson``
(:func:`~scoresde.likelihood.simpson.integrate_rk4_simpson`: RK4 path, Simpson log-density,
half the divergences) and :func:`solvers.ode.integrate_fixed`'s ``rk4``, ``heun``, ``euler``
on the augmented state."""
INTEGRATORS: tuple[str, ...] = (*ADAPTIVE, *SCIPY, *FIXED)

Integrator = Literal["dopri5", "bosh3", "rk45", "dop853", "rk23", "rk4_simpson", "rk4", "heun", "euler"]
Prior = Callable[[Tensor], Tensor]


@dataclass
class LikelihoodResult:
    """Output of :func:`likelihood` (all per-sample tensors follow the input order).

    Attributes:
        log_prob: ``(B,)`` estimate of ``log p_eps(x)`` in nats (mean over probes).
        prior_log_prob: ``(B,)`` ``log prior(x_T)``.
        delta_log_prob: ``(B,)`` ``int_eps^T div F dt`` (mean over probes).
        x_T: ``(B, *D)`` end point of the ODE.
        probe_log_probs: ``(B, M)`` one estimate per probe (Hutchinson), ``None`` if exact.
        std_err: ``(B,)`` standard error of ``log_prob`` over the ``M >= 2`` probes, else ``None``.
        nfe: score evaluations (summed over batches; each also costs the divergence's
            backward passes).
        seconds: wall time.
        eps, T: the integration interval.
        stats: per-batch integrator information (accepted/rejected steps, ...).
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


def _check_args(
    x: Tensor, divergence: str, probe: str, n_probes: int, probe_refresh: str, integrator: str,
    grad: bool, eps: float, T: float, batch_size: int | None, pilot_size: int,
) -> None:
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] < 1:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (B, *D) with B >= 1, got {got}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(dim=1).nonzero().flatten()
        rows = ", ".join(str(i) for i in bad[:5].tolist()) + (", ..." if bad.numel() > 5 else "")
        raise ValueError(f"x contains NaN/inf in {bad.numel()} sample(s) (rows {rows})")
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {', '.join(PROBES)}, got {probe!r}")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be a positive integer, got {n_probes!r}")
    if divergence == "exact" and n_probes != 1:
        raise ValueError("n_probes applies to divergence='hutchinson' only")
    if probe_refresh not in ("solve", "eval"):
        raise ValueError(f"probe_refresh must be 'solve' or 'eval', got {probe_refresh!r}")
    if integrator not in INTEGRATORS:
        raise ValueError(f"unknown integrator {integrator!r}; valid: {', '.join(INTEGRATORS)}")
    if grad and integrator in SCIPY:
        raise ValueError(f"grad=True needs a torch integrator; {integrator!r} runs in NumPy")
    if not (0.0 < eps < T):
        raise ValueError(f"need 0 < eps < T, got eps={eps}, T={T}")
    if isinstance(pilot_size, bool) or not isinstance(pilot_size, int) or pilot_size < 1:
        raise ValueError(f"pilot_size must be a positive integer, got {pilot_size!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")


def likelihood(
    sde: DiffusionSDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    divergence: DivergenceKind = "exact",
    probe: ProbeKind = "rademacher",
    n_probes: int = 1,
    probe_refresh: ProbeRefresh = "solve",
    integrator: Integrator = "dopri5",
    steps: int | Literal["auto"] = 32,
    grid: str | Tensor | Sequence[float] = "auto",
    target_error: float = 5e-4,
    rtol: float | None = None,
    atol: float | None = None,
    logp_scale: float | None = None,
    per_sample: bool = False,
    controller: PIDController | None = None,
    pilot_size: int = 256,
    eps: float | None = None,
    T: float | None = None,
    prior: Prior | None = None,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    grad: bool = False,
    check_finite: bool = True,
    progress: bool = False,
) -> LikelihoodResult:
    """Log-likelihood ``log p_eps(x)`` (nats) by the probability-flow ODE, with diagnostics.

    Args:
        sde: forward SDE (any :class:`~solvers.protocol.DiffusionSDE`).
        score_fn: ``score(x: (B, *D), t: (B,)) -> (B, *D)``, e.g. ``target.score_fn(sde)`` or
            ``model.score_fn(sde)``; it is differentiated with respect to ``x``.
        x: data ``(B, *D)`` (treated as a sample at time ``eps``).
        divergence: ``"exact"`` (``prod(D)`` backward passes per evaluation; low ``D``) or
            ``"hutchinson"`` (``n_probes`` backward passes).
        probe, n_probes: Hutchinson probe distribution (``"rademacher"`` or ``"gaussian"``)
            and number of probes per sample.
        probe_refresh: ``"solve"`` (probes fixed for the solve, as FFJORD) or ``"eval"``
            (fresh probes at every evaluation: same expectation, much smaller variance; with
            an adaptive integrator the log-density columns are then removed from step-size
            control). See :class:`~scoresde.likelihood.flow.AugmentedFlow`.
        integrator: ``"dopri5"``/``"bosh3"`` (torch, adaptive), ``"rk45"``/``"dop853"``/``"rk23"``
            (SciPy, adaptive; ``rk45`` at ``1e-5`` is the reference code's choice) or
            ``"rk4_simpson"``/``"rk4"``/``"heun"``/``"euler"`` (fixed grid of ``steps``
            intervals; ``rk4_simpson``: RK4 path, Simpson log-density, half the divergences).
        steps, grid: fixed-step integrators: number of intervals and the grid. ``"auto"``
            (default): the accepted times of a ``dopri5`` pilot solve on ``pilot_size`` random
            samples (tolerances ``rtol``, ``atol``), resampled to ``steps`` intervals
            (:func:`resample_grid`): the steps go where this model and data need them, and
            the rest of the batch pays no step-size control (with the exact divergence the
            pilot's own samples keep their adaptive results). Or a grid name of
            :mod:`solvers.grids` or an explicit increasing grid (:func:`time_grid`).
            ``steps="auto"`` (with ``grid="auto"``): the number of steps is chosen so that the
            fixed-grid solve of the pilot's samples is within ``target_error`` of their
            adaptive pilot solution (see :func:`choose_steps`).
        target_error: ``steps="auto"`` only: mean ``|log p|`` error per point (nats) to reach
            on the pilot's samples; keep it well above the pilot's own error (3e-5 in 16-D at
            the pilot's default ``1e-6`` for ``steps="auto"``).
        rtol, atol: tolerances of the adaptive integrators, or of the ``"auto"`` grid's pilot
            (default ``1e-5``; ``1e-6`` for the pilot of ``steps="auto"``).
        logp_scale: weight of the log-density error in step-size control (the state holds
            ``logp_scale * l``). Default: 1 for the adaptive integrators with a deterministic
            field, 10 for the pilot, ``1e-6`` (out of control) for ``probe_refresh="eval"``.
        per_sample: torch adaptive integrators: per-sample error norm (max over the batch).
        controller: torch adaptive integrators: step-size controller (default: integral).
        pilot_size: samples of the ``"auto"`` grid's pilot (a random subset, seeded).
        eps, T: integration interval (default ``sde.eps``, ``sde.T``).
        prior: log-density at ``T``, ``x_T: (B, *D) -> (B,)`` (default ``sde.prior_log_prob``).
        batch_size: solve in chunks of this many samples (adaptive integrators choose steps
            per chunk; an ``"auto"`` grid is built once and shared).
        dtype, device: of the computation (default: those of ``x``; integers become the
            default float dtype). ``torch.float64`` for reference-quality numbers.
        seed, generator: randomness of the probes and of the pilot subset.
        grad: keep autograd graphs so the result can be differentiated (torch integrators).
        check_finite: raise on NaN/inf scores.
        progress: show a tqdm progress bar (fraction of ``[eps, T]`` done, per batch).

    Returns:
        :class:`LikelihoodResult`; ``nfe`` includes the pilot's evaluations.
    """
    lo = sde.eps if eps is None else float(eps)
    hi = sde.T if T is None else float(T)
    _check_args(
        x, divergence, probe, n_probes, probe_refresh, integrator, grad, lo, hi, batch_size, pilot_size
    )
    if steps == "auto":
        if not (isinstance(grid, str) and grid == "auto") or integrator not in FIXED:
            raise ValueError("steps='auto' needs a fixed-grid integrator and grid='auto' (the pilot "
                             "solve is what the error is measured against)")
        if divergence == "hutchinson" and probe_refresh == "eval":
            raise ValueError("steps='auto' needs a deterministic field: divergence='exact' or "
                             "probe_refresh='solve'")
        if not (0.0 < target_error < float("inf")):
            raise ValueError(f"target_error must be positive and finite, got {target_error}")
    elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer or 'auto', got {steps!r}")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
    device = x.device if device is None else torch.device(device)
    x = x.to(dtype=dtype, device=device)
    if not grad:
        x = x.detach()
    if seed is not None and generator is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is None:
        generator = make_generator(seed, device)
    fresh = divergence == "hutchinson" and probe_refresh == "eval"
    prior_fn: Prior = sde.prior_log_prob if prior is None else prior

    def make_flow(
        xb: Tensor, scale: float, on_eval: Callable[[float], None] | None, keep_graph: bool,
        probes: Tensor | None = None,
    ) -> AugmentedFlow:
        if probes is None and divergence == "hutchinson" and probe_refresh == "solve":
            probes = make_probes(n_probes, xb, probe, generator=generator)
        return AugmentedFlow(
            sde,
            score_fn,
            tuple(xb.shape[1:]),
            divergence=divergence,
            probes=probes,
            probe_kind=probe,
            n_probes=n_probes,
            probe_refresh=probe_refresh,
            generator=generator,
            logp_scale=scale,
            create_graph=keep_graph,
            check_finite=check_finite,
            on_eval=on_eval,
        )

    start = time.perf_counter()
    nfe = 0
    pilot_info: dict[str, Any] = {}
    ts: Tensor | None = None
    n = x.shape[0]
    todo = torch.arange(n, device=device)  # samples still to be integrated
    done: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []  # (indices, x_T, l, log prior)
    if integrator in FIXED:
        if isinstance(grid, str) and grid == "auto":
            # Pilot: an adaptive solve on a random subset; its accepted times give the grid.
            idx = torch.randperm(n, generator=generator, device=device)[:pilot_size]
            xp = x[idx].detach()
            with torch.no_grad():
                pilot = make_flow(xp, 1e-6 if fresh else 10.0, None, False)
                # steps="auto" measures errors against the pilot: it gets a 10x tighter default.
                pilot_tol = 1e-6 if steps == "auto" else 1e-5
                y_p, info = solve_adaptive(
                    pilot, pilot.pack(xp), lo, hi, method="dopri5",
                    rtol=pilot_tol if rtol is None else rtol, atol=pilot_tol if atol is None else atol,
                )
            nfe += pilot.nfe
            pilot_info = {"pilot_nfe": pilot.nfe, "pilot_t": info["t"], "pilot_size": int(idx.numel())}
            keeps_pilot = divergence == "exact" and not grad
            if steps == "auto" and keeps_pilot and idx.numel() == n:
                steps = len(info["t"]) - 1  # the pilot solves every sample: no fixed-grid solve
            elif steps == "auto":
                x_Tp, delta_p = pilot.unpack(y_p)
                reference = prior_fn(x_Tp).to(delta_p.dtype) + delta_p.mean(dim=1)

                def trial(n_steps: int) -> tuple[Tensor, int]:
                    flow = make_flow(xp, 1.0, None, False, probes=pilot.probes)
                    with torch.no_grad():
                        x_T, delta, _ = _integrate(flow, xp, integrator, lo, hi,
                                                   resample_grid(info["t"], n_steps), (0.0, 0.0), False, None)
                    return prior_fn(x_T).to(delta.dtype) + delta.mean(dim=1), flow.nfe

                steps, history = choose_steps(trial, reference, target_error, order=FIXED_ORDER[integrator])
                nfe += sum(h["nfe"] for h in history)
                pilot_info["auto_steps"] = history
            ts = resample_grid(info["t"], steps)  # type: ignore[arg-type]
            if keeps_pilot:
                # The pilot's samples are already integrated (more accurately): keep them.
                x_T, delta = pilot.unpack(y_p)
                done.append((idx, x_T, delta, prior_fn(x_T)))
                keep = torch.ones(n, dtype=torch.bool, device=device)
                keep[idx] = False
                todo = todo[keep]
        else:
            ts = time_grid(sde, steps, grid, eps=lo, T=hi)
    if logp_scale is None:
        logp_scale = 1e-6 if fresh else 1.0
    tol = (1e-5 if rtol is None else rtol, 1e-5 if atol is None else atol)

    size = max(1, todo.numel()) if batch_size is None else int(batch_size)
    chunks = list(todo.split(size)) if todo.numel() > 0 else []
    bar = _Bar(max(1, len(chunks)), lo, hi) if progress else None
    stats: list[dict[str, Any]] = []
    with torch.enable_grad() if grad else torch.no_grad():
        for k, ib in enumerate(chunks):
            xb = x[ib] if todo.numel() < n else x[int(ib[0]) : int(ib[-1]) + 1]
            flow = make_flow(xb, logp_scale, None if bar is None else bar.hook(k), grad)
            x_T, delta, info = _integrate(flow, xb, integrator, lo, hi, ts, tol, per_sample, controller)
            done.append((ib, x_T, delta, prior_fn(x_T)))
            nfe += flow.nfe
            stats.append({"integrator": integrator, "nfe": flow.nfe, **info, **pilot_info})
            if bar is not None:
                bar.finish_chunk(k, flow.nfe)
    if bar is not None:
        bar.close()
    if not stats:  # everything was done by the pilot
        stats.append({"integrator": "dopri5 (pilot)", "nfe": 0, **pilot_info})
    seconds = time.perf_counter() - start

    # Put the pieces back in input order.
    order = torch.cat([d[0] for d in done])
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=order.device)
    x_T = torch.cat([d[1] for d in done])[inv]
    deltas = torch.cat([d[2] for d in done])[inv]
    prior_lp = torch.cat([d[3] for d in done])[inv].to(deltas.dtype)
    per_probe = prior_lp[:, None] + deltas
    m = per_probe.shape[1]
    return LikelihoodResult(
        log_prob=per_probe.mean(dim=1),
        prior_log_prob=prior_lp,
        delta_log_prob=deltas.mean(dim=1),
        x_T=x_T,
        probe_log_probs=per_probe if divergence == "hutchinson" else None,
        std_err=per_probe.std(dim=1) / math.sqrt(m) if m >= 2 else None,
        nfe=nfe,
        seconds=seconds,
        eps=lo,
        T=hi,
        stats=stats,
    )


def _integrate(
    flow: AugmentedFlow, xb: Tensor, integrator: str, lo: float, hi: float, ts: Tensor | None,
    tol: tuple[float, float], per_sample: bool, controller: PIDController | None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """One batch from ``lo`` to ``hi``: ``(x_T, l: (B, M), integrator info)``."""
    if integrator == "rk4_simpson":
        assert ts is not None
        x_T, delta = integrate_rk4_simpson(flow, xb, ts)
        return x_T, delta, {"steps": ts.numel() - 1, "t": ts}
    y0 = flow.pack(xb)
    if integrator in ADAPTIVE:
        y1, out = solve_adaptive(
            flow, y0, lo, hi, method=integrator, rtol=tol[0], atol=tol[1],  # type: ignore[arg-type]
            per_sample=per_sample, controller=controller,
        )
        info = {k: out[k] for k in ("accepted", "rejected", "t")}
    elif integrator in SCIPY:
        y1, out = solve_ivp_torch(flow, y0, lo, hi, method=SCIPY[integrator], rtol=tol[0], atol=tol[1])
        info = {k: out[k] for k in ("accepted", "t")}
    else:
        assert ts is not None
        y1 = integrate_fixed(flow, y0, ts, method=integrator)  # type: ignore[arg-type]
        info = {"steps": ts.numel() - 1, "t": ts}
    x_T, delta = flow.unpack(y1)
    return x_T, delta, info


def log_likelihood(sde: DiffusionSDE, score_fn: ScoreFn, x: Tensor, **options: Any) -> Tensor:
    """``log p_eps(x)`` in nats, ``x: (B, *D) -> (B,)``; options as for :func:`likelihood`.

    Example (exact mixture score: the exact answer is known)::

        sde = sd.VPSDE(); target = sd.targets.eight_gaussians()
        x = target.sample(1000, generator=torch.Generator().manual_seed(0))
        lp = sd.likelihood.log_likelihood(sde, target.score_fn(sde), x)
        err = (lp - target.marginal_log_prob(x, sde.eps, sde)).abs().mean()
    """
    return likelihood(sde, score_fn, x, **options).log_prob


class _Bar:
    """tqdm bar counting the fraction of ``[eps, T]`` integrated, summed over batches."""

    def __init__(self, n_chunks: int, lo: float, hi: float) -> None:
        from tqdm.auto import tqdm

        self.lo, self.span = lo, hi - lo
        self.bar = tqdm(total=n_chunks, desc="log-likelihood", unit="batch",
                        bar_format="{l_bar}{bar}| {n:.2f}/{total} batches [{elapsed}<{remaining}{postfix}]")
        self.done = 0.0
        self.nfe = 0

    def hook(self, chunk: int) -> Callable[[float], None]:
        def on_eval(t: float) -> None:
            frac = min(max((t - self.lo) / self.span, 0.0), 1.0)
            target = chunk + frac
            if target > self.done + 1e-3:
                self.bar.update(target - self.done)
                self.done = target

        return on_eval

    def finish_chunk(self, chunk: int, nfe: int) -> None:
        self.bar.update(chunk + 1 - self.done)
        self.done = chunk + 1
        self.nfe += nfe
        self.bar.set_postfix(nfe=self.nfe)

    def close(self) -> None:
        self.bar.close()
