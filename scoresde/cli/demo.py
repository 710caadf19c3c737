"""``scoresde demo``: train a score network on a 2-D toy, sample it and the exact score with
several solvers, and write plots, an animation and a quality/NFE table to one folder.

Stages (each printed as it runs):

1. train a small score network on the target's samples (skipped with ``--train-steps 0``
   or when the training package is not available);
2. sample the exact score of the target with every chosen solver from the same prior draw
   and the same Brownian path; write the figures into ``OUT/exact/``;
3. sample the trained network with the same solvers; write ``OUT/trained/`` and a side by
   side figure of exact-score and learned-score samples;
4. write ``OUT/table.md`` (sliced W2 and MMD against exact samples, next to their noise
   floor, NFE and seconds per solver) and ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

import solvers

from .. import compare
from ..atomic import clean_stale_temps
from ..sde import SDES, AffineSDE, get_sde
from ..targets import GaussianMixture, get_target
from ._help import HelpFormatter, output_path, targets_2d
from .errors import debugging, report_error

TARGETS_2D = targets_2d()
"""The ``--target`` choices: presets of 2-D data (the figures are of the plane)."""
METRICS = ("sliced_w2", "mmd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.description = textwrap.fill(
        "Train a score network on a 2-D toy, then sample both the exact score and the trained "
        "network with several solvers; write trajectory plots, marginal snapshots, score and "
        "velocity fields, a GIF and a quality/NFE table to --out."
    )
    parser.add_argument("--out", type=output_path, default="demo_out", help="output folder (created)")
    parser.add_argument("--target", default="eight_gaussians", choices=TARGETS_2D,
                        help="exact 2-D Gaussian-mixture target (also the training data)")
    parser.add_argument("--sde", default="vp", choices=sorted(SDES), help="forward SDE")
    parser.add_argument("--solvers", default=None,
                        help="comma-separated solver names (default: up to 5 varied registered "
                        "solvers, 3 with --quick; see `scoresde solvers`)")
    parser.add_argument("--n", type=int, default=None, help="samples per solver [default 5000; quick 500]")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps of fixed-grid solvers [default 100; quick 20]")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="training steps; 0 skips training [default 2000; quick 100]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior draw, noise and training")
    parser.add_argument("--quick", action="store_true",
                        help="small, fast settings (a smoke test: finishes in seconds)")
    parser.add_argument("--no-gif", action="store_true", help="skip the animation")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(args.quick)
    s = {
        "n": args.n if args.n is not None else (500 if quick else 5000),
        "steps": args.steps if args.steps is not None else (20 if quick else 100),
        "train_steps": args.train_steps if args.train_steps is not None else (100 if quick else 2000),
        "max_frames": 16 if quick else 61,
        "floor_repeats": 2 if quick else 3,
        "n_eval": 500 if quick else 2000,
        "field_density": 11 if quick else 21,
        "gif_points": 300 if quick else 1000,
        "gif_hold": 2 if quick else 8,
        "forward_frames": 8 if quick else 40,
        "dpi": 60 if quick else 120,
    }
    if s["n"] < 10 or s["steps"] < 1 or s["train_steps"] < 0:
        raise ValueError("need --n >= 10, --steps >= 1 and --train-steps >= 0")
    from solvers.inputs import check_seed

    check_seed(args.seed)  # before any work, not after training
    if args.seed < 0:  # the shared Brownian path (torchsde) takes non-negative seeds only
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
    return s


def _pick_solvers(spec: str | None, quick: bool) -> list[str]:
    if spec:
        names = [s.strip() for s in spec.split(",") if s.strip()]
        solvers.check_solver_names(names)
        return names
    return compare.default_solvers(3 if quick else 5)


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _train(target: GaussianMixture, sde: AffineSDE, steps: int, seed: int, out: Path,
           progress: bool) -> tuple[Any, dict[str, Any]] | None:
    """Train the toy recipe on samples of ``target``; returns ``(score_fn, info)`` or ``None``.

    This is `scoresde.train.train_toy` with the data source given as the exact target
    object, so the network learns exactly the law the exact score describes.
    """
    try:
        from ..train import CheckpointError, Trainer, toy_config
        from ..train.checkpoint import CHECKPOINT_NAME
        from ..train.signals import TrainingInterrupted
    except ImportError as err:  # training code not available in this build
        _log(f"training unavailable ({err}); showing the exact score only")
        return None
    start = time.perf_counter()
    config = toy_config(target.name, sde=sde, steps=steps, seed=seed, data=target)
    run_dir = out / "train"
    trainer = None
    if (run_dir / CHECKPOINT_NAME).is_file() and _planned_steps(run_dir) == steps:
        # An earlier demo with these settings (interrupted, or finished): go on from its checkpoint.
        # A run planned for another number of steps had another learning-rate schedule: not resumed.
        try:
            trainer = Trainer(config, data=target, out_dir=run_dir, resume=True, progress=progress)
            _log(f"resuming the training in {run_dir} from step {trainer.step}")
        except (ValueError, CheckpointError) as err:
            _log(f"not resuming {run_dir} ({_one_line(err)}); training afresh")
    if trainer is None:
        trainer = Trainer(config, data=target, out_dir=run_dir, overwrite=True, progress=progress)
    resumed_from = trainer.step
    try:
        history = trainer.fit()
    except TrainingInterrupted as err:
        raise TrainingInterrupted(err.signum, err.step, err.path,
                                  "rerun the same demo command to continue from it") from None
    finally:
        trainer.close()
    info = {"steps": steps, "seconds": time.perf_counter() - start, "run_dir": str(out / "train"),
            "history": history, "resumed_from": resumed_from}
    return trainer.ema.model.score_fn(sde), info


def _planned_steps(run_dir: Path) -> int | None:
    """The ``steps`` an earlier run in ``run_dir`` was configured for (``None``: unreadable)."""
    from ..train.runfiles import CONFIG_NAME

    try:
        steps = json.loads((run_dir / CONFIG_NAME).read_text()).get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) else None


def _plot_loss(history: list[dict[str, Any]], path: Path, dpi: int) -> Path | None:
    from ..plotting import new_figure, save_figure

    pts = [(h["step"], h["loss"]) for h in history if "step" in h and "loss" in h]
    if len(pts) < 2:
        return None
    fig = new_figure(5.0, 3.2)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2)
    ax.set_xlabel("training step")
    ax.set_ylabel("denoising score-matching loss")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.set_title("training loss (mean over each logging window)")
    return save_figure(fig, path, dpi=dpi)


def _one_line(err: BaseException) -> str:
    """``err``'s message on one line (a resume refusal lists the differing settings below it)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = " ".join(lines)
    return text if len(text) <= 300 else text[:297] + "..."


def run(args: argparse.Namespace) -> int:
    try:
        s = _settings(args)
        names = _pick_solvers(args.solvers, args.quick)
        target = get_target(args.target)
        if target.dim != 2:  # argparse's choices hold 2-D presets only; a direct call is refused too
            raise ValueError(f"the demo draws 2-D data, {target.name} has D={target.dim}; choose one of "
                             f"{', '.join(TARGETS_2D)}")
    except ValueError as err:
        if debugging(args):
            raise  # the CLI's error path prints the traceback
        report_error("demo", err)
        return 2
    from .. import plotting

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "exact", out / "trained"):  # what a demo killed mid-write left
        clean_stale_temps(folder)
    progress = not args.no_progress
    sde = get_sde(args.sde)
    problem = compare.Problem.from_target(target, sde)
    shape = (s["n"], target.dim)
    _log(f"target {target.name}, {type(sde).__name__}, solvers {', '.join(names)}; output in {out}/")

    # 1. Train first, so the learned score can be compared with the exact one below.
    trained = None
    loss_png = None
    if s["train_steps"] > 0:
        _log(f"training a score network for {s['train_steps']} steps ...")
        trained = _train(target, sde, s["train_steps"], args.seed, out, progress)
        if trained is not None:
            done, total = trained[1]["resumed_from"], s["train_steps"]
            note = ("" if not done else f" (all {total} steps in an earlier run: its network is reused)"
                    if done >= total else f" (steps {done + 1}-{total}; 1-{done} in an earlier run)")
            _log(f"trained in {trained[1]['seconds']:.1f} s{note}")
            loss_png = _plot_loss(trained[1]["history"], out / "training_loss.png", s["dpi"])

    # 2. Exact score: every solver from the same prior draw and Brownian path.
    _log("sampling the exact score ...")
    common = {"shape": shape, "steps": s["steps"], "seed": args.seed, "max_frames": s["max_frames"]}
    exact = compare.sample_solvers(sde, problem.score, names, **common)
    x0 = target.sample(s["n"], generator=torch.Generator().manual_seed(args.seed + 1))
    fig_kw = {"field_density": s["field_density"], "gif_points": s["gif_points"], "gif_hold": s["gif_hold"],
              "forward_frames": s["forward_frames"], "dpi": s["dpi"]}
    files = plotting.write_sampling_figures(out / "exact", exact, sde=sde, score=problem.score,
                                            target=target, x0=x0, title="exact score",
                                            gif=not args.no_gif, **fig_kw)
    _log(f"exact-score figures written ({time.perf_counter() - t_start:.0f} s so far); scoring ...")
    eval_kw = {"metrics": METRICS, "seed": args.seed, "budget": s["steps"], "max_samples": s["n_eval"]}
    records, floors = compare.evaluate_results(problem, exact, floor_repeats=s["floor_repeats"], **eval_kw)
    for r in records:
        r["score"] = "exact"

    # 3. The trained network with the same solvers, start and noise.
    if trained is not None:
        _log(f"sampling the trained network ({time.perf_counter() - t_start:.0f} s so far) ...")
        learned_score = trained[0]
        learned = compare.sample_solvers(sde, learned_score, names, **common)
        files.update({f"trained/{k}": v for k, v in plotting.write_sampling_figures(
            out / "trained", learned, sde=sde, score=learned_score, target=target, x0=x0,
            title="trained network", gif=False, **fig_kw).items()})
        learned_records, _ = compare.evaluate_results(problem, learned, floor_repeats=1, **eval_kw)
        for r in learned_records:
            r["score"] = "trained"
        records += learned_records
        files["exact_vs_trained"] = _plot_exact_vs_trained(exact, learned, target, sde, out, s["dpi"])

    # 4. The table and the raw numbers.
    table = _write_tables(out, target, sde, names, s, args.seed, records, floors, trained)
    print(table)
    stale = _remove_stale_figures(out, {Path(p) for p in files.values()} | {loss_png})
    if stale:
        _log(f"removed {len(stale)} figure(s) of an earlier demo in {out}/ that this run did not draw "
             f"({', '.join(str(p.relative_to(out)) for p in stale[:4])}{', ...' if len(stale) > 4 else ''})")
    n_files = len(files) + 2 + (loss_png is not None)  # + table.md, results.json, training_loss.png
    _log(f"done in {time.perf_counter() - t_start:.1f} s; {n_files} files in {out}/")
    return 0


def _remove_stale_figures(out: Path, written: set[Path | None]) -> list[Path]:
    """Remove the demo's figures in ``out`` that this run did not write (an earlier run's, with
    other solvers or with training), so the folder describes one run; returns what was removed.

    Only the demo's own figure names are touched: images in ``exact/`` and ``trained/``, and
    ``exact_vs_trained.png`` / ``training_loss.png`` at the top.
    """
    keep = {p.resolve() for p in written if p is not None}
    candidates = [out / "exact_vs_trained.png", out / "training_loss.png"]
    for sub in ("exact", "trained"):
        if (out / sub).is_dir():
            candidates += sorted(p for p in (out / sub).iterdir() if p.suffix in (".png", ".gif", ".mp4"))
    removed = []
    for p in candidates:
        if p.is_file() and p.resolve() not in keep:
            p.unlink()
            removed.append(p)
    return removed


def _plot_exact_vs_trained(exact: dict[str, Any], learned: dict[str, Any], target: Any, sde: Any,
                           out: Path, dpi: int) -> Path:
    """One row of samples per score (exact on top, trained below), one column per solver."""
    from .. import plotting

    names = list(exact)
    fig, axes = plotting.get_axes_grid(None, 2 * len(names), ncols=len(names), panel=2.8)
    lims = plotting.square_limits(*[plotting.to_numpy(r.samples) for r in [*exact.values(), *learned.values()]])
    for row, res in enumerate((exact, learned)):
        plotting.plot_solver_grid(res, target=target, sde=sde, rows=("samples",), lims=lims,
                                  ax=axes[row * len(names):(row + 1) * len(names)])
    axes[0].set_ylabel("exact score\n$x_2$")
    axes[len(names)].set_ylabel("trained network\n$x_2$")
    fig.suptitle("samples: exact score (top) vs trained network (bottom); lines: exact $p_0$")
    return plotting.save_figure(fig, out / "exact_vs_trained.png", dpi=dpi)


def _write_tables(out: Path, target: Any, sde: Any, names: list[str], s: dict[str, Any], seed: int,
                  records: list[dict[str, Any]], floors: dict[str, Any], trained: Any) -> str:
    """Write ``table.md`` and ``results.json``; return the markdown table."""
    metric_names = [*METRICS, "coverage"]
    parts = [f"# scoresde demo: {target.name}, {type(sde).__name__}\n",
             f"{s['n']} samples per solver, {s['steps']} steps for fixed-grid solvers, seed "
             f"{seed}. Metrics on {min(s['n'], s['n_eval'])} samples per solver against an "
             "independent set of exact samples of the same size; "
             "the *noise floor* row is the value between two exact sample sets, i.e. the best "
             "any sampler can show at this sample size.\n",
             "## exact score\n",
             compare.markdown_table([r for r in records if r["score"] == "exact"], floors, metric_names)]
    if trained is not None:
        parts += ["\n## trained network\n",
                  f"Trained for {trained[1]['steps']} steps"
                  + (f" ({trained[1]['resumed_from']} of them in an earlier run, resumed here)"
                     if trained[1]["resumed_from"] else f" in {trained[1]['seconds']:.0f} s") + ".\n",
                  compare.markdown_table([r for r in records if r["score"] == "trained"], floors,
                                         metric_names)]
    table = "\n".join(parts) + "\n"
    compare.write_atomic(out / "table.md", table)
    compare.write_atomic(out / "results.json", json.dumps(
        {"target": target.name, "sde": type(sde).__name__, "solvers": names, "settings": s,
         "floors": floors, "records": records,
         "training": None if trained is None else {k: v for k, v in trained[1].items() if k != "history"}},
        indent=1))
    return table
