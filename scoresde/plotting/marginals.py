"""Marginals: sample clouds (scatter or 2-D histogram), exact densities, snapshots at chosen t.

The exact density of the noised marginal of a Gaussian-mixture target,
``p_t = sum_k w_k N(alpha(t) mu_k, alpha(t)^2 s_k^2 + sigma(t)^2)``, comes from
`scoresde.targets.GaussianMixture.marginal_log_prob`; the plots only evaluate it.

The default view of `plot_density` follows from that formula (`density_limits`): per
coordinate ``d`` the component ``k`` has mean ``alpha mu_kd`` and standard deviation
``tau_kd = sqrt(alpha^2 s_kd^2 + sigma^2)``, so the box ``[min_k(alpha mu_kd - 3 tau_kd),
max_k(alpha mu_kd + 3 tau_kd)]`` misses at most ``2 x 0.27% = 0.54%`` of every component
(a union bound over the two coordinates), hence of ``p_t``; the view pads it by 10%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure
from torch import Tensor

from solvers.inputs import as_count, as_integer, as_real
from solvers.protocol import DiffusionSDE
from solvers.result import Solution

from ..targets import GaussianMixture
from ._common import (
    Limits,
    Range,
    check_dims,
    check_points,
    get_axes,
    get_axes_grid,
    label_coordinates,
    square_limits,
    time_label,
    to_numpy,
    trajectory_arrays,
    trajectory_width,
    xy_limits,
)
from .extent import note_offview

__all__ = ["plot_samples", "plot_density", "density_grid", "density_limits", "contour_levels", "plot_snapshots",
           "shown_marginal", "nearest_frames"]

Kind = Literal["auto", "scatter", "hist"]

HIST_ABOVE = 3000
"""``kind="auto"`` draws a 2-D histogram above this many points, a scatter below."""


def _style_square(ax: Axes, lims: Range | Limits) -> None:
    xl, yl = xy_limits(lims)
    ax.set_xlim(*xl)
    ax.set_ylim(*yl)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def _auto_bins(pts: np.ndarray, lims: Range | Limits) -> int:
    """Bins per axis giving about four points per *occupied* bin (sharp modes stay sharp)."""
    coarse, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=40, range=list(xy_limits(lims)))
    occupied = max(float((coarse > 0).mean()), 1e-3)
    return int(np.clip(np.sqrt(pts.shape[0] / (4.0 * occupied)), 30, 250))


def plot_samples(
    x: Tensor | np.ndarray,
    *,
    ax: Axes | None = None,
    kind: Kind = "auto",
    lims: Range | Limits | None = None,
    bins: int | None = None,
    color: str = "C0",
    cmap: str = "magma_r",
    label: str | None = None,
    title: str | None = None,
    dims: tuple[int, int] = (0, 1),
) -> Axes:
    """Plot a sample cloud ``x: (N, D)`` (coordinates ``dims``) as a scatter or a 2-D histogram.

    ``kind="auto"`` uses a histogram above `HIST_ABOVE` points (no overplotting) and a
    scatter below, with marker size and opacity shrinking as ``N`` grows. ``bins`` defaults
    to about four points per occupied bin (clipped to 30..250 per axis). Points with NaN or
    infinite coordinates (a diverged sampler) are not drawn, and the panel says how many.
    ``lims`` is ``(lo, hi)`` for both axes or ``((x_lo, x_hi), (y_lo, y_hi))``; default:
    `square_limits` of the points (centred on them). Returns the axes.

    Raises:
        ValueError: ``x`` not ``(N, D)`` with ``N >= 1``, ``D >= 2``; ``dims`` out of range; an
            unknown ``kind``; ``bins`` not a positive integer (`NotAnIntegerError` for a float).
    """
    pts = check_points(x, dims)
    if bins is not None:
        bins = as_count(bins, "bins")
    _, ax = get_axes(ax)
    n = pts.shape[0]
    n_bad = int((~np.isfinite(pts).all(axis=1)).sum())
    lims = square_limits(pts) if lims is None else lims
    if bins is None:
        bins = _auto_bins(pts, lims)
    if kind not in ("auto", "scatter", "hist"):
        raise ValueError(f"kind must be 'auto', 'scatter' or 'hist', got {kind!r}")
    if kind == "hist" or (kind == "auto" and n > HIST_ABOVE):
        # Square-root colour scale so light modes stay visible next to heavy ones.
        ax.hist2d(pts[:, 0], pts[:, 1], bins=bins, range=list(xy_limits(lims)), cmap=cmap, cmin=1,
                  norm=PowerNorm(0.5), rasterized=True)
        if label is not None:
            ax.plot([], [], "s", color="0.3", label=label)
    else:
        size = float(np.clip(3000.0 / max(n, 1), 0.5, 12.0))
        alpha = float(np.clip(1500.0 / max(n, 1), 0.15, 0.8))
        ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=alpha, color=color, linewidths=0,
                   label=label, rasterized=n > 2000, zorder=2)
    _style_square(ax, lims)
    label_coordinates(ax, dims, int(np.shape(x)[1]))
    if n_bad:
        ax.text(0.97, 0.97, f"{n_bad} of {n} points are NaN/inf (not drawn)", transform=ax.transAxes,
                fontsize=7, va="top", ha="right", color="crimson",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "crimson", "alpha": 0.9}, zorder=5)
    if title is not None:
        ax.set_title(title)
    return ax


def density_grid(
    target: GaussianMixture,
    lims: Range | Limits,
    *,
    sde: DiffusionSDE | None = None,
    t: float | None = None,
    resolution: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact density of ``p_t`` (``p_0`` when ``sde`` or ``t`` is ``None``) on a square grid.

    Returns ``(X, Y, P)`` of shape ``(resolution, resolution)`` each.

    Raises:
        TypeError: ``target`` has no exact density (not a mixture); `NotAnIntegerError`:
            ``resolution`` not an integer.
        ValueError: a target that is not 2-D, ``resolution < 2``.
    """
    if not all(hasattr(target, a) for a in ("dim", "log_prob", "marginal_log_prob")):
        raise TypeError(f"target must be an exact mixture (scoresde.targets.GaussianMixture), got "
                        f"{type(target).__name__}")
    resolution = as_integer(resolution, "resolution", minimum=2)
    if target.dim != 2:
        raise ValueError(f"density plots need a 2-D target, {target.name} has D={target.dim}")
    (x_lo, x_hi), (y_lo, y_hi) = xy_limits(lims)
    gx, gy = torch.meshgrid(torch.linspace(x_lo, x_hi, resolution, dtype=torch.float64),
                            torch.linspace(y_lo, y_hi, resolution, dtype=torch.float64), indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    with torch.no_grad():
        if sde is None or t is None:
            logp = target.log_prob(pts)
        else:
            logp = target.marginal_log_prob(pts, float(t), sde)
    dens = torch.exp(logp).reshape(resolution, resolution)
    return gx.numpy(), gy.numpy(), dens.numpy()


DENSITY_VIEW_STDS = 3.0
"""`density_limits` covers every component of ``p_t`` to this many of its standard deviations."""


def density_limits(target: GaussianMixture, sde: DiffusionSDE | None = None, t: float | None = None,
                   *, k: float = DENSITY_VIEW_STDS, pad: float = 0.1) -> Limits:
    """The default view of the exact ``p_t`` (``p_0`` when ``sde`` or ``t`` is ``None``): square,
    holding all but a negligible part of its mass.

    Component ``k`` of ``p_t = sum_k w_k N(alpha mu_k, diag(alpha^2 s_k^2 + sigma^2))`` has,
    along coordinate ``d``, mean ``alpha mu_kd`` and standard deviation
    ``tau_kd = sqrt(alpha^2 s_kd^2 + sigma^2)`` (data spread and noise add in quadrature). The
    box ``[min_k(alpha mu_kd - k tau_kd), max_k(alpha mu_kd + k tau_kd)]`` misses at most
    ``2 * 2 (1 - Phi(k))`` of each component (0.54% for ``k = 3``), hence of ``p_t``; it is made
    square and padded by ``pad`` as in `square_limits` (kept centred on the origin when that
    widens it by at most 25%).
    """
    mu = target.means.to(torch.float64)[:, :2]
    sd = target.stds.to(torch.float64)
    sd = (sd[:, None].expand_as(target.means) if sd.ndim == 1 else sd)[:, :2]
    alpha, sigma = 1.0, 0.0
    if sde is not None and t is not None:
        a, s = sde.marginal_coeffs(torch.tensor([float(t)], dtype=torch.float64))
        alpha, sigma = float(a), float(s)
    tau = torch.sqrt(alpha**2 * sd**2 + sigma**2)
    lo = (alpha * mu - k * tau).min(dim=0).values.numpy()
    hi = (alpha * mu + k * tau).max(dim=0).values.numpy()
    return square_limits(np.stack([lo, hi]), quantile=1.0, pad=pad)


def contour_levels(dens: np.ndarray, fractions: np.ndarray) -> np.ndarray | None:
    """Iso-density levels ``peak * fractions``, or ``None`` when they are not strictly increasing
    and positive (the density underflows to 0 over the whole view: nothing to outline)."""
    peak = float(np.max(dens)) if dens.size else 0.0
    if not (math.isfinite(peak) and peak > 0):
        return None
    levels = peak * np.asarray(fractions, dtype=np.float64)
    if levels[0] <= 0 or np.any(np.diff(levels) <= 0):
        return None
    return levels


def _note_empty(ax: Axes, what: str) -> None:
    """Say on the panel that the exact density is 0 (underflows) everywhere in the view."""
    ax.text(0.03, 0.97, f"{what} is ~0 everywhere in this view\n(nothing to outline)", transform=ax.transAxes,
            fontsize=7, va="top", ha="left", color="0.25",
            bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.6", "alpha": 0.9}, zorder=5)


def plot_density(
    target: GaussianMixture,
    *,
    sde: DiffusionSDE | None = None,
    t: float | None = None,
    ax: Axes | None = None,
    lims: Range | Limits | None = None,
    resolution: int = 200,
    kind: Literal["image", "contour"] = "image",
    cmap: str = "Blues",
    color: str = "#1a9850",
    levels: int = 4,
    vmax_scale: float = 1.0,
    title: str | None = None,
) -> Axes:
    """Exact density of a 2-D mixture target at time ``t`` (``p_0`` when ``sde``/``t`` is None).

    ``kind="image"`` fills the plane; ``kind="contour"`` draws ``levels`` iso-lines at
    evenly spaced fractions of the peak, to overlay on samples. ``vmax_scale > 1`` lightens
    the image (the colour scale ends at ``vmax_scale`` times the peak; under the square-root
    shading the peak is drawn at ``(1/vmax_scale)^0.5`` of the colour map), for use as a
    background. ``lims`` defaults to `density_limits` (all but < 0.6% of ``p_t`` in view).
    When the density underflows to 0 over the whole view, the panel says so (no contour).
    Returns the axes.

    Raises:
        TypeError / ValueError: as `density_grid`; an unknown ``kind``; ``t`` not finite or
            outside ``[0, T]``; ``levels`` not a positive integer; ``vmax_scale`` not finite and > 0.
    """
    if not all(hasattr(target, a) for a in ("dim", "log_prob", "marginal_log_prob", "means", "stds")):
        raise TypeError(f"target must be an exact mixture (scoresde.targets.GaussianMixture), got "
                        f"{type(target).__name__}")
    if kind not in ("image", "contour"):
        raise ValueError(f"kind must be 'image' or 'contour', got {kind!r}")
    if t is not None:
        t = as_real(t, "t")
        if not math.isfinite(t):
            raise ValueError(f"t must be a finite time, got {t!r}")
        if sde is not None and not 0.0 <= t <= float(sde.T) * (1 + 1e-7):
            raise ValueError(f"t must lie in [0, T={float(sde.T):g}], got {t:g}")
    levels = as_count(levels, "levels")
    vmax_scale = as_real(vmax_scale, "vmax_scale")
    if not (math.isfinite(vmax_scale) and vmax_scale > 0):
        raise ValueError(f"vmax_scale must be a finite number > 0 (1: the peak at the top of the colour "
                         f"map; > 1 lightens the image), got {vmax_scale!r}")
    if target.dim != 2:
        raise ValueError(f"density plots need a 2-D target, {target.name} has D={target.dim}")
    _, ax = get_axes(ax)
    if lims is None:
        lims = density_limits(target, sde, t)
    gx, gy, dens = density_grid(target, lims, sde=sde, t=t, resolution=resolution)
    what = f"exact $p_0$ ({target.name})" if t is None or sde is None else "exact $p_t$"
    if kind == "image":
        peak = float(dens.max())
        # The density is evaluated at the grid's nodes, which imshow draws as pixel centres:
        # the image reaches half a pixel beyond them (the view stays at lims).
        (x_lo, x_hi), (y_lo, y_hi) = xy_limits(lims)
        hx, hy = (x_hi - x_lo) / (2 * (dens.shape[1] - 1)), (y_hi - y_lo) / (2 * (dens.shape[0] - 1))
        ax.imshow(dens, extent=(x_lo - hx, x_hi + hx, y_lo - hy, y_hi + hy), origin="lower", cmap=cmap,
                  norm=PowerNorm(0.5, vmin=0.0, vmax=vmax_scale * peak if peak > 0 else 1.0),
                  interpolation="bilinear")
        if not peak > 0:
            _note_empty(ax, what)
    else:
        lv = contour_levels(dens, np.linspace(0.1, 0.9, levels))
        if lv is None:
            _note_empty(ax, what)
        else:
            ax.contour(gx, gy, dens, levels=lv, colors=color, linewidths=0.7, alpha=0.8,
                       zorder=1.5)  # above 2-D histograms (1), below scatter points (2)
    _style_square(ax, lims)
    if title is None:
        title = f"exact $p_0$ ({target.name})" if t is None or sde is None else f"exact $p_t$, {time_label(t)}"
    ax.set_title(title)
    return ax


def shown_marginal(target: GaussianMixture | None, dims: Sequence[int] = (0, 1),
                   data_dim: int | None = None) -> GaussianMixture | None:
    """The 2-D density to outline under points drawn in the coordinates ``dims``.

    A 2-D target is returned as it is (``dims`` reorder its coordinates if they are ``(1, 0)``).
    A `GaussianMixture` in ``D > 2`` has axis-aligned components, so its marginal on two
    coordinates is the mixture of the components' marginals with the same weights, and an
    affine forward SDE noises every coordinate alike, so that mixture's ``p_t`` is the
    marginal of the target's ``p_t``: the outline is exact. ``None`` for ``None``; another
    target of ``D != 2`` raises (it cannot be projected here).

    Raises:
        ValueError: a target of another dimension than the data's ``data_dim`` (when given: its
            outline would be drawn over data it does not describe), ``dims`` out of range for
            the target, or a ``D != 2`` target that is not a `GaussianMixture`.
    """
    if target is None:
        return None
    if data_dim is not None and int(target.dim) != int(data_dim):
        raise ValueError(f"the target {getattr(target, 'name', '')!r} has D={target.dim} but the data have "
                         f"D={data_dim}: its density cannot be outlined over them (pass the data's target, "
                         "or target=None)")
    pair = check_dims(dims, int(target.dim))
    if pair == [0, 1] and target.dim == 2:
        return target
    if not isinstance(target, GaussianMixture):
        raise ValueError(f"the density of a {type(target).__name__} of D={target.dim} cannot be outlined in "
                         f"the coordinates {tuple(dims)}: pass a GaussianMixture, or target=None")
    return GaussianMixture(target.means[:, pair], target.stds[:, pair], target.weights,
                           name=f"{target.name} (x{pair[0] + 1}, x{pair[1] + 1})")


def nearest_frames(times: np.ndarray, wanted: Sequence[float]) -> list[int]:
    """Indices of the stored frames whose times are nearest to each of ``wanted``."""
    return [int(np.argmin(np.abs(times - float(w)))) for w in wanted]


def plot_snapshots(
    traj: Solution | Tensor | np.ndarray,
    at: Sequence[float] | None = None,
    *,
    times: Tensor | np.ndarray | None = None,
    target: GaussianMixture | None = None,
    sde: DiffusionSDE | None = None,
    ax: Sequence[Axes] | None = None,
    n_panels: int = 5,
    kind: Kind = "auto",
    lims: Range | Limits | None = None,
    dims: tuple[int, int] = (0, 1),
    suptitle: str | None = None,
) -> Figure:
    """Marginal snapshots of a trajectory at the times ``at`` (nearest stored frames).

    Args:
        traj: a ``Solution`` with a trajectory, or frames ``(F, B, D)`` with ``times``.
        at: times to show (default: ``n_panels`` evenly spaced over the stored frames).
        target, sde: when both are given, the exact ``p_t`` is outlined on every panel (for a
            target in ``D > 2``, its exact marginal on ``dims``, `shown_marginal`).
        ax: ``len(at)`` axes to draw into (default: a new row of panels).
        kind, lims, dims: as in `plot_samples`; limits are shared by all panels (default: from
            the data end, smallest ``t``; panels with points outside say how many, and
            ``sigma(t)``, so a wide VE prior does not shrink the data to a dot).

    Returns the figure.

    Raises:
        ValueError: no trajectory, bad shapes or ``dims`` (see `trajectory_arrays`), ``at``
            empty or with NaN / infinite times, ``n_panels < 1``.
    """
    frames, t = trajectory_arrays(traj, times, dims)
    raw = traj.trajectory if isinstance(traj, Solution) else traj
    shown = shown_marginal(target, dims, data_dim=int(raw.shape[-1]) if raw is not None else None)
    if at is None:
        n_panels = as_count(n_panels, "n_panels")
        idx = np.linspace(0, len(t) - 1, min(n_panels, len(t))).round().astype(int).tolist()
    else:
        wanted = to_numpy(at).reshape(-1)
        if not np.isfinite(wanted).all():
            raise ValueError(f"at must hold finite times, got {list(wanted)}")
        idx = nearest_frames(t, wanted)
    fig, axes = get_axes_grid(ax, len(idx), ncols=len(idx), panel=2.8, extra_width=0.2)
    lims = square_limits(frames[int(np.argmin(t))]) if lims is None else lims  # the data end
    for a, i in zip(axes, idx, strict=True):
        ti = float(t[i])
        title = time_label(ti)
        sigma = None
        if sde is not None:
            sigma = float(sde.marginal_coeffs(torch.tensor([max(ti, 0.0)], dtype=torch.float64))[1])
            title += f", $\\sigma$ = {sigma:.3g}"
        plot_samples(frames[i], ax=a, kind=kind, lims=lims, title=title)
        if shown is not None and sde is not None:
            plot_density(shown, sde=sde, t=max(ti, 0.0), ax=a, lims=lims, kind="contour", title=title)
        note_offview(a, frames[i], lims)  # sigma(t) is in the title
    for a in axes:
        label_coordinates(a, dims, trajectory_width(traj))
    for a in axes[1:]:
        a.set_ylabel("")
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig
