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

__all__ = ["offview_fraction", "note_offview", "prior_inset", "INSET_RATIO"]

INSET_RATIO = 3.0
"""An inset is drawn when the prior-end points spread over this many times the view's half-width."""


def offview_fraction(pts: np.ndarray, lims: tuple[float, float]) -> float:
    """Fraction of the points ``(N, 2)`` outside the square ``lims x lims``."""
    if pts.size == 0:
        return 0.0
    inside = ((pts >= lims[0]) & (pts <= lims[1])).all(axis=1)
    return float(1.0 - inside.mean())


def note_offview(ax: Axes, pts: np.ndarray, lims: tuple[float, float], *, sigma: float | None = None,
                 threshold: float = 0.05) -> float:
    """Write "k% outside this view (sigma = s)" in the lower left when more than ``threshold`` is."""
    frac = offview_fraction(pts, lims)
    if frac > threshold:
        text = f"{100 * frac:.0f}% of points outside this view"
        if sigma is not None:
            text += f"\n$\\sigma(t)$ = {sigma:.3g}"
        ax.text(0.03, 0.03, text, transform=ax.transAxes, fontsize=7, va="bottom", ha="left",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.6", "alpha": 0.9}, zorder=5)
    return frac


def prior_inset(ax: Axes, start: np.ndarray, lims: tuple[float, float], *, label: str = "prior end",
                size: float = 0.3, max_points: int = 400) -> Axes | None:
    """A corner inset with the prior-end points ``start: (N, 2)`` at their full extent.

    Drawn only when they spread over more than `INSET_RATIO` times the main view's half-width;
    the main view is outlined in the inset. Returns the inset axes, or ``None``.
    """
    if start.size == 0:
        return None
    finite = start[np.isfinite(start).all(axis=1)]
    half = max(abs(lims[0]), abs(lims[1]))
    reach = float(np.quantile(np.abs(finite), 0.99)) if finite.size else 0.0
    if reach <= INSET_RATIO * half:
        return None
    ins = ax.inset_axes([1.0 - size - 0.02, 0.02, size, size], zorder=6)
    pts = finite[:max_points]
    ins.scatter(pts[:, 0], pts[:, 1], s=1.0, color="k", alpha=0.5, linewidths=0, rasterized=True)
    ins.add_patch(Rectangle((lims[0], lims[0]), lims[1] - lims[0], lims[1] - lims[0], fill=False,
                            ec="crimson", lw=1.0))
    r = 1.1 * reach
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
