"""Name tables: one lookup helper for every "name -> thing" table of the package.

Every table of names in `solvers` (solvers, predictors, correctors, grids, Runge-Kutta
tableaus, SciPy and torchsde methods) is a plain mapping, and every lookup goes through
`lookup`, so an unknown name always gets the same error listing the valid names. The
likelihood code resolves its integrator names through it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["lookup"]

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
        raise ValueError(
            f"unknown {kind} {name!r}; valid {noun}s: {', '.join(table)}{suffix}"
        ) from None
