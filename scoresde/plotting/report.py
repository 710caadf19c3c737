"""The standard set of figures for a 2-D problem sampled with several solvers (demo, CLI, docs).

`write_sampling_figures` writes, into one folder: the solver grid (paths and samples
per solver), one trajectory plot per solver, forward vs reverse paths, marginal
snapshots, the score and probability-flow velocity fields, and a forward-then-reverse
animation (GIF; MP4 too when ffmpeg exists).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.result import Solution

from ..atomic import check_writable_dir
from ..targets import GaussianMixture
from ._common import Limits, Range, save_figure, square_limits, to_numpy
from .animation import animate_forward_reverse, save_animation_all
from .fields import default_field_times, plot_fields
from .marginals import plot_snapshots
from .solver_grid import plot_solver_grid
from .trajectories import plot_forward_reverse, plot_trajectories

__all__ = ["write_sampling_figures", "safe_name", "FIGURES"]

FIGURES: tuple[str, ...] = ("solver_grid", "trajectories", "forward_reverse", "snapshots", "fields",
                            "animation")
"""Names of the figures `write_sampling_figures` can write (its ``which`` argument)."""


def safe_name(label: str) -> str:
    """A file-name-safe version of a solver label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "solver"


def write_sampling_figures(
    out: str | os.PathLike[str],
    results: Mapping[str, Solution],
    *,
    sde: DiffusionSDE,
    score: ScoreFn,
    target: GaussianMixture | None = None,
    x0: Tensor | None = None,
    title: str = "",
    fields_at: Sequence[float] | None = None,
    field_density: int = 21,
    gif: bool = True,
    which: Collection[str] | None = None,
    kind: str = "quiver",
    gif_points: int = 1500,
    gif_hold: int = 8,
    forward_frames: int = 40,
    dpi: int = 120,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Path]:
    """Write the standard figures for ``results`` (label -> ``Solution`` with trajectories).

    Args:
        out: output folder (created).
        results: solver label -> result sampled with ``keep_trajectory=True``.
        sde, score: the problem (fields are drawn from ``score``).
        target: the exact mixture, when known (densities and contours are overlaid).
        x0: data samples ``(B, 2)`` for the forward process (default: ``target.sample``).
        title: prefix of figure titles (e.g. ``"exact score"``).
        fields_at: times of the field panels (clipped to ``[eps, T]``); default (``None``):
            ``T`` and three noise levels of ``sde`` (`default_field_times`: ``1, 0.3, 0.1, 0.01``
            on the default VP SDE).
        gif: write the forward/reverse animation (when ``"animation"`` is in ``which``).
        which: subset of `FIGURES` to write; default (``None``): all of them, except the
            score / velocity ``fields`` for data that is not 2-D (the other figures then show
            the first two coordinates), which are skipped.
        kind: ``"quiver"`` or ``"stream"`` for the field plots.
        dtype, device: where the fields are evaluated (default: the dtype and device of the
            network behind ``score``, else torch's default dtype on the CPU; see
            `scoresde.plotting.fields.field_dtype_device`). Sample a float64 model in float64.

    Returns ``{figure name: path}`` (no ``"fields"`` entry when they were skipped).

    Raises:
        ValueError: ``results`` is empty, an unknown figure name, or ``"fields"`` asked for
            explicitly on data that is not 2-D.
        scoresde.atomic.OutputPathError: ``out`` is a file or cannot be written (a
            ``ValueError``).
    """
    out = check_writable_dir(out, "out (the figures' folder)")
    files: dict[str, Path] = {}
    names = list(results)
    if not names:
        raise ValueError("results is empty")
    dims = sorted({_data_dims(r.samples) for r in results.values()})
    shaped = [d for d in dims if "x" in d]
    if shaped:
        raise ValueError(f"write_sampling_figures draws points (N, D); these samples have shape ({shaped[0]}) "
                         "per sample (images?), which its figures do not draw. Look at image samples with "
                         "scoresde.data.image_grid(samples) (what `scoresde sample` writes as samples.png)")
    if which is None:  # the default: everything that applies to this data
        which = [f for f in FIGURES if f != "fields" or dims == ["2"]]
    unknown = sorted(set(which) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; valid: {', '.join(FIGURES)}")
    if "fields" in which and dims != ["2"]:
        raise ValueError(f"score/velocity fields need 2-D data, got D={', '.join(dims)}; leave "
                         "'fields' out of which")
    prefix = f"{title}: " if title else ""
    finals = [to_numpy(r.samples)[:, :2] for r in results.values()]
    lims = square_limits(*finals, *([] if x0 is None else [to_numpy(x0)[:, :2]]))  # samples and data

    files.update(_solver_figures(out, results, which, target, sde, lims, prefix, dpi))

    # The reference result for the single-solver figures: the first stochastic-looking one.
    ref_name = names[0]
    ref = results[ref_name]
    needs_data = "forward_reverse" in which or (gif and "animation" in which)
    if x0 is None and needs_data:
        if target is None:
            raise ValueError("give x0 (data samples) when there is no exact target")
        x0 = target.sample(ref.samples.shape[0], generator=torch.Generator().manual_seed(12345))
    if "forward_reverse" in which and x0 is not None:
        fig = plot_forward_reverse(sde, x0, ref, lims=lims)
        fig.suptitle(f"{prefix}forward SDE (exact transitions) and {ref_name} sampling")
        files["forward_reverse"] = save_figure(fig, out / "forward_reverse.png", dpi=dpi)
    if "snapshots" in which:
        fig = plot_snapshots(ref, target=target, sde=sde, lims=lims,
                             suptitle=f"{prefix}{ref_name}: marginals while sampling"
                             + (" (lines: exact $p_t$)" if target is not None else ""))
        files["snapshots"] = save_figure(fig, out / "snapshots.png", dpi=dpi)
    if "fields" in which:
        at = default_field_times(sde) if fields_at is None else fields_at
        # With an exact 2-D target each panel shows its p_t (under VE p_T spans +-150: a view fitted
        # to the samples showed a flat panel at T); without one, the samples' view.
        field_lims = None if target is not None and target.dim == 2 else lims
        fig = plot_fields(sde, score, at, target=target, lims=field_lims, density=field_density,
                          kind=kind, dtype=dtype, device=device,  # type: ignore[arg-type]
                          suptitle=f"{prefix}score and probability-flow velocity (arrows: direction; "
                          "colour: log magnitude)")
        files["fields"] = save_figure(fig, out / "fields.png", dpi=dpi)
    if gif and "animation" in which and x0 is not None:
        anim = animate_forward_reverse(sde, x0, ref, target=target, lims=lims, n_points=gif_points,
                                       hold=gif_hold, forward_frames=forward_frames)
        for path in save_animation_all(anim, out / "forward_reverse"):
            files[f"animation{path.suffix}"] = path
    return files


def _data_dims(samples: Tensor) -> str:
    """The data dimension of ``(B, *D)`` samples as text: ``"16"``, or ``"1x8x8"`` for images."""
    return "x".join(str(int(d)) for d in samples.shape[1:]) or "0"


def _solver_figures(out: Path, results: Mapping[str, Solution], which: Collection[str],
                    target: GaussianMixture | None, sde: DiffusionSDE, lims: Range | Limits, prefix: str,
                    dpi: int) -> dict[str, Path]:
    """The figures with one panel or file per solver: the solver grid and the trajectories."""
    files: dict[str, Path] = {}
    if "solver_grid" in which:
        fig = plot_solver_grid(results, target=target, sde=sde, lims=lims,
                               suptitle=f"{prefix}same prior draw and noise for every solver")
        files["solver_grid"] = save_figure(fig, out / "solver_grid.png", dpi=dpi)
    if "trajectories" in which:
        for name, res in results.items():
            ax = plot_trajectories(res, lims=lims, title=f"{prefix}{name} (NFE {res.nfe})")
            files[f"trajectories_{name}"] = save_figure(
                ax.figure, out / f"trajectories_{safe_name(name)}.png", dpi=dpi)
    return files
