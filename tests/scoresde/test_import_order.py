"""Every lazily loaded submodule of `scoresde` imports first in a fresh interpreter.

`scoresde.mode_metrics` imported first failed with a circular ImportError (it took its input
checks from `scoresde.metrics`, which re-exports `mode_stats` from it); the checks now live in
`scoresde._sample_checks`. One interpreter imports each module in turn, every one of them first
in a fresh copy of the package (the package's modules are dropped from `sys.modules` between).
"""

from __future__ import annotations

import subprocess
import sys

import scoresde

SCRIPT = r"""
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for key in [k for k in sys.modules if k == "scoresde" or k.startswith("scoresde.")]:
        del sys.modules[key]
    try:
        importlib.import_module("scoresde." + name)
    except Exception as err:  # noqa: BLE001 - report every failure
        failed.append(f"{name}: {type(err).__name__}: {err}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_lazy_submodule_imports_first() -> None:
    names = sorted(scoresde._LAZY)
    assert "mode_metrics" in names and "metrics" in names
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
