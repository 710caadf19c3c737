"""Which solvers to compare and with which options: defaults, `solver:key=value` parsing, budgets."""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import solvers

from .cache import Cell

__all__ = ["PREFERRED_SOLVERS", "default_solvers", "parse_solver_options", "plan_cells", "is_adaptive",
           "unique", "check_solver_options", "on_tolerance_axis", "check_tolerance_options"]

T = TypeVar("T", bound=Hashable)

PREFERRED_SOLVERS: tuple[str, ...] = (
    "euler_maruyama", "pc", "ode_heun", "ode_rk45", "dpmpp_2m", "ddim", "dpm_solver_2",
    "ode_rk4", "ode_dopri5", "ode_euler", "torchsde_srk", "unipc",
)
"""A varied default selection (SDE, predictor-corrector, ODE, adaptive, fast samplers)."""


def accepts(name: str, option: str) -> bool:
    """Whether the solver class registered as `name` takes the keyword `option`."""
    return option in solvers.SOLVERS[name].accepted_options


def is_adaptive(name: str) -> bool:
    """Whether the solver registered as `name` chooses its own steps (`Solver.adaptive`)."""
    return bool(getattr(solvers.SOLVERS[name], "adaptive", False))


def on_tolerance_axis(name: str) -> bool:
    """Whether the solver `name` gets its budget from the tolerance grid (`rtol = atol = tol`)."""
    return is_adaptive(name) and accepts(name, "rtol")


TOLERANCE_OPTIONS: tuple[str, ...] = ("rtol", "atol")
"""Options the tolerance grid sets on the solvers it applies to."""


def check_tolerance_options(options: Mapping[str, Mapping[str, Any]], *, label: str = "solver option",
                            axis: str = "tolerances") -> None:
    """Refuse `rtol` / `atol` options for solvers on the tolerance axis.

    Every cell of such a solver sets `rtol = atol = tol` from the tolerance grid, which would
    overwrite the option without a word (while the run's config records it as applied).
    ``label`` and ``axis`` name the option and the grid in the message (the CLI passes
    ``"--option"`` and ``"--tolerances"``).

    Raises:
        ValueError: names the first such ``solver:key=value`` and the fix (``axis``).
    """
    for name, opts in options.items():
        clash = [k for k in TOLERANCE_OPTIONS if k in opts]
        if clash and name in solvers.SOLVERS and on_tolerance_axis(name):
            key, value = clash[0], _spell(opts[clash[0]])
            example = f"{axis} {value}" if axis.startswith("--") else f"{axis}=[{value}]"
            raise ValueError(
                f"{label} {name}:{key}={value}: {name} is adaptive and each of its cells sets rtol = atol "
                f"from {axis}, which would overwrite this option; drop it and give the tolerance as {example}")


def plan_cells(
    names: Sequence[str], steps: Sequence[int], tolerances: Sequence[float], seeds: Sequence[int]
) -> list[Cell]:
    """Every `(solver, budget, seed)` cell: step budgets for fixed-grid solvers, tolerances
    (`rtol = atol`) for adaptive ones that take them, one `"auto"` budget otherwise."""
    cells = []
    for name in names:
        budgets: list[tuple[str, float]]
        if is_adaptive(name):
            budgets = [("tol", float(t)) for t in tolerances] if on_tolerance_axis(name) else [("auto", 0.0)]
        else:
            budgets = [("steps", float(s)) for s in steps]
        for kind, b in budgets:
            for seed in seeds:
                cells.append(Cell(name, kind, b, int(seed)))
    return cells


def default_solvers(k: int = 5, *, exclude_slow: bool = True) -> list[str]:
    """Up to `k` registered solvers: the `PREFERRED_SOLVERS` present first, then others.

    Robust to which solvers a build registers. `exclude_slow` skips adaptive SDE solvers
    (their NFE is large at default tolerances).
    """
    avail = solvers.available()
    picked = [s for s in PREFERRED_SOLVERS if s in avail]
    rest = [s for s in avail if s not in picked]
    if exclude_slow:
        rest = [s for s in rest if not (is_adaptive(s) and getattr(solvers.SOLVERS[s], "stochastic", False))]
    return (picked + rest)[:k]


def parse_solver_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Parse `solver:key=value` strings (values as JSON when possible, else strings).

    `["pc:snr=0.16", "pc:corrector=langevin"]` -> `{"pc": {"snr": 0.16, "corrector": "langevin"}}`.

    Raises:
        ValueError: an item not of the form `solver:key=value`.
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


def unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, first occurrences in order (``[10, 30, 10] -> [10, 30]``).

    A repeated solver, budget or seed would only add copies of the same cell (and count them
    as extra seeds in the spread).
    """
    return list(dict.fromkeys(items))


def _spell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def check_solver_options(options: Mapping[str, Mapping[str, Any]], *, label: str = "solver option",
                         qualified: bool = True) -> None:
    """Instantiate each solver once with its options, so a bad value fails before any work.

    The error names the offending ``solver:key=value`` (``key=value`` when not ``qualified``;
    the first option that fails on its own, all of the solver's options when only their
    combination fails), prefixed by ``label`` (the CLI passes ``"--option"``).

    Raises:
        ValueError: unknown solver name or a value the solver refuses.
        TypeError: an option the solver does not take.
    """
    for name, opts in options.items():
        try:
            solvers.get_solver(name, **opts)
        except (ValueError, TypeError) as err:
            culprit = dict(opts)
            for key, value in opts.items():
                try:
                    solvers.get_solver(name, **{key: value})
                except (ValueError, TypeError):
                    culprit = {key: value}
                    break
            prefix = f"{name}:" if qualified else ""
            spelled = ", ".join(f"{prefix}{k}={_spell(v)}" for k, v in culprit.items())
            kind = ValueError if isinstance(err, ValueError) else TypeError
            raise kind(f"{label} {spelled}: {err}") from err
