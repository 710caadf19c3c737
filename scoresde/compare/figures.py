"""Figures of a comparison (imports matplotlib through `scoresde.plotting`; load it lazily)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..plotting import plot_comparison, save_figure

__all__ = ["comparison_figure", "save_curves"]


def comparison_figure(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str], *, x: str = "nfe",
    floors: Mapping[str, tuple[float, float]] | None = None, ax: Any = None, title: str | None = None,
) -> Any:
    """Metric-vs-`x` curves (one panel per metric, mean ± std over seeds); returns the figure."""
    return plot_comparison(list(records), list(metrics), x=x, floors=floors, ax=ax, suptitle=title)


def save_curves(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str], floors: Mapping[str, tuple[float, float]],
    out: Path, title: str | None = None,
) -> dict[str, Path]:
    """Write `curves_nfe.png` and `curves_seconds.png` under `out`; returns `{name: path}`."""
    files = {}
    for x in ("nfe", "seconds"):
        fig = comparison_figure(records, metrics, x=x, floors=floors, title=title)
        files[f"curves_{x}"] = save_figure(fig, out / f"curves_{x}.png")
    return files
