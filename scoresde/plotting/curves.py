"""Metric-vs-cost curves (cost = NFE or wall time) with error bars over seeds.

Input is a list of flat records, one per (solver, budget, seed) cell, as written by
`scoresde.compare.run_comparison` (keys ``solver``, ``budget``, ``seed``, ``nfe``,
``seconds``, ``status`` and one key per metric). `summarize` groups them and gives the
mean and standard deviation over seeds; the plots draw those with error bars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..compare.tables import summarize  # one implementation; it imports no matplotlib
from ._common import get_axes, get_axes_grid

__all__ = ["summarize", "plot_metric_curves", "plot_metric_vs_nfe", "plot_metric_vs_time",
           "plot_comparison", "METRIC_LABELS", "BOUNDED_METRICS"]

METRIC_LABELS: dict[str, str] = {
    "sliced_w2": "sliced Wasserstein-2",
    "mmd": "MMD$^2$ (RBF)",
    "energy": "energy distance",
    "coverage": "mode coverage",
    "weight_error": "mode-weight error",
    "outlier_fraction": "outlier fraction",
    "nfe": "NFE (score evaluations)",
    "seconds": "wall time [s]",
}

BOUNDED_METRICS: tuple[str, ...] = ("coverage",)
"""Fractions near 1 drawn on a linear ``[0, 1]`` axis (small fractions such as the mode-weight
error and the outlier fraction keep the log axis, which resolves them)."""

Record = Mapping[str, Any]


def _check_floor(floor: Any) -> tuple[float, float] | None:
    """``floor`` as ``(mean, std)``: a finite mean and a finite std >= 0 (``None`` passes).

    Raises:
        ValueError: not a number or a pair, not finite, or a negative std.
    """
    if floor is None:
        return None
    pair = (floor, 0.0) if isinstance(floor, (int, float)) and not isinstance(floor, bool) else floor
    try:
        mean, std = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"floor must be a number or a (mean, std) pair, got {floor!r}") from None
    if not (math.isfinite(mean) and math.isfinite(std) and std >= 0):
        raise ValueError(f"floor must be finite, with std >= 0; got mean {mean}, std {std}")
    return mean, std


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _log_axis(ax: Axes, which: str) -> None:
    """Log scale with ticks at 1, 2, 5 x 10^k labelled as plain numbers (no 3x10^1 clutter)."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_metric_curves(
    records: Iterable[Record],
    metric: str = "sliced_w2",
    *,
    x: str = "nfe",
    ax: Axes | None = None,
    floor: float | tuple[float, float] | None = None,
    group: str = "solver",
    logx: bool = True,
    logy: bool | None = None,
    title: str | None = None,
    legend: bool | str = True,
) -> Axes:
    """``metric`` against ``x`` (``"nfe"`` or ``"seconds"``), one line per ``group`` value.

    Points are means over seeds with error bars of one standard deviation in both
    directions (adaptive solvers' NFE and all wall times vary by seed). ``floor`` draws the
    metric's noise floor (mean, or ``(mean, std)`` as a band): the value two independent
    exact sample sets of the same size give, below which differences are not measurable.
    ``logy=None`` uses a log scale when every plotted value is positive (unbiased MMD² and
    energy distance can be negative near the floor, and then the scale stays linear), and a
    linear ``[0, 1]`` axis for the fractions of `BOUNDED_METRICS`.
    ``legend``: ``True`` (inside, best place), ``"outside"`` (right of the axes) or ``False``.
    Returns the axes.
    """
    records = list(records)
    if not records:
        raise ValueError("no records to plot")
    floor = _check_floor(floor)
    for field, what in ((metric, "metric"), (x, "x")):
        if not any(field in r for r in records):
            have = sorted({k for r in records for k in r if isinstance(r.get(k), (int, float))})
            raise ValueError(f"{what} {field!r} is in none of the records; they hold: {', '.join(have)}")
    _, ax = get_axes(ax, size=(5.6, 4.0))
    rows = summarize(records, [x, metric], keys=(group, "budget"))
    labels = list(dict.fromkeys(r[group] for r in rows))
    markers = "osD^vP*Xph<>"
    plotted: list[float] = []
    for i, label in enumerate(labels):
        pts = [r for r in rows if r[group] == label and _finite(r[f"{metric}_mean"])]
        pts.sort(key=lambda r: r[f"{x}_mean"])
        if not pts:
            continue
        plotted += [r[f"{metric}_mean"] - r[f"{metric}_std"] for r in pts]
        ax.errorbar(
            [r[f"{x}_mean"] for r in pts], [r[f"{metric}_mean"] for r in pts],
            xerr=[r[f"{x}_std"] for r in pts], yerr=[r[f"{metric}_std"] for r in pts],
            marker=markers[i % len(markers)], ms=4, lw=1.2, capsize=2.5, label=str(label),
            color=f"C{i % 10}",
        )
    if not plotted:  # every value NaN or infinite (e.g. each run diverged): say so on the panel
        ax.text(0.5, 0.5, f"no finite {metric} values", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, color="0.3")
    if floor is not None:
        mean, std = floor
        plotted.append(mean - std)
        ax.axhline(mean, color="k", ls="--", lw=1.0, label="noise floor")
        if std > 0:
            ax.axhspan(mean - std, mean + std, color="0.5", alpha=0.15, lw=0)
    if logx:
        _log_axis(ax, "x")
    if metric in BOUNDED_METRICS and logy is None:
        ax.set_ylim(-0.02, 1.05)  # fractions: a log axis would suggest values above 1
    elif logy or (logy is None and plotted and min(plotted) > 0):
        _log_axis(ax, "y")
    ax.set_xlabel(METRIC_LABELS.get(x, x))
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, which="major", alpha=0.3)
    if title is not None:
        ax.set_title(title)
    if legend:
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i] == "noise floor")  # floor last
        where = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)} if legend == "outside" else {
            "loc": "best"}
        ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8,
                  framealpha=0.85, **where)
    return ax


def plot_metric_vs_nfe(records: Iterable[Record], metric: str = "sliced_w2", **kw: Any) -> Axes:
    """`plot_metric_curves` with ``x="nfe"``."""
    return plot_metric_curves(records, metric, x="nfe", **kw)


def plot_metric_vs_time(records: Iterable[Record], metric: str = "sliced_w2", **kw: Any) -> Axes:
    """`plot_metric_curves` with ``x="seconds"`` (wall time of the solve)."""
    return plot_metric_curves(records, metric, x="seconds", **kw)


def plot_comparison(
    records: Iterable[Record],
    metrics: Sequence[str] = ("sliced_w2", "mmd"),
    *,
    x: str = "nfe",
    floors: Mapping[str, float | tuple[float, float]] | None = None,
    ax: Sequence[Axes] | None = None,
    suptitle: str | None = None,
) -> Figure:
    """One panel per metric (shared legend on the last panel). Returns the figure."""
    records = list(records)
    if isinstance(metrics, str):  # one name, not its letters
        metrics = (metrics,)
    fig, axes = get_axes_grid(ax, len(metrics), ncols=len(metrics), panel=4.2, extra_width=0.4)
    floors = floors or {}
    for i, (a, m) in enumerate(zip(axes, metrics, strict=True)):
        plot_metric_curves(records, m, x=x, ax=a, floor=floors.get(m),
                           legend="outside" if i == len(metrics) - 1 else False)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig
