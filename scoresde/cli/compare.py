"""``scoresde compare``: solvers x step budgets x seeds on exact targets or a checkpoint.

Writes, per problem, ``OUT/<problem>/`` with ``cells/`` (one JSON per finished cell, written
atomically), ``results.json``, ``results.csv``, ``table.md`` and metric-vs-NFE /
metric-vs-wall-time curves; with several problems also ``OUT/curves_<metric>_<x>.png``
(one panel per problem) and ``OUT/table.md`` (all tables). Rerunning the same command
resumes: finished cells are read back, not recomputed.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import solvers
from solvers.inputs import check_seed

from .. import compare
from ..sde import SDES
from ..targets import PRESETS
from ._help import HelpFormatter, output_path
from ._settings import check_checkpoint_sde, sde_name
from .errors import debugging, report_error


# The list parsers drop repeats (first occurrences kept, in order): `--seeds 0,0` is one seed.
def _ints(text: str) -> list[int]:
    try:
        return compare.unique(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return compare.unique(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _names(text: str) -> list[str]:
    return compare.unique(v.strip() for v in text.split(",") if v.strip())


DEFAULT_PLOT_METRICS = ["sliced_w2", "mmd"]
"""Metrics drawn in the combined figures unless ``--plot-metric`` says otherwise."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.description = textwrap.fill(
        "Sweep solvers x step budgets x seeds on exact Gaussian-mixture targets (exact score) or "
        "on a trained checkpoint. Records the NFE each solver actually used, its wall time and "
        "every metric against independent exact samples, with the metrics' noise floors. "
        "Finished cells are stored as they complete; rerun the same command to resume."
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--target", type=_names, default=["eight_gaussians"],
                     help=f"comma-separated exact targets ({', '.join(PRESETS)})")
    src.add_argument("--checkpoint", default=None,
                     help="compare on a trained model (checkpoint file or run folder) instead")
    parser.add_argument("--data", default=None,
                        help="with --checkpoint: the training data (file or folder), required when "
                        "the run was trained on your own data; other data is refused")
    parser.add_argument("--sde", default=None, choices=sorted(SDES),
                        help="forward SDE of exact targets [vp]; a checkpoint carries its own (--sde, if given, must "
                             "match it)")
    parser.add_argument("--solvers", type=_names, default=None,
                        help="comma-separated solver names, or 'all' (default: 5 varied ones; "
                        "see `scoresde solvers`)")
    parser.add_argument("--steps", type=_ints, default=[10, 20, 50, 100],
                        help="step budgets of fixed-grid solvers")
    parser.add_argument("--tolerances", type=_floats, default=[1e-2, 1e-3, 1e-4],
                        help="rtol = atol values of adaptive solvers (used instead of --steps; "
                        "an --option rtol/atol for them is refused)")
    parser.add_argument("--seeds", type=_ints, default=[0, 1, 2],
                        help="seeds (error bars are the spread over seeds)")
    parser.add_argument("--n", type=int, default=4000, help="samples per cell (and per reference set)")
    parser.add_argument("--metrics", type=_names, default=list(compare.METRICS),
                        help=f"metrics among {', '.join(compare.METRICS)} (mode statistics are "
                        "added for mixture targets)")
    parser.add_argument("--grid", default=None,
                        help="time grid (uniform, quadratic, logsnr, logsnr_long_first, karras, "
                        "uniform_logsnr, uniform_or_logsnr, or auto, a prototype); default: each solver's own")
    parser.add_argument("--noise", default="gaussian", choices=["gaussian", "brownian"],
                        help="noise of stochastic solvers ('brownian': one path shared across budgets)")
    parser.add_argument("--denoise", nargs="?", const="tweedie", default=None, choices=["ode", "tweedie", "none"],
                        help="end-of-run step (default: each solver's, 'ode': to sigma = 0, samples p_0; "
                             "bare --denoise: Tweedie; 'none': stop at eps)")
    parser.add_argument("--option", action="append", default=[], metavar="SOLVER:KEY=VALUE",
                        help="a solver option, repeatable (e.g. pc:snr=0.16)")
    parser.add_argument("--floor-repeats", type=int, default=compare.DEFAULT_FLOOR_REPEATS,
                        help="exact-vs-exact pairs averaged for each noise floor (its standard error, "
                        "std / sqrt(pairs), is printed with the SW2 / floor ratios)")
    parser.add_argument("--plot-metric", type=_names, default=DEFAULT_PLOT_METRICS,
                        help="metrics drawn in the combined figures")
    parser.add_argument("--out", type=output_path, required=True, help="output folder (resumes if it holds a run)")
    parser.add_argument("--no-plots", action="store_true", help="write tables and data only, no figures")
    parser.add_argument("--retry-failed", action="store_true", help="recompute cells that failed before")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard a comparison with other settings (--n, --metrics, --grid, ...) stored in --out "
                             "(without it such a folder is refused)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _solver_list(spec: list[str] | None) -> list[str]:
    if spec is None:
        return compare.default_solvers(5)
    if spec == ["all"]:
        return solvers.available()
    return spec


def load_checkpoint(path: str | os.PathLike[str], *, ema: bool = True) -> compare.LoadedCheckpoint:
    """Checkpoint loader for `compare.Problem.from_checkpoint`, through `scoresde.train`; the
    training data is rebuilt from the run and checked against its stored identity, and the
    problem samples in the model's parameter dtype (see `checkpoint_loader`)."""
    return checkpoint_loader(None)(path, ema=ema)


def checkpoint_loader(data: str | None) -> compare.CheckpointLoader:
    """The loader for ``--checkpoint`` with ``--data``: that data, checked against the checkpoint.

    The returned `compare.LoadedCheckpoint` records the dtype of the model's parameters, so
    every solver samples in it: ``model.score_fn`` refuses a state of another dtype (a float64
    network would otherwise fail on the float32 default).
    """
    from ..train import load_model, reference_data

    def load(path: str | os.PathLike[str], *, ema: bool = True) -> compare.LoadedCheckpoint:
        model, sde_obj, config = load_model(Path(path), ema=ema)
        source = reference_data(config, data, where=f"checkpoint {path}")
        param = next(model.parameters(), None)
        return compare.LoadedCheckpoint(model.score_fn(sde_obj), sde_obj, config.data, source,
                                        dtype=None if param is None else param.dtype)

    return load


def _check_vector_data(problem: Any, checkpoint: str) -> None:
    """Refuse a checkpoint of images (``(C, H, W)`` samples): the sweep's metrics take vectors.

    Raises:
        ValueError: the samples are not ``(D,)`` vectors; names the commands that do apply.
    """
    shape = tuple(problem.data_shape)
    if len(shape) == 1:
        return
    raise ValueError(
        f"compare scores samples of vectors (2-D points, (N, D) arrays), but the checkpoint {checkpoint} "
        f"makes images of shape {'x'.join(map(str, shape))}; for an image model use `scoresde sample "
        f"--checkpoint {checkpoint} ...` to look at samples and `scoresde likelihood --checkpoint "
        f"{checkpoint} --data IMAGES --bpd` to score it")


def _layout_clash(out: Path, names: list[str]) -> str | None:
    """Why ``out`` cannot take this run's layout, or ``None``. One target writes its files into
    ``out`` itself, several into ``out/<target>/``: a run of the other kind into the same folder
    would recompute every cell and leave the earlier files beside the new ones, stale."""
    from ..compare.cache import is_comparison_config

    if len(names) > 1 and is_comparison_config(out / "config.json"):
        return (f"--out {out} holds the comparison of a single target (its files are in {out} itself); "
                f"several targets are written to {out}/<target>/, so none of it would be reused and its "
                "files would stay beside the new ones. Use another --out, or run the one target again")
    if (len(names) == 1 and out.is_dir() and not is_comparison_config(out / "config.json")
            and any(is_comparison_config(p / "config.json") for p in out.iterdir() if p.is_dir())):
        return (f"--out {out} holds a comparison of several targets ({out}/<target>/); one target writes "
                f"into {out} itself, so none of it would be reused. Use another --out, or run the same "
                "targets again")
    return None


def run(args: argparse.Namespace) -> int:
    from .. import plotting

    try:
        names = _solver_list(args.solvers)
        solvers.check_solver_names(names)
        options = compare.parse_solver_options(args.option)
        stray = sorted(set(options) - set(names))
        if stray:
            raise ValueError(f"--option names solver(s) {', '.join(stray)} that are not in the sweep "
                             f"({', '.join(names)}); check the spelling or add them to --solvers")
        compare.check_solver_options(options, label="--option")  # a bad value: here, not in every cell
        compare.check_tolerance_options(options, label="--option", axis="--tolerances")
        for seed in args.seeds:
            try:
                check_seed(seed)
            except ValueError as err:
                raise ValueError(f"--seeds {seed}: {err}") from None
        bad_tol = [t for t in args.tolerances if not 0.0 < t < float("inf")]
        if bad_tol:
            raise ValueError(f"--tolerances must be positive and finite, got {bad_tol}")
        unknown = sorted(set(args.plot_metric) - set(args.metrics))
        if unknown and args.plot_metric != DEFAULT_PLOT_METRICS and not args.no_plots:
            raise ValueError(f"--plot-metric {', '.join(unknown)} not among the computed --metrics "
                             f"({', '.join(args.metrics)})")
        args.plot_metric = [m for m in args.plot_metric if m in args.metrics]
        if args.checkpoint is not None:
            problems = [compare.Problem.from_checkpoint(args.checkpoint,
                                                        loader=checkpoint_loader(args.data))]
            _check_vector_data(problems[0], args.checkpoint)
            check_checkpoint_sde(args.sde, sde_name(problems[0].sde), args.checkpoint)
        else:
            problems = [compare.Problem.from_target(t, args.sde or "vp") for t in args.target]
    except (ValueError, TypeError) as err:  # OSErrors: errors.describe (a missing input exits 2)
        if debugging(args):
            raise  # the CLI's error path prints the traceback
        report_error("compare", err)
        return 2
    if args.floor_repeats < 1:
        report_error("compare", ValueError(f"--floor-repeats must be a positive integer, got {args.floor_repeats}"))
        return 2
    out = Path(args.out)
    layout = _layout_clash(out, [plotting.report.safe_name(p.name) for p in problems])
    if layout:
        report_error("compare", ValueError(layout))
        return 2
    results = []
    failed: list[str] = []  # problems whose every cell failed
    for problem in problems:
        sub = out / plotting.report.safe_name(problem.name) if len(problems) > 1 else out
        try:
            res = compare.run_comparison(
                problem, names, steps=args.steps, seeds=args.seeds, tolerances=args.tolerances,
                n=args.n, metrics=args.metrics, grid=args.grid, noise=args.noise,
                denoise=args.denoise, solver_options=options, floor_repeats=args.floor_repeats,
                out=sub, progress=not args.no_progress, retry_failed=args.retry_failed,
                plots=not args.no_plots, overwrite=args.overwrite)
        except (ValueError, TypeError) as err:
            if debugging(args):
                raise  # the CLI's error path prints the traceback
            report_error("compare", err)
            return 2
        except KeyboardInterrupt:  # every finished cell is already stored under sub/cells
            done = len(list((sub / "cells").glob("*.json"))) if (sub / "cells").is_dir() else 0
            if done:
                print(f"{done} finished cell(s) kept in {sub / 'cells'}; rerun the same command to resume: "
                      "finished cells are reused", file=sys.stderr)
            else:
                print("interrupted before any cell finished: nothing was kept", file=sys.stderr)
            raise
        print(f"\n## {problem.name}  ({res.computed} cells computed, {res.reused} reused)\n")
        if res.caption:
            print(f"{res.caption}\n")
        print(res.table())
        results.append(res)
        if res.records and all(r.get("status") != "ok" for r in res.records):
            failed.append(f"{problem.name} ({len(res.records)} cells; first: {res.records[0].get('error')}; "
                          f"all listed in {sub / 'table.md'})")
    if len(results) > 1:
        tables = "\n\n".join(f"## {r.problem}\n\n{r.table()}" for r in results)
        compare.write_atomic(out / "table.md", tables + "\n")
        for metric in [] if args.no_plots else args.plot_metric:
            for x in ("nfe", "seconds"):
                fig, axes = plotting.get_axes_grid(None, len(results), ncols=len(results), panel=4.6)
                for i, (r, ax) in enumerate(zip(results, axes, strict=True)):
                    last = i == len(results) - 1
                    plotting.plot_metric_curves(r.records, metric, x=x, ax=ax, floor=r.floors.get(metric),
                                                title=r.problem, legend="outside" if last else False)
                plotting.save_figure(fig, out / f"curves_{metric}_{x}.png")
    print(f"\nresults in {out}/")
    if failed:
        print(f"scoresde compare: error: every cell failed for {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
