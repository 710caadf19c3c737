"""Conditioning flags of ``scoresde sample``: ``--class/--guidance`` and ``--mask/--observed``.

``add_conditioning_arguments`` adds the flags; ``apply_conditioning`` turns them into a score
wrapper and an ``after_step`` hook for ``solvers.sample`` (Song et al. 2021, sec. 5):

* ``--class C [--guidance W]``: classifier guidance with a time-dependent classifier. For an
  exact ``--target`` without ``--classifier`` the classes are its components and
  ``p_t(c | x)`` is exact, so ``W = 1`` (the default) samples the exact class conditional;
  otherwise give ``--classifier`` (a file written by ``scoresde train-classifier``).
* ``--mask M --observed Y``: imputation of the unmasked coordinates. ``M`` and ``Y`` are comma
  lists (one entry per coordinate, 1 = observed) or ``.npy`` files of the data shape
  (``--observed`` also ``(n, *shape)``: one observation per sample, replacement only, unchunked).
  ``--impute replacement`` (default; Song et al. 2021) or ``pigdm`` (Song et al. 2023); for an
  exact target ``--impute exact`` uses the exact conditional score.

``conditioning_record`` is what ``samples.json`` records of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._help import output_path
from .errors import debugging, report_error

IMPUTE_METHODS = ("replacement", "pigdm", "exact")
"""``--impute`` choices; ``replacement`` is the default."""


def add_conditioning_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("conditioning")
    g.add_argument("--class", dest="label", type=int, default=None, help="class to sample (classifier guidance)")
    g.add_argument("--guidance", type=float, default=None,
                   help="guidance scale w >= 0 for --class (default 1: the exact conditional with an exact classifier)")
    g.add_argument("--classifier", default=None, help="classifier file from `scoresde train-classifier` (checkpoints)")
    g.add_argument("--mask", default=None, help="observed coordinates: comma list of 0/1 or a .npy file")
    g.add_argument("--observed", default=None,
                   help="observed values: comma list or a .npy file of the data shape (one observation), or "
                        "(N, *shape) with N = --n (one per sample; --impute replacement, no --batch-size below --n)")
    g.add_argument("--impute", choices=IMPUTE_METHODS, default=None,
                   help="imputation method for --mask (default replacement; exact: exact targets only)")


def _array(text: str, name: str) -> Any:
    """``--mask`` / ``--observed``: a comma list (float64) or a numeric ``.npy`` file, as a tensor.

    Raises:
        ValueError: a missing, unreadable or non-numeric file, or a list of non-numbers (naming ``--name``).
    """
    import numpy as np
    import torch

    if text.endswith(".npy"):
        if not Path(text).is_file():
            raise ValueError(f"--{name} file {text!r} not found")
        try:
            array = np.load(text, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"--{name} file {text!r} cannot be read as a .npy array ({err})") from None
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"--{name} file {text!r} must hold numbers (booleans, integers or floats), got {kind}")
        return torch.from_numpy(np.ascontiguousarray(array))
    try:
        return torch.tensor([float(v) for v in text.split(",")], dtype=torch.float64)
    except ValueError:
        raise ValueError(f"--{name} must be a comma-separated list of numbers or a .npy file, got {text!r}") from None


def _observations(observed: Any, data_shape: tuple[int, ...], args: argparse.Namespace, impute: str) -> Any:
    """``--observed`` of the data shape ``*D`` (one observation) or ``(n, *D)`` (one per sample).

    ``(1, *D)`` is read as one observation. Per-sample observations need ``--impute replacement``
    and every sample in one chunk: the hook sees one chunk at a time, so with ``--batch-size``
    below ``--n`` each chunk would reuse the first rows (silently when the chunk size equals
    the row count).

    Raises:
        ValueError: another row count, per-sample rows with another method or with chunks.
    """
    if tuple(observed.shape) == data_shape or tuple(observed.shape[1:]) != data_shape:
        return observed  # one observation, or a shape check_mask / the hook reports
    rows = observed.shape[0]
    if rows == 1:
        return observed[0]
    if rows != args.n:
        raise ValueError(f"--observed holds {rows} observations of shape {data_shape}; give one (shape "
                         f"{data_shape}) or one per sample ({args.n} = --n)")
    if impute != "replacement":
        raise ValueError(f"--observed with one observation per sample works with --impute replacement only "
                         f"(not {impute}); give one observation of shape {data_shape}")
    if args.batch_size is not None and args.batch_size < args.n:
        raise ValueError(f"--observed holds one observation per sample ({rows}), which needs every sample in "
                         f"one chunk: drop --batch-size {args.batch_size} (or give --batch-size >= --n {args.n}); "
                         "the imputation hook cannot tell which samples a chunk holds")
    return observed


def _classifier(path: str, sde: Any, dtype: Any, data: str | None, device: Any = None) -> tuple[Any, int]:
    """Load ``--classifier``, warn if it was trained for another SDE or data (``data``: the run's
    data name), cast it up to the run's ``dtype`` where that is lossless (float32 -> float64)
    and move it to the run's ``device``."""
    import torch

    from ..train.classifier import check_classifier_fits, load_classifier

    clf, n_classes = load_classifier(path)
    check_classifier_fits(clf, sde, data)
    param = next(clf.parameters(), None)
    if dtype is not None and param is not None and torch.promote_types(param.dtype, dtype) == dtype:
        clf = clf.to(dtype)
    if device is not None:
        clf = clf.to(device)
    return clf, n_classes


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse conditioning flags that do not go together."""
    if args.guidance is not None and args.label is None:
        raise ValueError("--guidance needs --class")
    if args.classifier is not None and args.label is None:
        raise ValueError("--classifier needs --class (the class to guide towards)")
    if (args.mask is None) != (args.observed is None):
        raise ValueError("--mask and --observed go together")
    if args.label is not None and args.mask is not None:
        raise ValueError("give either --class or --mask/--observed, not both")
    if getattr(args, "impute", None) is not None and args.mask is None:
        raise ValueError(f"--impute {args.impute} applies to --mask/--observed; give them, or drop --impute")


def apply_conditioning(args: argparse.Namespace, score: Any, sde: Any, shape: tuple[int, ...],
                       target: Any | None, *, data: str | None = None, dtype: Any = None,
                       device: Any = None) -> tuple[Any, Any]:
    """Return ``(score, after_step)`` for the conditioning flags in ``args`` (unchanged when none).

    Args:
        data: the name of the run's data (a checkpoint's recorded data, or the target's name);
            a ``--classifier`` trained on other data is warned about.
        dtype: the run's dtype; a float32 ``--classifier`` is cast up to it (lossless).
        device: the run's device; a ``--classifier`` is moved there.
    """
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
    _check_flags(args)
    if args.label is not None:
        scale = 1.0 if args.guidance is None else args.guidance
        if args.classifier is not None:
            data = data if data is not None else getattr(target, "name", None)
            clf, n_classes = _classifier(args.classifier, sde, dtype, data, device)
            score = ClassifierGuidance(score, clf, args.label, scale, n_classes=n_classes)
        elif target is not None:
            cm = ClassMixture(target, list(range(target.n_components)))
            cm.check_label(args.label)
            score = ClassifierGuidance(score, cm.classifier(sde), args.label, scale, n_classes=cm.n_classes)
        else:
            raise ValueError("--class with a checkpoint needs --classifier (see `scoresde train-classifier`)")
    if args.mask is not None:
        impute = args.impute or "replacement"
        data_shape = tuple(shape[1:])
        mask = _array(args.mask, "mask")
        observed = _array(args.observed, "observed")
        if not bool(torch.isfinite(observed.double()).all()):
            raise ValueError("--observed holds NaN/inf values; give finite observed values (the masked-out "
                             "entries may be any finite number, e.g. 0)")
        if mask.numel() == observed.numel() and tuple(mask.shape) != data_shape and mask.numel() == int(torch.tensor(data_shape).prod()):
            mask, observed = mask.reshape(data_shape), observed.reshape(data_shape)
        mask = check_mask(mask, data_shape)
        observed = _observations(observed, data_shape, args, impute)
        if impute == "exact":
            if target is None:
                raise ValueError("--impute exact needs an exact --target")
            score = ObservedCoordinates(target, mask, observed).score_fn(sde)
        elif impute == "pigdm":
            score = PosteriorGuidance(score, sde, mask, observed, data_shape)
        else:
            after_step = Replacement(sde, mask, observed, seed=hook_seed(args.seed))
    return score, after_step


def hook_seed(seed: int) -> int:
    """The replacement noise's seed for run seed ``seed``: another stream than the solver's.

    The solver's generator is seeded with ``seed`` and draws ``x_T`` first, then each step's
    noise; a hook seeded with the same ``seed`` would replay that sequence one step behind,
    so the observed coordinates' noise at one step would equal the noise the solver gave the
    free coordinates at the step before.
    """
    import numpy as np

    return int(np.random.SeedSequence([int(seed) % 2**64, 1]).generate_state(1, dtype=np.uint64)[0]) >> 1


def _recorded_path(text: str | None) -> str | None:
    """A flag's value as ``samples.json`` records it: a file as its absolute path, else as given."""
    if text is None:
        return None
    path = Path(text)
    return str(path.resolve()) if path.is_file() else text


def conditioning_record(args: argparse.Namespace) -> dict[str, Any]:
    """What conditioning ran, for ``samples.json``: the effective guidance scale and imputation
    method (``None`` where they do not apply), files as absolute paths."""
    guided, imputed = args.label is not None, args.mask is not None
    return {
        "label": args.label,
        "guidance": (1.0 if args.guidance is None else float(args.guidance)) if guided else None,
        "classifier": _recorded_path(args.classifier) if guided else None,
        "mask": _recorded_path(args.mask),
        "observed": _recorded_path(args.observed),
        "impute": (args.impute or "replacement") if imputed else None,
    }


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
        if debugging(args):
            raise  # the CLI's error path prints the traceback
        report_error("train-classifier", err)
        return 2
    with torch.no_grad():
        t = torch.full((x.shape[0],), sde.eps)
        acc = float((clf(x.float(), t).argmax(1) == labels).float().mean())
    path = save_classifier(clf, args.out, sde=sde, data=args.target or args.data)
    print(f"accuracy at t = eps: {acc:.3f}; classifier -> {path}")
    return 0
