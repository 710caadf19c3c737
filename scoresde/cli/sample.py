"""``scoresde sample``: draw samples from a trained checkpoint (or an exact target) with any solver.

Writes ``OUT/samples.npy`` (or ``.pt``), ``OUT/samples.json`` (every setting that produced
them: solver, steps, grid, lam, seed, denoise, SDE, checkpoint or target, data identity,
NFE, versions) and ``OUT/samples.png`` (a scatter plot for 2-D data, an image grid for
images), and prints the NFE and the time taken. Checkpoints sample with their EMA weights
unless ``--raw-weights`` is given. The defaults (solver, steps, grid, lam) are those of
``solvers.sample``, so the same seed gives the same samples in Python and on the command line.
"""

from __future__ import annotations

import argparse
import textwrap
import warnings
from pathlib import Path
from typing import Any

from ._help import HelpFormatter, output_path
from ._settings import (
    check_checkpoint_sde,
    resolved_solver_settings,
    sample_defaults,
    write_sidecar,
)
from .errors import EXIT_DIVERGED, EXIT_FAILURE, debugging, report_error


def _option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"solver option {text!r} must look like KEY=VALUE")
    key, value = text.split("=", 1)
    low = value.lower()
    if low in ("true", "false"):
        return key, low == "true"
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = sample_defaults()
    parser.formatter_class = HelpFormatter
    parser.description = textwrap.fill(
        "Sample a trained checkpoint (EMA weights) or an exact Gaussian-mixture target with any "
        "registered solver (`scoresde solvers` lists them); write the samples, their settings "
        "(samples.json) and a plot. Defaults are those of solvers.sample."
    ) + "\n\nexample:\n  scoresde sample --checkpoint runs/8g --solver euler_maruyama --steps 200 --n 5000"
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or run directory")
    src.add_argument("--target", help="exact Gaussian-mixture target (one with an exact score) instead "
                     "of a checkpoint")
    parser.add_argument("--sde", default=None, help="SDE for --target [vp]; a checkpoint carries its own (--sde, if given, must match it)")
    parser.add_argument("--data", default=None,
                        help="with --checkpoint: the training data (file or folder); checked against the "
                        "checkpoint's data identity and drawn behind the samples")
    parser.add_argument("--solver", default=d["solver"], help="solver name")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"grid intervals (default {d['steps']}; an adaptive solver chooses its own, "
                        "and warns when given a count)")
    parser.add_argument("--grid", default=d["grid"],
                        help="time grid (uniform, quadratic, logsnr, logsnr_long_first, karras, uniform_logsnr, "
                        "uniform_or_logsnr, or auto, a prototype); default: the solver's own, per SDE (docs/defaults.md: "
                        "logsnr for the exponential integrators; logsnr on VP / sub-VP and uniform_logsnr "
                        "on VE for the first-order samplers; karras for edm_heun and lms; ode_heun / "
                        "ode_rk4 logsnr on VP and sub-VP, uniform_or_logsnr on VE; uniform for the adaptive "
                        "solvers)")
    parser.add_argument("--lam", type=float, default=d["lam"],
                        help="noise level of the reverse family for solvers that accept any dynamics: "
                        "1 = reverse SDE (default), 0 = probability-flow ODE, in between interpolates "
                        "(ODE-only solvers require 0, SDE-only solvers 1)")
    parser.add_argument("--n", type=int, default=1000, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior draw and the noise")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="integrate at most this many samples at a time (flat memory; see "
                             "solvers.sample); finished chunks are kept in OUT/chunks, so rerunning "
                             "an interrupted command resumes it with the same result")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the finished chunks in OUT/chunks and start afresh (without it, chunks "
                             "of a run with other settings are refused, not deleted)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--device", default="cpu",
                        help="where the model runs and the samples are drawn: cpu, cuda, cuda:1, auto ... [cpu]; "
                             "a seed gives other draws on another device type")
    parser.add_argument("--denoise", nargs="?", const="tweedie", default=None, choices=["ode", "tweedie", "none"],
                        help="end-of-run step (default: the solver's, 'ode': to sigma = 0, samples p_0; "
                             "bare --denoise: Tweedie; 'none': stop at eps)")
    parser.add_argument("--raw-weights", action="store_true", help="use the raw, not the EMA, weights")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                        help="solver option, repeatable (e.g. --option snr=0.16)")
    parser.add_argument("--out", type=output_path, default="samples_out", help="output directory")
    parser.add_argument("--format", choices=("npy", "pt"), default="npy", help="sample file format")
    parser.add_argument("--no-plot", action="store_true", help="do not write samples.png")
    from .conditional import add_conditioning_arguments

    add_conditioning_arguments(parser)


def _plot(samples: Any, path: Path, title: str, data: Any = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.images import image_grid
    from ..plotting import save_figure

    x = samples.detach().cpu().float()
    if x.ndim == 4:
        channels = x.shape[1]
        if channels not in (1, 3):  # neither grey nor RGB (imshow refuses 2, reads 4 as RGBA)
            x = x[:, :1]
            title = f"{title}\n(channel 1 of {channels})"
        grid = image_grid(x[:256])
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.axis("off")
    else:
        x = x.reshape(x.shape[0], -1)
        fig, ax = plt.subplots(figsize=(6, 6))
        size = 6.0 if len(x) <= 1000 else 3.0 if len(x) <= 5000 else 1.5
        if data is not None:
            ref = data.reshape(data.shape[0], -1).float()
            ax.scatter(ref[:, 0].numpy(), (ref[:, 1] if ref.shape[1] > 1 else 0 * ref[:, 0]).numpy(),
                       s=size, c="0.6", alpha=0.4, linewidths=0, label="data")
        ys = x[:, 1] if x.shape[1] > 1 else 0 * x[:, 0]
        ax.scatter(x[:, 0].numpy(), ys.numpy(), s=size, alpha=0.5, linewidths=0, label="samples")
        if data is not None:
            ax.legend(loc="upper right", markerscale=3, frameon=False)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2" if x.shape[1] > 1 else "")
        if x.shape[1] > 2:  # a projection: say so
            title = f"{title}\n(dimensions 1 and 2 of {x.shape[1]})"
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)  # atomic: an interrupted write leaves an earlier plot intact
    plt.close(fig)


def _check_solver(name: str, options: list[tuple[str, Any]], lam: float | None) -> None:
    """Build the solver once with its ``--option`` values and check ``--lam`` against it, before
    any work; an error names the option as given and the solver as typed (not its class).

    Raises:
        ValueError: a value the solver refuses, or a ``--lam`` its dynamics rule out.
        TypeError: an option the solver does not take.
    """
    import solvers

    from ..compare import check_solver_options

    check_solver_options({name: dict(options)}, label="--option", qualified=False)
    try:
        solvers.get_solver(name, **dict(options)).lam_for(lam, name)
    except ValueError as err:
        raise ValueError(f"--lam {lam:g}: {err}") from None


def _exact_target(name: str, sde_name: str) -> tuple[Any, Any]:
    """``(target, sde)`` for ``--target``; a clear error for names without an exact score."""
    from solvers.registry import closest_name

    from ..data import TOYS
    from ..sde import get_sde
    from ..targets import PRESETS, get_target

    if name not in PRESETS:
        hint = (f" {name!r} is a 2-D toy without a closed-form score: train on it "
                f"(scoresde train --data {name} --out runs/{name}) and sample with --checkpoint runs/{name}."
                if name in TOYS else "")
        guess = closest_name(PRESETS, name)
        if guess is not None and not hint:
            hint = f" Did you mean {guess!r}?"
        raise ValueError(f"--target needs a target with an exact score, one of {', '.join(PRESETS)}.{hint}")
    return get_target(name), get_sde(sde_name)


def _sde_params(sde: Any, fallback: dict[str, Any]) -> dict[str, Any]:
    conf = getattr(sde, "config", None)
    return dict(conf()) if callable(conf) else dict(fallback)


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from ..data import data_identity
    from ..train import load_model
    from ..train.data import reference_data

    if args.n < 1 or args.steps < 1:
        raise ValueError("--n and --steps must be positive")
    if args.checkpoint:
        model, sde, config = load_model(args.checkpoint, ema=not args.raw_weights, device=args.device)
        check_checkpoint_sde(args.sde, config.sde.name, args.checkpoint)
        args.sde = config.sde.name  # what the settings record: the SDE actually used
        ref = None
        if args.data is not None:
            source = reference_data(config, args.data, where=f"checkpoint {args.checkpoint}")
            ref = source.sample(min(args.n, 5000), generator=torch.Generator().manual_seed(args.seed + 1))
        return {"sde": sde, "score": model.score_fn(sde), "shape": (args.n, *config.model.data_shape),
                "dtype": config.torch_dtype, "ref": ref, "data_id": config.data_id,
                "label": f"{Path(args.checkpoint).name} ({config.data}, {config.sde.name})",
                "record": {"checkpoint": str(Path(args.checkpoint).resolve()), "ema": not args.raw_weights,
                           "sde": {"name": config.sde.name, "params": _sde_params(sde, config.sde.params)},
                           "trained_on": config.data}}
    if args.data is not None:
        raise ValueError("--data goes with --checkpoint (an exact target is its own data)")
    args.sde = args.sde or "vp"
    target, sde = _exact_target(args.target, args.sde)
    return {"sde": sde, "score": target.score_fn(sde), "shape": (args.n, target.dim), "target": target,
            "dtype": torch.float32, "ref": None, "label": f"exact {args.target} ({args.sde})",
            "data_id": data_identity(target, name=args.target, builtin=True),
            "record": {"target": args.target, "sde": {"name": args.sde, "params": _sde_params(sde, {})}}}


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import solvers

    from ..train import CheckpointError
    from ..train.distributed import resolve_device

    try:
        args.device = str(resolve_device(args.device))  # "auto" -> what it chose, as recorded
        solvers.check_solver_names([args.solver])
        _check_solver(args.solver, args.option, args.lam)
        steps_given = args.steps is not None
        if not steps_given:
            args.steps = sample_defaults()["steps"]
        r = _resolve(args)
        from .conditional import apply_conditioning, conditioning_record

        # a --classifier trained on other data is warned about: the checkpoint's data or the target
        data = r["record"].get("trained_on", args.target)
        score, after_step = apply_conditioning(args, r["score"], r["sde"], r["shape"], r.get("target"),
                                               data=data, dtype=r["dtype"], device=args.device)
        solvers.api.check_batch_size(args.batch_size)
        out = Path(args.out)
        from ..atomic import clean_stale_temps

        clean_stale_temps(out)  # left by a write killed mid-way (the chunk folder's: sample_resumable)
        # An adaptive solver chooses its own steps: the default count is not passed to it, a
        # count given on the command line is (and solvers.sample warns that it is ignored).
        adaptive = solvers.get_solver(args.solver, **dict(args.option)).adaptive
        common = dict(steps=None if adaptive and not steps_given else args.steps, grid=args.grid, lam=args.lam, denoise=args.denoise,
                      after_step=after_step, **dict(args.option))
        # A run that diverged (samples far beyond any data the prior covers) is refused, not
        # written with a warning: its DivergedWarning is an error here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", solvers.DivergedWarning)
            if args.batch_size is not None and args.batch_size < args.n:
                from ._chunks import sample_resumable

                samples, nfe, seconds, reused, end_step = sample_resumable(
                    out, _fingerprint(args, r), sde=r["sde"], score=score, shape=r["shape"], solver=args.solver,
                    batch_size=args.batch_size, seed=args.seed, dtype=r["dtype"], progress=not args.no_progress,
                    device=torch.device(args.device), overwrite=args.overwrite, **common)
                if reused:
                    print(f"resumed: {reused} finished chunk(s) of {args.batch_size} samples reused from {out / 'chunks'}")
            else:
                result = solvers.sample(r["sde"], score, r["shape"], args.solver, seed=args.seed, dtype=r["dtype"],
                                        device=args.device, progress=not args.no_progress, **common)
                samples, nfe, seconds = result.samples, result.nfe, result.seconds
                end_step = result.stats.get("end_step")
    except (ValueError, TypeError, CheckpointError) as err:  # other OSErrors: errors.describe
        if debugging(args):
            raise  # the CLI's error path prints the traceback
        report_error("sample", err)
        return 2
    except (solvers.DivergedWarning, FloatingPointError) as err:  # FloatingPointError: NonFiniteScoreError
        if debugging(args):
            raise
        hint = ("; --impute pigdm divides by alpha(t) in its Tweedie estimate (about 0.0066 at T under the "
                "default VP SDE), which amplifies a trained network's error near T: use --impute replacement "
                "(the default)" if getattr(args, "impute", None) == "pigdm" else "")
        if isinstance(err, solvers.DivergedWarning):
            report_error("sample", f"{err}{hint}; nothing was written")
            return EXIT_DIVERGED
        if hint:
            report_error("sample", f"{err}{hint}")
            return EXIT_FAILURE
        raise
    from ..atomic import atomic_write_with

    out.mkdir(parents=True, exist_ok=True)
    array = samples.detach().cpu()
    if args.format == "npy":
        path = out / "samples.npy"
        atomic_write_with(path, lambda f: np.save(f, array.numpy()))
    else:
        path = out / "samples.pt"
        atomic_write_with(path, lambda f: torch.save(array, f))
    record = {"output": path.name, "solver": args.solver, "steps": None if adaptive else args.steps, "seed": args.seed,
              "n": args.n, "denoise": end_step, "denoise_given": args.denoise is not None,
              "options": dict(args.option),
              "batch_size": args.batch_size,
              "conditioning": conditioning_record(args),
              **resolved_solver_settings(args.solver, args.grid, args.lam, r["sde"]),
              **({"grid": None} if adaptive else {}),  # an adaptive solver uses no grid
              "dtype": str(r["dtype"]).replace("torch.", ""), "device": args.device, "data_id": r["data_id"],
              "nfe": nfe, "seconds": seconds, "plot": None if args.no_plot else "samples.png", **r["record"]}
    earlier, earlier_plot = _earlier_output(out)
    replaced = _replaced_settings(out, record) if earlier else []
    side = write_sidecar(path, record)
    if args.batch_size is not None and args.batch_size < args.n:  # every chunk is in the samples file now
        from ._chunks import remove_pieces

        remove_pieces(out / "chunks")
    # An earlier run's samples in the other format (and its plot) would sit next to this run's
    # settings file, which no longer describes them. Only files that run's settings name go.
    stale = [out / earlier] if earlier and earlier != path.name else []
    if earlier_plot and args.no_plot:
        stale.append(out / earlier_plot)
    for old in stale:
        if old.is_file():
            old.unlink()
            print(f"removed {old} (an earlier run's; {side.name} describes this one)")
    if replaced:
        print(f"note: replaced the samples of an earlier run in {out} ({'; '.join(replaced)})")
    print(f"{args.solver}: {args.n} samples of {r['label']}, NFE {nfe}, "
          f"{seconds:.2f} s -> {path} (settings: {side})")
    if not args.no_plot:
        _plot(samples, out / "samples.png", f"{r['label']}: {args.solver}, NFE {nfe}", r["ref"])
        print(f"plot -> {out / 'samples.png'}")
    return 0


_COMPARED = ("solver", "steps", "seed", "n", "grid", "denoise", "options", "conditioning", "dtype")
"""The settings a note on replaced samples names when they changed."""


def _replaced_settings(out: Path, record: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each of `_COMPARED` in which the run whose settings are in
    ``out/samples.json`` differs from ``record`` (this run's); empty when unreadable."""
    import json

    try:
        old = json.loads((out / "samples.json").read_text())
        new = json.loads(json.dumps({k: record.get(k) for k in _COMPARED}, default=str))
    except (OSError, ValueError, TypeError):
        return []
    if not isinstance(old, dict):
        return []
    return [f"{k}: {old.get(k)} -> {new[k]}" for k in _COMPARED if old.get(k) != new[k]]


def _earlier_output(out: Path) -> tuple[str | None, str | None]:
    """The samples file and plot an earlier ``scoresde sample`` run in ``out`` wrote, as its
    settings file names them (``output``: ``samples.npy`` / ``samples.pt``; ``plot``:
    ``samples.png``), each ``None`` where it names none."""
    import json

    try:
        record = json.loads((out / "samples.json").read_text())
        name, plot = record.get("output"), record.get("plot")
    except (OSError, ValueError, AttributeError):
        return None, None
    return (name if name in ("samples.npy", "samples.pt") else None,
            plot if plot == "samples.png" else None)


def _fingerprint(args: argparse.Namespace, resolved: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides the samples of a chunked run, the code included (stored chunks are
    reused only if equal)."""
    import json

    from ._chunks import CODE_KEY, code_digest, file_identity
    from ._settings import _jsonable

    model: dict[str, Any] = {"record": resolved["record"], "data_id": resolved["data_id"]}
    if args.checkpoint:  # the checkpoint file itself: a retrained run at the same path is other data
        model["checkpoint_file"] = file_identity(args.checkpoint, checkpoint=True)
    keys = ("solver", "steps", "grid", "lam", "seed", "n", "batch_size", "denoise", "raw_weights", "option",
            "label", "guidance", "classifier", "mask", "observed", "impute", "device")
    settings = {k: getattr(args, k, None) for k in keys}
    files = {}  # a classifier, mask or observation given as a file: its identity, not only its name
    for k, v in settings.items():
        if isinstance(v, str) and Path(v).is_file():
            files[k] = file_identity(v)
    fingerprint = {"settings": settings, "files": files, "model": model, "dtype": str(resolved["dtype"]),
                   "shape": list(resolved["shape"]), CODE_KEY: code_digest()}
    return json.loads(json.dumps(_jsonable(fingerprint), sort_keys=True))
