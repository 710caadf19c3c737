"""Shared plumbing for every plot: headless figures, axes handling, array conversion, limits.

Figures are built with `matplotlib.figure.Figure` and an Agg canvas, never through
``pyplot``: they render without a display, leave no global state behind (a sweep that makes
thousands of figures does not leak them) and work the same inside threads and test runners.
To draw into your own (interactive) figure, pass ``ax=`` from ``plt.subplots()``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure, SubFigure
from torch import Tensor

from solvers.inputs import as_integer, as_real
from solvers.result import Solution

from ..atomic import atomic_write_with

__all__ = [
    "new_figure",
    "root_figure",
    "get_axes",
    "get_axes_grid",
    "to_numpy",
    "trajectory_arrays",
    "square_limits",
    "xy_limits",
    "save_figure",
    "check_parent",
    "time_label",
]

MIXED_TIMES_TOLERANCE = 0.01
"""`trajectory_arrays` warns when a frame's samples lie further apart in time than this fraction
of the run's time span (per-sample steps: the frame's time is only their batch mean)."""

PANEL = 3.6
"""Default side length (inches) of one square panel."""


def new_figure(width: float, height: float) -> Figure:
    """A headless figure of ``width x height`` inches with constrained layout and an Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    # A little more padding than the default keeps a suptitle clear of the panel titles.
    fig.get_layout_engine().set(h_pad=0.08, w_pad=0.06)
    FigureCanvasAgg(fig)
    return fig


def root_figure(ax: Axes) -> Figure:
    """The top-level figure holding ``ax`` (also when ``ax`` lives in a sub-figure)."""
    fig = ax.figure
    return getattr(fig, "figure", fig)  # a SubFigure's .figure is its root Figure


def get_axes(ax: Axes | None, *, size: tuple[float, float] = (PANEL + 0.8, PANEL)) -> tuple[Figure, Axes]:
    """Return ``(figure, ax)``: the given axes, or a new one-panel figure of ``size`` inches."""
    if ax is None:
        fig = new_figure(*size)
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return root_figure(ax), ax


def get_axes_grid(
    ax: Sequence[Axes] | np.ndarray | None,
    n: int,
    *,
    ncols: int | None = None,
    panel: float = PANEL,
    extra_width: float = 0.8,
) -> tuple[Figure, list[Axes]]:
    """Return ``(figure, axes)`` with ``n`` panels: the given ones (checked), or a new grid.

    ``ax`` may be any sequence (or array) of ``n`` Axes of one figure, so multi-panel plots
    compose into a larger layout the caller owns.
    """
    if n < 1:
        raise ValueError("need at least one panel")
    if ax is not None:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(axes) != n or not all(isinstance(a, Axes) for a in axes):
            raise ValueError(f"ax must be a sequence of {n} matplotlib Axes, got {len(axes)} items")
        return root_figure(axes[0]), axes
    ncols = min(n, 4) if ncols is None else max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure(panel * ncols + extra_width, panel * nrows + 0.3)  # + room for titles
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.ravel())
    for extra in axes[n:]:
        extra.set_visible(False)
    return fig, axes[:n]


def to_numpy(x: Tensor | np.ndarray | Sequence[Any]) -> np.ndarray:
    """Detach, move to CPU and convert to a float64 numpy array.

    Raises:
        TypeError: complex values (a plot would silently drop the imaginary part).
    """
    if isinstance(x, Tensor):
        if x.is_complex():
            raise TypeError("plots need real numbers, got a complex tensor; pass x.real (or x.abs()) explicitly")
        return x.detach().to("cpu", torch.float64).numpy()
    if np.iscomplexobj(x):
        raise TypeError("plots need real numbers, got complex values; pass the real part explicitly")
    return np.asarray(x, dtype=np.float64)


def check_dims(dims: Any, d: int) -> list[int]:
    """``dims`` as two distinct coordinate indices in ``0 .. d-1`` (negative ones count from the end).

    Raises:
        TypeError: not a pair of integers. ValueError: not two, equal, or out of range.
    """
    if isinstance(dims, (str, bytes)) or not hasattr(dims, "__len__") or len(dims) != 2:
        raise TypeError(f"dims must be a pair of coordinate indices such as (0, 1), got {dims!r}")
    pair = [as_integer(i, "every index in dims") for i in dims]
    if any(not -d <= i < d for i in pair):
        raise ValueError(f"dims {tuple(pair)} out of range for data with D={d} coordinates (valid: 0 .. {d - 1})")
    if pair[0] % d == pair[1] % d:
        raise ValueError(f"dims must name two different coordinates, got {tuple(pair)}")
    return pair


def label_coordinates(ax: Any, dims: Any, d: int) -> None:
    """Name the axes after the coordinates ``dims`` shown (``x_1`` for index 0; negative indices
    count from the end of ``d``)."""
    if d < 2:
        return
    i, j = (k % d + 1 for k in check_dims(dims, d))
    ax.set_xlabel(f"$x_{i}$" if i < 10 else f"$x_{{{i}}}$")
    ax.set_ylabel(f"$x_{j}$" if j < 10 else f"$x_{{{j}}}$")


def trajectory_width(traj: Any) -> int:
    """``D`` of a trajectory ``(F, B, D)`` or of a ``Solution``'s (0 when it has none)."""
    arr = traj.trajectory if isinstance(traj, Solution) else traj
    shape = getattr(arr, "shape", None) if arr is not None else None
    if shape is None:
        shape = np.shape(arr) if arr is not None else ()
    return int(shape[2]) if len(shape) == 3 else 0


def check_points(x: Tensor | np.ndarray, dims: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Points ``(N, D)`` with ``D >= 2`` -> the two plotted coordinates ``(N, 2)``.

    Raises:
        ValueError: not ``(N, D)`` with ``N >= 1`` and ``D >= 2``, or ``dims`` out of range.
    """
    arr = to_numpy(x)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"points must have shape (N, D) with D >= 2, got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("there are no points to plot (shape (0, D))")
    return arr[:, check_dims(dims, arr.shape[1])]


def _warn_mixed_frame_times(result: Solution) -> None:
    """Warn when the frames of ``result`` hold samples at different times.

    With per-sample steps (``adaptive_sde``'s default) frame ``f`` holds each sample at its own
    time ``stats["trajectory_sample_times"][f]``, and ``trajectory_times[f]`` is their batch
    mean, which a plot would show as the frame's time.
    """
    per = result.stats.get("trajectory_sample_times")
    if not isinstance(per, Tensor) or per.ndim != 2 or per.numel() == 0:
        return
    per = per.to(torch.float64)
    spread = float((per.amax(dim=1) - per.amin(dim=1)).max())
    span = float(per.max() - per.min())
    if span > 0.0 and spread > MIXED_TIMES_TOLERANCE * span:
        from ..interop._warn import warn_at_user

        warn_at_user(
            f"the frames of this trajectory hold samples at different times (per-sample steps, as "
            f"adaptive_sde's default takes): up to {spread:.3g} apart within one frame, of a run over "
            f"{span:.3g}; each frame is placed at its samples' mean time (Solution.trajectory_times). "
            "Sample with per_sample=False for frames at one time each; the samples' own times are "
            "stats['trajectory_sample_times'] (frames, batch)"
        )


def trajectory_arrays(
    traj: Solution | Tensor | np.ndarray,
    times: Tensor | np.ndarray | Sequence[float] | None = None,
    dims: tuple[int, int] = (0, 1),
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(F, B, 2)`` and their times ``(F,)`` from a ``Solution`` or a raw array.

    A ``Solution`` whose frames hold samples at different times (per-sample steps) is warned
    about: its frame times are batch means (`MIXED_TIMES_TOLERANCE`).

    Raises ``ValueError`` when the result holds no trajectory (sample with
    ``keep_trajectory=True``), the shapes do not match, there are no frames or no particles,
    ``dims`` is out of range, or a time is NaN / infinite.
    """
    if isinstance(traj, Solution):
        if traj.trajectory is None or traj.trajectory_times is None:
            raise ValueError("this Solution holds no trajectory; sample with keep_trajectory=True")
        if times is None:
            _warn_mixed_frame_times(traj)
        times = traj.trajectory_times if times is None else times
        traj = traj.trajectory
    frames = to_numpy(traj)
    if frames.ndim != 3 or frames.shape[2] < 2:
        raise ValueError(f"trajectory must have shape (F, B, D) with D >= 2, got {frames.shape}")
    if frames.shape[0] == 0 or frames.shape[1] == 0:
        raise ValueError(f"trajectory has no frames or no particles: shape {frames.shape}")
    if times is None:
        raise ValueError("times are required with a raw trajectory array")
    t = to_numpy(times).reshape(-1)
    if t.shape[0] != frames.shape[0]:
        raise ValueError(f"{t.shape[0]} times for {frames.shape[0]} trajectory frames")
    if not np.isfinite(t).all():
        raise ValueError("trajectory times contain NaN or infinite values")
    return frames[:, :, check_dims(dims, frames.shape[2])], t


Range = tuple[float, float]
"""``(lo, hi)`` of one axis."""
Limits = tuple[Range, Range]
"""``((x_lo, x_hi), (y_lo, y_hi))``: the view of a square panel (equal widths)."""

ORIGIN_SLACK = 1.25
"""`square_limits` keeps the view centred on the origin while that widens it by at most this factor."""


def xy_limits(lims: Range | Limits) -> Limits:
    """``lims`` as ``((x_lo, x_hi), (y_lo, y_hi))``: a pair ``(lo, hi)`` applies to both axes.

    Raises:
        ValueError: neither ``(lo, hi)`` nor a pair of such ranges, or a range that is empty or
            not finite.
    """
    try:
        arr = np.asarray(lims, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.empty(0)
    if arr.shape == (2,):
        arr = np.stack([arr, arr])
    if arr.shape != (2, 2) or not np.isfinite(arr).all() or not (arr[:, 1] > arr[:, 0]).all():
        raise ValueError(f"lims must be (lo, hi) with lo < hi, or ((x_lo, x_hi), (y_lo, y_hi)), got {lims!r}")
    return (float(arr[0, 0]), float(arr[0, 1])), (float(arr[1, 0]), float(arr[1, 1]))


def square_limits(*point_sets: np.ndarray, quantile: float = 0.995, pad: float = 0.1) -> Limits:
    """Square axis limits ``((x_lo, x_hi), (y_lo, y_hi))`` covering the ``quantile`` box of all points.

    The view has the same width on both axes (equal aspect) and is centred on the points'
    robust box, padded by ``pad`` of its half-width, so off-centre data fill the panel. Data
    around the origin keep a view centred on ``(0, 0)`` when that widens it by at most
    `ORIGIN_SLACK` (centred toys look as they always did). A robust range (not min/max) keeps
    a few far outliers from shrinking the picture.

    Raises:
        ValueError: ``quantile`` outside ``(0.5, 1]`` or ``pad`` negative or not finite.
    """
    quantile, pad = as_real(quantile, "quantile"), as_real(pad, "pad")
    if not 0.5 < quantile <= 1:
        raise ValueError(f"quantile must be in (0.5, 1] (the share of points inside the view), got {quantile}")
    if not (math.isfinite(pad) and pad >= 0):
        raise ValueError(f"pad must be a finite number >= 0 (a fraction of the half-width), got {pad}")
    pts = np.concatenate([p.reshape(-1, p.shape[-1])[:, :2] for p in point_sets if p.size], axis=0) \
        if any(p.size for p in point_sets) else np.empty((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.size == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo = np.quantile(pts, 1 - quantile, axis=0)
    hi = np.quantile(pts, quantile, axis=0)
    centre = (lo + hi) / 2
    half = float(np.max(hi - lo)) / 2 * (1 + pad)
    origin_half = float(np.max(np.maximum(np.abs(lo), np.abs(hi)))) * (1 + pad)
    if half <= 0:  # a single point: a unit view around it (or around the origin)
        half = max(1.0, 0.1 * float(np.max(np.abs(centre))))
    elif origin_half <= ORIGIN_SLACK * half:
        centre, half = np.zeros(2), origin_half
    return ((float(centre[0] - half), float(centre[0] + half)),
            (float(centre[1] - half), float(centre[1] + half)))


def time_label(t: float) -> str:
    """``t = 0.5`` style label with sensible precision for small times."""
    return f"t = {t:.3g}"


def check_parent(path: Path) -> None:
    """Refuse an output ``path`` below an existing file (``mkdir`` would say only "File exists").

    Raises:
        ValueError: names the file that stands where a folder is needed.
    """
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder; choose another path")
            return


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (parent folders created; tight bounding box); returns the path.

    A path without a suffix gets matplotlib's default format (``.png``) appended, and the
    returned path is the file actually written. The file is written atomically
    (`scoresde.atomic.atomic_write_with`: a temporary file in the same folder, renamed over
    ``path`` when complete), so a failed or interrupted save leaves an existing file intact.

    Raises:
        TypeError: ``fig`` is not a matplotlib ``Figure`` (for an ``Axes`` pass ``ax.figure``).
        ValueError: ``path`` is an existing folder or lies below a file, its suffix is not an
            image format, or ``dpi`` is not positive.
    """
    if isinstance(fig, SubFigure):
        fig = fig.figure
    if not isinstance(fig, Figure):
        hint = "; pass ax.figure" if isinstance(fig, Axes) else ""
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}{hint}")
    if dpi != "figure" and not (isinstance(dpi, numbers.Real) and not isinstance(dpi, bool)
                                and math.isfinite(dpi) and dpi > 0):
        raise ValueError(f"dpi must be a positive number (or 'figure'), got {dpi!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / 'figure.png'}")
    if not path.suffix:
        path = path.with_name(f"{path.name}.{rcParams['savefig.format']}")  # what savefig writes
    fmt = path.suffix[1:].lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"Format {fmt!r} is not supported (supported formats: {', '.join(sorted(supported))})")
    check_parent(path)
    atomic_write_with(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.06))
    return path
