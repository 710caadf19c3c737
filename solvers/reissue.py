"""Re-issue the warnings recorded during a `solvers.sample` run where the user will see them.

`solvers.sample` records the warnings of a run (its solvers raise them at different depths,
with and without chunks) and re-issues them after it: those raised in this package at the
caller of `sample`, any other (a user's score, torch) where it was raised. Filters apply as they
would have (an ``"error"`` filter raises then, after the run).

Python's own once-per-location bookkeeping (``__warningregistry__``) is reset whenever the
filters change, which the recording itself does at every run; so a loop of ``sample`` calls
would show the same warning at every iteration under the default filter. The actions that show
a warning once (``"default"``: per message and location, ``"module"``: per message and module,
``"once"``: per message) are therefore applied here, with a record that is reset, as Python's
is, when the filters change. A run's identical messages (one per chunk of a chunked run) are
shown once.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

__all__ = ["reissue_warnings"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

_SHOWN: set[tuple[Any, ...]] = set()
"""Keys of the messages already shown under a show-once action (see the module docstring)."""

_SHOWN_MAX = 10_000
"""`_SHOWN` starts over beyond this many keys (at worst a message is shown once more)."""

_FILTERS_SEEN: list[Any] = [None]
"""The filter state `_SHOWN` belongs to: ``(id(warnings.filters), tuple(warnings.filters))``."""


def _action(text: str, category: type[Warning], module: str, lineno: int) -> str:
    """The action of the first filter that matches, as `warnings.warn_explicit` finds it."""
    for action, msg, cat, mod, line in warnings.filters:
        if ((msg is None or msg.match(text)) and issubclass(category, cat)
                and (mod is None or mod.match(module)) and (line == 0 or line == lineno)):
            return str(action)
    return str(getattr(warnings, "defaultaction", "default"))


def _first_time(text: str, category: type[Warning], module: str, filename: str, lineno: int) -> bool:
    """Whether a show-once action still lets this message through (and record that it went)."""
    state = (id(warnings.filters), tuple(warnings.filters))
    if _FILTERS_SEEN[0] != state:
        _SHOWN.clear()
        _FILTERS_SEEN[0] = state
    action = _action(text, category, module, lineno)
    key: tuple[Any, ...]
    if action == "default":
        key = (text, category, filename, lineno)
    elif action == "module":
        key = (text, category, module)
    elif action == "once":
        key = (text, category)
    else:  # "always", "ignore", "error": warn_explicit applies them
        return True
    if key in _SHOWN:
        return False
    if len(_SHOWN) >= _SHOWN_MAX:  # messages carry numbers: a long session of distinct ones
        _SHOWN.clear()
    _SHOWN.add(key)
    return True


def reissue_warnings(caught: list[warnings.WarningMessage], depth: int = 2) -> None:
    """Re-issue ``caught``: this package's at the frame ``depth`` levels above this function
    (2: the caller of `solvers.sample`), the others where they were raised."""
    caller = sys._getframe(depth)
    c_file, c_line = caller.f_code.co_filename, caller.f_lineno
    c_module = str(caller.f_globals.get("__name__", "<string>"))
    seen: set[tuple[type[Warning], str]] = set()
    for w in caught:
        text = str(w.message)
        ours = os.path.abspath(w.filename).startswith(_PACKAGE_DIR + os.sep)
        if ours:
            if (w.category, text) in seen:
                continue  # the same message from another chunk of the run
            seen.add((w.category, text))
            filename, lineno, module, glob = c_file, c_line, c_module, caller.f_globals
        else:  # the module name warn_explicit derives from a file name
            filename, lineno, glob = w.filename, w.lineno, None
            module = filename[:-3] if filename.endswith(".py") else (filename or "<unknown>")
        if not _first_time(text, w.category, module, filename, lineno):
            continue
        warnings.warn_explicit(w.message, w.category, filename, lineno, module=module, registry={},
                               source=w.source, module_globals=glob)
