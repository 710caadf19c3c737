"""The `"auto"` time grid: a pilot adaptive solve on a subset of the data decides where steps go.

A `dopri5` solve of `pilot_size` random samples (tolerances of `IntegratorOptions`) finds where
the steps are needed (for a mixture: the window of `t` where the modes merge); its accepted
times, resampled to `steps` intervals (`resample_grid`), are the grid of a fixed-step solve of
the whole batch, which then pays for no error estimates, rejected steps or host syncs. With
`steps="auto"` the count is chosen by measuring fixed-grid trial solves of the pilot's samples
against the pilot (`choose_steps`); the largest error indicator among them at the chosen count
(`rk4_simpson_with_path_error`) is kept as `path_error_limit`, against which the batch's solve
checks its samples (`runner`). With the exact divergence the pilot's own samples keep
their (more accurate) adaptive results, unless the runner gave the pilot fixed Hutchinson probes
(`steps="auto"` in more than `2 PILOT_PROBES` dimensions, see `runner`): then every sample is
solved again by the fixed-grid solve.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from solvers.adaptive_ode import solve_adaptive

from .flow import AugmentedFlow
from .integrators import IntegratorSpec, integrate_chunk
from .options import IntegratorOptions, Prior
from .state_scale import ScaledField, StateScale
from .time_grids import choose_steps, resample_grid

__all__ = ["PilotGrid", "run_pilot", "Solved"]

FlowFactory = Callable[..., AugmentedFlow]
StartFn = Callable[[AugmentedFlow, Tensor], tuple[Tensor, Tensor | None]]


@dataclass
class Solved:
    """Samples already integrated: indices into the batch and their pieces of the answer."""

    idx: Tensor
    x_T: Tensor
    delta: Tensor
    prior: Tensor
    correction: Tensor | None


@dataclass
class PilotGrid:
    """The result of the pilot: the fixed grid and what the pilot already solved.

    Attributes:
        grid: `(steps + 1,)` increasing float64 times from `eps` to `T`.
        steps: number of intervals.
        nfe: score evaluations of the pilot and of `steps="auto"`'s trial solves.
        info: `pilot_nfe`, `pilot_t` (accepted times), `pilot_size`, `auto_steps` (history),
            `path_error_limit` (`steps="auto"` with `rk4_simpson`: the largest error indicator
            among the pilot's samples at the chosen steps, see `LikelihoodRun`).
        solved: the pilot's samples with their adaptive results (exact divergence, no grad).
    """

    grid: Tensor
    steps: int
    nfe: int
    info: dict[str, Any] = field(default_factory=dict)
    solved: Solved | None = None


def _with(correction: Tensor | None, delta: Tensor) -> Tensor:
    return delta if correction is None else delta + correction


def run_pilot(
    x: Tensor, *, make_flow: FlowFactory, start: StartFn, spec: IntegratorSpec, opts: IntegratorOptions,
    fresh: bool, keep: bool, lo: float, hi: float, prior_fn: Prior, generator: torch.Generator,
    scale: StateScale | None = None, sample_error_limit: float = math.inf,
) -> PilotGrid:
    """Run the pilot on a seeded random subset of `x: (B, *D)` and build the fixed grid.

    `make_flow(x, logp_scale, keep_graph=False, probes=None)` builds a field;
    `start(flow, x) -> (x_start, correction)` maps data points to the ODE's start points.
    `keep`: the pilot's samples keep their adaptive results (exact divergence, no gradients).
    `sample_error_limit`: when the pilot solves the whole batch (it is then the main solve),
    its samples that took more than this multiple of the tolerance under the batch norm are
    solved again with a per-sample norm, as the main solve does (`runner.SAMPLE_ERROR_LIMIT`).
    `scale`: the state scale of the fixed-grid solves (the trials use the batch's integrator).
    """
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator, device=x.device)[: opts.pilot_size]
    xp = x[idx].detach()
    solves_all = keep and idx.numel() == n  # no fixed-grid solve follows: the pilot is the answer
    with torch.no_grad():
        # A pilot that shapes a grid weighs the log-density 10x under the norm relative to every
        # entry (the grids' fixed-step errors were measured with it: `grid_25` at 16 steps 7.7e-4
        # nats, 1.5e-3 with the main solve's norm, and 5-35% fewer steps chosen under VE); a pilot
        # that answers the whole batch is the main solve (log-density held to `atol`).
        main_w = opts.logp_scale if opts.logp_scale is not None else 1.0
        pilot_w = 1e-6 if fresh else (main_w if solves_all else 10.0)
        pilot = make_flow(xp, pilot_w)
        # steps="auto" measures errors against the pilot: it gets a 10x tighter default; else,
        # and when the pilot finishes the whole batch by itself, the main solve's default.
        tol = 1e-6 if opts.steps == "auto" and not solves_all else \
            opts.tolerances(xp[0].numel(), pilot.divergence == "exact")[0]
        xs, corr = start(pilot, xp)
        # With a state scale the pilot integrates the scaled state too, so that its steps
        # (the grid's profile) are where the scaled RK4 needs them.
        field = pilot if scale is None else ScaledField(pilot, scale)
        y0 = pilot.pack(xs) if scale is None else ScaledField(pilot, scale).pack(xs, lo)
        budget: dict[str, Any] = {} if opts.max_steps is None else {"max_steps": opts.max_steps}
        rtol = tol if opts.rtol is None else opts.rtol
        atol = tol if opts.atol is None else opts.atol
        y_p, out = solve_adaptive(field, y0, lo, hi, method="dopri5", rtol=rtol, atol=atol,
                                  relative=pilot.relative_weights(y0) if solves_all else None,
                                  sample_errors=solves_all, **budget)
    nfe = pilot.nfe
    times = out["t"]
    assert isinstance(times, Tensor)
    info: dict[str, Any] = {"pilot_nfe": pilot.nfe, "pilot_t": times, "pilot_size": int(idx.numel())}
    if solves_all:
        bad = out["sample_error_rms"] > sample_error_limit  # type: ignore[operator]
        assert isinstance(bad, Tensor)
        count = int(bad.sum())
        info["redone_per_sample"], info["redone_nfe"] = count, 0
        if count:
            probes = None if pilot.probes is None else pilot.probes[:, bad]
            redo = make_flow(xp[bad], pilot_w, probes=probes)
            redo_field = redo if scale is None else ScaledField(redo, scale)
            y0b = redo.pack(xs[bad]) if scale is None else ScaledField(redo, scale).pack(xs[bad], lo)
            with torch.no_grad():
                y_b, _ = solve_adaptive(redo_field, y0b, lo, hi, method="dopri5", rtol=rtol, atol=atol,
                                        relative=redo.relative_weights(y0b), per_sample=True, **budget)
            y_p = y_p.clone()
            y_p[bad] = y_b
            info["redone_nfe"] = redo.nfe
            nfe += redo.nfe
    x_Tp, delta_p = pilot.unpack(y_p) if scale is None else ScaledField(pilot, scale).unpack(y_p, hi)
    steps = opts.steps
    limits: dict[int, float] = {}
    if steps == "auto" and solves_all:
        steps = len(times) - 1  # the pilot solves every sample: no fixed-grid solve
    elif steps == "auto":
        reference = prior_fn(x_Tp).to(delta_p.dtype) + delta_p.mean(dim=1)

        def trial(n_steps: int) -> tuple[Tensor, int]:
            flow = make_flow(xs, 1.0, probes=pilot.probes)
            with torch.no_grad():
                x_T, delta, out_info = integrate_chunk(flow, xs, spec, lo, hi, resample_grid(times, n_steps),
                                                       (0.0, 0.0), scale=scale)
            lp = prior_fn(x_T).to(delta.dtype) + delta.mean(dim=1)
            path_error = out_info.get("path_error")
            if path_error is not None:
                limits[n_steps] = float(path_error.max())
            return lp, flow.nfe

        steps, history = choose_steps(trial, reference, opts.target_error, order=spec.order)
        nfe += sum(h["nfe"] for h in history)
        info["auto_steps"] = history
        if steps in limits:
            info["path_error_limit"] = limits[steps]
    assert isinstance(steps, int)
    solved = Solved(idx, x_Tp, delta_p, prior_fn(x_Tp), corr) if keep else None
    return PilotGrid(resample_grid(times, steps), steps, nfe, info, solved)
