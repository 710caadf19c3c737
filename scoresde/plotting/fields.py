"""Vector fields at a chosen time: the score ``s(x, t)`` and the probability-flow velocity.

The probability-flow ODE (Song et al. 2021, eq. 13) moves particles with
``dx/dt = f(x, t) - g(t)^2 s(x, t) / 2``; sampling integrates it from ``T`` down to ``eps``,
so along the sampling direction particles move with ``-dx/dt``. The velocity is taken from
`solvers.ProbabilityFlowODE` (the formula lives there once), not recomputed here.

Arrows are drawn at unit length and coloured by ``log10`` of the magnitude: the score
grows like ``1/sigma(t)^2`` near the data, so raw lengths would hide everything else.

The grid is evaluated in ``dtype`` on ``device`` (every function takes both): by default
those of the parameters of the network behind the field (``model.score_fn(sde)`` of a
float64 or CUDA model just works; its score refuses a state of another dtype), else
torch's default dtype on the CPU.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor, nn

from solvers.dynamics import ProbabilityFlowODE
from solvers.inputs import as_integer, as_real
from solvers.protocol import DiffusionSDE, ScoreFn

from ..targets import GaussianMixture
from ._common import Limits, Range, get_axes, get_axes_grid, time_label, xy_limits
from .field_views import (
    DEFAULT_FIELD_LIMS,
    FIELD_NOISE_LEVELS,
    FIELD_TIME_FRACTIONS,
    default_field_times,
    field_limits,
)
from .marginals import plot_density

__all__ = ["field_on_grid", "field_dtype_device", "plot_vector_field", "plot_score_field", "plot_velocity_field",
           "plot_fields", "default_field_times", "FIELD_NOISE_LEVELS", "FIELD_TIME_FRACTIONS"]

FieldKind = Literal["quiver", "stream"]
VectorFn = Callable[[Tensor, Tensor], Tensor]


def _module_of(fn: Any) -> nn.Module | None:
    """The ``nn.Module`` behind a field function: ``fn`` itself, the owner of a bound method, the
    function of a ``functools.partial``, or a module its closure holds (``ScoreModel.score_fn``)."""
    seen = 0
    while seen < 4:  # unwrap a few layers of partials / bound methods
        seen += 1
        if isinstance(fn, nn.Module):
            return fn
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, nn.Module):
            return owner
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, nn.Module):
                return value
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is None:
            return None
        fn = wrapped
    return None


def field_dtype_device(
    fn: Any, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> tuple[torch.dtype, torch.device]:
    """The dtype and device a field function is evaluated in: the given ones, else those of the
    parameters of the network behind ``fn`` (see the module docstring), else torch's default
    dtype on the CPU."""
    module = _module_of(fn) if dtype is None or device is None else None
    param = next(module.parameters(), None) if module is not None else None
    if dtype is None:
        dtype = param.dtype if param is not None else torch.get_default_dtype()
    if device is None:
        device = param.device if param is not None else torch.device("cpu")
    return dtype, torch.device(device)


def _check_time(t: Any, sde: DiffusionSDE | None = None) -> float:
    """``t`` as a finite float (in ``[0, T]`` when ``sde`` is given).

    Raises:
        ValueError: NaN / infinite, or outside ``[0, T]``, naming ``t``.
    """
    value = as_real(t, "t")
    if not math.isfinite(value):
        raise ValueError(f"the field time t must be finite, got {t!r}")
    if sde is not None and not 0.0 <= value <= float(sde.T) * (1 + 1e-7):
        raise ValueError(f"the field time t must lie in [0, T={float(sde.T):g}], got {value:g}")
    return value


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

    The grid and ``t`` are built in ``dtype`` on ``device`` (default: `field_dtype_device`,
    i.e. the parameters' dtype and device of a network's score). Returns ``(X, Y, U, V)``,
    each ``(density, density)`` float64 on the CPU; one batched call of ``fn``. ``U, V`` may
    hold NaN / inf where ``fn`` does (the plots mark those points).

    Raises:
        ValueError: ``density`` not an integer ``>= 2``; ``t`` not finite; ``fn`` refuses the
            points or the time (its message is kept; a shape error says the field must be 2-D)
            or returns another shape.
    """
    density = as_integer(density, "density", minimum=2)
    t = _check_time(t)
    dtype, device = field_dtype_device(fn, dtype, device)
    (x_lo, x_hi), (y_lo, y_hi) = xy_limits(lims)
    gx, gy = torch.meshgrid(torch.linspace(x_lo, x_hi, density, dtype=dtype, device=device),
                            torch.linspace(y_lo, y_hi, density, dtype=dtype, device=device), indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    tt = torch.full((pts.shape[0],), float(t), dtype=dtype, device=device)
    with torch.no_grad():
        try:
            vec = fn(pts, tt)
        except (ValueError, RuntimeError) as err:
            shape_error = any(w in str(err) for w in ("shape", "size"))
            if isinstance(err, RuntimeError) and not shape_error:
                raise
            hint = " (score/velocity fields need 2-D data)" if shape_error else ""
            raise ValueError(f"the field function refused the {tuple(pts.shape)} grid of 2-D points at "
                             f"t = {t:g}{hint}: {err}") from err
    if not isinstance(vec, Tensor) or vec.shape != pts.shape:
        got = tuple(vec.shape) if isinstance(vec, Tensor) else type(vec).__name__
        raise ValueError(f"field function must return shape {tuple(pts.shape)} (score/velocity fields need "
                         f"2-D data), got {got}")
    vec = vec.detach().to("cpu", torch.float64).reshape(density, density, 2).numpy()
    return (gx.to("cpu", torch.float64).numpy(), gy.to("cpu", torch.float64).numpy(),
            vec[..., 0], vec[..., 1])


def plot_vector_field(
    fn: VectorFn,
    t: float,
    *,
    ax: Axes | None = None,
    lims: Range | Limits | None = None,
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

    Arrows have unit length (direction exact); colour is ``log10 |fn|`` (range: its 5% to
    99.5% quantiles over the finite grid points), its bar labelled ``log10 |symbol|``;
    ``label`` names the field in the default title. The grid is evaluated in ``dtype`` on
    ``device`` (default: `field_dtype_device`); ``lims=None`` is `DEFAULT_FIELD_LIMS`. Grid points where the field is NaN / inf are
    marked with red crosses, counted on the panel, and a ``RuntimeWarning`` is issued.
    Returns the axes.

    Raises:
        ValueError: as `field_on_grid`; an unknown ``kind``; a field that is NaN / inf at every
            grid point.
    """
    if kind not in ("quiver", "stream"):
        raise ValueError(f"kind must be 'quiver' or 'stream', got {kind!r}")
    lims = DEFAULT_FIELD_LIMS if lims is None else lims
    gx, gy, u, v = field_on_grid(fn, t, lims, density=density, dtype=dtype, device=device)
    bad = ~(np.isfinite(u) & np.isfinite(v))
    if bad.all():
        raise ValueError(f"the {label} is NaN or infinite at every one of the {bad.size} grid points at "
                         f"{time_label(float(t))}; nothing to draw (a network that outputs NaN: check the "
                         "checkpoint or its training loss)")
    fig, ax = get_axes(ax)
    if bad.any():
        warnings.warn(f"the {label} is NaN or infinite at {int(bad.sum())} of {bad.size} grid points at "
                      f"{time_label(float(t))}; they are marked with red crosses", RuntimeWarning, stacklevel=2)
        u, v = np.where(bad, 0.0, u), np.where(bad, 0.0, v)  # drawn as crosses, not as arrows
    mag = np.hypot(u, v)
    logmag = np.log10(np.maximum(mag, 1e-12))
    # Robust colour range over the finite points: a single stagnation point (|v| = 0) must not
    # flatten the scale.
    ok = logmag[~bad]
    clim = (float(np.quantile(ok, 0.05)), float(np.quantile(ok, 0.995)))
    if clim[1] <= clim[0]:
        clim = (clim[0] - 0.5, clim[0] + 0.5)
    logmag = np.ma.masked_array(logmag, mask=bad)
    if kind == "quiver":
        safe = np.where(mag > 0, mag, 1.0)
        q = ax.quiver(gx, gy, np.ma.masked_array(u / safe, bad), np.ma.masked_array(v / safe, bad), logmag,
                      cmap=cmap, angles="xy", pivot="mid",
                      scale=density * 1.15, width=0.004, headwidth=3.5, clim=clim)
        mappable = q
    else:
        sp = ax.streamplot(gx, gy, u, v, color=np.clip(logmag.filled(clim[0]), *clim), cmap=cmap,
                           density=1.1, linewidth=0.9, arrowsize=0.9)
        mappable = sp.lines
    if bad.any():
        ax.scatter(gx[bad], gy[bad], marker="x", s=14, color="crimson", linewidths=0.9, zorder=4)
        ax.text(0.97, 0.97, f"{int(bad.sum())} of {bad.size} grid points NaN/inf (x)", transform=ax.transAxes,
                fontsize=7, va="top", ha="right", color="crimson",
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "crimson", "alpha": 0.9}, zorder=5)
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
    lims: Range | Limits | None = None,
    density: int = 21,
    kind: FieldKind = "quiver",
    title: str | None = None,
    colorbar: bool = True,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Axes:
    """The score ``s(x, t) = grad_x log p_t(x)`` at time ``t``, over the exact ``p_t`` if given.

    ``target`` and ``sde`` (both) draw the exact density of ``p_t`` underneath in grey, and the
    default view (``lims=None``) is then that of ``p_t`` (`field_limits`; ``(-3, 3)`` without
    them); a ``target`` without ``sde`` warns (no time to draw it at). The score is evaluated
    in ``dtype`` on ``device`` (default: the parameters' of a network's score, else torch's
    default dtype on the CPU; see `field_dtype_device`). Returns the axes.

    Raises:
        ValueError: the data is not 2-D (a ``target`` of another dimension, or a ``score``
            that refuses 2-D points); ``t`` not finite (or outside ``[0, T]`` with ``sde``);
            a score that is NaN / inf everywhere on the grid.
    """
    _check_2d(target)
    t = _check_time(t, sde)
    if target is not None and sde is None:
        warnings.warn("plot_score_field: target= draws the exact p_t underneath only with sde= (the "
                      "noised marginal needs the SDE); pass sde= too, or leave target out", UserWarning,
                      stacklevel=2)
    lims = field_limits(lims, target, sde, t)
    dtype, device = field_dtype_device(score, dtype, device)
    _, ax = get_axes(ax)
    if sde is not None:
        _background(ax, target, sde, t, lims)
    return plot_vector_field(score, t, ax=ax, lims=lims, density=density, kind=kind,
                             label="score", symbol="s", title=title, colorbar=colorbar, dtype=dtype,
                             device=device)


def plot_velocity_field(
    sde: DiffusionSDE,
    score: ScoreFn,
    t: float,
    *,
    target: GaussianMixture | None = None,
    direction: Literal["sampling", "forward"] = "sampling",
    ax: Axes | None = None,
    lims: Range | Limits | None = None,
    density: int = 21,
    kind: FieldKind = "quiver",
    title: str | None = None,
    colorbar: bool = True,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Axes:
    """Probability-flow ODE velocity ``dx/dt = f - g^2 s / 2`` at time ``t`` (Song et al. eq. 13).

    ``direction="sampling"`` (default) shows ``-dx/dt``, where particles go while time runs
    from ``T`` to ``eps``; ``"forward"`` shows ``dx/dt`` itself. ``lims``, ``dtype``,
    ``device``: as in `plot_score_field` (default view: ``p_t``'s with a ``target``; dtype and
    device: those of the network behind ``score``). Returns the axes.

    Raises:
        ValueError: as `plot_score_field`; ``t`` outside ``[0, T]``; an unknown ``direction``.
    """
    if direction not in ("sampling", "forward"):
        raise ValueError(f"direction must be 'sampling' or 'forward', got {direction!r}")
    _check_2d(target)
    t = _check_time(t, sde)
    dtype, device = field_dtype_device(score, dtype, device)
    ode = ProbabilityFlowODE(sde, score, check_finite=False)
    sign = -1.0 if direction == "sampling" else 1.0

    def velocity(x: Tensor, tt: Tensor) -> Tensor:
        return sign * ode.drift(x, tt)

    lims = field_limits(lims, target, sde, t)
    _, ax = get_axes(ax)
    _background(ax, target, sde, t, lims)
    label = "−dx/dt" if direction == "sampling" else "dx/dt"
    return plot_vector_field(velocity, t, ax=ax, lims=lims, density=density, kind=kind,
                             label=f"PF-ODE velocity {label}", symbol="v", colorbar=colorbar,
                             title=title if title is not None else f"PF-ODE {label}, {time_label(t)}",
                             dtype=dtype, device=device)


def plot_fields(
    sde: DiffusionSDE,
    score: ScoreFn,
    at: Sequence[float] | None = None,
    *,
    target: GaussianMixture | None = None,
    ax: Sequence[Axes] | None = None,
    lims: Range | Limits | None = None,
    density: int = 21,
    kind: FieldKind = "quiver",
    suptitle: str | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Figure:
    """Two rows of panels: the score (top) and the sampling-direction PF-ODE velocity (bottom).

    One column per time in ``at`` (each in ``[0, T]``; default `default_field_times`: ``T`` and
    three noise levels, the same for every SDE, e.g. ``t = 1, 0.3, 0.1, 0.01`` on the default VP
    SDE, ``sigma = 80, 1.2, 0.34, 0.045`` on EDM's); ``ax`` takes ``2 * len(at)`` axes,
    row-major. ``lims=None`` (default): each panel shows ``p_t``'s view with a ``target``
    (`field_limits`), else ``(-3, 3)``. ``dtype``, ``device``: as in `plot_score_field`.
    Returns the figure.

    Raises:
        ValueError: as `plot_score_field`; ``at`` empty, or with a time that is NaN / infinite
            or outside ``[0, T]`` (it was moved into ``[eps, T]`` silently).
    """
    _check_2d(target)
    times = [_check_time(t, sde) for t in (default_field_times(sde) if at is None else at)]
    if not times:
        raise ValueError("at must name at least one time")
    dtype, device = field_dtype_device(score, dtype, device)
    n = len(times)
    fig, axes = get_axes_grid(ax, 2 * n, ncols=n, panel=3.0, extra_width=0.6)
    for j, t in enumerate(times):
        plot_score_field(score, t, sde=sde, target=target, ax=axes[j], lims=lims, density=density,
                         kind=kind, colorbar=True, title=f"score, {time_label(t)}", dtype=dtype, device=device)
        plot_velocity_field(sde, score, t, target=target, ax=axes[n + j], lims=lims,
                            density=density, kind=kind, colorbar=True,
                            title=f"PF-ODE −dx/dt\n{time_label(t)}", dtype=dtype, device=device)  # two lines: one ran into the colourbar beside it
    for a in axes[1:n] + axes[n + 1:]:
        a.set_ylabel("")
    for a in axes[:n]:
        a.set_xlabel("")
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig
