"""Keeping the data in view when the prior is far wider (VE SDEs: ``sigma_max = 50``).

Axis limits come from the data end of a process (the smallest ``t``), never from the prior
end, so the data is not a dot in the middle of a ``+-150`` square. What lies outside the view
is then stated on the panel: ``prior_inset`` draws the full extent of the prior end of the
paths in a small corner inset with the main view outlined, and ``note_offview`` writes the
fraction of points outside the view and ``sigma(t)``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from solvers.inputs import as_count, as_real

from ._common import Limits, Range, xy_limits

__all__ = ["offview_fraction", "note_offview", "prior_inset", "emptiest_corner", "inset_corners", "INSET_RATIO"]

INSET_RATIO = 3.0
"""An inset is drawn when the prior-end points spread over this many times the view's half-width."""


def inset_corners(size: float) -> tuple[tuple[float, float], ...]:
    """Lower-left positions (axes fractions) of a ``size`` inset, in order of preference: lower
    right, lower left, upper right (room left for its title; the upper left holds the legend of
    `plot_trajectories`)."""
    return (1.0 - size - 0.02, 0.02), (0.02, 0.02), (1.0 - size - 0.02, 1.0 - size - 0.12)


def offview_fraction(pts: np.ndarray, lims: Range | Limits) -> float:
    """Fraction of the points ``(N, 2)`` outside the view ``lims`` (see `xy_limits`)."""
    if pts.size == 0:
        return 0.0
    (x_lo, x_hi), (y_lo, y_hi) = xy_limits(lims)
    inside = (pts[:, 0] >= x_lo) & (pts[:, 0] <= x_hi) & (pts[:, 1] >= y_lo) & (pts[:, 1] <= y_hi)
    return float(1.0 - inside.mean())


def note_offview(ax: Axes, pts: np.ndarray, lims: Range | Limits, *, sigma: float | None = None,
                 threshold: float = 0.05) -> float:
    """Write "k% outside this view (sigma = s)" in the lower left when more than ``threshold`` is."""
    frac = offview_fraction(pts, lims)
    if frac > threshold:
        share = f"{100 * frac:.0f}%" if frac < 0.995 else ">99%"  # never "100%" while some are shown
        text = f"{share} of points outside this view" if frac < 1.0 else "all points outside this view"
        if sigma is not None:
            text += f"\n$\\sigma(t)$ = {sigma:.3g}"
        ax.text(0.03, 0.03, text, transform=ax.transAxes, fontsize=7, va="bottom", ha="left",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.6", "alpha": 0.9}, zorder=5)
    return frac


def emptiest_corner(avoid: np.ndarray | None, lims: Range | Limits, size: float) -> tuple[float, float]:
    """The corner (lower-left position in axes fractions) of a ``size`` box covering fewest ``avoid`` points.

    Corners as `inset_corners`; ties go to the earlier one, and without points the first
    (lower right) is returned.
    """
    return _emptiest(avoid, lims, size)[0]


def _emptiest(avoid: np.ndarray | None, lims: Range | Limits, size: float) -> tuple[tuple[float, float], float]:
    """`emptiest_corner` and the fraction of ``avoid`` points that corner's box covers."""
    corners = inset_corners(size)
    if avoid is None or avoid.size == 0:
        return corners[0], 0.0
    (x_lo, x_hi), (y_lo, y_hi) = xy_limits(lims)
    fx = (avoid[:, 0] - x_lo) / (x_hi - x_lo)
    fy = (avoid[:, 1] - y_lo) / (y_hi - y_lo)
    counts = [int(((fx >= x0) & (fx <= x0 + size) & (fy >= y0) & (fy <= y0 + size + INSET_TITLE)).sum())
              for x0, y0 in corners]
    best = int(np.argmin(counts))
    return corners[best], counts[best] / len(avoid)


INSET_TITLE = 0.09
"""Height (axes fraction) of the two-line title above an inset, counted as covered too."""

INSET_SHRINK = (1.0, 0.75, 0.55)
"""Inset sizes tried, as fractions of the requested one, until a corner is nearly free of data."""

INSET_MAX_COVERED = 0.005
"""Largest fraction of the shown data an inset may cover; when every corner at every size of
`INSET_SHRINK` covers more (8 modes on a circle fill all four corners), the prior's extent is
written as a line of text instead."""


def prior_inset(ax: Axes, start: np.ndarray, lims: Range | Limits, *, label: str = "prior end",
                size: float = 0.3, max_points: int = 400, avoid: np.ndarray | None = None) -> Axes | None:
    """A corner inset with the prior-end points ``start: (N, 2)`` at their full extent.

    Drawn only when they reach more than `INSET_RATIO` times the main view's half-width from
    the origin (where the prior is centred); the main view is outlined in the inset. The inset
    goes to the corner of the view holding fewest of the points ``avoid: (M, 2)`` (the data
    shown; default: the lower right), shrunk (`INSET_SHRINK`) until it covers at most
    `INSET_MAX_COVERED` of them; when no corner is that free, a line of text gives the extent
    instead. Returns the inset axes, or ``None``.

    Raises:
        ValueError: ``size`` outside ``(0, 1]`` (a fraction of the axes) or ``max_points`` < 1.
    """
    size = as_real(size, "size")
    if not 0 < size <= 1:
        raise ValueError(f"size must be in (0, 1] (the inset's share of the axes' width), got {size}")
    max_points = as_count(max_points, "max_points")
    if start.size == 0:
        return None
    finite = start[np.isfinite(start).all(axis=1)]
    (x_lo, x_hi), (y_lo, y_hi) = xy_limits(lims)
    half = max(x_hi - x_lo, y_hi - y_lo) / 2
    reach = float(np.quantile(np.abs(finite), 0.99)) if finite.size else 0.0
    if reach <= INSET_RATIO * half:
        return None
    shown = None if avoid is None else avoid[np.isfinite(avoid).all(axis=1)]
    for factor in INSET_SHRINK:
        (x0, y0), covered = _emptiest(shown, lims, size * factor)
        if covered <= INSET_MAX_COVERED:
            size *= factor
            break
    else:  # no corner is free: no inset over the data, the extent in words
        ax.text(0.985, 0.985, f"{label}: $\\pm${reach:.3g}\n(outside this view)", transform=ax.transAxes,
                fontsize=6, va="top", ha="right", zorder=6, linespacing=1.0,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "0.6", "alpha": 0.75})
        return None
    ins = ax.inset_axes([x0, y0, size, size], zorder=6)
    pts = finite[:max_points]
    ins.scatter(pts[:, 0], pts[:, 1], s=1.0, color="k", alpha=0.5, linewidths=0, rasterized=True)
    ins.add_patch(Rectangle((x_lo, y_lo), x_hi - x_lo, y_hi - y_lo, fill=False, ec="crimson", lw=1.0))
    r = 1.1 * max(reach, abs(x_lo), abs(x_hi), abs(y_lo), abs(y_hi))
    ins.set_xlim(-r, r)
    ins.set_ylim(-r, r)
    ins.set_aspect("equal")
    ins.set_xticks([])
    ins.set_yticks([])
    ins.set_title(f"{label}: $\\pm${reach:.3g}\n(red box: this view)", fontsize=6.5, pad=2,
                  linespacing=1.0, bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                                         "alpha": 0.9})
    ins.patch.set_alpha(0.9)
    return ins
