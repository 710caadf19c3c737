"""The settings record every CLI output carries: a JSON sidecar next to the file it describes.

``run_settings`` resolves what the library actually used (the solver's default grid when no
grid was given, the noise level ``lam`` the dynamics ran with), and ``versions`` records the
software. ``write_sidecar(path, record)`` writes ``path`` with the suffix ``.json``.
"""

from __future__ import annotations

import inspect
import json
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["sample_defaults", "resolved_solver_settings", "versions", "write_sidecar"]


def sample_defaults() -> dict[str, Any]:
    """The defaults of ``solvers.sample`` (solver, steps, grid, lam): the CLI uses the same.

    ``steps`` is ``None`` in the signature (not given) and means `solvers.api.STEPS_DEFAULT`.
    """
    import solvers
    from solvers.api import STEPS_DEFAULT

    fallback = {"solver": "euler_maruyama", "steps": STEPS_DEFAULT, "grid": None, "lam": None}
    try:
        params = inspect.signature(solvers.sample).parameters
    except (TypeError, ValueError):  # not introspectable (e.g. replaced in a test)
        return fallback
    out = {k: params[k].default if k in params else v for k, v in fallback.items()}
    if out["steps"] is None:
        out["steps"] = STEPS_DEFAULT
    return out


def resolved_solver_settings(solver: str, grid: Any, lam: float | None, sde: Any = None) -> dict[str, Any]:
    """The grid name and ``lam`` that ``solvers.sample(sde, ..., solver, grid=grid, lam=lam)`` uses."""
    import solvers

    spec = solvers.SOLVERS[solver]
    default = spec.default_grid if sde is None else spec().grid_for(sde)
    return {"grid": grid if grid is not None else default,
            "grid_given": grid is not None, "lam": spec.lam_for(lam), "dynamics": spec.dynamics_kind}


def sde_name(sde: object) -> str:
    """The registered name of ``sde``'s class (``"vp"``, ``"ve"``, ...), else the class name."""
    from ..sde import SDES

    return next((k for k, cls in SDES.items() if type(sde) is cls), type(sde).__name__)


def check_checkpoint_sde(requested: str | None, trained: str, checkpoint: str) -> None:
    """Refuse ``--sde`` that names another SDE than the one ``checkpoint`` was trained with.

    A checkpoint carries its SDE; ``--sde`` is for exact targets. Given with ``--checkpoint``
    it must name the same SDE (case-insensitive); otherwise it was silently ignored.

    Raises:
        ValueError: ``requested`` is not ``None`` and differs from ``trained``.
    """
    if requested is not None and requested.lower() != trained.lower():
        raise ValueError(
            f"--sde {requested} does not match checkpoint {checkpoint}, which was trained with the {trained} SDE "
            "(a checkpoint carries its own SDE: drop --sde, or pass --sde " + trained + ")"
        )


def versions() -> dict[str, str]:
    """Versions of Python, scoresde, torch and numpy, and the platform."""
    import numpy
    import torch

    from .. import __version__

    return {"scoresde": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": sys.version.split()[0], "platform": platform.platform()}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        tolist = getattr(value, "tolist", None)  # a tensor or array: its numbers, not a truncated repr
        if callable(tolist):
            return _jsonable(tolist())
        return str(value)


def write_sidecar(path: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (plus ``versions``) as JSON to ``path`` with its suffix replaced by ``.json``."""
    from ..atomic import atomic_write_bytes

    out = Path(path).with_suffix(".json")
    full = {**_jsonable(record), "versions": versions(), "command": " ".join(["scoresde", *sys.argv[1:]])
            if Path(sys.argv[0]).name in ("scoresde", "__main__.py") else None}
    atomic_write_bytes(out, (json.dumps(full, indent=2, sort_keys=True) + "\n").encode())
    return out
