"""Error against cost for families of numerical methods (e.g. likelihood integrators).

Each method is a series of points ``(cost, error, tag)`` (``tag``: the step count or tolerance
that produced the point). Colours and markers are fixed per method across every panel, only
the two end points of each series carry their tag (no piles of overlapping labels), and one
shared legend sits below the panels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ._common import get_axes_grid

__all__ = ["plot_error_vs_cost", "error_cost_figure"]

Series = Mapping[str, Sequence[tuple[float, float, str]]]
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")


def plot_error_vs_cost(
    series: Series, *, ax: Axes, styles: Mapping[str, dict[str, Any]], xlabel: str, ylabel: str,
    title: str | None = None, threshold: float | None = None,
) -> Axes:
    """Draw every series of ``series`` on log-log axes ``ax`` with the fixed ``styles[label]``.

    Args:
        series: method label -> points ``(cost, error, tag)``, in order of increasing cost.
        ax: the axes.
        styles: label -> matplotlib line keywords (``color``, ``marker`` ...), shared by panels.
        xlabel, ylabel, title: axis texts.
        threshold: draw a dotted horizontal line at this error (e.g. the accuracy target).
    """
    for label, pts in series.items():
        pts = [p for p in pts if p[0] > 0 and p[1] > 0]
        if not pts:
            continue
        xs, ys, tags = zip(*pts, strict=True)
        style = styles[label]
        single = len(pts) == 1
        ax.loglog(xs, ys, ls="none" if single else "-", lw=1.4, ms=11 if single else 5, label=label,
                  **style)
        ends = [0] if single else [0, len(pts) - 1]
        for i in ends:
            ax.annotate(str(tags[i]), (xs[i], ys[i]), textcoords="offset points",
                        xytext=(5, -9) if i else (-6, 5), ha="left" if i else "right", fontsize=7,
                        color=style.get("color"))
    if threshold is not None:
        ax.axhline(threshold, color="0.4", lw=0.8, ls=":")
    # Plain numbers at 1, 2, 5 x 10^k: readable on axes spanning less than a decade.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def error_cost_figure(
    panels: Sequence[dict[str, Any]], *, ncols: int = 2, panel: float = 4.4,
    legend_title: str | None = None,
) -> Figure:
    """A grid of `plot_error_vs_cost` panels with one colour/marker per method and one legend.

    Args:
        panels: one dict per panel with ``series`` and the keyword arguments of
            `plot_error_vs_cost` (``xlabel``, ``ylabel``, ``title``, ``threshold``).
        ncols: panels per row.
        panel: side of one panel in inches.
        legend_title: title of the shared legend (e.g. "labels: steps or tolerance").
    """
    labels: list[str] = []
    for p in panels:
        labels += [k for k in p["series"] if k not in labels]
    styles = {lab: {"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)]}
              for i, lab in enumerate(labels)}
    for lab in labels:  # a reference method draws as a big star
        if lab.lower().startswith("reference"):
            styles[lab]["marker"] = "*"
    fig, axes = get_axes_grid(None, len(panels), ncols=ncols, panel=panel, extra_width=0.3)
    for ax, p in zip(axes, panels, strict=True):
        plot_error_vs_cost(p["series"], ax=ax, styles=styles, **{k: v for k, v in p.items() if k != "series"})
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=8, frameon=False,
               title=legend_title, title_fontsize=8)
    return fig
