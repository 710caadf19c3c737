"""Vector fields at a chosen time: the score ``s(x, t)`` and the probability-flow velocity.

The probability-flow ODE (Song et al. 2021, eq. 13) moves particles with
``dx/dt = f(x, t) - g(t)^2 s(x, t) / 2``; sampling integrates it from ``T`` down to ``eps``,
so along the sampling direction particles move with ``-dx/dt``. The velocity is taken from
`solvers.ProbabilityFlowODE` (the formula lives there once), not recomputed here.

Arrows are drawn at unit length and coloured by ``log10`` of the magnitude: the score
grows like ``1/sigma(t)^2`` near the data, so raw lengths would hide everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from solvers.dynamics import ProbabilityFlowODE
from solvers.protocol import DiffusionSDE, ScoreFn

from ..targets import GaussianMixture
from ._common import Limits, Range, get_axes, get_axes_grid, time_label, xy_limits
from .marginals import plot_density

__all__ = ["field_on_grid", "plot_vector_field", "plot_score_field", "plot_velocity_field", "plot_fields"]

FieldKind = Literal["quiver", "stream"]
VectorFn = Callable[[Tensor, Tensor], Tensor]


def field_on_grid(
    fn: VectorFn,
    t: float,
    lims: Range | Limits,
    *,
    density: int = 21,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``fn(x: (B, 2), t: (B,)) -> (B, 2)`` on a ``density x density`` grid at time ``t``.

    Returns ``(X, Y, U, V)``, each ``(density, density)``; one batched call of ``fn``.

    Raises:
        ValueError: ``density < 2``, or ``fn`` refuses 2-D points or returns another shape (a
            field of data that is not 2-D).
    """
    if density < 2:
        raise ValueError(f"density must be at least 2, got {density}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    (x_lo, x_hi), (y_lo, y_hi) = xy_limits(lims)
    gx, gy = torch.meshgrid(torch.linspace(x_lo, x_hi, density, dtype=dtype, device=device),
                            torch.linspace(y_lo, y_hi, density, dtype=dtype, device=device), indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    tt = torch.full((pts.shape[0],), float(t), dtype=dtype, device=device)
    with torch.no_grad():
        try:
            vec = fn(pts, tt)
        except (ValueError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and not any(w in str(err) for w in ("shape", "size")):
                raise
            raise ValueError(f"score/velocity fields need 2-D data; the field function refused 2-D points "
                             f"{tuple(pts.shape)}: {err}") from err
    if not isinstance(vec, Tensor) or vec.shape != pts.shape:
        raise ValueError(f"field function must return shape {tuple(pts.shape)}")
    vec = vec.detach().to("cpu", torch.float64).reshape(density, density, 2).numpy()
    return (gx.to("cpu", torch.float64).numpy(), gy.to("cpu", torch.float64).numpy(),
            vec[..., 0], vec[..., 1])


def plot_vector_field(
    fn: VectorFn,
    t: float,
    *,
    ax: Axes | None = None,
    lims: Range | Limits = (-3.0, 3.0),
    density: int = 21,
    kind: FieldKind = "quiver",
    cmap: str = "plasma",
    colorbar: bool = True,
    label: str = "field",
    symbol: str = "v",
    title: str | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Axes:
    """Quiver or stream plot of any 2-D vector field ``fn(x, t)`` at time ``t``.

    Arrows have unit length (direction exact); colour is ``log10 |fn|``, its bar labelled
    ``log10 |symbol|``; ``label`` names the field in the default title.
    Returns the axes.
    """
    fig, ax = get_axes(ax)
    gx, gy, u, v = field_on_grid(fn, t, lims, density=density, dtype=dtype, device=device)
    mag = np.hypot(u, v)
    logmag = np.log10(np.maximum(mag, 1e-12))
    # Robust colour range: a single stagnation point (|v| = 0) must not flatten the scale.
    clim = (float(np.quantile(logmag, 0.05)), float(np.quantile(logmag, 0.995)))
    if clim[1] <= clim[0]:
        clim = (clim[0] - 0.5, clim[0] + 0.5)
    if kind == "quiver":
        safe = np.where(mag > 0, mag, 1.0)
        q = ax.quiver(gx, gy, u / safe, v / safe, logmag, cmap=cmap, angles="xy", pivot="mid",
                      scale=density * 1.15, width=0.004, headwidth=3.5, clim=clim)
        mappable = q
    elif kind == "stream":
        sp = ax.streamplot(gx, gy, u, v, color=np.clip(logmag, *clim), cmap=cmap, density=1.1,
                           linewidth=0.9, arrowsize=0.9)
        mappable = sp.lines
    else:
        raise ValueError(f"kind must be 'quiver' or 'stream', got {kind!r}")
    xl, yl = xy_limits(lims)
    ax.set_xlim(*xl)
    ax.set_ylim(*yl)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if colorbar:
        fig.colorbar(mappable, ax=ax, label=f"log$_{{10}}$ |{symbol}|", shrink=0.85)
    ax.set_title(f"{label}, {time_label(t)}" if title is None else title)
    return ax


def _check_2d(target: GaussianMixture | None) -> None:
    """Refuse a target that is not 2-D before drawing (fields live on the plane)."""
    if target is not None and target.dim != 2:
        raise ValueError(f"score/velocity fields need 2-D data, got D={target.dim}")


def _background(ax: Axes, target: GaussianMixture | None, sde: DiffusionSDE | None, t: float,
                lims: Range | Limits) -> None:
    if target is not None and target.dim == 2:
        plot_density(target, sde=sde, t=t, ax=ax, lims=lims, cmap="Greys", resolution=150,
                     vmax_scale=2.5)


def plot_score_field(
    score: ScoreFn,
    t: float,
    *,
    sde: DiffusionSDE | None = None,
    target: GaussianMixture | None = None,
    ax: Axes | None = None,
    lims: Range | Limits = (-3.0, 3.0),
    density: int = 21,
    kind: FieldKind = "quiver",
    title: str | None = None,
    colorbar: bool = True,
) -> Axes:
    """The score ``s(x, t) = grad_x log p_t(x)`` at time ``t``, over the exact ``p_t`` if given.

    ``target`` and ``sde`` (both) draw the exact density of ``p_t`` underneath in grey.
    Returns the axes.

    Raises:
        ValueError: the data is not 2-D (a ``target`` of another dimension, or a ``score``
            that refuses 2-D points).
    """
    _check_2d(target)
    _, ax = get_axes(ax)
    if sde is not None:
        _background(ax, target, sde, t, lims)
    return plot_vector_field(score, t, ax=ax, lims=lims, density=density, kind=kind,
                             label="score", symbol="s", title=title, colorbar=colorbar)


def plot_velocity_field(
    sde: DiffusionSDE,
    score: ScoreFn,
    t: float,
    *,
    target: GaussianMixture | None = None,
    direction: Literal["sampling", "forward"] = "sampling",
    ax: Axes | None = None,
    lims: Range | Limits = (-3.0, 3.0),
    density: int = 21,
    kind: FieldKind = "quiver",
    title: str | None = None,
    colorbar: bool = True,
) -> Axes:
    """Probability-flow ODE velocity ``dx/dt = f - g^2 s / 2`` at time ``t`` (Song et al. eq. 13).

    ``direction="sampling"`` (default) shows ``-dx/dt``, where particles go while time runs
    from ``T`` to ``eps``; ``"forward"`` shows ``dx/dt`` itself. Returns the axes.
    """
    if direction not in ("sampling", "forward"):
        raise ValueError(f"direction must be 'sampling' or 'forward', got {direction!r}")
    _check_2d(target)
    ode = ProbabilityFlowODE(sde, score, check_finite=False)
    sign = -1.0 if direction == "sampling" else 1.0

    def velocity(x: Tensor, tt: Tensor) -> Tensor:
        return sign * ode.drift(x, tt)

    _, ax = get_axes(ax)
    _background(ax, target, sde, t, lims)
    label = "−dx/dt" if direction == "sampling" else "dx/dt"
    return plot_vector_field(velocity, t, ax=ax, lims=lims, density=density, kind=kind,
                             label=f"PF-ODE velocity {label}", symbol="v", colorbar=colorbar,
                             title=title if title is not None else f"PF-ODE {label}, {time_label(t)}")


def plot_fields(
    sde: DiffusionSDE,
    score: ScoreFn,
    at: Sequence[float] = (1.0, 0.3, 0.1, 0.01),
    *,
    target: GaussianMixture | None = None,
    ax: Sequence[Axes] | None = None,
    lims: Range | Limits = (-3.0, 3.0),
    density: int = 21,
    kind: FieldKind = "quiver",
    suptitle: str | None = None,
) -> Figure:
    """Two rows of panels: the score (top) and the sampling-direction PF-ODE velocity (bottom).

    One column per time in ``at`` (clipped to ``[eps, T]``); ``ax`` takes ``2 * len(at)``
    axes, row-major. Returns the figure.
    """
    _check_2d(target)
    times = [min(max(float(t), sde.eps), sde.T) for t in at]
    n = len(times)
    fig, axes = get_axes_grid(ax, 2 * n, ncols=n, panel=3.0, extra_width=0.6)
    for j, t in enumerate(times):
        plot_score_field(score, t, sde=sde, target=target, ax=axes[j], lims=lims, density=density,
                         kind=kind, colorbar=True, title=f"score, {time_label(t)}")
        plot_velocity_field(sde, score, t, target=target, ax=axes[n + j], lims=lims,
                            density=density, kind=kind, colorbar=True,
                            title=f"PF-ODE −dx/dt\n{time_label(t)}")  # two lines: one ran into the colourbar beside it
    for a in axes[1:n] + axes[n + 1:]:
        a.set_ylabel("")
    for a in axes[:n]:
        a.set_xlabel("")
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig
