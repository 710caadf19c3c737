"""The chunked runner: integrates the data in chunks of `batch_size` and assembles the result.

Memory is that of one chunk (plus the `(B,)` outputs and `x_T`): each chunk is integrated,
its pieces are written into preallocated outputs, and its graph is dropped. The fixed grid
(named, explicit or the pilot's) is built once and shared by every chunk, so with the exact
divergence a fixed-grid result does not depend on the chunking; Hutchinson probes are drawn
chunk by chunk from one generator, so a given seed and `batch_size` reproduce the result.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from solvers.noise import make_generator
from solvers.protocol import DiffusionSDE, ScoreFn

from .divergence import make_probes
from .endpoint import data_correction, data_end_time
from .flow import AugmentedFlow
from .integrators import IntegratorSpec, integrate_chunk, resolve_integrator
from .options import LikelihoodOptions, Prior, check_interval, checked_prior
from .pilot import MIN_AUTO_PILOT, PilotGrid, Solved, run_pilot
from .result import LikelihoodResult
from .run_outputs import ChunkOutputs, ChunkProgress
from .state_scale import StateScale, marginal_state_scale
from .time_grids import time_grid

__all__ = ["ChunkStore", "LikelihoodRun", "OUTSIDE_FACTOR", "PILOT_PROBES", "SAMPLE_ERROR_LIMIT", "STEP_ERROR_LIMIT"]

PILOT_PROBES = 2
"""Fixed Hutchinson probes of the `steps="auto"` pilot where the exact divergence costs more
than twice as many backward passes (`D > 2 M`); measured on a 16-D sharp mixture: the same
step counts (26-31 vs 26-34) at a quarter of the pilot's time (`benchmarks/likelihood.py`)."""

OUTSIDE_FACTOR = 100.0
"""`steps="auto"` with `rk4_simpson`: a sample whose error indicator is above this multiple of
the largest among the pilot's measured samples is solved again adaptively
(`LikelihoodRun._resolve_per_sample`). On 10,000 samples of sharp 2-D mixtures (1,000 in 16-D) no
sample's indicator exceeded 100x that largest one (at most 5 exceeded 10x), while points
whose fixed-grid answer was hundreds to thousands of nats off exceeded it by far more; a
re-solve costs a few hundred evaluations on a small batch (0.3-1 s), which a lower factor
would spend on most batches."""

SAMPLE_ERROR_LIMIT = 2.0
"""The torch adaptive integrators under the batch error norm (the default, `per_sample=False`):
a sample whose scaled local error, RMS over the accepted steps (`solve_adaptive`'s
`sample_errors`), is above this multiple of the tolerance is solved again with a per-sample
norm (`LikelihoodRun._resolve_per_sample`). The batch RMS lets one sample of `B` take up to
`sqrt(B)` times the tolerance on every step; a point far from sharp data, whose path runs along
a narrow ridge of `div F` between two modes, was then 35-2,300 nats off in a batch of 301 (6-9
times the tolerance over its path), and within 0.02 alone or under a per-sample norm. Batches
of at most 4 samples are never re-solved (`sqrt(4) = 2`)."""

STEP_ERROR_LIMIT = 4.0
"""With `SAMPLE_ERROR_LIMIT`: a sample whose scaled error norm on any one accepted step
(`solve_adaptive`'s `info["sample_error_max"]`) is above this multiple of the tolerance is also
solved again with a per-sample norm. The path RMS dilutes a sample's excess over the steps
taken for others: in batches of 300 samples of a sharp two-mode mixture with 3-30 points
spread over `[-3, 3]^2`, three points were 97-161 nats off (0.003-0.012 alone) at a path RMS
of 1.0-1.2, with 12-18 times the tolerance on their worst step (close to `sqrt(B)`: they held
those steps' whole error norm). On 10,000 samples of sharp presets 0.2-0.9% of the samples
are above 4, re-solved at a few hundred evaluations of a small batch. Batches of at most 16
samples are never re-solved by it (`sqrt(16) = 4`)."""


class ChunkStore(Protocol):
    """Where a run keeps its finished pieces so that an interrupted run can resume (`RunOptions.store`).

    Each piece comes with the state of the run's generator after it; restoring it makes the
    resumed run draw the same probes as an uninterrupted one. `load_*` return `None` for a
    piece that is not there (or cannot be read: it is then computed again).
    """

    def load_pilot(self) -> tuple[PilotGrid, Tensor] | None: ...

    def save_pilot(self, pilot: PilotGrid, rng_state: Tensor) -> None: ...

    def load_chunk(self, k: int) -> tuple[Solved, dict[str, Any], Tensor] | None: ...

    def save_chunk(self, k: int, solved: Solved, stats: dict[str, Any], rng_state: Tensor) -> None: ...


class LikelihoodRun:
    """One likelihood computation: settings resolved once, then pilot, chunks and result.

    Args:
        sde, score_fn: the model (`score(x: (B, *D), t: (B,)) -> (B, *D)`).
        x: `(B, *D)` data, already in the computation's dtype and device.
        options: validated `LikelihoodOptions`.
    """

    def __init__(self, sde: DiffusionSDE, score_fn: ScoreFn, x: Tensor, options: LikelihoodOptions) -> None:
        self.sde, self.score_fn, self.x, self.opts = sde, score_fn, x, options
        self.spec: IntegratorSpec = options.integration.spec
        dens = options.density
        self.data = dens.resolved() == "data"
        if self.data and not callable(getattr(sde, "marginal_coeffs", None)):
            raise ValueError(
                f"density='data' needs the SDE's marginal_coeffs(t) -> (alpha, sigma) for the [0, eps] "
                f"term, which {type(sde).__name__} lacks; pass eps= (or density='marginal') for log p_eps")
        default_lo = data_end_time(sde, score_fn) if self.data else sde.eps
        self.lo, self.hi = check_interval(sde, default_lo if dens.eps is None else dens.eps,
                                          sde.T if dens.T is None else dens.T)
        if dens.prior is None and dens.T is not None and not math.isclose(self.hi, float(sde.T), rel_tol=1e-9):
            # sde.prior_log_prob is the density the model starts from at the SDE's own T.
            warnings.warn(
                f"T={self.hi:g} is not the SDE's T={float(sde.T):g}, but the prior term is still "
                f"sde.prior_log_prob, the density at T={float(sde.T):g}: the result is biased by the "
                "mismatch; pass prior= (the log-density of p_T at your T) or leave T unset",
                stacklevel=4)
        run = options.run
        self.generator = run.generator if run.generator is not None else make_generator(run.seed, x.device)
        self.prior_fn: Prior = checked_prior(sde.prior_log_prob if dens.prior is None else dens.prior)
        self.fresh = options.divergence.fresh
        self.scale = self._state_scale()
        self._points = [0]  # points evaluated by every field this run built (`_points_since`)
        self._reused_seconds = 0.0  # recorded time of the pieces a store handed back (`run`)

    def _state_scale(self) -> StateScale | None:
        """`rk4_simpson`'s scaled state (`state_scale`), with `c^2` the whole batch's mean square."""
        io = self.opts.integration
        if self.spec.name != "rk4_simpson" or io.state_scale == "none":
            return None
        if not callable(getattr(self.sde, "marginal_coeffs", None)):
            return None
        c2 = float(self.x.detach().double().pow(2).mean())
        if not c2 > 0.0:
            return None
        scale = marginal_state_scale(self.sde, c2)
        # Where the state's scale changes little over [eps, T] (VP, sub-VP: r from c to ~1) the
        # scaled state gains nothing (measured) and costs a few percent: use the plain one.
        growth = scale(self.hi)[0] / scale(self.lo)[0]
        return scale if not 0.5 <= growth <= 2.0 else None

    # --- building blocks -------------------------------------------------------------------
    def make_flow(self, xb: Tensor, scale: float, on_eval: Callable[[float], None] | None = None,
                  keep_graph: bool = False, probes: Tensor | None = None) -> AugmentedFlow:
        """The augmented field for the chunk `xb` (draws its probes for `probe_refresh="solve"`)."""
        div = self.opts.divergence
        if probes is None and div.divergence == "hutchinson" and div.probe_refresh == "solve":
            probes = make_probes(div.n_probes, xb, div.probe, generator=self.generator)
        return self._augmented(xb, scale, on_eval, keep_graph, probes, divergence=div.divergence,
                               probe_kind=div.probe, n_probes=div.n_probes, probe_refresh=div.probe_refresh)

    def _augmented(self, xb: Tensor, scale: float, on_eval: Callable[[float], None] | None, keep_graph: bool,
                   probes: Tensor | None, **divergence: Any) -> AugmentedFlow:
        """`AugmentedFlow` of this run for the chunk `xb`, with the given divergence settings."""
        flow = AugmentedFlow(
            self.sde, self.score_fn, tuple(xb.shape[1:]), probes=probes, generator=self.generator,
            logp_scale=scale, create_graph=keep_graph, check_finite=self.opts.run.check_finite,
            on_eval=on_eval, **divergence)
        flow.tally = self._points  # a running total: the fields themselves are not kept
        return flow

    def _points_since(self, mark: int) -> int:
        """Score evaluations, counted per point, made by this run's fields since its total was ``mark``."""
        return self._points[0] - mark

    def _probe_pilot_flow(self, xb: Tensor, scale: float, on_eval: Callable[[float], None] | None = None,
                          keep_graph: bool = False, probes: Tensor | None = None) -> AugmentedFlow:
        """The pilot's field for `steps="auto"` with the exact divergence in `D > 2 M` dimensions.

        The pilot only decides the grid and the step count, i.e. the discretisation error, and
        `M = PILOT_PROBES` fixed Rademacher probes shared by the reference and the trials
        measure it as the exact divergence does (Grathwohl et al. 2019's fixed-probe field is
        as smooth in `t`), at `M` backward passes per evaluation instead of `D`. The pilot's
        samples are then solved again with the exact divergence by the main solve.
        """
        if probes is None:
            probes = make_probes(PILOT_PROBES, xb, "rademacher", generator=self.generator)
        return self._augmented(xb, scale, on_eval, keep_graph, probes, divergence="hutchinson")

    def start(self, flow: AugmentedFlow, xb: Tensor) -> tuple[Tensor, Tensor | None]:
        """The ODE's start points for the data `xb` and the `[0, eps]` term (`None`: marginal).

        Only a flow with the divergence asked for warns about its end piece: the probe pilot
        (`_probe_pilot_flow`) takes Hutchinson's where the exact one was asked for, and its
        results are solved again."""
        if not self.data:
            return xb, None
        own = flow.divergence == self.opts.divergence.divergence
        return data_correction(flow, self.sde, xb, self.lo, warn=own)

    def grid(self) -> PilotGrid | Tensor | None:
        """The fixed grid: a pilot's (`grid="auto"`), a named/explicit one, or `None` (adaptive)."""
        io = self.opts.integration
        if self.spec.kind != "fixed":
            return None
        if io.auto_grid:
            exact = self.opts.divergence.divergence == "exact"
            probe_pilot = exact and io.steps == "auto" and self.x[0].numel() > 2 * PILOT_PROBES
            # The pilot's samples keep their adaptive results, except when a chosen step count
            # would then decide nothing (the pilot covers the whole batch): `steps=n` must mean
            # n fixed steps, e.g. for a convergence check by doubling `steps` on a small batch.
            covers_all = self.x.shape[0] <= io.pilot_size
            if io.steps == "auto" and not covers_all and io.pilot_size < MIN_AUTO_PILOT:
                warnings.warn(
                    f"steps='auto' chooses the step count by the mean error on the pilot's samples, and "
                    f"pilot_size={io.pilot_size} is too few to measure it (below {MIN_AUTO_PILOT}; with 8-64 the "
                    "answer missed target_error by up to 8x on sharp mixtures): leave pilot_size at its "
                    "default 256", RuntimeWarning, stacklevel=4)
            keep = exact and not self.opts.run.grad and not probe_pilot and not (io.steps != "auto" and covers_all)
            start, mark = time.perf_counter(), self._points[0]
            pilot = run_pilot(self.x, make_flow=self._probe_pilot_flow if probe_pilot else self.make_flow,
                              start=self.start, spec=self.spec, opts=io, fresh=self.fresh, keep=keep,
                              lo=self.lo, hi=self.hi, prior_fn=self.prior_fn, generator=self.generator,
                              scale=self.scale, sample_error_limit=SAMPLE_ERROR_LIMIT,
                              step_error_limit=STEP_ERROR_LIMIT)
            pilot.info["pilot_seconds"] = time.perf_counter() - start
            pilot.info["pilot_points"] = self._points_since(mark)
            pilot.info["pilot_divergence"] = f"hutchinson ({PILOT_PROBES} fixed probes)" if probe_pilot else \
                self.opts.divergence.divergence
            return pilot
        assert isinstance(io.steps, int)
        return time_grid(self.sde, io.steps, io.grid, eps=self.lo, T=self.hi)

    # --- the computation -------------------------------------------------------------------
    def run(self) -> LikelihoodResult:
        """Pilot (if any), then every chunk; returns the assembled `LikelihoodResult`."""
        start_time = time.perf_counter()
        n, device = self.x.shape[0], self.x.device
        store: ChunkStore | None = self.opts.run.store
        stored = store.load_pilot() if store is not None and self.spec.kind == "fixed" else None
        self._reused_seconds = 0.0
        if stored is not None:
            grid: PilotGrid | Tensor | None = stored[0]
            self.generator.set_state(stored[1])
            if isinstance(grid, PilotGrid):
                self._reused_seconds += float(grid.info.get("pilot_seconds", 0.0))
        else:
            grid = self.grid()
            if store is not None and isinstance(grid, PilotGrid):
                store.save_pilot(grid, self.generator.get_state())
        pilot = grid if isinstance(grid, PilotGrid) else None
        ts = pilot.grid if pilot is not None else grid
        assert ts is None or isinstance(ts, Tensor)
        spec = self.spec
        if pilot is not None and pilot.info.get("auto_fallback"):
            # No step count met target_error on the pilot (it warned): the default's adaptive solve.
            ts, spec = None, resolve_integrator("dopri5")
        out = ChunkOutputs(n, self.opts.divergence.n_probes if self.opts.divergence.divergence == "hutchinson" else 1)
        todo = torch.arange(n, device=device)
        nfe = points = 0
        extra: dict[str, Any] = {}
        if pilot is not None:
            nfe += pilot.nfe
            points += int(pilot.info.get("pilot_points", pilot.nfe * min(n, int(pilot.info.get("pilot_size", n)))))
            extra = pilot.info
            if pilot.solved is not None:
                out.put(pilot.solved)
                keep = torch.ones(n, dtype=torch.bool, device=device)
                keep[pilot.solved.idx] = False
                todo = todo[keep]
        stats = self._chunks(todo, ts, spec, out, extra)
        nfe += sum(s["nfe"] for s in stats)
        points += sum(int(s["points"]) for s in stats)
        if not stats:  # everything was done by the pilot
            stats.append({"integrator": "dopri5 (pilot)", "nfe": 0, "points": 0, **extra})
        seconds = time.perf_counter() - start_time + self._reused_seconds
        return out.result(self, -(-points // max(n, 1)), nfe, seconds, stats)

    def _chunks(self, todo: Tensor, ts: Tensor | None, spec: IntegratorSpec, out: ChunkOutputs,
                extra: dict[str, Any]) -> list[dict[str, Any]]:
        run, io = self.opts.run, self.opts.integration
        n = self.x.shape[0]
        size = max(1, todo.numel()) if run.batch_size is None else int(run.batch_size)
        chunks = list(todo.split(size)) if todo.numel() > 0 else []
        bar = ChunkProgress(max(1, len(chunks)), self.lo, self.hi) if run.progress else None
        scale = io.logp_scale if io.logp_scale is not None else (1e-6 if self.fresh else 1.0)
        stats: list[dict[str, Any]] = []
        store: ChunkStore | None = run.store
        with torch.enable_grad() if run.grad else torch.no_grad():
            for k, ib in enumerate(chunks):
                done = store.load_chunk(k) if store is not None else None
                if done is not None and torch.equal(done[0].idx.cpu(), ib.cpu()):
                    out.put(done[0])
                    stats.append({"points": int(done[1].get("nfe", 0)) * ib.numel(), **done[1]})
                    self.generator.set_state(done[2])
                    self._reused_seconds += float(done[1].get("seconds", 0.0))
                    if bar is not None:
                        bar.finish_chunk(k, int(done[1].get("nfe", 0)))
                    continue
                xb = self.x[ib] if todo.numel() < n else self.x[int(ib[0]) : int(ib[-1]) + 1]
                mark, chunk_start = self._points[0], time.perf_counter()
                flow = self.make_flow(xb, scale, None if bar is None else bar.hook(k), run.grad)
                xs, corr = self.start(flow, xb)
                tol = io.tolerances()
                x_T, delta, info = integrate_chunk(flow, xs, spec, self.lo, self.hi, ts, tol,
                                                   io.per_sample, io.controller, self.scale, io.max_steps)
                path_error = info.pop("path_error", None)
                sample_error = info.pop("sample_error_rms", None)
                sample_peak = info.pop("sample_error_max", None)
                limit = extra.get("path_error_limit")
                chunk_nfe = flow.nfe
                if path_error is not None and limit is not None:
                    bad = path_error > OUTSIDE_FACTOR * float(limit)
                    x_T, delta, redone, redo_nfe = self._resolve_per_sample(
                        xb, xs, flow, x_T, delta, bad, scale, tol, resolve_integrator("dopri5"))
                    info["redone_adaptive"], info["redone_nfe"] = redone, redo_nfe
                    chunk_nfe += redo_nfe
                elif sample_error is not None and sample_peak is not None and not io.per_sample:
                    bad = (sample_error > SAMPLE_ERROR_LIMIT) | (sample_peak > STEP_ERROR_LIMIT)
                    x_T, delta, redone, redo_nfe = self._resolve_per_sample(
                        xb, xs, flow, x_T, delta, bad, scale, tol, spec)
                    info["redone_per_sample"], info["redone_nfe"] = redone, redo_nfe
                    chunk_nfe += redo_nfe
                solved = Solved(ib, x_T, delta, self.prior_fn(x_T), corr)
                out.put(solved)
                stats.append({"integrator": spec.name, "nfe": chunk_nfe, "points": self._points_since(mark),
                              "seconds": time.perf_counter() - chunk_start, **info, **extra})
                if store is not None:
                    store.save_chunk(k, solved, stats[-1], self.generator.get_state())
                if bar is not None:
                    bar.finish_chunk(k, flow.nfe)
        if bar is not None:
            bar.close()
        return stats

    def _resolve_per_sample(self, xb: Tensor, xs: Tensor, flow: AugmentedFlow, x_T: Tensor, delta: Tensor,
                            bad: Tensor, scale: float, tol: tuple[float, float],
                            spec: IntegratorSpec) -> tuple[Tensor, Tensor, int, int]:
        """Solve the samples `bad: (B,)` of the chunk again by the adaptive `spec`, per-sample norm.

        Two callers. `steps="auto"` measured the fixed grid's error on the pilot's samples;
        `bad` marks those whose error indicator (`rk4_simpson_with_path_error`) is above
        `OUTSIDE_FACTOR` times the largest of theirs, far outside what was measured: typically
        a point far from sharp data whose path runs along the boundary between two modes, where
        the flow is stiff and a fixed grid can be off by hundreds of nats; they get `dopri5`.
        The adaptive integrators mark the samples that took more than `SAMPLE_ERROR_LIMIT`
        times the tolerance under the batch norm. Same start points, same probes, the chunk's
        tolerances. Returns `(x_T, delta, count, nfe)`.
        """
        count = int(bad.sum())
        if count == 0:
            return x_T, delta, 0, 0
        io = self.opts.integration
        probes = None if flow.probes is None else flow.probes[:, bad]
        redo = self.make_flow(xb[bad], scale, None, self.opts.run.grad, probes=probes)
        x_b, delta_b, _ = integrate_chunk(redo, xs[bad], spec, self.lo, self.hi, None, tol,
                                          True, io.controller, None, io.max_steps)
        x_T, delta = x_T.clone(), delta.clone()
        x_T[bad] = x_b.to(x_T.dtype)
        delta[bad] = delta_b.to(delta.dtype)
        return x_T, delta, count, redo.nfe
