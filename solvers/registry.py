"""Name tables: one lookup helper for every "name -> thing" table of the package.

Every table of names in `solvers` (solvers, predictors, correctors, grids, Runge-Kutta
tableaus, SciPy and torchsde methods) is a plain mapping, and every lookup goes through
`lookup`, so an unknown name always gets the same error listing the valid names, with the
closest valid name first when the request looks like a misspelling (``"DPMPP_2M"``,
``"dpmpp-2m"``, ``"dpmp_2m"``). The likelihood code resolves its integrator names through it too.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

__all__ = ["closest_name", "is_respelling", "lookup"]

V = TypeVar("V")


def lookup(table: Mapping[str, V], name: object, kind: str, *, hint: str = "") -> V:
    """Return ``table[name]``, or raise ``ValueError("unknown <kind> 'x'; valid <kind>s: ...")``.

    Args:
        table: the name table.
        name: the requested name (anything; non-strings are unknown names).
        kind: what the table holds, e.g. ``"solver"`` or ``"scipy method"``; the plural of its
            last word heads the list of valid names (``"valid methods: ..."``).
        hint: optional sentence appended to the message (how to fix it).

    Raises:
        ValueError: ``name`` is not in ``table``.
    """
    try:
        return table[name]  # type: ignore[index]
    except (KeyError, TypeError):
        noun = kind.split()[-1]
        suffix = f" ({hint})" if hint else ""
        guess = closest_name(table, name)
        advice = f" did you mean {guess!r}?" if guess is not None else ""
        raise ValueError(
            f"unknown {kind} {name!r};{advice} valid {noun}s: {', '.join(table)}{suffix}"
        ) from None


def _normalized(name: str) -> str:
    """Case, surrounding blanks and ``-`` / blank separators folded: ``" DPMPP-2M"`` -> ``"dpmpp_2m"``."""
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())


def is_respelling(table: Mapping[str, object], name: str) -> bool:
    """Whether ``name`` equals a valid name up to case and separators (``"DPMPP-2M"``)."""
    return _normalized(name) in {_normalized(k) for k in table if isinstance(k, str)}


def closest_name(table: Mapping[str, object], name: object) -> str | None:
    """The valid name ``name`` most likely misspells, or None when none is close.

    A name equal to a valid one up to case and separators wins; otherwise the closest by
    `difflib.get_close_matches` (similarity ratio at least 0.8) of the normalised names.
    Non-string keys and requests are never matched.
    """
    if not isinstance(name, str):
        return None
    keys = {_normalized(k): k for k in table if isinstance(k, str)}
    wanted = _normalized(name)
    if wanted in keys:
        return keys[wanted]
    close = difflib.get_close_matches(wanted, list(keys), n=1, cutoff=0.8)
    return keys[close[0]] if close else None
