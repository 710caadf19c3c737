"""``scoresde train``: train a score network on a 2-D toy or the digits, with checkpoints.

Starts from the tuned recipe for the data (``scoresde.train.toy_config`` for 2-D toys,
``digits_config`` for ``--data digits``) or from ``--config run/config.json``; every option
given on the command line overrides it. Writes ``OUT/config.json``, ``OUT/checkpoint.pt``
(atomically, every ``--ckpt-every`` steps and at the end) and ``OUT/metrics.jsonl``.
``--resume`` continues ``OUT/checkpoint.pt`` to the same weights an uninterrupted run gives.
Runs unchanged under ``torchrun --nproc_per_node=N -m scoresde train ...`` (DDP).

SIGTERM / Ctrl-C finish the step, write a checkpoint and exit with 143 / 130; a diverged run
exits with 3 without saving non-finite weights (see `scoresde.cli.errors` for all exit codes).
"""

from __future__ import annotations

import argparse
import inspect
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._help import HelpFormatter, output_path

if TYPE_CHECKING:  # the training package is imported only when the command runs
    from ..train import TrainConfig

SDE_NAMES = ("vp", "subvp", "ve", "cosine")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    parser.description = textwrap.fill(
        "Train a score network by denoising score matching. Options left out come from the "
        "recipe for --data (or from --config); see docs/training.md."
    ) + "\n\nexample:\n  scoresde train --data eight_gaussians --sde vp --steps 2000 --out runs/8g"
    a = parser.add_argument
    a("--out", type=output_path, required=True, help="run directory (config.json, checkpoint.pt, metrics.jsonl)")
    a("--data", default=None, help="data: a 2-D toy or target name, 'digits', an (N, D) .npy/.pt/.csv "
      "file, or a folder of equal-size PNG/JPEG images [eight_gaussians]")
    a("--config", default=None, help="start from this config.json instead of the recipe")
    a("--resume", nargs="?", const=True, default=False, metavar="CKPT",
      help="continue OUT/checkpoint.pt, or the checkpoint CKPT (e.g. OUT/checkpoints/step-...pt), with "
           "the settings of OUT/config.json (options given here override them; only --steps, logging and "
           "device may differ from the checkpoint's)")
    a("--overwrite", action="store_true", help="start afresh even if OUT has a checkpoint or other files")
    a("--keep-checkpoints", type=int, default=3, metavar="N",
      help="keep the newest N checkpoints in OUT/checkpoints/ (0: only OUT/checkpoint.pt)")
    g = parser.add_argument_group("process")
    g.add_argument("--sde", choices=SDE_NAMES, default=None, help="forward SDE [vp]")
    g.add_argument("--sigma-max", type=float, default=None,
                   help="VE only: sigma_max [50]; about the largest distance among the data points and the origin "
                   "(scoresde.data.suggest_sigma_max; docs/sdes.md)")
    g.add_argument("--steps", type=int, default=None, help="total optimizer steps")
    g.add_argument("--batch-size", type=int, default=None, help="global batch (split over processes)")
    g.add_argument("--seed", type=int, default=None, help="seed of weights, data and noise")
    g.add_argument("--dtype", choices=("float32", "float64"), default=None)
    g.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ... [auto]")
    g = parser.add_argument_group("model")
    g.add_argument("--model", choices=("mlp", "unet"), default=None, help="network [mlp; unet for images]")
    g.add_argument("--output", choices=("eps", "score", "x0", "v"), default=None,
                   help="what the network predicts [eps]; x0 takes --weighting min_snr unless given")
    g.add_argument("--width", type=int, default=None, help="MLP width")
    g.add_argument("--depth", type=int, default=None, help="MLP residual blocks")
    g.add_argument("--channels", type=int, default=None, help="U-Net channels at full resolution")
    g.add_argument("--channel-mults", default=None, help="U-Net channel multipliers, e.g. 1,2")
    g = parser.add_argument_group("loss")
    g.add_argument("--weighting", choices=("sigma2", "likelihood", "none", "min_snr"), default=None,
                   help="lambda(t): sigma^2 (default), g^2 (likelihood), 1, or Min-SNR-5 (min_snr; the "
                        "default with --output x0, whose error the others weight by the unbounded SNR)")
    g.add_argument("--importance", action="store_true", default=None,
                   help="sample t with density proportional to lambda(t)/sigma(t)^2 (unbiased; "
                        "uniform, i.e. no effect, with the default sigma2 weighting)")
    g.add_argument("--reduce", choices=("mean", "sum"), default=None, help="over data dims")
    g.add_argument("--t-min", type=float, default=None, help="epsilon-truncation of t [sde.eps]")
    g = parser.add_argument_group("optimizer")
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--warmup", type=int, default=None, help="linear warm-up steps")
    g.add_argument("--decay-steps", type=int, default=None, help="cosine decay length (0: none)")
    g.add_argument("--grad-clip", type=float, default=None, help="max grad norm (0: no clipping)")
    g.add_argument("--ema-decay", type=float, default=None)
    g = parser.add_argument_group("logging")
    g.add_argument("--log-every", type=int, default=None)
    g.add_argument("--ckpt-every", type=int, default=None, help="0: only at the end")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_sigma_max_flag(sigma_max: float, sde_name: str) -> None:
    """Refuse ``--sigma-max`` for an SDE other than VE, or a value that is not positive and finite."""
    if sde_name != "ve":
        raise ValueError(f"--sigma-max applies to --sde ve, not {sde_name}")
    if not 0.0 < sigma_max < float("inf"):
        raise ValueError(f"--sigma-max must be positive and finite, got {sigma_max:g}")
    from ..sde import VESDE

    sigma_min = inspect.signature(VESDE).parameters["sigma_min"].default
    if sigma_max <= sigma_min:
        raise ValueError(
            f"--sigma-max {sigma_max:g} is not above the VE SDE's smallest noise level sigma_min = {sigma_min:g}: "
            "data whose spread is that small are below the noise every VE run starts from and ends at. "
            "Rescale the data to about unit spread (divide by their std, and multiply the samples back), "
            "then train with the default --sde vp or a --sigma-max from scoresde.data.suggest_sigma_max")


def _check_steps(steps: int | None, resume: object) -> None:
    """Refuse a ``--steps`` no run can use: negative, or 0 for a new run (0 is allowed only with --resume)."""
    if steps is None or steps >= 1 or (steps == 0 and resume):
        return
    raise ValueError(f"--steps must be >= 1 for a new run, got {steps} (it is the total number of "
                     "optimizer steps; 0 is allowed only with --resume, and then trains nothing)")


def _recipe_sde(args: argparse.Namespace) -> Any:
    """The SDE handed to the toy recipe: a name, or the VE SDE built with ``--sigma-max``.

    Passing the built SDE (not patching the config afterwards) lets the recipe warn about a
    ``sigma_max`` too small for the data, as `scoresde.train.toy_config` does in Python.
    """
    name = args.sde or "vp"
    if args.sigma_max is None:
        return name
    _check_sigma_max_flag(args.sigma_max, name)
    from ..sde import get_sde

    return get_sde("ve", sigma_max=args.sigma_max)


def _same_data_as(data: str, config: TrainConfig) -> bool:
    """Whether ``data`` (a name or path) holds exactly the array ``config`` was trained on (its
    ``data_id``), e.g. a folder's resized images saved as a ``.npy`` to resume the run from."""
    from ..data.identity import data_identity
    from ..train import make_data
    from ..train.config import same_data

    stored = getattr(config, "data_id", None)
    if not stored:
        return False
    try:
        given = data_identity(make_data(data), name=data)
    except Exception:  # not loadable: the contradiction message is the right one
        return False
    return same_data(stored, given)


def _run_settings(out: Path) -> tuple[TrainConfig | None, str]:
    """The settings a ``--resume`` of ``out`` starts from: ``out/config.json`` if readable, else
    those stored in ``out``'s checkpoint when that file is missing or damaged (a note says so),
    else ``None`` (no checkpoint either: the recipe's)."""
    from ..train import TrainConfig
    from ..train.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint

    path = out / "config.json"
    try:
        return TrainConfig.from_json(path), f"the run's {path}"
    except FileNotFoundError:
        why = "is missing"
    except (OSError, ValueError, TypeError) as err:
        why = f"is unreadable ({err})"
    ckpt = resolve_checkpoint(out)
    if not ckpt.is_file():
        return None, "--config"
    try:
        config = TrainConfig.from_json(load_checkpoint(ckpt)["config"])
    except (CheckpointError, KeyError, ValueError, TypeError):
        return None, "--config"  # the resume itself reports the checkpoint's damage
    import sys

    print(f"note: {path} {why}; resuming from the settings stored in {ckpt}", file=sys.stderr)
    return config, f"the settings stored in {ckpt}"


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The run's `TrainConfig` from the recipe or ``--config``, with overrides applied."""
    from ..train import TrainConfig, digits_config, toy_config

    if args.data is not None and not args.data.strip():
        raise ValueError("--data is empty; give a data name or file (or leave it out for eight_gaussians)")
    source = "--config"
    stored: TrainConfig | None = None
    if args.resume and not args.config:
        # resuming starts from the run's own settings; options given on this line override them
        stored, source = _run_settings(Path(args.out))
    if stored is not None or args.config:
        config = stored if stored is not None else TrainConfig.from_json(args.config)
        if args.data is not None and args.data != config.data:
            if not (args.resume and _same_data_as(args.data, config)):
                raise ValueError(f"--data {args.data} contradicts {source} (data={config.data})")
            config.data = args.data  # the run's own data under another name: resumed from the file
    else:
        data = args.data or "eight_gaussians"
        steps = args.steps if args.steps is not None else None
        kw: dict[str, int] = {"seed": args.seed or 0}
        if steps is not None:
            kw["steps"] = steps
        from ..train import make_data
        from ..train.data import sample_shape

        source = make_data(data)  # a built-in name, an array file or an image folder
        shape = sample_shape(source)
        if len(shape) == 3:
            config = digits_config(sde=args.sde or "vp", data=data, data_shape=shape, **kw)  # type: ignore[arg-type]
        else:
            # The SDE with --sigma-max already set, so the recipe's checks see the real prior.
            config = toy_config(data, sde=_recipe_sde(args), data=source, **kw)
            if args.sigma_max is not None:  # record only the option given (set below), as before
                from ..train import SDEConfig

                config.sde = SDEConfig("ve")
            config.ckpt_every = 1000
            config.device = "auto"
    if args.sde is not None and args.sde != config.sde.name:
        from ..train import SDEConfig

        config.sde = SDEConfig(args.sde)
    if args.sigma_max is not None:
        _check_sigma_max_flag(args.sigma_max, config.sde.name)
        config.sde.params["sigma_max"] = args.sigma_max
    m, lo, op = config.model, config.loss, config.optim
    if args.model is not None and args.model != m.arch:
        m.arch, m.net = args.model, {}
    net_flags = {"width": args.width, "depth": args.depth, "channels": args.channels,
                 "channel_mults": (tuple(int(v) for v in args.channel_mults.split(","))
                                   if args.channel_mults else None)}
    m.net.update({k: v for k, v in net_flags.items() if v is not None})
    if args.output is not None:
        m.output = args.output
        if args.output == "x0" and args.weighting is None and args.config is None and lo.weighting == "sigma2":
            lo.weighting = "min_snr"  # losses.warn_x0_weighting: sigma2 trains an x0 network poorly
    for attr, value in (("weighting", args.weighting), ("importance", args.importance),
                        ("reduce", args.reduce), ("t_min", args.t_min)):
        if value is not None:
            setattr(lo, attr, value)
    for attr, value in (("lr", args.lr), ("weight_decay", args.weight_decay),
                        ("warmup_steps", args.warmup), ("ema_decay", args.ema_decay)):
        if value is not None:
            setattr(op, attr, value)
    if args.decay_steps is not None:  # an explicit length: the decay no longer follows the run
        op.decay_steps, op.decay_to_end = args.decay_steps or None, False
    if args.warmup is not None:
        op.warmup_fraction = None
    if args.grad_clip is not None:
        op.grad_clip = args.grad_clip or None
    for attr, value in (("steps", args.steps), ("batch_size", args.batch_size), ("seed", args.seed),
                        ("dtype", args.dtype), ("device", args.device),
                        ("log_every", args.log_every), ("ckpt_every", args.ckpt_every)):
        if value is not None:
            setattr(config, attr, value)
    # Re-run the dataclass checks on the edited config.
    return TrainConfig.from_dict(config.to_dict())


def run(args: argparse.Namespace) -> int:
    from ..train import Trainer

    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite starts it afresh: give one")
    if args.channel_mults:
        try:
            [int(v) for v in args.channel_mults.split(",")]
        except ValueError:
            raise ValueError(f"--channel-mults must be comma-separated integers, got {args.channel_mults!r}") from None
    _check_steps(args.steps, args.resume)
    config = build_config(args)
    trainer = Trainer(config, out_dir=args.out, resume=args.resume, overwrite=args.overwrite,
                      progress=not args.no_progress, keep_checkpoints=args.keep_checkpoints)
    try:
        if trainer.dist.is_main:
            print(f"training {config.model.arch} ({trainer.model.num_parameters():,} parameters) on "
                  f"{config.data} with the {config.sde.name} SDE for {config.steps} steps "
                  f"from step {trainer.step} ({trainer.dist.world_size} process(es), {trainer.device})")
        if trainer.step >= config.steps and trainer.dist.is_main:
            print(f"the checkpoint is already at step {trainer.step} >= --steps {config.steps}: nothing to "
                  f"train (pass a larger --steps to continue)")
        start_step = trainer.step
        history = trainer.fit()
        if trainer.dist.is_main:
            last = next((h for h in reversed(history) if "loss" in h), None)
            if last is not None:
                print(f"step {last['step']}: loss {last['loss']:.4g}")
            if trainer.step > start_step:
                print(f"wrote {args.out}/checkpoint.pt")
            else:
                print(f"nothing written: {args.out} is as it was")
    finally:
        trainer.close()
    return 0
