"""Particle trajectories: paths coloured by time, start and end marked; forward vs reverse.

The forward (noising) paths are drawn from the SDE's exact transition
``x_t = a(s, t) x_s + b(s, t) z`` (`solvers.dynamics.forward_transition`), so they are
exact samples of the forward process on the plotted grid, not an Euler approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from torch import Tensor

from solvers.dynamics import forward_transition
from solvers.inputs import as_count, as_integer, as_real
from solvers.protocol import DiffusionSDE
from solvers.result import Solution
from solvers.utils import append_dims

from ._common import (
    Limits,
    Range,
    get_axes,
    get_axes_grid,
    label_coordinates,
    square_limits,
    to_numpy,
    trajectory_arrays,
    trajectory_width,
    xy_limits,
)
from .extent import prior_inset

__all__ = ["simulate_forward", "plot_trajectories", "plot_forward_reverse"]


def simulate_forward(
    sde: DiffusionSDE,
    x0: Tensor,
    *,
    steps: int = 100,
    t_end: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact forward-process paths from data ``x0: (B, *D)`` at ``t = 0`` to ``t_end`` (default T).

    Each step applies the exact transition ``x_{t'} = a x_t + b z`` of the affine SDE.
    Returns ``(frames: (steps + 1, B, *D), times: (steps + 1,))`` with times increasing.

    Raises:
        TypeError: ``x0`` not a floating-point tensor, ``generator`` not a ``torch.Generator``;
            `NotAnIntegerError`: ``steps`` not an integer.
        ValueError: ``x0`` without samples, ``steps < 1``, ``t_end`` NaN or outside ``[0, T]``.
    """
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        what = f"a {x0.dtype} tensor" if isinstance(x0, Tensor) else type(x0).__name__
        raise TypeError(f"x0 must be a floating-point torch.Tensor (B, *D), got {what}")
    if x0.ndim < 1 or x0.shape[0] == 0:
        raise ValueError(f"x0 must have shape (B, *D) with B >= 1, got {tuple(x0.shape)}")
    steps = as_count(steps, "steps")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    t_end = sde.T if t_end is None else as_real(t_end, "t_end")
    if not (math.isfinite(t_end) and 0.0 < t_end <= float(sde.T) * (1 + 1e-12)):
        raise ValueError(f"t_end must be a finite time in (0, T={sde.T:g}], got {t_end}")
    times = torch.linspace(0.0, t_end, steps + 1, dtype=torch.float64)
    x = x0.detach().clone()
    frames = [x]
    for s, t in zip(times[:-1].tolist(), times[1:].tolist(), strict=True):
        ss = torch.full((x.shape[0],), s, dtype=x.dtype, device=x.device)
        tt = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
        a, b = forward_transition(sde, ss, tt)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = append_dims(a, x.ndim) * x + append_dims(b, x.ndim) * z
        frames.append(x)
    return torch.stack(frames), times


def _pick(n_total: int, n_paths: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = min(n_paths, n_total)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def plot_trajectories(
    traj: Solution | Tensor | np.ndarray,
    times: Tensor | np.ndarray | Sequence[float] | None = None,
    *,
    ax: Axes | None = None,
    n_paths: int = 32,
    seed: int = 0,
    cmap: str = "viridis",
    norm: Normalize | None = None,
    lims: Range | Limits | None = None,
    context: bool = True,
    endpoints: bool = True,
    colorbar: bool = True,
    linewidth: float = 0.7,
    title: str | None = None,
    dims: tuple[int, int] = (0, 1),
    inset: bool = True,
) -> Axes:
    """Draw ``n_paths`` particle paths coloured by time, with start and end points marked.

    Args:
        traj: a ``Solution`` with a trajectory, or frames ``(F, B, D)`` with ``times``.
        n_paths: number of particles drawn (a seeded random subset of ``B``).
        norm: time-to-colour normalisation (share one across panels to compare them).
        context: show *all* particles at the data end (smallest ``t``) as a faint grey cloud.
        endpoints: mark start (hollow circles) and end (filled dots) of each path.
        colorbar: add a colour bar labelled ``t``.
        dims: the two coordinates shown.
        lims: axis limits, ``(lo, hi)`` for both axes or ``((x_lo, x_hi), (y_lo, y_hi))``
            (`square_limits`); default: around the data end (smallest ``t``) of the paths, so a wide
            prior (VE) does not shrink the data to a dot.
        inset: when the prior end lies far outside the view, show it in a corner inset.

    Returns the axes.

    Raises:
        ValueError: no trajectory, bad shapes, NaN times or ``dims`` out of range (see
            `trajectory_arrays`); ``n_paths < 1`` or ``seed < 0``.
        NotAnIntegerError: ``n_paths`` or ``seed`` not an integer.
    """
    frames, t = trajectory_arrays(traj, times, dims)
    n_paths = as_count(n_paths, "n_paths")
    seed = as_integer(seed, "seed", minimum=0)
    fig, ax = get_axes(ax)
    idx = _pick(frames.shape[1], n_paths, seed)
    paths = frames[:, idx]  # (F, P, 2)
    data_end, prior_end = frames[int(np.argmin(t))], frames[int(np.argmax(t))]
    lims = square_limits(data_end) if lims is None else lims
    norm = Normalize(vmin=float(t.min()), vmax=float(t.max())) if norm is None else norm
    if context:
        # The data end of the paths (smallest t) carries the structure worth showing.
        cloud = data_end[_pick(frames.shape[1], 4000, seed + 1)]
        ax.scatter(cloud[:, 0], cloud[:, 1], s=1.5, color="0.55", alpha=0.35, linewidths=0,
                   rasterized=True, zorder=0)
    # One segment per (particle, step); each coloured by the time at its midpoint.
    seg = np.stack([paths[:-1], paths[1:]], axis=2)  # (F-1, P, 2, 2)
    seg = seg.transpose(1, 0, 2, 3).reshape(-1, 2, 2)
    mid_t = np.tile(0.5 * (t[:-1] + t[1:]), len(idx))
    lc = LineCollection(seg, cmap=cmap, norm=norm, linewidths=linewidth, alpha=0.85, zorder=1)
    lc.set_array(mid_t)
    ax.add_collection(lc)
    if endpoints:
        ax.scatter(paths[0, :, 0], paths[0, :, 1], s=14, facecolors="none", edgecolors="k",
                   linewidths=0.7, zorder=2, label=f"start, t = {t[0]:.3g}")
        ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=10, color="crimson", zorder=3,
                   label=f"end, t = {t[-1]:.3g}")
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    if inset:
        prior_inset(ax, prior_end, lims, label=f"t = {float(t.max()):.3g}", avoid=data_end)
    xl, yl = xy_limits(lims)
    ax.set_xlim(*xl)
    ax.set_ylim(*yl)
    ax.set_aspect("equal")
    label_coordinates(ax, dims, trajectory_width(traj))
    if colorbar:
        fig.colorbar(lc, ax=ax, label="t", shrink=0.85)
    if title is not None:
        ax.set_title(title)
    return ax


def forward_data(x0: Any, result: Solution) -> Tensor:
    """``x0`` (a tensor or an array) as a ``(B, D)`` tensor of the data ``result`` sampled.

    Raises:
        ValueError: ``x0`` is not ``(B, D)`` with ``B >= 1`` and the ``D`` of ``result.samples``.
    """
    if not isinstance(x0, Tensor):
        x0 = torch.as_tensor(to_numpy(x0), dtype=torch.get_default_dtype())
    want = tuple(result.samples.shape[1:])
    if len(want) != 1:
        raise ValueError(f"plot_forward_reverse draws points (B, D); this run's samples are {len(want)}-D arrays "
                         f"of shape {want} (images?), which the point plots do not draw; `scoresde sample` writes an image grid "
                         f"of a checkpoint's samples")
    if x0.ndim != 2 or x0.shape[0] < 1 or tuple(x0.shape[1:]) != want:
        raise ValueError(f"x0 must be data points of shape (B, {', '.join(map(str, want))}) like the run's "
                         f"samples, got {tuple(x0.shape)}")
    return x0


def plot_forward_reverse(
    sde: DiffusionSDE,
    x0: Tensor | np.ndarray,
    result: Solution,
    *,
    ax: Sequence[Axes] | None = None,
    n_paths: int = 12,
    steps: int = 50,
    seed: int = 0,
    lims: Range | Limits | None = None,
    cmap: str = "viridis",
) -> Figure:
    """Forward (noising) paths from data ``x0: (B, 2)`` (a tensor or an array) next to the
    reverse (sampling) paths.

    The left panel simulates the forward SDE exactly from ``x0`` (`simulate_forward`);
    the right panel shows ``result.trajectory`` from a solver. Both share one time colour
    scale on ``[0, T]`` and one set of axis limits (default: from the data ends; a prior far
    outside them is shown in a corner inset). Returns the figure.
    """
    x0 = forward_data(x0, result)
    fig, axes = get_axes_grid(ax, 2, ncols=2, panel=4.0, extra_width=0.9)
    g = torch.Generator(device=x0.device).manual_seed(seed)
    fwd, fwd_t = simulate_forward(sde, x0, steps=steps, generator=g)
    rev, rev_t = trajectory_arrays(result)
    fwd_np = fwd.detach().to("cpu", torch.float64).numpy()[:, :, :2]
    lims = square_limits(fwd_np[0], rev[-1]) if lims is None else lims  # the data ends only
    norm = Normalize(vmin=0.0, vmax=float(sde.T))
    plot_trajectories(fwd_np, fwd_t, ax=axes[0], n_paths=n_paths, seed=seed, norm=norm, cmap=cmap,
                      lims=lims, colorbar=False, title="forward SDE (noising): $x_0 \\to x_T$")
    plot_trajectories(rev, rev_t, ax=axes[1], n_paths=n_paths, seed=seed, norm=norm, cmap=cmap,
                      lims=lims, colorbar=False, title="reverse-time sampling: $x_T \\to x_\\epsilon$")
    axes[1].set_ylabel("")
    mappable = next(c for c in axes[1].collections if isinstance(c, LineCollection))
    fig.colorbar(mappable, ax=list(axes), label="t", shrink=0.85)
    return fig
