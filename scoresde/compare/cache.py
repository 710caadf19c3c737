"""Persistence of a comparison: cells, atomic writes, cache keys, floors, CSV.

Each finished cell is one JSON file under `out/cells/`, written atomically (temporary file +
rename), keyed by a hash of everything that determines it (problem, sample size, metrics,
grid, noise, options, the source of the whole `solvers` package and of the modules that
sample the reference and score a cell, see `CODE_MODULES`), so a rerun reuses exactly the
cells whose settings and code match.
"""

from __future__ import annotations

import ast
import csv
import functools
import hashlib
import importlib.util
import inspect
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solvers

from ..atomic import atomic_write_bytes
from ..source_digest import package_sources, source_digest

__all__ = ["Cell", "is_comparison_config", "write_atomic", "records_to_csv", "cache_key", "solver_code", "code_files", "code_digest",
           "read_cell", "seal_cell", "load_or_compute_floors", "json_default", "CODE_PACKAGES", "CODE_MODULES"]

FORMAT_VERSION = 1
"""Bumped by hand when the layout of a stored cell changes (code edits are caught by `code_digest`)."""

CODE_PACKAGES: tuple[str, ...] = ("solvers",)
"""Packages whose every source file enters each cell's key (any solver may use any helper)."""

CODE_MODULES: tuple[str, ...] = (
    "scoresde.sde", "scoresde.schedules", "scoresde.discrete", "scoresde.targets", "scoresde.metrics",
    "scoresde.mode_metrics", "scoresde.compare.problem", "scoresde.compare.scoring", "scoresde.compare.runner",
)
"""Modules that build the SDE (the named ones, and `scoresde.EDMSDE`, `BetaSDE`, `SigmaSDE`,
`DiscreteVPSDE` a problem may be given), the exact score and reference samples, and score and
run a cell.
The ``scoresde`` modules they import enter the key too, followed through (`imported_modules`;
e.g. `scoresde.component_sums`, whose sums make the exact score), except those imported by
`NOT_FOLLOWED`."""

NOT_FOLLOWED: tuple[str, ...] = ("scoresde.compare.runner",)
"""Modules whose own file is in the key but whose imports are not followed: the runner imports
the code that stores, tabulates and draws results, which does not change a cell's numbers."""

Floors = dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a solver at one budget with one seed.

    `budget_kind` is `"steps"` (fixed grid), `"tol"` (adaptive: `rtol = atol`) or `"auto"`
    (an adaptive solver without tolerance options; `budget` is 0).
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
        """`<solver>__<kind>-<budget>__seed-<seed>.json`, distinct for distinct cells: a
        tolerance is spelled exactly (`repr`, e.g. `0.0010004`), never rounded."""
        b = int(self.budget) if self.budget_kind == "steps" else repr(float(self.budget))
        return f"{self.solver}__{self.budget_kind}-{b}__seed-{self.seed}.json"


def is_comparison_config(path: Path) -> bool:
    """Whether ``path`` is the ``config.json`` a comparison writes (it lists the solvers and seeds
    of the sweep), not a training run's or another tool's file of that name."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "solvers" in record and "seeds" in record


def settings_changes(config_path: Path, settings: Mapping[str, Any]) -> list[str]:
    """How ``settings`` differ from those a comparison stored in ``config_path``, one
    ``"key: stored -> new"`` per key (values shortened); empty when the file is absent or not a
    comparison's. Solvers, budgets and seeds are not settings: a sweep may add to them."""
    if not is_comparison_config(config_path):
        return []
    try:
        stored = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    new = json.loads(json.dumps(settings, default=str))
    missing = object()

    def show(value: Any) -> str:
        text = "(absent)" if value is missing else json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    def changes(old: Any, now: Any, key: str) -> list[str]:
        """Dotted keys down to the first leaf that differs (``problem.sde_config.T: 1 -> 2``)."""
        if isinstance(old, dict) and isinstance(now, dict):
            inner = [c for k in dict.fromkeys([*old, *now])
                     if old.get(k, missing) != now.get(k, missing)
                     for c in changes(old.get(k, missing), now.get(k, missing), f"{key}.{k}")]
            return inner[:3] + ([f"{key}: {len(inner) - 3} more"] if len(inner) > 3 else [])
        return [f"{key}: {show(old)} -> {show(now)}"]

    return [c for key, value in new.items() if stored.get(key, missing) != value
            for c in changes(stored.get(key, missing), value, key)]


RESULT_FILES = ("results.json", "results.csv", "table.md", "curves_nfe.png", "curves_seconds.png")
"""What `ComparisonResult.save` writes into a comparison's folder."""


def stored_cells(out_dir: Path) -> list[Path]:
    """The cell files of the comparison stored in ``out_dir``."""
    return sorted((out_dir / "cells").glob("*.json")) if (out_dir / "cells").is_dir() else []


def option_changes(config_path: Path, names: Sequence[str], options: Mapping[str, Any]) -> list[str]:
    """``"solver_options.<name>: stored -> new"`` for each solver of ``names`` that the comparison in
    ``config_path`` also swept with other options: its cells share a file name and would be
    replaced. Solvers new to the folder may take any options."""
    if not is_comparison_config(config_path):
        return []
    try:
        stored = json.loads(config_path.read_text(encoding="utf-8"))
        before = dict(stored.get("solver_options") or {})
        swept = set(stored.get("solvers") or [])
    except (OSError, ValueError, TypeError, AttributeError):
        return []
    now = json.loads(json.dumps({n: dict(options.get(n, {})) for n in names}, default=str))
    return [f"solver_options.{n}: {json.dumps(before.get(n, {}), sort_keys=True)} -> {json.dumps(now[n], sort_keys=True)}"
            for n in names if n in swept and before.get(n, {}) != now[n]]


def discard_comparison(out_dir: Path) -> int:
    """Delete what a comparison stored in ``out_dir`` (its cells, floors, settings, results,
    table and curves); returns the number of cells deleted. Other files are left alone."""
    cells = stored_cells(out_dir)
    for path in [*cells, out_dir / "floors.json", out_dir / "config.json", *(out_dir / f for f in RESULT_FILES)]:
        path.unlink(missing_ok=True)
    return len(cells)


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` atomically: a temporary file in the same folder, then rename.

    A reader (or a resumed run) sees either the old file or the complete new one, never a
    truncated file, even if the process is killed mid-write.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def solver_code(name: str) -> str:
    """Hash of the source file of a solver's class (a solver registered from outside
    `CODE_PACKAGES` is covered by this alone)."""
    cls = solvers.SOLVERS[name].factory
    try:
        return hashlib.sha256(Path(inspect.getfile(cls)).read_bytes()).hexdigest()[:16]
    except (TypeError, OSError):  # defined interactively: fall back to its name
        return f"{cls.__module__}.{cls.__qualname__}"


def _imports_of(name: str, path: Path, package: str) -> list[str]:
    """The modules of ``package`` that the source at ``path`` (module ``name``) imports, by name
    (read from its syntax tree, relative imports resolved; ``from m import x`` gives ``m`` and
    ``m.x``, of which only the modules that exist are kept by the caller)."""
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = (importlib.util.resolve_name("." * node.level + (node.module or ""), here)
                    if node.level else node.module or "")
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [m for m in found if m.split(".")[0] == package and m != package]


def imported_modules(roots: Sequence[str], *, not_followed: Sequence[str] = ()) -> dict[str, Path]:
    """``roots`` and every module of their top-level package they import, transitively (the
    package's bare ``__init__``, which only re-exports, is left out), as name -> source file;
    the imports of ``not_followed`` are not followed."""
    package = roots[0].split(".")[0] if roots else ""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # `m.x` where x is a function, not a module
            continue
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        path = seen[name] = Path(spec.origin)
        if name not in not_followed:
            todo += [m for m in _imports_of(name, path, package) if m not in seen]
    return seen


def code_files() -> tuple[Path, ...]:
    """The source files that decide a cell: every `.py` of `CODE_PACKAGES`, then `CODE_MODULES`
    and the modules they import (`imported_modules`), in a fixed order."""
    files: list[Path] = []
    for name in CODE_PACKAGES:
        files += package_sources(name)
    modules = imported_modules(CODE_MODULES, not_followed=NOT_FOLLOWED)
    files += [modules[name] for name in sorted(modules)]
    return tuple(files)


@functools.cache
def code_digest() -> str:
    """Hash of the bytes of `code_files()`, part of every cell's key: an edit to any solver,
    helper or metric invalidates the stored cells.

    Computed once per process (an edit made while a sweep runs is seen by the next process;
    `code_digest.cache_clear()` forces a re-read).
    """
    return source_digest((path.name, path) for path in code_files())


def cache_key(obj: Any) -> str:
    """Short hash of a JSON-able description (keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


CELL_DIGEST = "sha256"
"""Key of a stored cell's own checksum: SHA-256 of its canonical JSON without this key."""


def _cell_digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != CELL_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal_cell(record: dict[str, Any]) -> str:
    """The JSON text of `record` with its checksum (`CELL_DIGEST`) added, as `read_cell` checks it."""
    return json.dumps({**record, CELL_DIGEST: _cell_digest(record)}, indent=1)


def read_cell(path: Path | None, key: str) -> dict[str, Any] | None:
    """The stored record at `path` if it exists, parses, carries `key` and its checksum matches
    its contents (a changed digit is recomputed, not reused); else `None`."""
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: recompute (writes are atomic, so this is foreign damage)
    if not (isinstance(record, dict) and record.get("key") == key):
        return None
    if record.get(CELL_DIGEST) != _cell_digest(record):
        return None  # damaged (or from before cells carried a checksum): recompute
    return {k: v for k, v in record.items() if k != CELL_DIGEST}


def load_or_compute_floors(
    compute: Callable[[], Floors], settings: Mapping[str, Any], repeats: int, out_dir: Path | None
) -> Floors:
    """Noise floors read from `out_dir/floors.json` when its key matches, else `compute()` (stored).

    The key holds the settings, ``repeats`` and `code_digest`, as a cell's does: an edit to a
    metric or to the reference sampler recomputes the floors with the cells.
    """
    key = cache_key({**settings, "repeats": repeats, "code": code_digest()})
    path = out_dir / "floors.json" if out_dir is not None else None
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(stored, dict) and stored.get("key") == key:
                return {k: (float(v[0]), float(v[1])) for k, v in stored["floors"].items()}
        except (OSError, json.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError, ValueError):
            pass  # unreadable or foreign (a list, null, a damaged entry): recompute and rewrite
    floors = compute()
    if path is not None:
        write_atomic(path, json.dumps({"key": key, "repeats": repeats, "floors": floors}, indent=1))
    return floors


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` hook: paths as strings, tuples as lists."""
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
