"""Solver comparisons: a grid of solvers x step budgets x seeds, recorded, tabulated and plotted.

    from scoresde import compare
    problem = compare.Problem.from_target("eight_gaussians", sde="vp")
    res = compare.run_comparison(problem, ["euler_maruyama", "ode_heun"], steps=[10, 30, 100],
                                 seeds=[0, 1, 2], out="runs/cmp")
    print(res.table())

Every cell `(solver, budget, seed)` draws `n` samples with `solvers.sample` and records the
NFE the solver actually used (counted by the score wrapper, never self-reported), the solve's
wall time and every metric against an independent set of exact (or data) samples, plus the
metrics' noise floors (the value two reference sample sets of the same size give).
Fixed-grid solvers take the step budget as `steps`; adaptive solvers (`Solver.adaptive`)
instead get a tolerance from `tolerances` (`rtol = atol = tol`), and their NFE is whatever the
error control spent.

With `out=`, each finished cell is written at once (atomically) under `out/cells/`; rerunning
the same comparison reuses every stored cell whose settings match and computes only the
missing ones, so an interrupted sweep resumes where it stopped and a grid can be extended
cheaply. A cell's key covers the problem, sample size, metrics, grid, noise, denoising, the
solver's options and the source of the whole `solvers` package and of the modules that build
the reference and score a cell (`cache.CODE_MODULES`; hashed once per process).

Modules: `problem` (what is sampled; checkpoint loading is injected), `cache` (cells, keys,
atomic files, CSV), `scoring` (metrics and noise floors), `options` (solver choice and
`solver:key=value` parsing), `tables` (markdown, no plotting library), `figures` (curves,
imported only when drawing), `results` (`ComparisonResult`) and `runner` (the sweep).
"""

from .cache import Cell, records_to_csv, write_atomic
from .options import (
    PREFERRED_SOLVERS,
    check_solver_options,
    check_tolerance_options,
    default_solvers,
    parse_solver_options,
    unique,
)
from .problem import CheckpointLoader, LoadedCheckpoint, Problem
from .results import ComparisonResult
from .runner import evaluate_results, run_comparison, sample_solvers
from .scoring import DEFAULT_FLOOR_REPEATS, METRICS, MODE_METRICS
from .scoring import REF_SEED_OFFSET as _REF_SEED_OFFSET  # noqa: F401  (kept for existing callers)
from .tables import markdown_table

__all__ = [
    "DEFAULT_FLOOR_REPEATS",
    "METRICS",
    "MODE_METRICS",
    "PREFERRED_SOLVERS",
    "Cell",
    "CheckpointLoader",
    "ComparisonResult",
    "LoadedCheckpoint",
    "Problem",
    "check_solver_options",
    "check_tolerance_options",
    "default_solvers",
    "evaluate_results",
    "markdown_table",
    "parse_solver_options",
    "records_to_csv",
    "run_comparison",
    "sample_solvers",
    "unique",
    "write_atomic",
]
