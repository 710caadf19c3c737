"""``scoresde plot``: figures for a 2-D problem, or curves from a finished comparison.

Two modes:

* sample and plot: ``scoresde plot --target eight_gaussians --solvers euler_maruyama,ode_heun
  --out figs/`` samples the exact score (or ``--checkpoint`` a trained model) with each solver
  from the same prior draw and noise, and writes the figures chosen with ``--what``;
* re-plot a comparison: ``scoresde plot --results runs/cmp --out figs/`` reads
  ``results.json`` (of ``scoresde compare``) and draws metric-vs-NFE / wall-time curves.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import torch

import solvers

from .. import compare
from ..sde import SDES
from ._help import HelpFormatter, output_path, targets_2d
from ._settings import check_checkpoint_sde, sde_name
from .compare import checkpoint_loader

FIGURE_NAMES: tuple[str, ...] = ("solver_grid", "trajectories", "forward_reverse", "snapshots", "fields",
                                "animation")
"""`scoresde.plotting.report.FIGURES`, spelled out here so that building the parser (every
``scoresde`` command) does not import matplotlib; tests/scoresde/cli/test_cli_imports.py keeps
the two equal."""


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.description = textwrap.fill(
        "Plot trajectories, marginal snapshots, score / probability-flow velocity fields and "
        "animations for a 2-D problem sampled with several solvers; or, with --results, "
        "metric-vs-NFE and metric-vs-wall-time curves of a finished `scoresde compare` run."
    )
    parser.add_argument("--out", type=output_path, required=True, help="output folder for the figures")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--target", default="eight_gaussians", choices=targets_2d(),
                     help="exact 2-D target, sampled with its exact score")
    src.add_argument("--checkpoint", default=None, help="trained model (checkpoint file or run folder)")
    src.add_argument("--results", default=None,
                     help="folder of a `scoresde compare` run (its results.json, or sub-folders "
                     "with one each): draw its curves instead of sampling")
    parser.add_argument("--data", default=None,
                        help="with --checkpoint: the training data (file or folder), required when "
                        "the run was trained on your own data; other data is refused")
    parser.add_argument("--sde", default=None, choices=sorted(SDES),
                        help="forward SDE of the target [vp]; a checkpoint carries its own (--sde, if given, must match it)")
    parser.add_argument("--solvers", type=_names, default=None,
                        help="comma-separated solver names (default: up to 4 varied ones)")
    parser.add_argument("--steps", type=int, default=100, help="steps of fixed-grid solvers")
    parser.add_argument("--n", type=int, default=5000, help="samples per solver")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior draw and the noise")
    parser.add_argument("--what", type=_names, default=list(FIGURE_NAMES),
                        help=f"figures to write, among {', '.join(FIGURE_NAMES)}")
    parser.add_argument("--fields-at", type=_floats, default=None,
                        help="times in (0, T] of the score / velocity field panels (default: T and the times "
                        "where sigma/alpha is 1.23, 0.34, 0.045; 1, 0.3, 0.1, 0.01 under VP)")
    parser.add_argument("--kind", default="quiver", choices=["quiver", "stream"],
                        help="arrows or stream lines for the fields")
    parser.add_argument("--frames", type=int, default=61, help="stored trajectory frames per solver")
    parser.add_argument("--dpi", type=int, default=120, help="resolution of the PNG files")
    parser.add_argument("--metric", type=_names, default=["sliced_w2", "mmd"],
                        help="with --results: metrics to plot")


def _read_results(path: Path) -> dict[str, Any]:
    """One ``results.json`` of ``scoresde compare``; a damaged file is named in the error.

    Raises:
        ValueError: not valid JSON (or not UTF-8), or not a results object with a record list.
    """
    try:
        run_ = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it may be damaged: rerun `scoresde compare` "
                         "on its folder to rewrite it") from None
    if not isinstance(run_, dict) or not isinstance(run_.get("records", []), list):
        raise ValueError(f"{path} is not a `scoresde compare` results file (no list of records)")
    return run_


def _plot_results(args: argparse.Namespace) -> int:
    from .. import plotting

    root = Path(args.results)
    files = [root / "results.json"] if (root / "results.json").is_file() else sorted(root.glob("*/results.json"))
    if not files:
        print(f"scoresde plot: error: no results.json in {root} or its sub-folders", file=sys.stderr)
        return 2
    runs = [_read_results(f) for f in files]
    have = {k for run_ in runs for rec in run_.get("records", []) for k in rec.get("metrics", rec)}
    missing = [m for m in args.metric if m not in have]
    records = [rec for run_ in runs for rec in run_.get("records", [])]
    if missing and records and all(rec.get("status", "ok") != "ok" for rec in records):
        where = ", ".join(str(f.parent / "table.md") for f in files)
        print(f"scoresde plot: error: every cell failed in {', '.join(map(str, files))}, so there is no "
              f"curve to draw (first failure: {records[0].get('error')}; all are listed in {where}); "
              "fix the cause and rerun `scoresde compare` with --retry-failed", file=sys.stderr)
        return 2
    if missing:
        print(f"scoresde plot: error: metric(s) {', '.join(missing)} not in {', '.join(map(str, files))}",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    for metric in args.metric:
        for x in ("nfe", "seconds"):
            fig, axes = plotting.get_axes_grid(None, len(runs), ncols=len(runs), panel=4.6)
            for i, (run_, ax) in enumerate(zip(runs, axes, strict=True)):
                floor = run_.get("floors", {}).get(metric)
                last = i == len(runs) - 1
                plotting.plot_metric_curves(run_["records"], metric, x=x, ax=ax,
                                            floor=tuple(floor) if floor else None,
                                            title=run_.get("problem"), legend="outside" if last else False)
            path = plotting.save_figure(fig, out / f"curves_{metric}_{x}.png", dpi=args.dpi)
            print(path)
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """Refuse bad options before any sampling (and before ``--out`` is created).

    Raises:
        ValueError: ``--what`` empty or naming an unknown figure, ``--dpi`` or ``--n`` below 1, a
            negative ``--seed``, ``--frames`` below 2 (``--steps`` is checked by the solvers, also
            before any sampling).
    """
    from ..plotting.report import FIGURES

    if not args.what:
        raise ValueError(f"--what names no figure; choose from {', '.join(FIGURES)}")
    unknown = [w for w in args.what if w not in FIGURES]
    if unknown:
        raise ValueError(f"--what: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    if args.dpi < 1:
        raise ValueError(f"--dpi must be a positive integer, got {args.dpi}")
    if args.n < 1:
        raise ValueError(f"--n must be a positive integer, got {args.n}")
    if args.seed < 0:  # the shared Brownian path (torchsde) takes non-negative seeds only
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.frames < 2:  # the solvers would name their max_frames
        raise ValueError(f"--frames must be at least 2 (the first and last states), got {args.frames}")


def _fields_at(args: argparse.Namespace, T: float) -> list[float] | None:
    """The field times: ``--fields-at``, each in ``(0, T]``, or ``None`` (the default, which
    `write_sampling_figures` takes as `scoresde.plotting.fields.default_field_times`: valid for
    every SDE, e.g. the cosine VP SDE with ``T = 0.9946``). Checked only when the fields are drawn.

    Raises:
        ValueError: a time outside ``(0, T]``.
    """
    if args.fields_at is None or "fields" not in args.what:
        return None
    bad_t = [t for t in args.fields_at if not 0.0 < t <= T]
    if bad_t or not args.fields_at:
        raise ValueError(f"--fields-at times must lie in (0, T={T:g}] of this SDE, got {bad_t or 'none'}")
    return list(args.fields_at)


def run(args: argparse.Namespace) -> int:
    """Sample and plot, or re-plot ``--results``. Errors go to `errors.run_guarded` (exit 2 for
    a usage error; ``--debug`` shows the traceback)."""
    if args.results is not None:
        return _plot_results(args)
    from .. import plotting
    from ..atomic import clean_stale_temps

    _check_options(args)
    clean_stale_temps(args.out)  # what a plot killed mid-write left (a GIF's temporary file)
    names = args.solvers or compare.default_solvers(4)
    solvers.check_solver_names(names)
    if args.checkpoint is not None:
        problem = compare.Problem.from_checkpoint(args.checkpoint, loader=checkpoint_loader(args.data))
        check_checkpoint_sde(args.sde, sde_name(problem.sde), args.checkpoint)
    else:
        problem = compare.Problem.from_target(args.target, args.sde or "vp")
    if problem.data_shape != (2,):
        shape = "x".join(map(str, problem.data_shape))
        fix = (f"; for an image model use `scoresde sample --checkpoint {args.checkpoint} ...` (it writes an "
               f"image grid) and `scoresde likelihood --checkpoint {args.checkpoint} --bpd` to score it"
               if args.checkpoint is not None and len(problem.data_shape) == 3 else "")
        raise ValueError(f"plots need 2-D points, {problem.name} has samples of shape {shape}{fix}")
    fields_at = _fields_at(args, float(problem.sde.T))
    # A checkpoint samples (and its fields are drawn) in its parameters' dtype: a float64 model
    # refuses float32 states.
    results = compare.sample_solvers(problem.sde, problem.score, names, shape=(args.n, 2),
                                     steps=args.steps, seed=args.seed, max_frames=args.frames,
                                     dtype=problem.dtype)
    x0 = problem.sample_reference(args.n, torch.Generator().manual_seed(args.seed + 1))
    files = plotting.write_sampling_figures(
        args.out, results, sde=problem.sde, score=problem.score, target=problem.mixture, x0=x0,
        title=problem.name, fields_at=fields_at, which=args.what, kind=args.kind,
        dpi=args.dpi, dtype=problem.dtype)
    for path in files.values():
        print(path)
    return 0
