"""Animations of the forward (noising) and reverse (sampling) processes: GIF, or MP4 with ffmpeg.

GIFs use matplotlib's Pillow writer (Pillow ships with matplotlib); MP4 needs an ``ffmpeg``
executable on ``PATH`` (`ffmpeg_available`). The figure is headless (Agg), so
animations render on servers and in CI. Files are written atomically (a temporary file in
the same folder, renamed over the target when complete): a failed or interrupted save
leaves the previous file intact.

Axis limits follow the package's rule (`scoresde.plotting.extent`): they come from the data
end of the process (the frames at the smallest ``t``), never from the prior end, so under a
VE SDE the data is not a dot in a ``+-130`` square; particles outside the view leave it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import animation as mpl_animation
from matplotlib.axes import Axes
from matplotlib.contour import QuadContourSet
from torch import Tensor

from solvers.inputs import as_count
from solvers.protocol import DiffusionSDE
from solvers.result import Solution

from ..atomic import _UMASK
from ..targets import GaussianMixture
from ._common import (
    Limits,
    Range,
    check_parent,
    get_axes,
    square_limits,
    time_label,
    trajectory_arrays,
    xy_limits,
)
from .marginals import contour_levels, density_grid, shown_marginal
from .trajectories import forward_data, simulate_forward

__all__ = [
    "animate_particles",
    "animate_forward_reverse",
    "save_animation",
    "save_animation_all",
    "ffmpeg_available",
]


def ffmpeg_available() -> bool:
    """True when matplotlib finds an ``ffmpeg`` executable (needed for MP4)."""
    return bool(mpl_animation.writers.is_available("ffmpeg"))


def _check_times(times: np.ndarray, sde: DiffusionSDE | None) -> None:
    """Refuse frame times outside ``[0, T]`` of ``sde`` when the animation is built, not half-way
    through saving it (each frame's exact ``p_t`` is evaluated at its time)."""
    if sde is None:
        return
    T = float(sde.T)
    bad = times[(times < -1e-7 * T) | (times > T * (1 + 1e-7))]
    if bad.size:
        raise ValueError(f"animation frame times must lie in [0, T={T:g}] of the SDE, got {bad.size} outside "
                         f"(from {float(bad.min()):g} to {float(bad.max()):g})")


def _animate_frames(
    frames: np.ndarray,
    times: np.ndarray,
    labels: Sequence[str],
    *,
    target: GaussianMixture | None,
    sde: DiffusionSDE | None,
    ax: Axes | None,
    lims: Range | Limits | None,
    n_points: int,
    interval: int,
    seed: int,
    data_dim: int,
) -> mpl_animation.FuncAnimation:
    _check_times(times, sde)
    own_figure = ax is None
    fig, ax = get_axes(ax, size=(4.4, 4.4))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(frames.shape[1], size=min(n_points, frames.shape[1]), replace=False))
    pts = frames[:, idx]
    lims = square_limits(frames[int(np.argmin(times))]) if lims is None else lims  # the data end
    size = float(np.clip(2000.0 / len(idx), 1.0, 10.0))
    scat = ax.scatter(pts[0, :, 0], pts[0, :, 1], s=size, color="C0", alpha=0.6, linewidths=0)
    xl, yl = xy_limits(lims)
    ax.set_xlim(*xl)
    ax.set_ylim(*yl)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    title = ax.set_title("")
    target = shown_marginal(target, data_dim=data_dim)  # the first two coordinates are drawn
    show_density = target is not None and sde is not None
    t_max = float(sde.T) if sde is not None else float("inf")
    state: dict[str, QuadContourSet | None] = {"contour": None}

    def update(k: int) -> list[object]:
        scat.set_offsets(pts[k])
        title.set_text(f"{labels[k]}   {time_label(float(times[k]))}")
        if show_density:
            if state["contour"] is not None:
                state["contour"].remove()
                state["contour"] = None
            gx, gy, dens = density_grid(target, lims, sde=sde, t=min(max(float(times[k]), 0.0), t_max),
                                        resolution=90)
            levels = contour_levels(dens, np.array([0.1, 0.5]))  # None: p_t ~ 0 in the whole view
            if levels is not None:
                state["contour"] = ax.contour(gx, gy, dens, levels=levels, colors="k", linewidths=0.6,
                                              alpha=0.6)
        return [scat, title]

    update(0)
    if own_figure:
        # Lay the figure out once; re-running constrained layout on every frame would cost
        # more than drawing the frame itself.
        fig.canvas.draw()
        fig.set_layout_engine("none")
    return mpl_animation.FuncAnimation(fig, update, frames=len(times), interval=interval,
                                       blit=False, repeat=True)


def animate_particles(
    traj: Solution | Tensor | np.ndarray,
    times: Tensor | np.ndarray | Sequence[float] | None = None,
    *,
    target: GaussianMixture | None = None,
    sde: DiffusionSDE | None = None,
    ax: Axes | None = None,
    lims: Range | Limits | None = None,
    n_points: int = 2000,
    interval: int = 60,
    label: str = "reverse (sampling)",
    hold: int = 10,
    seed: int = 0,
) -> mpl_animation.FuncAnimation:
    """Animate particles of one trajectory (``Solution`` or frames ``(F, B, D)`` + ``times``).

    Shows ``n_points`` particles per frame (their first two coordinates); with ``target`` and
    ``sde`` the exact ``p_t`` is outlined at each frame's time (its marginal on those two
    coordinates for a target in ``D > 2``, `shown_marginal`). The last frame is held for ``hold`` extra frames.
    ``lims`` defaults to `square_limits` of the frame at the smallest ``t`` (the data end).
    ``interval`` is the time between frames in ms, also in saved files (`save_animation`).
    Returns the `matplotlib.animation.FuncAnimation` (save with `save_animation`).

    Raises:
        ValueError: as `trajectory_arrays`; with ``sde``, a time outside ``[0, T]``.
    """
    frames, t = trajectory_arrays(traj, times)  # the first two coordinates
    raw = traj.trajectory if isinstance(traj, Solution) else traj
    frames = np.concatenate([frames, np.repeat(frames[-1:], hold, axis=0)])
    t = np.concatenate([t, np.repeat(t[-1:], hold)])
    return _animate_frames(frames, t, [label] * len(t), target=target, sde=sde, ax=ax, lims=lims,
                           n_points=n_points, interval=interval, seed=seed,
                           data_dim=int(raw.shape[-1]) if raw is not None else 2)


def animate_forward_reverse(
    sde: DiffusionSDE,
    x0: Tensor | np.ndarray,
    result: Solution,
    *,
    target: GaussianMixture | None = None,
    ax: Axes | None = None,
    forward_frames: int = 40,
    lims: Range | Limits | None = None,
    n_points: int = 2000,
    interval: int = 60,
    hold: int = 8,
    seed: int = 0,
) -> mpl_animation.FuncAnimation:
    """Data ``x0: (B, 2)`` noised forward to ``T``, then ``result``'s reverse paths back to data.

    The forward part is simulated exactly (`simulate_forward`);
    the reverse part is the solver's stored trajectory. Each end is held ``hold`` frames.
    ``lims`` defaults to `square_limits` of the data ``x0`` and the final samples (the data
    end of both processes, as `write_sampling_figures` uses), never of the prior end.
    ``x0`` may be a tensor or an array. Returns the animation.
    """
    x0 = forward_data(x0, result)
    forward_frames = as_count(forward_frames, "forward_frames")
    g = torch.Generator(device=x0.device).manual_seed(seed)
    fwd, fwd_t = simulate_forward(sde, x0, steps=forward_frames, generator=g)
    fwd_np = fwd.detach().to("cpu", torch.float64).numpy()[:, :, :2]
    rev, rev_t = trajectory_arrays(result)
    n = min(fwd_np.shape[1], rev.shape[1])
    parts = [
        (np.repeat(fwd_np[:1, :n], hold, axis=0), np.repeat(fwd_t.numpy()[:1], hold), "data"),
        (fwd_np[:, :n], fwd_t.numpy(), "forward (noising)"),
        (rev[:, :n], rev_t, "reverse (sampling)"),
        (np.repeat(rev[-1:, :n], hold, axis=0), np.repeat(rev_t[-1:], hold), "samples"),
    ]
    frames = np.concatenate([p[0] for p in parts])
    t = np.concatenate([p[1] for p in parts])
    labels = [p[2] for p in parts for _ in range(len(p[1]))]
    lims = square_limits(fwd_np[0], rev[int(np.argmin(rev_t))]) if lims is None else lims  # data end
    return _animate_frames(frames, t, labels, target=target, sde=sde, ax=ax, lims=lims,
                           n_points=n_points, interval=interval, seed=seed, data_dim=int(x0.shape[-1]))


def save_animation(
    anim: mpl_animation.FuncAnimation,
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    dpi: int = 80,
) -> Path:
    """Write ``anim`` to ``path``: ``.gif`` (Pillow) or ``.mp4`` (needs ffmpeg). Returns the path.

    ``fps`` defaults to ``1000 / interval`` of the animation (its ``interval=`` in ms, as
    matplotlib's own ``Animation.save`` does). The frames go to a temporary file in the same
    folder, renamed over ``path`` only once complete: an error or Ctrl-C part-way leaves an
    existing file as it was (and no temporary file).

    Raises ``ValueError`` for another suffix or a non-positive ``fps``, ``RuntimeError`` for
    MP4 without ffmpeg.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if fps is None:
        # A hair below 1000 / interval, so the GIF writer's int(1000 / fps) gives the interval
        # back exactly (1000 / (1000 / 60) is 59.99..., which would make 50 ms GIF frames).
        fps = 1000.0 / (float(getattr(anim, "_interval", 1000.0 / 15)) * (1 + 1e-9))
    if not (float(fps) > 0 and np.isfinite(float(fps))):
        raise ValueError(f"fps must be positive and finite, got {fps!r}")
    if suffix == ".gif":
        # (matplotlib's stubs say int; any positive fps works: the writers take 1000 / fps)
        writer: mpl_animation.AbstractMovieWriter = mpl_animation.PillowWriter(fps=fps)  # type: ignore[arg-type]
    elif suffix == ".mp4":
        if not ffmpeg_available():
            raise RuntimeError("saving .mp4 needs ffmpeg on PATH; save as .gif instead")
        writer = mpl_animation.FFMpegWriter(fps=fps)  # type: ignore[arg-type]
    else:
        raise ValueError(f"animation path must end in .gif or .mp4, got {path.name!r}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / 'animation.gif'}")
    check_parent(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer picks the format from the suffix, so the temporary name keeps it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        anim.save(tmp, writer=writer, dpi=dpi)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_animation_all(
    anim: mpl_animation.FuncAnimation,
    stem: str | os.PathLike[str],
    *,
    fps: float | None = None,
    dpi: int = 80,
) -> list[Path]:
    """Save ``stem.gif`` always and ``stem.mp4`` when ffmpeg exists; returns the paths written."""
    stem = Path(stem)
    paths = [save_animation(anim, stem.with_suffix(".gif"), fps=fps, dpi=dpi)]
    if ffmpeg_available():
        paths.append(save_animation(anim, stem.with_suffix(".mp4"), fps=fps, dpi=dpi))
    return paths
