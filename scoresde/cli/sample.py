"""``scoresde sample``: draw samples from a trained checkpoint (or an exact target) with any solver.

Writes ``OUT/samples.npy`` (or ``.pt``) and ``OUT/samples.png`` (a scatter plot for 2-D data,
an image grid for images) and prints the NFE and the time taken. Checkpoints sample with their
EMA weights unless ``--raw-weights`` is given.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from ._help import HelpFormatter


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
    parser.formatter_class = HelpFormatter
    parser.description = textwrap.fill(
        "Sample a trained checkpoint (EMA weights) or an exact Gaussian-mixture target with any "
        "registered solver (`scoresde solvers` lists them); write the samples and a plot."
    ) + "\n\nexample:\n  scoresde sample --checkpoint runs/8g --solver euler_maruyama --steps 200 --n 5000"
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or run directory")
    src.add_argument("--target", help="exact mixture target name instead of a checkpoint")
    parser.add_argument("--sde", default="vp", help="SDE for --target (checkpoints carry their own)")
    parser.add_argument("--solver", default="euler_maruyama", help="solver name")
    parser.add_argument("--steps", type=int, default=500, help="grid intervals")
    parser.add_argument("--grid", default="uniform", help="time grid name")
    parser.add_argument("--n", type=int, default=1000, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior draw and the noise")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="integrate at most this many samples at a time (flat memory; see "
                             "solvers.sample)")
    parser.add_argument("--denoise", action="store_true", help="final Tweedie denoising step")
    parser.add_argument("--raw-weights", action="store_true", help="use the raw, not the EMA, weights")
    parser.add_argument("--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
                        help="solver option, repeatable (e.g. --option snr=0.16)")
    parser.add_argument("--out", default="samples_out", help="output directory")
    parser.add_argument("--format", choices=("npy", "pt"), default="npy", help="sample file format")
    parser.add_argument("--no-plot", action="store_true", help="do not write samples.png")
    from .conditional import add_conditioning_arguments

    add_conditioning_arguments(parser)


def _plot(samples: Any, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data.images import image_grid

    x = samples.detach().cpu().float()
    if x.ndim == 4:
        grid = image_grid(x[:256])
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(grid.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.axis("off")
    else:
        x = x.reshape(x.shape[0], -1)
        fig, ax = plt.subplots(figsize=(6, 6))
        ys = x[:, 1] if x.shape[1] > 1 else 0 * x[:, 0]
        size = 6.0 if len(x) <= 1000 else 3.0 if len(x) <= 5000 else 1.5
        ax.scatter(x[:, 0].numpy(), ys.numpy(), s=size, alpha=0.5, linewidths=0)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("x1")
        ax.set_ylabel("x2" if x.shape[1] > 1 else "")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    import solvers

    from ..sde import get_sde
    from ..targets import get_target
    from ..train import CheckpointError, load_model

    try:
        if args.n < 1 or args.steps < 1:
            raise ValueError("--n and --steps must be positive")
        if args.checkpoint:
            model, sde, config = load_model(args.checkpoint, ema=not args.raw_weights)
            score = model.score_fn(sde)
            shape = (args.n, *config.model.data_shape)
            dtype = config.torch_dtype
            label = f"{Path(args.checkpoint).name} ({config.data}, {config.sde.name})"
        else:
            target = get_target(args.target)
            sde = get_sde(args.sde)
            score = target.score_fn(sde)
            shape, dtype = (args.n, target.dim), torch.float32
            label = f"exact {args.target} ({args.sde})"
        from .conditional import apply_conditioning

        score, after_step = apply_conditioning(args, score, sde, shape, None if args.checkpoint else target)
        result = solvers.sample(sde, score, shape, args.solver, steps=args.steps, grid=args.grid,
                                seed=args.seed, denoise=args.denoise, dtype=dtype, after_step=after_step,
                                batch_size=args.batch_size, **dict(args.option))
    except (ValueError, TypeError, CheckpointError) as err:
        print(f"scoresde sample: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.format == "npy":
        path = out / "samples.npy"
        np.save(path, result.samples.detach().cpu().numpy())
    else:
        path = out / "samples.pt"
        torch.save(result.samples.detach().cpu(), path)
    print(f"{args.solver}: {args.n} samples of {label}, NFE {result.nfe}, "
          f"{result.seconds:.2f} s -> {path}")
    if not args.no_plot:
        _plot(result.samples, out / "samples.png", f"{label}: {args.solver}, NFE {result.nfe}")
        print(f"plot -> {out / 'samples.png'}")
    return 0
