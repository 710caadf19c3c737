"""The `"auto"` time grid: a pilot adaptive solve on a subset of the data decides where steps go.

A `dopri5` solve of `pilot_size` random samples (tolerances of `IntegratorOptions`) finds where
the steps are needed (for a mixture: the window of `t` where the modes merge); its accepted
times, resampled to `steps` intervals (`resample_grid`), are the grid of a fixed-step solve of
the whole batch, which then pays for no error estimates, rejected steps or host syncs. With
`steps="auto"` the count is chosen by measuring fixed-grid trial solves of the pilot's samples
against the pilot (`choose_steps`), which for that holds the answer's own error as well as the
state's (`reference_goal`); the largest error indicator among them at the chosen count
(`rk4_simpson_with_path_error`) is kept as `path_error_limit`, against which the batch's solve
checks its samples (`runner`). With the exact divergence the pilot's own samples keep
their (more accurate) adaptive results, unless the runner gave the pilot fixed Hutchinson probes
(`steps="auto"` in more than `2 PILOT_PROBES` dimensions, see `runner`): then every sample is
solved again by the fixed-grid solve. A pilot sample that sized the pilot's steps by itself (a
point far outside sharp data, on a stiff path; `dominating_samples`) is set aside: the pilot
runs again without it, so the grid and the step count are the rest's, and the sample is solved
alone (per-sample norm, the main solve's tolerances) or left to the main solve, which checks it.
A step count whose measured error is far above the target, or above it at the most steps
tried, is not used (`grid_fails`): the rest of the batch is then solved by the adaptive
`dopri5`, and pilot answers looser than the default's limits are solved again alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from solvers.adaptive_ode import Sensitivity, solve_adaptive

from .flow import AugmentedFlow
from .integrators import IntegratorSpec, integrate_chunk
from .options import IntegratorOptions, Prior
from .state_scale import ScaledField, StateScale
from .time_grids import choose_steps, resample_grid

__all__ = ["FALLBACK_FACTOR", "MAX_AUTO_STEPS", "MIN_AUTO_PILOT", "REFERENCE_SHARE", "PilotGrid", "grid_fails", "reference_goal",
           "run_pilot", "Solved"]

FALLBACK_FACTOR = 10.0
"""`steps="auto"` where no step count met `target_error` on the pilot (`choose_steps` warns): if
the last count's measured error is above this multiple of the target, or the count reached
`MAX_AUTO_STEPS`, the fixed grid is not used: the samples the pilot has not solved are solved
by the adaptive `dopri5`, as by default (`info["auto_fallback"]`, `grid_fails`). A stalled
count closer to the target is used (with the warning). Measured: on ordinary data the error
stalled only at tight targets, where the fixed-probe pilot's own error was what was measured
(16-D and 32-D mixtures at `target_error=2e-5`: 1.4-3.9 times the target; since the pilot holds
the answer to a tenth of the target, `REFERENCE_SHARE`, `high_dim_16` and `high_dim_32` meet
2e-5 under VP and VE at 62-74 steps without a warning, where they stalled at 82-135), and in 81
pilots (nine presets; VP, sub-VP, VE; targets 5e-4, 1e-4, 2e-5) none went past 109 steps. With 30
points spread around a sharp two-mode mixture among 330 (about 23 in the pilot), the trials
stalled or ran out of steps at 45,000-76,000 times the target, and points came back 78 and
1,570 nats off; with 5-6 such points among 35-46, 512 steps missed by 1.2-4.8 times while a
point was 0.02-0.1 nats off (now 0.001-0.003)."""

MIN_AUTO_PILOT = 128
"""`steps="auto"` warns when the pilot has fewer samples than this (a `pilot_size` below it, on a
batch larger than the pilot): the count is chosen by the mean error on the pilot's samples,
which few samples estimate poorly. Measured on 600 points of `sharp_8` and `sharp_25` (VP,
exact prior, three draws each, `target_error=5e-4`): pilots of 8-64 samples left the answer
up to 2.5e-3 to 4.1e-3 nats per point off (5-8x the target), the default 256 up to 1.1e-3."""

REFERENCE_SHARE = 0.1
"""`steps="auto"`: the pilot, whose answers are the reference the trial step counts are measured
against, also holds the answer's own local error per step (the goal of `solve_adaptive`,
`AugmentedFlow.answer_sensitivity`) to this share of `target_error`, on top of its state norm
at `1e-6`. The state norm alone holds each coordinate to `1e-6 (1 + |x|)`, loose where modes
are far narrower than `|x|` (the answer moves by `s . dx`, `|s| ~ sqrt(d) / width`): on six
modes of std 0.01-0.02 under VE in 16-64 dimensions the trials' measured error stalled at
5.9e-4 to 1.2e-3 nats, the reference's own error, above the 5e-4 target (a warning), and
117-179 steps were used where 65-80 meet it (docs/likelihood.md). On the sharp 2-D and 16-D
mixtures there the chosen counts stay the same or drop by one or two."""

MAX_AUTO_STEPS = 512
"""The most steps `steps="auto"` tries. 512 `rk4_simpson` steps cost 2,561 evaluations per
sample, several times the default `dopri5`'s few hundred: a count that misses the target
there has no speed left to offer, and the adaptive solve is used instead."""

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
            `auto_fallback` (`steps="auto"` missed: the runner solves adaptively),
            `pilot_outliers` / `pilot_redone` (pilot samples set aside / whose answers were too
            loose for a fallback; both solved alone at `pilot_outlier_nfe` evaluations),
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


OUTLIER_SHARE = 0.9
"""A pilot that shapes a grid sets it aside and runs again without the few samples (at most
`MAX_OUTLIER_FRACTION` of it) that took more than the sample error limit and together hold
this share of its squared error over the path (`dominating_samples`): its steps were then
sized for them. Measured on pilots of 256: in 68 pilots of ordinary samples (mixture presets in
2, 16 and 32 dimensions, VP, sub-VP and VE) the largest holder had 7-58%; one point 3-7 units
from a sharp two-mode mixture had 97-100%."""

MAX_OUTLIER_FRACTION = 0.01
"""At most this fraction of the pilot (at least one sample) is set aside as outliers: a
population as frequent as that is data the grid must serve."""


def grid_fails(steps: int, error: float, target_error: float) -> bool:
    """Whether `steps="auto"`'s last count, with mean error `error` on the pilot, is not used.

    True above `FALLBACK_FACTOR * target_error` (or NaN), or above the target at
    `MAX_AUTO_STEPS`: the batch is then solved adaptively (`run_pilot`'s `auto_fallback`).
    """
    return not error <= FALLBACK_FACTOR * target_error or (steps >= MAX_AUTO_STEPS and not error <= target_error)


def dominating_samples(sample_error_rms: Tensor, limit: float) -> Tensor:
    """`(P,)` mask of the few samples that sized an adaptive batch solve's steps by themselves.

    `sample_error_rms: (P,)` is `solve_adaptive`'s `info["sample_error_rms"]`. Under the batch
    norm one sample may take up to `sqrt(P)` times the tolerance on a step; when a sample does
    so along a stiff path (a point far outside sharp data) every sample takes its steps. The
    mask holds the fewest largest samples, each above `limit`, whose squared errors sum to at
    least `OUTLIER_SHARE` of the batch's, if at most `max(1, floor(MAX_OUTLIER_FRACTION P))`
    samples do; otherwise (no such few) it is all false.
    """
    rms = sample_error_rms.detach().double()
    mask = torch.zeros(rms.shape, dtype=torch.bool, device=rms.device)
    squares = rms.pow(2)
    total = float(squares.sum())
    if not (total > 0.0 and math.isfinite(total)):
        return mask
    k_max = max(1, int(MAX_OUTLIER_FRACTION * rms.numel()))
    held = 0.0
    for j in squares.argsort(descending=True)[:k_max].tolist():
        if not float(rms[j]) > limit:
            break
        mask[j] = True
        held += float(squares[j])
        if held >= OUTLIER_SHARE * total:
            return mask
    return torch.zeros_like(mask)


def grid_pilot_tolerance(dim: int, exact_divergence: bool) -> float:
    """Default `rtol = atol` of a pilot that shapes a fixed grid of a given number of steps.

    `1e-5 sqrt(2 / dim)` above 2-D with the exact divergence, else `1e-5`. That pilot has no
    goal (`solve_adaptive(goal=)`): its accepted times only set where the grid's steps go, under
    the norm relative to every entry, and its grids were measured at this tolerance. At the
    main solve's flat `1e-5` the `rk4_simpson` grids of `high_dim_16` (16-D) were 1.3-2x less
    accurate under VE and sub-VP at 16-32 steps, and 0.6-1.3x under VP (docs/likelihood.md).
    """
    return 1e-5 * math.sqrt(2.0 / dim) if exact_divergence and dim > 2 else 1e-5


def reference_goal(sensitivity: Sensitivity, atol: float, target_error: float) -> Sensitivity:
    """The goal of a `steps="auto"` pilot: `sensitivity` held to `REFERENCE_SHARE * target_error`.

    `solve_adaptive` holds a goal's error to its `atol`; scaling the weights by
    `atol / (REFERENCE_SHARE * target_error)` holds the answer's local error per step to that
    share of the target instead, while the state's norm keeps the pilot's own `atol`.
    """
    factor = atol / (REFERENCE_SHARE * target_error)

    def goal(t: float, y: Tensor, k: Tensor) -> Tensor:
        return sensitivity(t, y, k) * factor

    return goal


def _solve_each(
    make_flow: FlowFactory, x: Tensor, xs: Tensor, probes: Tensor | None, weight: float, tol: tuple[float, float],
    lo: float, hi: float, scale: StateScale | None, budget: dict[str, Any],
) -> tuple[Tensor, Tensor, int]:
    """`dopri5` with a per-sample norm on the samples `x` from their start points `xs`.

    The main solve's settings (log-density weight, tolerances, relative weights), so the
    samples get the answer of the default integrator solving them alone. Returns
    `(x_T, delta, nfe)`.
    """
    flow = make_flow(x, weight, probes=probes)
    field = flow if scale is None else ScaledField(flow, scale)
    y0 = flow.pack(xs) if scale is None else ScaledField(flow, scale).pack(xs, lo)
    with torch.no_grad():
        y, _ = solve_adaptive(field, y0, lo, hi, method="dopri5", rtol=tol[0], atol=tol[1],
                              relative=flow.relative_weights(y0), per_sample=True,
                              goal=field.answer_sensitivity, **budget)
    x_T, delta = flow.unpack(y) if scale is None else ScaledField(flow, scale).unpack(y, hi)
    return x_T, delta, flow.nfe


def run_pilot(
    x: Tensor, *, make_flow: FlowFactory, start: StartFn, spec: IntegratorSpec, opts: IntegratorOptions,
    fresh: bool, keep: bool, lo: float, hi: float, prior_fn: Prior, generator: torch.Generator,
    scale: StateScale | None = None, sample_error_limit: float = math.inf, step_error_limit: float = math.inf,
) -> PilotGrid:
    """Run the pilot on a seeded random subset of `x: (B, *D)` and build the fixed grid.

    `make_flow(x, logp_scale, keep_graph=False, probes=None)` builds a field;
    `start(flow, x) -> (x_start, correction)` maps data points to the ODE's start points.
    `keep`: the pilot's samples keep their adaptive results (exact divergence, no gradients).
    `sample_error_limit`: when the pilot solves the whole batch (it is then the main solve),
    its samples that took more than this multiple of the tolerance under the batch norm are
    solved again with a per-sample norm, as the main solve does (`runner.SAMPLE_ERROR_LIMIT`), and
    so are those above `step_error_limit` on any one step (`runner.STEP_ERROR_LIMIT`).
    When it shapes a grid, the few samples above it that sized its steps by themselves
    (`dominating_samples`) are set aside: the pilot runs again without them, the step count is
    measured without them, and (with `keep`) they are solved with a per-sample norm.
    `scale`: the state scale of the fixed-grid solves (the trials use the batch's integrator).
    """
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator, device=x.device)[: opts.pilot_size]
    xp = x[idx].detach()
    solves_all = keep and idx.numel() == n  # no fixed-grid solve follows: the pilot is the answer
    main_w = opts.logp_scale if opts.logp_scale is not None else 1.0
    budget: dict[str, Any] = {} if opts.max_steps is None else {"max_steps": opts.max_steps}
    with torch.no_grad():
        # A pilot that shapes a grid weighs the log-density 10x under the norm relative to every
        # entry (the grids' fixed-step errors were measured with it: `grid_25` at 16 steps 7.7e-4
        # nats, 1.5e-3 with the main solve's norm, and 5-35% fewer steps chosen under VE); a pilot
        # that answers the whole batch is the main solve (log-density held to `atol`).
        pilot_w = 1e-6 if fresh else (main_w if solves_all else 10.0)
        pilot = make_flow(xp, pilot_w)
        # steps="auto" measures errors against the pilot: it gets a 10x tighter default, and a
        # goal that holds its answers to a tenth of the target (`reference_goal`). A pilot
        # that finishes the whole batch by itself has the main solve's default; one that shapes
        # a given number of steps keeps `grid_pilot_tolerance`.
        main_tol = opts.tolerances()
        if solves_all:
            tol = main_tol[0]
        else:
            tol = 1e-6 if opts.steps == "auto" else grid_pilot_tolerance(xp[0].numel(), pilot.divergence == "exact")
        xs, corr = start(pilot, xp)
        rtol = tol if opts.rtol is None else opts.rtol
        atol = tol if opts.atol is None else opts.atol

        def solve(flow: AugmentedFlow, starts: Tensor) -> tuple[Tensor, dict[str, Any]]:
            # With a state scale the pilot integrates the scaled state too, so that its steps
            # (the grid's profile) are where the scaled RK4 needs them.
            field = flow if scale is None else ScaledField(flow, scale)
            y0 = flow.pack(starts) if scale is None else ScaledField(flow, scale).pack(starts, lo)
            goal = field.answer_sensitivity if solves_all else \
                reference_goal(field.answer_sensitivity, atol, opts.target_error) if opts.steps == "auto" else None
            return solve_adaptive(field, y0, lo, hi, method="dopri5", rtol=rtol, atol=atol,
                                  relative=flow.relative_weights(y0) if solves_all else None,
                                  sample_errors=True, goal=goal, **budget)

        y_p, out = solve(pilot, xs)
    nfe = pilot.nfe
    times = out["t"]
    assert isinstance(times, Tensor)
    info: dict[str, Any] = {"pilot_nfe": pilot.nfe, "pilot_t": times, "pilot_size": int(idx.numel())}
    x_Tp, delta_p = pilot.unpack(y_p) if scale is None else ScaledField(pilot, scale).unpack(y_p, hi)
    rms = out["sample_error_rms"]
    assert isinstance(rms, Tensor)
    # Samples solved again with a per-sample norm: those that took the batch norm's slack when
    # the pilot is the answer, else those that sized the grid's steps by themselves.
    peak = out["sample_error_max"]
    assert isinstance(peak, Tensor)
    redo = (rms > sample_error_limit) | (peak > step_error_limit) if solves_all else \
        dominating_samples(rms, sample_error_limit)
    measured = ~redo  # the samples that shape the grid and measure the step count
    probes = pilot.probes
    if bool(redo.any()) and not solves_all:
        info["pilot_outliers"] = int(redo.sum())
        info["pilot_first_nfe"] = pilot.nfe
        probes = None if pilot.probes is None else pilot.probes[:, measured]
        with torch.no_grad():
            again = make_flow(xp[measured], pilot_w, probes=probes)
            y_m, out = solve(again, xs[measured])
        times = out["t"]
        assert isinstance(times, Tensor)
        info["pilot_t"] = times
        info["pilot_nfe"] = pilot.nfe + again.nfe
        nfe += again.nfe
        x_m, delta_m = again.unpack(y_m) if scale is None else ScaledField(again, scale).unpack(y_m, hi)
        x_Tp, delta_p = x_Tp.clone(), delta_p.clone()
        x_Tp[measured], delta_p[measured] = x_m, delta_m
        rms, peak = rms.clone(), peak.clone()
        rms[measured], peak[measured] = out["sample_error_rms"], out["sample_error_max"]
    steps = opts.steps
    limits: dict[int, float] = {}
    if steps == "auto" and solves_all:
        steps = len(times) - 1  # the pilot solves every sample: no fixed-grid solve
    elif steps == "auto":
        xs_m = xs[measured]
        reference = prior_fn(x_Tp[measured]).to(delta_p.dtype) + delta_p[measured].mean(dim=1)

        def trial(n_steps: int) -> tuple[Tensor, int]:
            flow = make_flow(xs_m, 1.0, probes=probes)
            with torch.no_grad():
                x_T, delta, out_info = integrate_chunk(flow, xs_m, spec, lo, hi, resample_grid(times, n_steps),
                                                       (0.0, 0.0), scale=scale)
            lp = prior_fn(x_T).to(delta.dtype) + delta.mean(dim=1)
            path_error = out_info.get("path_error")
            if path_error is not None:
                limits[n_steps] = float(path_error.max())
            return lp, flow.nfe

        def then(n_steps: int, error: float) -> str:
            if grid_fails(n_steps, error, opts.target_error):
                return ("the samples the pilot has not solved are solved by the adaptive dopri5 instead, "
                        "as by default")
            return f"within {FALLBACK_FACTOR:g}x the target: using {n_steps} steps"

        steps, history = choose_steps(trial, reference, opts.target_error, order=spec.order,
                                      max_steps=MAX_AUTO_STEPS, then=then)
        nfe += sum(h["nfe"] for h in history)
        info["auto_steps"] = history
        info["auto_fallback"] = grid_fails(steps, history[-1]["error"], opts.target_error)
        if steps in limits:
            info["path_error_limit"] = limits[steps]
    if keep and info.get("auto_fallback"):
        # The fixed grid is not used, and the pilot's answers are kept: each must then be as
        # accurate as the default's, whose limits it must meet (in the pilot's tolerance). Points
        # spread around sharp data, 23 in the pilot: one came back 34 nats off (its path RMS 0.45,
        # 12 times the tolerance on one step under the pilot's batch norm).
        loose = measured & ((rms > sample_error_limit) | (peak > step_error_limit))
        if bool(loose.any()):
            info["pilot_redone"] = int(loose.sum())
            redo = redo | loose
    # (Keys of their own for a grid-shaping pilot: its info is merged into every chunk's stats.)
    count_key, nfe_key = ("redone_per_sample", "redone_nfe") if solves_all else ("pilot_outliers", "pilot_outlier_nfe")
    if solves_all:
        info[count_key], info[nfe_key] = int(redo.sum()), 0
    if bool(redo.any()) and keep:
        x_b, delta_b, redo_nfe = _solve_each(
            make_flow, xp[redo], xs[redo], None if pilot.probes is None else pilot.probes[:, redo], main_w,
            (rtol, atol) if solves_all else main_tol, lo, hi, scale, budget)
        x_Tp, delta_p = x_Tp.clone(), delta_p.clone()
        x_Tp[redo], delta_p[redo] = x_b.to(x_Tp.dtype), delta_b.to(delta_p.dtype)
        info[nfe_key] = redo_nfe
        nfe += redo_nfe
    assert isinstance(steps, int)
    solved = Solved(idx, x_Tp, delta_p, prior_fn(x_Tp), corr) if keep else None
    return PilotGrid(resample_grid(times, steps), steps, nfe, info, solved)
