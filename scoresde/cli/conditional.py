"""Conditioning flags of ``scoresde sample``: ``--class/--guidance`` and ``--mask/--observed``.

``add_conditioning_arguments`` adds the flags; ``apply_conditioning`` turns them into a score
wrapper and an ``after_step`` hook for ``solvers.sample`` (Song et al. 2021, sec. 5):

* ``--class C [--guidance W]``: classifier guidance with a time-dependent classifier. For an
  exact ``--target`` without ``--classifier`` the classes are its components and
  ``p_t(c | x)`` is exact, so ``W = 1`` (the default) samples the exact class conditional;
  otherwise give ``--classifier`` (a file written by ``scoresde train-classifier``).
* ``--mask M --observed Y``: imputation of the unmasked coordinates. ``M`` and ``Y`` are comma
  lists (one entry per coordinate, 1 = observed) or ``.npy`` files of the data shape.
  ``--impute replacement`` (default; Song et al. 2021) or ``pigdm`` (Song et al. 2023); for an
  exact target ``--impute exact`` uses the exact conditional score.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._help import output_path
from .errors import report_error


def add_conditioning_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("conditioning")
    g.add_argument("--class", dest="label", type=int, default=None, help="class to sample (classifier guidance)")
    g.add_argument("--guidance", type=float, default=None,
                   help="guidance scale w >= 0 for --class (default 1: the exact conditional with an exact classifier)")
    g.add_argument("--classifier", default=None, help="classifier file from `scoresde train-classifier` (checkpoints)")
    g.add_argument("--mask", default=None, help="observed coordinates: comma list of 0/1 or a .npy file")
    g.add_argument("--observed", default=None, help="observed values: comma list or a .npy file (data shape)")
    g.add_argument("--impute", choices=("replacement", "pigdm", "exact"), default="replacement",
                   help="imputation method for --mask (exact: exact targets only)")


def _array(text: str, name: str) -> Any:
    import numpy as np
    import torch

    if text.endswith(".npy"):
        if not Path(text).is_file():
            raise ValueError(f"--{name} file {text!r} not found")
        return torch.from_numpy(np.load(text))
    try:
        return torch.tensor([float(v) for v in text.split(",")], dtype=torch.float64)
    except ValueError:
        raise ValueError(f"--{name} must be a comma-separated list of numbers or a .npy file, got {text!r}") from None


def apply_conditioning(args: argparse.Namespace, score: Any, sde: Any, shape: tuple[int, ...],
                       target: Any | None) -> tuple[Any, Any]:
    """Return ``(score, after_step)`` for the conditioning flags in ``args`` (unchanged when none)."""
    import torch

    from ..conditional import (
        ClassifierGuidance,
        ClassMixture,
        ObservedCoordinates,
        PosteriorGuidance,
        Replacement,
    )
    from ..conditional.checks import check_mask

    after_step = None
    if args.guidance is not None and args.label is None:
        raise ValueError("--guidance needs --class")
    if args.classifier is not None and args.label is None:
        raise ValueError("--classifier needs --class (the class to guide towards)")
    if (args.mask is None) != (args.observed is None):
        raise ValueError("--mask and --observed go together")
    if args.label is not None and args.mask is not None:
        raise ValueError("give either --class or --mask/--observed, not both")
    if args.label is not None:
        scale = 1.0 if args.guidance is None else args.guidance
        if args.classifier is not None:
            from ..train.classifier import check_classifier_fits, load_classifier

            clf, n_classes = load_classifier(args.classifier)
            check_classifier_fits(clf, sde, getattr(target, "name", None))
            score = ClassifierGuidance(score, clf, args.label, scale, n_classes=n_classes)
        elif target is not None:
            cm = ClassMixture(target, list(range(target.n_components)))
            cm.check_label(args.label)
            score = ClassifierGuidance(score, cm.classifier(sde), args.label, scale, n_classes=cm.n_classes)
        else:
            raise ValueError("--class with a checkpoint needs --classifier (see `scoresde train-classifier`)")
    if args.mask is not None:
        data_shape = tuple(shape[1:])
        mask = _array(args.mask, "mask")
        observed = _array(args.observed, "observed")
        if not bool(torch.isfinite(observed.double()).all()):
            raise ValueError("--observed holds NaN/inf values; give finite observed values (the masked-out "
                             "entries may be any finite number, e.g. 0)")
        if mask.numel() == observed.numel() and tuple(mask.shape) != data_shape and mask.numel() == int(torch.tensor(data_shape).prod()):
            mask, observed = mask.reshape(data_shape), observed.reshape(data_shape)
        mask = check_mask(mask, data_shape)
        if args.impute == "exact":
            if target is None:
                raise ValueError("--impute exact needs an exact --target")
            score = ObservedCoordinates(target, mask, observed).score_fn(sde)
        elif args.impute == "pigdm":
            score = PosteriorGuidance(score, sde, mask, observed, data_shape)
        else:
            after_step = Replacement(sde, mask, observed, seed=args.seed)
    return score, after_step


# --- `scoresde train-classifier` -----------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``scoresde train-classifier``."""
    parser.description = (
        "Train a time-dependent classifier p_t(c | x_t) on noised data (cross-entropy over t ~ U(eps, T)) "
        "for classifier guidance: `scoresde sample --checkpoint RUN --class C --classifier FILE`."
        "\n\nexample:\n  scoresde train-classifier --target eight_gaussians --classes 0,0,1,1,2,2,3,3 --out clf.pt"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--target", help="exact mixture target; classes are groups of components")
    src.add_argument("--data", choices=("digits",), help="labelled image data")
    parser.add_argument("--classes", default=None, help="class of each component (comma list; default: one per component)")
    parser.add_argument("--sde", default="vp", help="SDE whose noise levels the classifier learns")
    parser.add_argument("--steps", type=int, default=2000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size")
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument("--out", type=output_path, default="classifier.pt", help="output file")


def _classes(text: str) -> list[int]:
    """``--classes``: comma-separated integers, one per mixture component."""
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(f"--classes must be comma-separated integers (one class per component), got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Train and save the classifier; print its loss and accuracy on clean data."""

    import torch

    from ..sde import get_sde
    from ..targets import get_target
    from ..train.classifier import digits_data, mixture_data, save_classifier, train_classifier

    try:
        sde = get_sde(args.sde)
        if args.target:
            classes = None if args.classes is None else _classes(args.classes)
            x, labels = mixture_data(get_target(args.target), classes, seed=args.seed)
        else:
            if args.classes is not None:
                raise ValueError("--classes applies to --target only (digits carry their labels)")
            x, labels = digits_data()
        clf = train_classifier(x, labels, sde, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                               log=lambda s, loss: print(f"step {s}: loss {loss:.4f}"))
    except ValueError as err:
        report_error("train-classifier", err)
        return 2
    with torch.no_grad():
        t = torch.full((x.shape[0],), sde.eps)
        acc = float((clf(x.float(), t).argmax(1) == labels).float().mean())
    path = save_classifier(clf, args.out, sde=sde, data=args.target or args.data)
    print(f"accuracy at t = eps: {acc:.3f}; classifier -> {path}")
    return 0
