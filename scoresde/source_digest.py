"""Digests of the package's own source: what lets a stored result be reused only by the code
that made it (`scoresde.compare` cells, the chunks of ``scoresde sample`` / ``likelihood``)."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["package_root", "package_sources", "source_digest"]


def package_root(package: str) -> Path:
    """The folder of an importable package."""
    return Path(importlib.import_module(package).__file__ or "").parent


def package_sources(package: str) -> list[Path]:
    """Every ``.py`` file under an importable package's folder, sorted."""
    return sorted(package_root(package).rglob("*.py"))


def source_digest(files: Iterable[tuple[str, Path]]) -> str:
    """SHA-256 (first 16 hex digits) over ``(label, file)`` pairs, in the order given: each
    label and the file's bytes, NUL-separated. The labels name the files, so a renamed or moved
    file changes the digest too."""
    h = hashlib.sha256()
    for label, path in files:
        h.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
