"""Solver comparisons: a grid of solvers x step budgets x seeds, recorded, tabulated and plotted.

    from scoresde import compare
    problem = compare.Problem.from_target("eight_gaussians", sde="vp")
    res = compare.run_comparison(problem, ["euler_maruyama", "ode_heun"], steps=[10, 30, 100],
                                 seeds=[0, 1, 2], out="runs/cmp")
    print(res.table())

Every cell ``(solver, budget, seed)`` draws ``n`` samples with :func:`solvers.sample` and
records the NFE the solver actually used (counted by the score wrapper, never
self-reported), the solve's wall time and every metric against an independent set of
exact (or data) samples, plus the metrics' noise floors (the value two exact sample sets of
the same size give). Fixed-grid solvers take the step budget as ``steps``; adaptive solvers
(``Solver.adaptive``) instead get a tolerance from ``tolerances`` (``rtol = atol = tol``),
and their NFE is whatever the error control spent.

With ``out=``, each finished cell is written at once (atomically: temporary file + rename)
under ``out/cells/``; rerunning the same comparison reuses every stored cell whose settings
match and computes only the missing ones, so an interrupted sweep resumes where it stopped
and a grid can be extended (more seeds, more budgets) cheaply. A cell's key covers the
problem, sample size, metrics, grid, noise, denoising, the solver's options and the source
file of the solver's class, so editing a solver recomputes its cells and only those.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

import solvers
from solvers.dynamics import NonFiniteScoreError
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.result import SampleResult

from . import metrics as _metrics
from .atomic import atomic_write_bytes
from .sde import AffineSDE, get_sde
from .targets import GaussianMixture, get_target

__all__ = [
    "Problem",
    "Cell",
    "ComparisonResult",
    "run_comparison",
    "sample_solvers",
    "evaluate_results",
    "default_solvers",
    "parse_solver_options",
    "markdown_table",
    "records_to_csv",
    "METRICS",
    "MODE_METRICS",
    "write_atomic",
]

METRICS: tuple[str, ...] = ("sliced_w2", "mmd", "energy")
"""Sample-vs-sample metrics the harness knows (see :mod:`scoresde.metrics`)."""

MODE_METRICS: tuple[str, ...] = ("coverage", "weight_error", "outlier_fraction")
"""Mode statistics, recorded automatically when the problem has an exact mixture."""

_REF_SEED_OFFSET = 1_000_003  # reference samples of seed s use seed s + offset: independent draws
_FORMAT_VERSION = 1


# --- the problem being sampled -------------------------------------------------------------
@dataclass
class Problem:
    """What is sampled and what it is compared with.

    Attributes:
        name: label used in tables, file names and plots.
        sde: the forward SDE.
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        sample_reference: ``(n, generator) -> (n, *D)`` samples of the law the sampler should
            reproduce at ``sde.eps`` (exact ``p_eps`` for a mixture target; data otherwise).
        data_shape: ``D``, the shape of one sample.
        mixture: the exact mixture when known (enables mode statistics).
        spec: JSON-able description; part of every cell's cache key, so changing the problem
            never reuses stale cells.
    """

    name: str
    sde: DiffusionSDE
    score: ScoreFn
    sample_reference: Callable[[int, torch.Generator], Tensor]
    data_shape: tuple[int, ...]
    mixture: GaussianMixture | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_target(
        cls,
        target: str | GaussianMixture,
        sde: str | AffineSDE = "vp",
        **sde_kwargs: float | bool,
    ) -> Problem:
        """An exact mixture (a preset name of :mod:`scoresde.targets` or an instance) under
        ``sde`` (a name of :func:`scoresde.sde.get_sde` or an instance), scored exactly."""
        mixture = get_target(target) if isinstance(target, str) else target
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"target must be a preset name or a GaussianMixture, got {type(target).__name__}")
        sde_obj = get_sde(sde, **sde_kwargs) if isinstance(sde, str) else sde
        if sde_kwargs and not isinstance(sde, str):
            raise TypeError("sde keyword arguments need an SDE name, not an instance")

        def reference(n: int, g: torch.Generator) -> Tensor:
            return mixture.sample_marginal(n, sde_obj, sde_obj.eps, generator=g)

        spec = {
            "kind": "target",
            "target": mixture.name,
            "means": mixture.means.tolist(),
            "stds": mixture.stds.tolist(),
            "weights": mixture.weights.tolist(),
            "sde": type(sde_obj).__name__,
            "sde_config": _sde_config(sde_obj),
        }
        return cls(mixture.name, sde_obj, mixture.score_fn(sde_obj), reference, (mixture.dim,),
                   mixture, spec)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], *, ema: bool = True, name: str | None = None,
                        data: Any = None) -> Problem:
        """A trained score network (checkpoint file or run directory of :mod:`scoresde.train`).

        The reference is the training data: exact ``p_eps`` samples when the data is a
        mixture preset (mode statistics then apply), else fresh samples of the data source.
        ``data`` (path, array or sampler) must be the training data when the run was trained on
        your own data; other data raises ``DataMismatchError`` (see `reference_data`).
        """
        from .train import load_model
        from .train.data import reference_data

        model, sde_obj, config = load_model(path, ema=ema)
        data = reference_data(config, data, where=f"checkpoint {path}")
        mixture = data if isinstance(data, GaussianMixture) else None

        def reference(n: int, g: torch.Generator) -> Tensor:
            if mixture is not None:
                return mixture.sample_marginal(n, sde_obj, sde_obj.eps, generator=g)
            return data.sample(n, generator=g)

        probe = reference(2, torch.Generator().manual_seed(0))
        ckpt = Path(path)
        stamp = ckpt.stat().st_mtime_ns if ckpt.is_file() else _dir_stamp(ckpt)
        spec = {"kind": "checkpoint", "path": str(ckpt.resolve()), "stamp": stamp, "ema": ema,
                "data": config.data}
        return cls(name or f"{config.data} (trained)", sde_obj, model.score_fn(sde_obj), reference,
                   tuple(probe.shape[1:]), mixture, spec)


def _dir_stamp(path: Path) -> int:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return max((p.stat().st_mtime_ns for p in files), default=0)


def _sde_config(sde: DiffusionSDE) -> dict[str, Any]:
    config = getattr(sde, "config", None)
    return dict(config()) if callable(config) else {"T": sde.T, "eps": sde.eps}


# --- cells ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One point of the grid: a solver at one budget with one seed.

    ``budget_kind`` is ``"steps"`` (fixed grid), ``"tol"`` (adaptive: ``rtol = atol``) or
    ``"auto"`` (an adaptive solver without tolerance options; ``budget`` is 0).
    """

    solver: str
    budget_kind: str
    budget: float
    seed: int

    @property
    def label(self) -> str:
        b = int(self.budget) if self.budget_kind == "steps" else f"{self.budget:g}"
        return f"{self.solver}|{self.budget_kind}={b}|seed={self.seed}"

    @property
    def filename(self) -> str:
        b = int(self.budget) if self.budget_kind == "steps" else f"{self.budget:.3e}"
        return f"{self.solver}__{self.budget_kind}-{b}__seed-{self.seed}.json"


def _accepts(name: str, option: str) -> bool:
    params = inspect.signature(solvers.SOLVERS[name].__init__).parameters
    return option in params


def _is_adaptive(name: str) -> bool:
    return bool(getattr(solvers.SOLVERS[name], "adaptive", False))


def _plan(
    names: Sequence[str], steps: Sequence[int], tolerances: Sequence[float], seeds: Sequence[int]
) -> list[Cell]:
    cells = []
    for name in names:
        if _is_adaptive(name):
            budgets = [("tol", float(t)) for t in tolerances] if _accepts(name, "rtol") else [("auto", 0.0)]
        else:
            budgets = [("steps", float(s)) for s in steps]
        for kind, b in budgets:
            for seed in seeds:
                cells.append(Cell(name, kind, b, int(seed)))
    return cells


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary file in the same folder, then rename.

    A reader (or a resumed run) sees either the old file or the complete new one, never a
    truncated file, even if the process is killed mid-write.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def _solver_code(name: str) -> str:
    """Hash of the source file of a solver's class: editing a solver invalidates its cells."""
    cls = solvers.SOLVERS[name]
    try:
        return hashlib.sha256(Path(inspect.getfile(cls)).read_bytes()).hexdigest()[:16]
    except (TypeError, OSError):  # defined interactively: fall back to its name
        return f"{cls.__module__}.{cls.__qualname__}"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- metrics -------------------------------------------------------------------------------
class _Scorer:
    """Evaluates the chosen metrics of ``x`` against reference samples, with fixed settings."""

    def __init__(self, problem: Problem, metric_names: Sequence[str], n: int, bandwidth_seed: int = 0):
        unknown = [m for m in metric_names if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
        self.problem = problem
        self.names = list(metric_names)
        self.n = n
        self.bandwidths: tuple[float, ...] | None = None
        if "mmd" in self.names:
            # One fixed set of MMD bandwidths (from exact samples) for every cell and the
            # floor, so MMD values are comparable across solvers, budgets and seeds.
            g = torch.Generator().manual_seed(bandwidth_seed + 77)
            a = problem.sample_reference(min(n, 2048), g)
            self.bandwidths = _metrics.median_bandwidths(_flat(a), _flat(a))

    def sample_metric(self, name: str) -> Callable[[Tensor, Tensor], float]:
        if name == "sliced_w2":
            return lambda x, y: _metrics.sliced_wasserstein(_flat(x), _flat(y), seed=0)
        if name == "mmd":
            return lambda x, y: _metrics.mmd(_flat(x), _flat(y), bandwidths=self.bandwidths)
        return lambda x, y: _metrics.energy_distance(_flat(x), _flat(y))

    def evaluate(self, x: Tensor, ref: Tensor) -> dict[str, float]:
        out = {m: float(self.sample_metric(m)(x, ref)) for m in self.names}
        if self.problem.mixture is not None:
            stats = _metrics.mode_stats(_flat(x), self.problem.mixture)
            out.update({k: float(stats[k]) for k in MODE_METRICS})
        return out

    def floors(self, repeats: int, seed: int = 0) -> dict[str, tuple[float, float]]:
        floors = {}
        fn = self.problem.sample_reference
        for m in self.names:
            floors[m] = _metrics.noise_floor(self.sample_metric(m), fn, self.n, repeats=repeats, seed=seed)
        if self.problem.mixture is not None:
            mix = self.problem.mixture
            for k in MODE_METRICS:
                floors[k] = _metrics.noise_floor(
                    lambda a, b, k=k: float(_metrics.mode_stats(_flat(a), mix)[k]), fn, self.n,
                    repeats=repeats, seed=seed)
        return floors


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


# --- sampling several solvers alike --------------------------------------------------------
def sample_solvers(
    sde: DiffusionSDE,
    score: ScoreFn,
    names: Iterable[str],
    *,
    shape: tuple[int, ...],
    steps: int = 100,
    seed: int = 0,
    noise: str = "brownian",
    keep_trajectory: bool = True,
    max_frames: int | None = 101,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    **common: Any,
) -> dict[str, SampleResult]:
    """Sample the same problem with several solvers from the same start and noise.

    Every solver gets the same prior draw (same ``seed``) and, with ``noise="brownian"``,
    the same Brownian path, so differences are due to the solvers alone. Adaptive solvers
    ignore ``steps``. ``options`` maps solver name -> extra keyword options; ``common`` goes
    to every call of :func:`solvers.sample`. Returns ``{name: SampleResult}`` in order.
    """
    options = options or {}
    out = {}
    for name in names:
        out[name] = solvers.sample(sde, score, shape, name, steps=steps, seed=seed, noise=noise,
                                   keep_trajectory=keep_trajectory, max_frames=max_frames,
                                   **common, **dict(options.get(name, {})))
    return out


def evaluate_results(
    problem: Problem,
    results: Mapping[str, SampleResult],
    *,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
    floor_repeats: int = 3,
    budget: int | None = None,
    max_samples: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
    """Score already computed samples (e.g. from :func:`sample_solvers`) like the harness does.

    Each result is compared with its own independent reference set of the same size.
    ``max_samples`` scores only the first that many samples of each result (pairwise
    metrics cost ``O(n^2)``); the floors then use that size too.
    Returns ``(records, floors)`` ready for :func:`markdown_table` and the curve plots.
    """
    if not results:
        raise ValueError("results is empty")
    n = int(next(iter(results.values())).samples.shape[0])
    if max_samples is not None:
        n = min(n, int(max_samples))
    scorer = _Scorer(problem, metrics, n)
    records = []
    for name, res in results.items():
        adaptive = name in solvers.SOLVERS and _is_adaptive(name)
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
            ref = problem.sample_reference(n, torch.Generator().manual_seed(seed + _REF_SEED_OFFSET))
            record.update(scorer.evaluate(x, ref.to("cpu")))
        records.append(record)
    return records, scorer.floors(floor_repeats, seed=seed)


PREFERRED_SOLVERS: tuple[str, ...] = (
    "euler_maruyama", "pc", "ode_heun", "ode_rk45", "dpmpp_2m", "ddim", "dpm_solver_2",
    "ode_rk4", "ode_dopri5", "ode_euler", "torchsde_srk", "unipc", "deis",
)
"""A varied default selection (SDE, predictor-corrector, ODE, adaptive, fast samplers)."""


def default_solvers(k: int = 5, *, exclude_slow: bool = True) -> list[str]:
    """Up to ``k`` registered solvers: the :data:`PREFERRED_SOLVERS` present first, then others.

    Robust to which solvers a build registers. ``exclude_slow`` skips adaptive SDE solvers
    (their NFE is large at default tolerances).
    """
    avail = solvers.available()
    picked = [s for s in PREFERRED_SOLVERS if s in avail]
    rest = [s for s in avail if s not in picked]
    if exclude_slow:
        rest = [s for s in rest if not (_is_adaptive(s) and getattr(solvers.SOLVERS[s], "stochastic", False))]
    return (picked + rest)[:k]


def parse_solver_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse ``solver:key=value`` strings (values as JSON when possible, else strings).

    ``["pc:snr=0.16", "pc:corrector=langevin"]`` -> ``{"pc": {"snr": 0.16, "corrector": "langevin"}}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        solver, sep, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if not sep or not eq or not solver or not key:
            raise ValueError(f"solver option {item!r} must look like solver:key=value")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(solver, {})[key] = parsed
    return out


# --- the comparison ------------------------------------------------------------------------
@dataclass
class ComparisonResult:
    """Records of one comparison, the metrics' noise floors, and how much was recomputed.

    Attributes:
        problem: the problem's name.
        records: one flat dict per cell (keys ``solver``, ``budget_kind``, ``budget``,
            ``seed``, ``nfe``, ``seconds``, ``status``, ``error`` and one per metric).
        floors: metric -> ``(mean, std)`` between independent exact sample sets of size ``n``.
        metrics: the metric names recorded.
        computed, reused: cells computed by this call / taken from ``out``.
        files: paths written by :meth:`save` (when ``out`` was given).
    """

    problem: str
    records: list[dict[str, Any]]
    floors: dict[str, tuple[float, float]]
    metrics: list[str]
    computed: int = 0
    reused: int = 0
    files: dict[str, Path] = field(default_factory=dict)

    def table(self, metrics: Sequence[str] | None = None) -> str:
        """Markdown table: mean +- std over seeds per (solver, budget); noise floor last."""
        return markdown_table(self.records, self.floors, metrics or self.metrics)

    def plot(self, metrics: Sequence[str] | None = None, *, x: str = "nfe", ax: Any = None) -> Any:
        """Metric-vs-``x`` curves (one panel per metric); returns the figure."""
        from .plotting import plot_comparison

        return plot_comparison(self.records, metrics or self.metrics[:2], x=x, floors=self.floors,
                               ax=ax, suptitle=self.problem)

    def save(self, out: str | os.PathLike[str], *, plots: bool = True) -> dict[str, Path]:
        """Write ``results.json``, ``results.csv``, ``table.md`` and (``plots``) the curves."""
        from .plotting import save_figure

        out = Path(out)
        files = {
            "json": write_atomic(out / "results.json", json.dumps(
                {"problem": self.problem, "metrics": self.metrics, "floors": self.floors,
                 "records": self.records}, indent=1, default=_json_default)),
            "csv": write_atomic(out / "results.csv", records_to_csv(self.records)),
            "table": write_atomic(out / "table.md", f"## {self.problem}\n\n{self.table()}\n"),
        }
        if plots and any(r["status"] == "ok" for r in self.records):
            for x in ("nfe", "seconds"):
                fig = self.plot(x=x)
                files[f"curves_{x}"] = save_figure(fig, out / f"curves_{x}.png")
        self.files = files
        return files


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def records_to_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """Records as CSV text; columns are the union of the records' keys, in first-seen order."""
    cols = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: r.get(k, "") for k in cols})
    return buf.getvalue()


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
    noise: str = "gaussian",
    denoise: bool = False,
    solver_options: Mapping[str, Mapping[str, Any]] | None = None,
    floor_repeats: int = 5,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    plots: bool = True,
) -> ComparisonResult:
    """Run every (solver, budget, seed) cell and record NFE, wall time and metrics.

    Args:
        problem: what to sample (:meth:`Problem.from_target`, :meth:`Problem.from_checkpoint`).
        solver_names: names from :func:`solvers.available`.
        steps: step budgets of fixed-grid solvers.
        seeds: one cell per seed; the table and curves show mean +- std over seeds.
        tolerances: ``rtol = atol`` values for adaptive solvers (instead of ``steps``).
        n: samples per cell (the same size as the reference set and the noise floor).
        metrics: subset of :data:`METRICS`; mode statistics are added for mixtures.
        grid, noise, denoise: passed to :func:`solvers.sample` (``grid=None``: each solver's
            own ``default_grid``, e.g. log-SNR for exponential integrators).
        solver_options: solver name -> keyword options (e.g. ``{"pc": {"snr": 0.16}}``).
        floor_repeats: exact-vs-exact pairs averaged for each noise floor.
        out: folder for incremental cell files and the final results (enables resume).
        progress: show a tqdm progress bar.
        retry_failed: recompute stored cells that failed (default: keep their failure).
        plots: with ``out``, also draw ``curves_nfe.png`` and ``curves_seconds.png``.

    A cell whose solve raises (a non-finite score, a solver error) is recorded with
    ``status="error"`` and its message; the sweep goes on.
    """
    names = list(solver_names)
    unknown = [s for s in names if s not in solvers.SOLVERS]
    if unknown:
        raise ValueError(f"unknown solver(s) {unknown}; valid solvers: {', '.join(solvers.available())}")
    if not names:
        raise ValueError("give at least one solver")
    if not seeds or (not steps and any(not _is_adaptive(s) for s in names)):
        raise ValueError("give at least one seed and one step budget")
    if any(int(s) < 1 for s in steps):
        raise ValueError(f"step budgets must be positive, got {list(steps)}")
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    solver_options = {k: dict(v) for k, v in (solver_options or {}).items()}
    scorer = _Scorer(problem, metrics, n)
    settings = {
        "version": _FORMAT_VERSION, "problem": problem.spec, "n": n, "metrics": list(metrics),
        "grid": grid, "noise": noise, "denoise": denoise, "bandwidths": scorer.bandwidths,
    }
    out_dir = Path(out) if out is not None else None

    floors = _load_or_compute_floors(scorer, settings, floor_repeats, out_dir)
    cells = _plan(names, steps, tolerances, seeds)
    records: list[dict[str, Any]] = []
    computed = reused = 0
    bar = tqdm(total=len(cells), desc=f"compare {problem.name}", disable=not progress, unit="cell")
    for cell in cells:
        opts = dict(solver_options.get(cell.solver, {}))
        if cell.budget_kind == "tol":
            opts.update(rtol=cell.budget, atol=cell.budget)
        key = _hash({**settings, "cell": cell.label, "options": opts, "code": _solver_code(cell.solver)})
        path = out_dir / "cells" / cell.filename if out_dir is not None else None
        stored = _read_cell(path, key)
        if stored is not None and (stored["status"] == "ok" or not retry_failed):
            records.append(stored)
            reused += 1
        else:
            bar.set_postfix_str(cell.label)
            record = _run_cell(problem, scorer, cell, opts, n=n, grid=grid, noise=noise, denoise=denoise)
            record["key"] = key
            if path is not None:
                write_atomic(path, json.dumps(record, indent=1))
            records.append(record)
            computed += 1
        bar.update(1)
    bar.close()
    result = ComparisonResult(problem.name, records, floors, [*metrics] + (
        list(MODE_METRICS) if problem.mixture is not None else []), computed, reused)
    if out_dir is not None:
        write_atomic(out_dir / "config.json", json.dumps(
            {**settings, "solvers": names, "steps": list(steps), "seeds": list(seeds),
             "tolerances": list(tolerances), "solver_options": solver_options}, indent=1, default=str))
        result.save(out_dir, plots=plots)
    return result


def _read_cell(path: Path | None, key: str) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: recompute (writes are atomic, so this is foreign damage)
    return record if isinstance(record, dict) and record.get("key") == key else None


def _load_or_compute_floors(
    scorer: _Scorer, settings: dict[str, Any], repeats: int, out_dir: Path | None
) -> dict[str, tuple[float, float]]:
    key = _hash({**settings, "repeats": repeats})
    path = out_dir / "floors.json" if out_dir is not None else None
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if stored.get("key") == key:
                return {k: (float(v[0]), float(v[1])) for k, v in stored["floors"].items()}
        except (OSError, json.JSONDecodeError, KeyError, TypeError, IndexError):
            pass
    floors = scorer.floors(repeats)
    if path is not None:
        write_atomic(path, json.dumps({"key": key, "floors": floors}, indent=1))
    return floors


def _run_cell(
    problem: Problem, scorer: _Scorer, cell: Cell, opts: dict[str, Any], *, n: int, grid: str | None,
    noise: str, denoise: bool,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "problem": problem.name, "solver": cell.solver, "budget_kind": cell.budget_kind,
        "budget": int(cell.budget) if cell.budget_kind == "steps" else cell.budget,
        "seed": cell.seed, "n": n, "status": "ok", "error": None,
    }
    steps = int(cell.budget) if cell.budget_kind == "steps" else 1
    try:
        res = solvers.sample(problem.sde, problem.score, (n, *problem.data_shape), cell.solver,
                             steps=steps, seed=cell.seed, grid=grid, noise=noise, denoise=denoise,
                             **opts)
    except (NonFiniteScoreError, ValueError, RuntimeError, FloatingPointError) as err:
        record.update(status="error", error=f"{type(err).__name__}: {err}", nfe=None, seconds=None)
        return record
    record["nfe"] = int(res.nfe)
    record["seconds"] = float(res.seconds)
    for k, v in (res.stats or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            record[f"stat_{k}"] = v
    x = res.samples.detach()
    if not bool(torch.isfinite(x).all()):
        record.update(status="error", error="non-finite samples")
        return record
    ref = problem.sample_reference(n, torch.Generator().manual_seed(cell.seed + _REF_SEED_OFFSET))
    record.update(scorer.evaluate(x.to("cpu"), ref.to("cpu")))
    return record


# --- tables --------------------------------------------------------------------------------
_HEADERS = {
    "sliced_w2": "sliced W2", "mmd": "MMD²", "energy": "energy", "coverage": "modes covered",
    "weight_error": "mode-weight err", "outlier_fraction": "outliers",
}


def _fmt(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.3g} ± {std:.2g}" if std > 0 else f"{mean:.3g}"


def markdown_table(
    records: Sequence[Mapping[str, Any]],
    floors: Mapping[str, tuple[float, float]],
    metrics: Sequence[str],
) -> str:
    """Markdown table of mean ± std over seeds per (solver, budget), then the noise floor.

    Columns: solver, budget, NFE, each metric, ``SW2 / floor`` (when sliced W2 is among the
    metrics), wall time in seconds, seeds. Failed cells are listed below the table.
    """
    from .plotting.curves import summarize

    rows = summarize(records, ["nfe", "seconds", *metrics], keys=("solver", "budget_kind", "budget"))
    ratio = "sliced_w2" in metrics and "sliced_w2" in floors and floors["sliced_w2"][0] > 0
    head = ["solver", "budget", "NFE", *[_HEADERS.get(m, m) for m in metrics]]
    head += ["SW2 / floor"] if ratio else []
    head += ["time [s]", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        kind = r["budget_kind"]
        budget = {"steps": f"{r['budget']} steps", "tol": f"tol {r['budget']:g}"}.get(kind, "adaptive")
        cells = [r["solver"], budget, _fmt(r["nfe_mean"], r["nfe_std"])]
        cells += [_fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        if ratio:
            cells.append(f"{r['sliced_w2_mean'] / floors['sliced_w2'][0]:.2f}")
        cells += [f"{r['seconds_mean']:.3g}", str(r["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    floor_cells = ["*noise floor*", "exact vs exact", "–"]
    floor_cells += [_fmt(*floors[m]) if m in floors else "–" for m in metrics]
    floor_cells += ["1.00"] if ratio else []
    floor_cells += ["–", "–"]
    lines.append("| " + " | ".join(floor_cells) + " |")
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines.append("")
        lines.append(f"{len(failed)} failed cell(s):")
        lines += [f"- {r['solver']} budget {r['budget']} seed {r['seed']}: {r['error']}" for r in failed]
    return "\n".join(lines)
