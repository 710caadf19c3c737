"""Plots for 2-D score-based models: trajectories, marginals, fields, solver grids, animations, curves.

Every function draws into ``ax=`` when given (a sequence of axes for multi-panel plots) so
figures compose, and returns the ``Axes`` (one panel) or the ``Figure`` (several panels).
Figures are headless (Agg canvas, no ``pyplot``): save them with ``fig.savefig(path)`` or
:func:`save_figure`; to show one interactively, pass axes from your own ``plt.subplots()``.

    import scoresde as sd, solvers
    from scoresde import plotting

    sde, target = sd.VPSDE(), sd.targets.eight_gaussians()
    r = solvers.sample(sde, target.score_fn(sde), shape=(5000, 2), steps=200, seed=0,
                       keep_trajectory=True)
    ax = plotting.plot_trajectories(r)
    plotting.save_figure(ax.figure, "paths.png")
"""

from ._common import get_axes, get_axes_grid, new_figure, save_figure, square_limits, to_numpy
from .animation import (
    animate_forward_reverse,
    animate_particles,
    ffmpeg_available,
    save_animation,
    save_animation_all,
)
from .curves import (
    METRIC_LABELS,
    plot_comparison,
    plot_metric_curves,
    plot_metric_vs_nfe,
    plot_metric_vs_time,
    summarize,
)
from .error_cost import error_cost_figure, plot_error_vs_cost
from .extent import note_offview, prior_inset
from .fields import (
    field_on_grid,
    plot_fields,
    plot_score_field,
    plot_vector_field,
    plot_velocity_field,
)
from .marginals import density_grid, plot_density, plot_samples, plot_snapshots
from .report import write_sampling_figures
from .solver_grid import plot_solver_grid
from .trajectories import plot_forward_reverse, plot_trajectories, simulate_forward

__all__ = [
    "METRIC_LABELS",
    "animate_forward_reverse",
    "animate_particles",
    "density_grid",
    "ffmpeg_available",
    "field_on_grid",
    "get_axes",
    "get_axes_grid",
    "new_figure",
    "plot_comparison",
    "plot_density",
    "plot_fields",
    "plot_forward_reverse",
    "plot_metric_curves",
    "plot_error_vs_cost",
    "error_cost_figure",
    "note_offview",
    "prior_inset",
    "plot_metric_vs_nfe",
    "plot_metric_vs_time",
    "plot_samples",
    "plot_score_field",
    "plot_snapshots",
    "plot_solver_grid",
    "plot_trajectories",
    "plot_vector_field",
    "plot_velocity_field",
    "save_animation",
    "save_animation_all",
    "save_figure",
    "simulate_forward",
    "square_limits",
    "to_numpy",
    "summarize",
    "write_sampling_figures",
]
