"""The sweep: every `(solver, budget, seed)` cell sampled, scored and stored as it finishes."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm  # type: ignore[import-untyped]

import solvers
from solvers.dynamics import NonFiniteScoreError
from solvers.end import end_step_kind
from solvers.inputs import as_integer, check_seed
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.result import Solution

from ..atomic import clean_stale_temps
from .cache import (
    FORMAT_VERSION,
    Cell,
    cache_key,
    code_digest,
    discard_comparison,
    is_comparison_config,
    load_or_compute_floors,
    option_changes,
    read_cell,
    seal_cell,
    settings_changes,
    solver_code,
    stored_cells,
    write_atomic,
)
from .options import (
    check_solver_options,
    check_tolerance_options,
    is_adaptive,
    on_tolerance_axis,
    plan_cells,
    unique,
)
from .problem import Problem, sde_config
from .results import ComparisonResult
from .scoring import DEFAULT_FLOOR_REPEATS, METRICS, MODE_METRICS, Scorer, reference_for

__all__ = ["run_comparison", "sample_solvers", "evaluate_results"]


def sample_solvers(
    sde: DiffusionSDE,
    score: ScoreFn,
    names: Iterable[str],
    *,
    shape: tuple[int, ...],
    steps: int = 100,
    seed: int = 0,
    noise: Literal["gaussian", "brownian"] = "brownian",
    keep_trajectory: bool = True,
    max_frames: int | None = 101,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **common: Any,
) -> dict[str, Solution]:
    """Sample the same problem with several solvers from the same start and noise.

    Every solver gets the same prior draw (same `seed`) and, with `noise="brownian"`, the
    same Brownian path, so differences are due to the solvers alone. Adaptive solvers ignore
    `steps`. `options` maps solver name -> extra keyword options; `common` goes to every call
    of `solvers.sample`. Returns `{name: Solution}` in order.
    """
    options = options or {}
    out = {}
    for name in names:
        adaptive = solvers.get_solver(name, **dict(options.get(name, {}))).adaptive
        out[name] = solvers.sample(sde, score, shape, name, steps=None if adaptive else steps, seed=seed, noise=noise,
                                   keep_trajectory=keep_trajectory, max_frames=max_frames,
                                   **common, **dict(options.get(name, {})))
    return out


def evaluate_results(
    problem: Problem,
    results: Mapping[str, Solution],
    *,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
    floor_repeats: int = DEFAULT_FLOOR_REPEATS,
    budget: int | None = None,
    max_samples: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
    """Score already computed samples (e.g. from `sample_solvers`) like the harness does.

    Each result is compared with its own independent reference set of the same size, of the
    law its run ended at (`Solution.stats["end_step"]`: `p_0`, or `p_eps` after `"none"`; see
    `Problem.for_end_step`); the floors use the first result's law.
    `max_samples` scores only the first that many samples of each result (pairwise metrics
    cost `O(n^2)`); the floors then use that size too.

    Returns:
        `(records, floors)` ready for `markdown_table` and the curve plots.
    """
    if not results:
        raise ValueError("results is empty")
    n = int(next(iter(results.values())).samples.shape[0])
    if max_samples is not None:
        n = min(n, int(max_samples))
    first = next(iter(results.values()))
    scorer = Scorer(problem.for_end_step(str(first.stats.get("end_step", "ode"))), metrics, n)
    records = []
    for name, res in results.items():
        adaptive = name in solvers.SOLVERS and is_adaptive(name)
        steps = len(res.times) - 1
        record: dict[str, Any] = {
            "problem": problem.name, "solver": name,
            "budget_kind": "auto" if adaptive else "steps",
            "budget": 0 if adaptive else (budget if budget is not None else steps),
            "seed": seed, "n": n, "status": "ok", "error": None,
            "nfe": int(res.nfe), "seconds": float(res.seconds),
        }
        x = res.samples.detach().to("cpu")[:n]
        if not bool(torch.isfinite(x).all()):
            record.update(status="error", error="non-finite samples")
        else:
            law = problem.for_end_step(str(res.stats.get("end_step", "ode")))
            record.update(scorer.evaluate(x, reference_for(law, n, seed).to("cpu")))
        records.append(record)
    return records, scorer.floors(floor_repeats, seed=seed)


def _as_names(value: Any, what: str) -> list[str]:
    """``value`` as a list of names: one string is one name (not its characters)."""
    return [value] if isinstance(value, str) else list(_as_sequence(value, what))


def _as_sequence(value: Any, what: str) -> list[Any]:
    """``value`` as a list; a single number is refused with the fix (``steps=[10]``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise TypeError(f"{what} must be a sequence, got the number {value!r} (pass [{value!r}])")
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"{what} must be a sequence, got {type(value).__name__}") from None


def _check(names: list[str], steps: Sequence[int], seeds: Sequence[int], n: int,
           denoise: bool | str | None, tolerances: Sequence[float], grid: Any = None) -> None:
    end_step_kind(denoise)  # refuses an unknown name before any work
    if isinstance(grid, str) and grid != "auto":
        from solvers.grids import GRIDS

        if grid not in GRIDS:
            raise ValueError(f"unknown grid {grid!r}; valid: {', '.join(sorted(GRIDS))}, auto")
    from solvers.inputs import MAX_STEPS

    if any(int(s) > MAX_STEPS for s in steps):
        raise ValueError(f"step budgets must be at most {MAX_STEPS:.0e}, got {max(int(s) for s in steps)}")
    solvers.check_solver_names(names)
    if not names:
        raise ValueError("give at least one solver")
    if not seeds or (not steps and any(not is_adaptive(s) for s in names)):
        raise ValueError("give at least one seed and one step budget")
    if any(int(s) < 1 for s in steps):
        raise ValueError(f"step budgets must be positive, got {list(steps)}")
    on_axis = [s for s in names if on_tolerance_axis(s)]
    if on_axis and not tolerances:  # they would get no cells at all, without a word
        raise ValueError(f"give at least one tolerance for {', '.join(on_axis)} (their budget is rtol = atol)")
    if any(not (math.isfinite(float(t)) and float(t) > 0) for t in tolerances):
        raise ValueError(f"tolerances must be finite and positive, got {list(tolerances)}")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    for seed in seeds:
        check_seed(seed)  # torch.Generator's range: refused here, not as a failed cell


def run_comparison(
    problem: Problem,
    solver_names: Sequence[str],
    *,
    steps: Sequence[int] = (10, 30, 100),
    seeds: Sequence[int] = (0, 1, 2),
    tolerances: Sequence[float] = (1e-2, 1e-3, 1e-4),
    n: int = 4000,
    metrics: Sequence[str] = METRICS,
    grid: str | None = None,
    noise: Literal["gaussian", "brownian"] = "gaussian",
    denoise: bool | str | None = None,
    solver_options: Mapping[str, Mapping[str, Any]] | None = None,
    floor_repeats: int = DEFAULT_FLOOR_REPEATS,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    plots: bool = True,
    overwrite: bool = False,
) -> ComparisonResult:
    """Run every (solver, budget, seed) cell and record NFE, wall time and metrics.

    Args:
        problem: what to sample (`Problem.from_target`, `Problem.from_checkpoint`).
        solver_names: names from `solvers.available()`.
        steps: step budgets of fixed-grid solvers.
        seeds: one cell per seed; the table and curves show mean ± std over seeds.
        tolerances: `rtol = atol` values for adaptive solvers (instead of `steps`); an
            `rtol` / `atol` in `solver_options` for such a solver is refused.
        n: samples per cell (the same size as the reference set and the noise floor).
        metrics: subset of `METRICS`; mode statistics are added for mixtures.
        grid, noise, denoise: passed to `solvers.sample` (`grid=None`: each solver's own
            `default_grid`, e.g. log-SNR for exponential integrators; `denoise=None`: each
            solver's own end-of-run step, which samples `p_0`; `"tweedie"` / `True`: Tweedie's
            `E[x_0 | x_t]`; `"none"` / `False`: the state at `eps`, i.e. `p_eps`).
        solver_options: solver name -> keyword options (e.g. `{"pc": {"snr": 0.16}}`).
        floor_repeats: reference-vs-reference pairs averaged for each noise floor; its
            standard error is `std / sqrt(floor_repeats)` (the table prints it with the ratios).
        out: folder for incremental cell files and the final results (enables resume).
        progress: show a tqdm progress bar.
        retry_failed: recompute stored cells that failed (default: keep their failure).
        plots: with `out`, also draw `curves_nfe.png` and `curves_seconds.png`.
        overwrite: discard a comparison with other settings (`n`, metrics, grid, noise,
            denoise, problem, dtype) stored in `out`, instead of refusing to replace it.

    Returns:
        A `ComparisonResult`. A cell whose solve raises (a non-finite score, a solver error)
        is recorded with `status="error"` and its message; the sweep goes on.

    Repeated solver names, budgets, seeds, tolerances and metrics are dropped (first
    occurrences kept, in order): a copy would only duplicate a cell.

    Raises:
        ValueError: unknown solver or metric names, empty or non-positive budgets, `n < 2`, an
            unknown `denoise`, a seed outside `torch.Generator`'s range, a solver option value
            the solver refuses, an `rtol` / `atol` option of a solver on the tolerance axis;
            `out` holds a comparison with other settings and `overwrite` is not set (its
            cells would be recomputed and replaced; the message lists what changed).
        TypeError: a solver option the solver does not take.
    """
    names = unique(_as_names(solver_names, "solver_names"))
    metrics = unique(_as_names(metrics, "metrics"))
    steps = unique(as_integer(s, "step budget (steps)") for s in _as_sequence(steps, "steps"))
    seeds, tolerances = unique(_as_sequence(seeds, "seeds")), unique(_as_sequence(tolerances, "tolerances"))
    _check(names, steps, seeds, n, denoise, tolerances, grid)
    if not metrics:
        raise ValueError(f"give at least one metric; valid: {', '.join(METRICS)}")
    if isinstance(noise, str) and noise not in ("gaussian", "brownian"):  # every cell would fail
        raise ValueError(f"unknown noise {noise!r}; use 'gaussian' or 'brownian'")
    options = {k: dict(v) for k, v in (solver_options or {}).items()}
    check_solver_options({k: v for k, v in options.items() if k in names})
    check_tolerance_options({k: v for k, v in options.items() if k in names})
    scorer = Scorer(problem.for_end_step(end_step_kind(denoise)), metrics, n)
    settings = {
        "version": FORMAT_VERSION, "problem": problem.spec, "n": n, "metrics": list(metrics),
        "grid": grid, "noise": noise, "denoise": denoise, "bandwidths": scorer.bandwidths,
        # Also what a hand-built Problem (often without a spec) is told apart by, and the dtype
        # every solver samples in (a float32 cell is not a float64 one).
        "name": problem.name, "reference": problem.reference, "data_shape": list(problem.data_shape),
        "sde_config": sde_config(problem.sde), "dtype": str(problem.dtype or torch.get_default_dtype()),
    }
    if out is not None and not problem.spec:
        warnings.warn(
            f"problem {problem.name!r} has no spec: its cached cells in {out} are told apart from another "
            "problem's only by name, SDE, shape and dtype, so a changed score or reference under the same "
            "name would reuse them; give Problem(spec=...) a description of the score and the reference "
            "(as from_target and from_checkpoint do)", stacklevel=2)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        if out_dir.name == "cells" and is_comparison_config(out_dir.parent / "config.json"):
            raise ValueError(f"{out_dir} is the folder where the comparison in {out_dir.parent} keeps its cells; "
                             "a comparison written there would mix its files with them. Choose another output folder")
        own = out_dir / "config.json"
        if own.is_file() and not is_comparison_config(own):
            raise ValueError(
                f"{out_dir} holds a config.json that is not a comparison's (a training run's folder?); the "
                f"comparison writes its own config.json there and would replace it. Choose another output "
                f"folder, e.g. {out_dir / 'compare'}")
        for folder in (out_dir, out_dir / "cells"):
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"{folder} is a file, but the comparison stores its "
                                 f"{'cells' if folder.name == 'cells' else 'results'} in a folder of that "
                                 "name; move the file or choose another output folder")
            clean_stale_temps(folder)  # what a killed atomic write left (results, floors, cells)
        # (the MMD bandwidths follow from the reference and the code, as the cells' keys do)
        changes = settings_changes(own, {k: v for k, v in settings.items() if k != "bandwidths"})
        changes += option_changes(own, names, options)
        if changes and stored_cells(out_dir) and not overwrite:
            raise ValueError(
                f"{out_dir} holds a comparison with other settings ({'; '.join(changes)}); none of its cells "
                f"would be reused and each one this sweep shares would be replaced. Pass overwrite=True "
                f"(--overwrite) to discard it, or choose another output folder")
        if changes:  # (a comparison without cells, e.g. interrupted before its first, goes quietly)
            discarded = discard_comparison(out_dir)
            if discarded:
                warnings.warn(f"overwrite: discarded the comparison stored in {out_dir} ({discarded} cell(s); "
                              f"{'; '.join(changes)})", stacklevel=2)
        # Written before the sweep too, so that an interrupted sweep's cells carry their settings.
        write_atomic(own, json.dumps(_config_record(settings, names, steps, seeds, tolerances, options,
                                                    floor_repeats), indent=1, default=str))
    floors = load_or_compute_floors(lambda: scorer.floors(floor_repeats), settings, floor_repeats, out_dir)
    records, computed, reused = _sweep(problem, scorer, plan_cells(names, steps, tolerances, seeds), options,
                                       settings, out_dir, n=n, grid=grid, noise=noise, denoise=denoise,
                                       progress=progress, retry_failed=retry_failed)
    mixture = problem.mixture
    result = ComparisonResult(
        problem.name, records, floors, [*metrics] + (list(MODE_METRICS) if mixture is not None else []),
        computed, reused, reference=problem.reference,
        n_modes=int(mixture.weights.numel()) if mixture is not None else None, floor_repeats=floor_repeats,
        caption=_caption(problem, n, seeds, floor_repeats, denoise))
    if out_dir is not None:
        write_atomic(out_dir / "config.json", json.dumps(
            _config_record(settings, names, steps, seeds, tolerances, options, floor_repeats),
            indent=1, default=str))
        result.save(out_dir, plots=plots)
    return result


def _caption(problem: Problem, n: int, seeds: Sequence[Any], floor_repeats: int, denoise: bool | str | None) -> str:
    """One line saying what a comparison's table measured."""
    law = "p_eps, the state at eps" if end_step_kind(denoise) == "none" else "p_0"
    reference = (f"exact samples of {law}" if problem.reference == "exact"
                 else f"{problem.reference} samples")
    return (f"{problem.sde!r}; {n} samples per cell, seeds {list(seeds)}; each cell scored against {n} {reference}; "
            f"mean ± std over seeds; time [s]: mean wall time of one cell's sampling; noise floor: "
            f"two independent reference sets, mean ± std of {floor_repeats} pairs.")


def _config_record(settings: Mapping[str, Any], names: Sequence[str], steps: Sequence[int], seeds: Sequence[Any],
                   tolerances: Sequence[Any], options: Mapping[str, Any], floor_repeats: int) -> dict[str, Any]:
    """What `config.json` holds: the settings every cell shares, then this sweep's axes."""
    return {**settings, "solvers": list(names), "steps": list(steps), "seeds": list(seeds),
            "tolerances": list(tolerances), "solver_options": dict(options), "floor_repeats": floor_repeats}


def _sweep(
    problem: Problem, scorer: Scorer, cells: list[Cell], options: dict[str, dict[str, Any]],
    settings: dict[str, Any], out_dir: Path | None, *, n: int, grid: str | None,
    noise: Literal["gaussian", "brownian"], denoise: bool | str | None, progress: bool, retry_failed: bool,
) -> tuple[list[dict[str, Any]], int, int]:
    """Every cell: read back when stored under `out_dir` with a matching key, else computed and
    stored at once. Returns `(records, computed, reused)`."""
    records: list[dict[str, Any]] = []
    computed = reused = 0
    bar = tqdm(total=len(cells), desc=f"compare {problem.name}", disable=not progress, unit="cell")
    code = code_digest()
    for cell in cells:
        opts = dict(options.get(cell.solver, {}))
        if cell.budget_kind == "tol":
            opts.update(rtol=cell.budget, atol=cell.budget)
        key = cache_key({**settings, "cell": cell.label, "options": opts, "code": code,
                         "solver_code": solver_code(cell.solver)})
        path = out_dir / "cells" / cell.filename if out_dir is not None else None
        stored = read_cell(path, key)
        if stored is not None and (stored["status"] == "ok" or not retry_failed):
            records.append(stored)
            reused += 1
        else:
            bar.set_postfix_str(cell.label)
            record = _run_cell(problem, scorer, cell, opts, n=n, grid=grid, noise=noise, denoise=denoise)
            record["key"] = key
            if path is not None:
                write_atomic(path, seal_cell(record))
            records.append(record)
            computed += 1
        bar.update(1)
    bar.close()
    return records, computed, reused


def _run_cell(
    problem: Problem, scorer: Scorer, cell: Cell, opts: dict[str, Any], *, n: int, grid: str | None,
    noise: Literal["gaussian", "brownian"], denoise: bool | str | None,
) -> dict[str, Any]:
    """Sample and score one cell; a failing solve gives a record with `status="error"`."""
    record: dict[str, Any] = {
        "problem": problem.name, "solver": cell.solver, "budget_kind": cell.budget_kind,
        "budget": int(cell.budget) if cell.budget_kind == "steps" else cell.budget,
        "seed": cell.seed, "n": n, "status": "ok", "error": None,
    }
    steps = int(cell.budget) if cell.budget_kind == "steps" else None  # a tolerance budget: adaptive
    try:
        res = solvers.sample(problem.sde, problem.score, (n, *problem.data_shape), cell.solver,
                             steps=steps, seed=cell.seed, grid=grid, noise=noise, denoise=denoise,
                             dtype=problem.dtype, **opts)
    except (NonFiniteScoreError, ValueError, RuntimeError, FloatingPointError) as err:
        record.update(status="error", error=f"{type(err).__name__}: {err}", nfe=None, seconds=None)
        return record
    record["nfe"] = int(res.nfe)
    record["seconds"] = float(res.seconds)
    record["threads"] = torch.get_num_threads()  # wall times of different thread counts do not compare
    for k, v in (res.stats or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            record[f"stat_{k}"] = v
    x = res.samples.detach()
    if not bool(torch.isfinite(x).all()):
        record.update(status="error", error="non-finite samples")
        return record
    law = problem.for_end_step(str(res.stats.get("end_step", "ode")))
    record.update(scorer.evaluate(x.to("cpu"), reference_for(law, n, cell.seed).to("cpu")))
    return record
