"""``scoresde likelihood``: log-likelihood / bits-per-dim through the probability-flow ODE.

Works on an exact Gaussian-mixture target (``--target``, where the exact answer is known and
printed next to the estimate) or a trained checkpoint (``--checkpoint``, EMA weights). Data
come from ``--data`` (a ``.npy``/``.pt``/``.csv`` file of shape ``(N, *D)``, or the name of a
data source such as ``eight_gaussians`` or ``digits``) or, for targets, ``--n`` exact samples.
Prints the mean negative log-likelihood (nats, and bits/dim with ``--bpd``), its standard
error over the points, the NFE and the time; ``--out`` writes the per-point numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from pathlib import Path
from typing import Any

from ._help import HelpFormatter, output_path
from ._likelihood_load import _load
from .errors import debugging, report_error

#: The options that decide the per-point numbers (the sidecar's record and the resume fingerprint).
SETTINGS = ("checkpoint", "raw_weights", "target", "sde", "data", "n", "seed", "integrator", "steps", "grid",
            "target_error", "rtol", "atol", "eps", "divergence", "probe_type", "probes", "refresh", "exact_prior",
            "batch_size", "bpd", "levels", "data_range", "device")


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--data-range must look like LO,HI (e.g. -1,1), got {text!r}") from None
    if not hi > lo:
        raise argparse.ArgumentTypeError(f"--data-range needs LO < HI, got {text!r}")
    return lo, hi


def _steps(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--steps must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--steps must be a positive integer or 'auto', got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.description = textwrap.fill(
        "Log-likelihood of data under a trained checkpoint (EMA weights) or an exact "
        "Gaussian-mixture target, by integrating the probability-flow ODE with its divergence. "
        "The result is the data density log p_0 (the ODE runs from t_end = 1e-5 for a target, "
        "from the earliest time a checkpoint's network was trained at, its loss's t_min, 1e-3 by "
        "default, and the piece [0, t_end] is added analytically); with --eps it is log p_eps, the "
        "data treated as a sample at eps (see docs/likelihood.md)."
    ) + (
        "\n\nexamples:\n"
        "  scoresde likelihood --target eight_gaussians --n 1000 --exact-prior\n"
        "  scoresde likelihood --target eight_gaussians --n 10000 --integrator rk4_simpson --steps 16\n"
        "  scoresde likelihood --target high_dim_32 --divergence hutchinson --probes 4 --refresh eval\n"
        "  scoresde likelihood --checkpoint runs/8g --n 2000            # its training data\n"
        "  scoresde likelihood --checkpoint runs/8g --data ring --n 2000 # any other data\n"
        "  scoresde likelihood --checkpoint runs/digits --n 256 --bpd --divergence hutchinson"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or run directory")
    src.add_argument("--target", help="exact mixture target name (exact answer printed too)")
    parser.add_argument("--sde", default=None, help="SDE for --target [vp]; a checkpoint carries its own (--sde, if given, must match it)")
    parser.add_argument("--data", default=None,
                        help="data file (.npy/.pt/.csv, shape (N, *D)) or data-source name; "
                             "default: --n draws of --target, or of the checkpoint's training data")
    parser.add_argument("--n", type=int, default=1000,
                        help="points drawn from --target or a named --data source")
    parser.add_argument("--raw-weights", action="store_true", help="use the raw, not the EMA, weights")
    g = parser.add_argument_group("divergence")
    g.add_argument("--divergence", choices=("exact", "hutchinson"), default=None,
                   help="exact (D backward passes per evaluation; the default for points) or hutchinson "
                        "(one per probe; the default for images, where exact costs thousands)")
    g.add_argument("--probes", type=int, default=1, help="Hutchinson probes per point")
    g.add_argument("--probe-type", choices=("rademacher", "gaussian"), default="rademacher")
    g.add_argument("--refresh", choices=("solve", "eval"), default="solve",
                   help="probes fixed per solve, or fresh at every evaluation (lower variance)")
    g = parser.add_argument_group("integration")
    g.add_argument("--integrator", default="dopri5",
                   help="rk4_simpson/rk4/heun/euler (fixed grid), dopri5/bosh3 (torch adaptive), "
                        "rk45/dop853/rk23 (scipy); rk4_simpson = RK4 path with half the divergences")
    g.add_argument("--steps", type=_steps, default=32,
                   help="fixed-grid steps, or 'auto' (measured on the pilot to reach --target-error)")
    g.add_argument("--target-error", type=float, default=5e-4,
                   help="--steps auto: mean |log p error| per point to reach on the pilot (nats)")
    g.add_argument("--grid", default="auto", help="fixed grid: auto (pilot solve) or a grid name")
    g.add_argument("--rtol", type=float, default=None,
                   help="adaptive/pilot tolerance (default 1e-5; "
                        "a tenth of it for a --checkpoint with the exact "
                        "divergence: docs/likelihood.md, 'Trained networks')")
    g.add_argument("--atol", type=float, default=None, help="adaptive/pilot tolerance (the same default as --rtol)")
    g.add_argument("--eps", type=float, default=None,
                   help="report log p_eps with the ODE started at eps (default: the data density log p_0)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="points per solve: memory stays that of one chunk (same result on a fixed grid). "
                        "With --out the finished chunks are kept in OUT.chunks/ and rerunning the same "
                        "command after an interruption resumes")
    g.add_argument("--overwrite", action="store_true",
                   help="with --batch-size and --out: discard the finished chunks in OUT.chunks/ and start afresh "
                        "(without it, chunks of a run with other settings are refused, not deleted)")
    g.add_argument("--float64", action="store_true", help="compute in float64")
    g.add_argument("--device", default="cpu",
                   help="where the model runs and the ODE is solved: cpu, cuda, cuda:1, auto ... [cpu]; the data draws "
                        "and dequantization are the CPU's for a seed, Hutchinson probes are drawn on the device")
    g.add_argument("--exact-prior", action="store_true",
                   help="--target only: use the exact p_T at T instead of the SDE prior")
    g = parser.add_argument_group("bits/dim and bound")
    g.add_argument("--bpd", action="store_true",
                   help="treat the data as discrete levels: dequantize and report bits/dim")
    g.add_argument("--levels", type=int, default=None,
                   help="number of discrete levels L [image data (built-in digits, image folders): their own "
                        "(17 for the digits, 256 for 8-bit files); other data: 256]")
    g.add_argument("--data-range", type=_range, default=None,
                   help="LO,HI: the model's data range (levels map onto it) [image data, or any data file "
                        "scored by a model of images: -1,1; other data: 0,1]; "
                        "write --data-range=-1,1 for a negative LO")
    g.add_argument("--elbo", action="store_true", help="also estimate the reverse-SDE bound")
    g.add_argument("--elbo-samples", type=int, default=256, help="time/noise samples per point")
    parser.add_argument("--seed", type=int, default=0, help="seed of data draws, probes, dequantization")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=output_path, default=None, help="write per-point results (.csv, .json or .npy)")


def _warn_bpd(bpd: float, args: argparse.Namespace) -> None:
    """Warn that a negative bits/dim (impossible for discrete data) means an unconverged estimate."""
    if bpd >= 0:
        return
    fix = ("use the default --integrator dopri5 or more --steps (or --steps auto)"
           if args.integrator != "dopri5" else "lower --rtol/--atol")
    if args.divergence == "hutchinson":
        fix += ", --divergence exact (or more --probes)"
    print(f"scoresde likelihood: warning: bits/dim = {bpd:.4f} < 0 is impossible for discrete data (a "
          f"probability is at most 1): the estimate has not converged; {fix}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..likelihood import bpd_from_log_prob, elbo, likelihood
    from ..train.distributed import resolve_device

    try:
        args.device = str(resolve_device(args.device))  # "auto" -> what it chose
        sde, score, target, x, dim, label, gen = _load(args)
        if args.batch_size is not None and args.batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
        # For a checkpoint, log p_0's ODE stops at the earliest time its network was trained at
        # (the score carries it, `data_end_time`), not below it where its score is extrapolated.
        eps = args.eps
        prior = None
        if args.exact_prior:
            assert target is not None

            def prior(z: torch.Tensor) -> torch.Tensor:
                return target.marginal_log_prob(z, sde.T, sde)

        store = None
        if args.out:  # a write killed mid-way leaves a temporary file next to --out
            from ..atomic import clean_stale_temps

            clean_stale_temps(Path(args.out).parent, target=Path(args.out).name)
            _check_settings_path(Path(args.out))
        if args.batch_size is not None and args.out:
            # Resumable: the pilot and every finished chunk are kept next to --out until the
            # output is written, and a rerun of the same command goes on from them.
            from ._likelihood_chunks import FolderStore, chunks_folder

            store = FolderStore(chunks_folder(Path(args.out)), _fingerprint(args, x), x.device,
                                overwrite=args.overwrite)
        try:
            result = likelihood(
                sde, score, x, divergence=args.divergence, probe=args.probe_type, n_probes=args.probes,
                probe_refresh=args.refresh, integrator=args.integrator, steps=args.steps, grid=args.grid,
                target_error=args.target_error, rtol=args.rtol, atol=args.atol, eps=eps, prior=prior,
                batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress, store=store,
            )
        except KeyboardInterrupt:
            if store is not None:
                print(f"the finished chunks are kept in {store.folder}; rerun the same command to resume",
                      file=sys.stderr)
            raise
        if store is not None and store.reused:
            print(f"resumed: {store.reused} finished chunk(s) of {args.batch_size} points reused from {store.folder}")
        bound = None
        if args.elbo:
            bound = elbo(sde, score, x, n_samples=args.elbo_samples, eps=sde.eps if eps is None else eps, prior=prior,
                         batch_size=args.batch_size, seed=args.seed)
    except (ValueError, TypeError) as err:  # includes the training package's CheckpointError
        if debugging(args):
            raise  # the CLI's error path prints the traceback
        report_error("likelihood", err)
        return 2

    lines: list[str] = []  # printed after the files are written (a closed stdout loses no results)
    say = lines.append
    lp = result.log_prob.double()
    n = lp.numel()
    sem = float(lp.std() / math.sqrt(n)) if n > 1 else float("nan")
    what = "log p_0 (data density)" if result.density == "data" else f"log p_eps (eps={result.eps:g})"
    start = (" (the earliest time the network was trained at)" if args.eps is None
             and getattr(args, "trained_t_min", None) == result.eps and result.density == "data" else "")
    say(f"{label}: {n} points, D={dim}, divergence={args.divergence}, integrator={args.integrator}, "
        f"ODE on [{result.eps:g}{start}, {result.T:g}], estimating {what}")
    say(f"  NLL = {-float(lp.mean()):.4f} +- {sem:.4f} nats (mean +- s.e. over points), "
        f"NFE {result.nfe} per point ({result.score_calls} score calls), {result.seconds:.2f} s")
    if result.std_err is not None:
        say(f"  Hutchinson: mean per-point standard error {float(result.std_err.mean()):.4f} nats "
            f"({args.probes} probes)")
    rows: dict[str, Any] = {"log_prob": lp}
    if result.std_err is not None:
        rows["log_prob_std_err"] = result.std_err.double()  # per point, over the Hutchinson probes
    if args.bpd:
        bpd = bpd_from_log_prob(lp, dim, levels=args.levels, data_range=args.data_range)
        say(f"  bits/dim = {float(bpd.mean()):.4f} (levels {args.levels}, data range "
            f"[{args.data_range[0]:g}, {args.data_range[1]:g}], offset "
            f"log2(L) - log2(hi - lo) = {math.log2(args.levels) - math.log2(args.data_range[1] - args.data_range[0]):.4f})")
        rows["bpd"] = bpd
        _warn_bpd(float(bpd.mean()), args)
    if target is not None and not args.bpd:
        prior_note = "exact p_T prior" if args.exact_prior else "SDE prior at T (add --exact-prior to remove its mismatch)"
        if result.density == "data":
            exact = target.log_prob(x.double())
            err = (lp - exact).abs().mean()
            say(f"  exact log p_0: mean |error| = {float(err):.2e} nats ({prior_note})")
            rows["exact_log_prob"] = exact
        else:
            exact = target.marginal_log_prob(x.double(), result.eps, sde)
            err = (lp - exact).abs().mean()
            bias0 = (exact - target.log_prob(x.double())).mean()
            say(f"  exact log p_eps: mean |error| = {float(err):.2e} nats ({prior_note})")
            say(f"  exact log p_eps - log p_0 (the eps bias, not an ODE error): mean {float(bias0):+.2e} nats")
            rows["exact_log_prob_eps"] = exact
    if bound is not None:
        se = bound.std_err.double()
        mc = float(se.pow(2).sum().sqrt()) / se.numel()  # Monte Carlo s.e. of the mean over the points
        eps_bound = sde.eps if eps is None else eps
        say(f"  reverse-SDE bound: mean ELBO {float(bound.elbo.mean()):.4f} +- {mc:.4f} nats (Monte Carlo s.e. "
            f"of the mean; per point {float(se.mean()):.3f}), a lower bound on the SDE model's log p_eps at "
            f"eps = {eps_bound:g}")
        rows["elbo"] = bound.elbo.double()
    side = None
    if args.out:
        out = Path(args.out)
        _write(out, rows)
        side = _write_settings(out, args, result, x, columns=list(rows))
    for line in lines:
        print(line)
    if args.out:
        print(f"  per-point results -> {args.out} (settings: {side})")
        if args.batch_size is not None:
            from ._chunks import remove_pieces
            from ._likelihood_chunks import chunks_folder

            remove_pieces(chunks_folder(out))  # the output holds them now
    return 0


def applied_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`SETTINGS` (and ``float64``) as the run used them: ``None`` for those that did not apply,
    so that the sidecar does not record them and a resumed run does not compare them (``--steps``
    and ``--grid`` of an adaptive integrator, ``--target-error`` without ``--steps auto``, the
    tolerances of a fixed grid without a pilot, ``--levels`` / ``--data-range`` without
    ``--bpd``, ``--n`` for a data file, which is scored whole, the probes of the exact divergence,
    and ``--seed`` where nothing is drawn: a data file, the exact divergence, no ``--bpd``, no ``--elbo``)."""
    from ..likelihood.integrators import resolve_integrator
    from ..likelihood.options import IntegratorOptions

    applied = {k: getattr(args, k, None) for k in (*SETTINGS, "float64")}
    if resolve_integrator(args.integrator).kind != "fixed":
        applied.update(steps=None, grid=None, target_error=None)
        # an adaptive solve's tolerances as used: the library's default where none was given (an
        # explicit --rtol 1e-5 is the same run); a fixed grid's pilot has defaults of its own
        applied["rtol"], applied["atol"] = IntegratorOptions(rtol=args.rtol, atol=args.atol).tolerances()
    else:
        if args.steps != "auto":
            applied.update(target_error=None)
            if args.grid != "auto":  # no pilot: nothing is held to a tolerance
                applied.update(rtol=None, atol=None)
    if not args.bpd:
        applied.update(levels=None, data_range=None)
    data_file = args.data is not None and Path(args.data).suffix and not Path(args.data).is_dir()
    if data_file:
        applied.update(n=None)
    if args.divergence == "exact":
        applied.update(probe_type=None, probes=None, refresh=None)
        if data_file and not args.bpd and not getattr(args, "elbo", False):
            applied.update(seed=None)  # nothing is drawn: the points, the divergence and the bound are fixed
    return applied


def _fingerprint(args: argparse.Namespace, x: Any) -> dict[str, Any]:
    """Everything that decides the per-point results of a chunked run, the code included (chunks
    are reused only if equal)."""
    from ..data.identity import data_identity
    from ._chunks import CODE_KEY, code_digest, file_identity
    from ._settings import _jsonable

    record: dict[str, Any] = {"settings": applied_settings(args),
                              "data_id": data_identity(x, name=str(args.data or args.target)),
                              "dtype": str(x.dtype), "shape": list(x.shape), CODE_KEY: code_digest()}
    if args.checkpoint:  # the checkpoint file itself: a retrained run at the same path is another model
        record["checkpoint_file"] = file_identity(args.checkpoint, checkpoint=True)
    return dict(json.loads(json.dumps(_jsonable(record), sort_keys=True)))


def _settings_path(out: Path) -> Path:
    """Where the settings of ``--out`` go: ``<stem>.json``, or ``<stem>_settings.json`` for JSON results."""
    return out.with_name(out.stem + "_settings.json") if out.suffix == ".json" else out.with_suffix(".json")


def _check_settings_path(out: Path) -> None:
    """Refuse, before any work, to write ``out``'s settings over a file that is not a settings
    file (the per-point results of an earlier ``--out <stem>.json`` run), to write the results
    over another run's settings file (``--out r.json`` after ``--out r.csv``), or to write the
    settings over those of another output still beside them (``--out r.csv`` after ``--out r.npy``)."""
    if out.suffix == ".json" and out.is_file():
        try:
            own = json.loads(out.read_text())
        except (OSError, ValueError):
            own = None
        if isinstance(own, dict) and "versions" in own and own.get("output") not in (None, out.name):
            raise ValueError(
                f"--out {out} is the settings file of the run that wrote {own.get('output')}; writing these "
                f"results there would lose how those numbers were made. Choose another --out name")
    side = _settings_path(out)
    if not side.is_file():
        return
    try:
        record = json.loads(side.read_text())
    except (OSError, ValueError):
        record = None
    if not (isinstance(record, dict) and "versions" in record):
        raise ValueError(
            f"the settings of --out {out} go to {side}, which holds something else (the per-point results "
            f"of an earlier --out {side.name} run?); choose another --out name, or move {side.name}")
    other = record.get("output")
    if isinstance(other, str) and other != out.name and (side.parent / other).exists():
        raise ValueError(
            f"the settings of --out {out} go to {side}, which holds the settings of {side.parent / other} "
            f"(still there); writing over them would lose how those numbers were made. Choose another "
            f"--out name, or move {other}")


def _write_settings(out: Path, args: argparse.Namespace, result: Any, x: Any,
                    columns: list[str] | None = None) -> Path:
    """The JSON sidecar of ``--out``: every setting that produced the numbers, the data's identity
    and the names of the output's columns (in order; a ``.npy`` holds them as an ``(N, k)`` matrix)."""
    from ..data.identity import data_identity
    from ._settings import write_sidecar

    record = {k: v for k, v in applied_settings(args).items() if k != "float64"}
    record.update(elbo=args.elbo, elbo_samples=args.elbo_samples if args.elbo else None)
    record.update(output=out.name, density=result.density, ode_start=result.eps, T=result.T,
                  nfe=result.nfe, score_calls=result.score_calls, seconds=result.seconds, stats=result.stats,
                  data_id=data_identity(x, name=str(args.data or args.target)), columns=columns)
    return write_sidecar(_settings_path(out), record)


def _write(path: Path, rows: dict[str, Any]) -> None:
    """Write the per-point columns atomically (an interrupted write leaves no partial file)."""
    import numpy as np

    from ..atomic import atomic_write_bytes, atomic_write_with

    cols = {k: v.detach().cpu().numpy() for k, v in rows.items()}
    table = np.stack(list(cols.values()), axis=1)
    if path.suffix == ".npy":
        atomic_write_with(path, lambda f: np.save(f, table))
    elif path.suffix == ".json":
        atomic_write_bytes(path, json.dumps({k: v.tolist() for k, v in cols.items()}).encode())
    else:
        header = ",".join(cols)
        atomic_write_with(path, lambda f: np.savetxt(f, table, delimiter=",", header=header, comments=""))
