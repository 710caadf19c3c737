"""Several solvers side by side on one grid: paths (same start, same noise) and final samples.

Give every solver the same prior draw and noise (same ``seed``; ``noise="brownian"`` shares
one Brownian path across step counts) so differences between columns are the solvers'
doing; `scoresde.compare.sample_solvers` produces such a set of results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from solvers.protocol import DiffusionSDE
from solvers.result import Solution

from ..targets import GaussianMixture
from ._common import Limits, Range, get_axes_grid, square_limits, to_numpy
from .marginals import Kind, plot_density, plot_samples, shown_marginal
from .trajectories import plot_trajectories

__all__ = ["plot_solver_grid"]

Row = Literal["trajectories", "samples"]


def plot_solver_grid(
    results: Mapping[str, Solution],
    *,
    target: GaussianMixture | None = None,
    sde: DiffusionSDE | None = None,
    rows: Sequence[Row] = ("trajectories", "samples"),
    ax: Sequence[Axes] | None = None,
    n_paths: int = 32,
    seed: int = 0,
    kind: Kind = "auto",
    lims: Range | Limits | None = None,
    suptitle: str | None = None,
) -> Figure:
    """One column per solver; rows of trajectories and/or final samples.

    Args:
        results: solver label -> ``Solution`` (trajectories need ``keep_trajectory=True``).
        target, sde: outline the exact density the samples follow on the sample panels when both
            are given: ``p_0`` after an end-of-run step (the default), else ``p_eps`` (for a
            target in ``D > 2``, its exact marginal on the two coordinates shown).
        rows: which rows to draw, in order (``"trajectories"``, ``"samples"``).
        ax: ``len(rows) * len(results)`` axes, row-major (default: a new figure).
        n_paths, seed: particles drawn per trajectory panel (the same indices in every column).
        kind, lims: as in `plot_samples`; limits are shared.

    Returns the figure. Column titles give the solver label and its measured NFE.
    """
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a mapping label -> Solution (e.g. {{'ddim': result}}), got "
                        f"{type(results).__name__}")
    if not results:
        raise ValueError("results is empty")
    bad = [r for r in rows if r not in ("trajectories", "samples")]
    if bad or not rows:
        raise ValueError(f"rows must be a non-empty subset of ('trajectories', 'samples'), got {rows}")
    names = list(results)
    ncol = len(names)
    fig, axes = get_axes_grid(ax, len(rows) * ncol, ncols=ncol, panel=3.0, extra_width=0.9)
    finals = [to_numpy(results[n].samples)[:, :2] for n in names]
    shown = shown_marginal(target, data_dim=int(results[names[0]].samples[0].numel()))
    lims = square_limits(*finals) if lims is None else lims
    t_hi = max(float(r.times.max()) for r in results.values())
    t_lo = min(float(r.times.min()) for r in results.values())
    norm = Normalize(vmin=t_lo, vmax=t_hi)
    line_mappable = None
    for i, row in enumerate(rows):
        for j, name in enumerate(names):
            a = axes[i * ncol + j]
            res = results[name]
            title = f"{name}\nNFE {res.nfe}" if i == 0 else None
            if row == "trajectories":
                if res.trajectory is None:
                    a.text(0.5, 0.5, "no trajectory stored", ha="center", va="center",
                           transform=a.transAxes)
                    a.set_title(title or "")
                    continue
                plot_trajectories(res, ax=a, n_paths=n_paths, seed=seed, norm=norm, lims=lims,
                                  colorbar=False, endpoints=True, title=title)
                legend = a.get_legend()
                if legend is not None and j > 0:
                    legend.remove()
                if line_mappable is None:
                    line_mappable = next(c for c in a.collections if isinstance(c, LineCollection))
            else:
                plot_samples(res.samples, ax=a, kind=kind, lims=lims, title=title)
                if shown is not None and sde is not None:
                    # Denoised runs (the default end step) sample p_0; "none" stops at eps.
                    denoised = res.stats.get("end_step", "none") != "none"
                    t_end = 0.0 if denoised else float(res.times.min())
                    plot_density(shown, sde=sde, t=t_end, ax=a, lims=lims, kind="contour",
                                 title=title or "")
            if j > 0:
                a.set_ylabel("")
    if "trajectories" in rows and line_mappable is not None:
        row = list(rows).index("trajectories")
        fig.colorbar(line_mappable, ax=axes[row * ncol:(row + 1) * ncol], label="t", shrink=0.9,
                     pad=0.01)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig
