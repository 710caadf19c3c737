"""What ``scoresde likelihood`` evaluates: the score (a checkpoint or an exact target), the
points (drawn from the run's data, a named source, a file or the target) and the defaults that
depend on them (a trained network's tolerances, the pixel grid of image data for ``--bpd``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._settings import check_checkpoint_sde


def _load_data(path: str, keep_integers: bool = False) -> Any:
    """The rows of a data file (checked: ``(N, *D)``, numeric, finite; clear errors otherwise), in
    float64, or as integers when ``keep_integers`` and the file stores integers (pixel levels for
    ``--bpd``, e.g. a ``uint8`` ``.npy`` of images)."""
    import torch

    from ..data import load_array

    ds = load_array(path)
    if keep_integers and ds.stored_integers:
        return ds.data.round().to(torch.long)  # float64 holds every integer below 2^53 exactly
    return ds.data


def _points_of(source: Any, n: int, gen: Any, dtype: Any, name: str) -> tuple[Any, str]:
    """The points to score from a data source, and what they are (for the label).

    A fixed set (an image folder, digits, a run's own array data) gives ``min(n, N)`` *distinct* items in
    a seeded random order, each scored once: draws with replacement would score some items
    several times and others never, and the standard error over points would count the repeats
    as independent. A sampler without a fixed size (a 2-D toy) gives ``n`` fresh draws.
    """
    import torch

    from ..train.data import draw

    rows = next((getattr(source, a) for a in ("images", "data") if isinstance(getattr(source, a, None), torch.Tensor)), None)
    if rows is None:
        return draw(source, n, generator=gen, dtype=dtype), f"{n} draws of {name}"
    total = int(rows.shape[0])
    order = torch.randperm(total, generator=gen)[:n]
    x = rows[order.to(rows.device)].to(dtype)
    if n >= total:
        return x, f"all {total} items of {name}, each once" + (f" (--n {n} asks for more)" if n > total else "")
    return x, f"{n} of the {total} items of {name}, each once"


def _overflow_hint(args: argparse.Namespace) -> str:
    """The fix for data that overflow the dtype of the computation."""
    return "Rescale the data" if args.float64 else "Pass --float64, or rescale the data"


def _to_levels(x: Any, levels: int, data_range: tuple[float, float]) -> Any:
    """Integer levels ``k`` from data on the grid ``lo + (hi - lo) k / (L - 1)`` (or already integers)."""
    import torch

    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"--levels must be an integer >= 2, got {levels!r}")
    if not x.is_floating_point():
        k = x.long()
        if int(k.min()) < 0 or int(k.max()) > levels - 1:
            raise ValueError(
                f"--bpd: integer levels must lie in 0..{levels - 1} for --levels {levels}; the data span "
                f"[{int(k.min())}, {int(k.max())}]; pass --levels for the data's own grid (8-bit images: "
                "--levels 256, 16-bit: --levels 65536)")
        return k
    from ..data.arrays import integer_levels

    lo, hi = data_range
    k = (x.double() - lo) / (hi - lo) * (levels - 1)
    kr = k.round()
    if float((k - kr).abs().max()) > 1e-3 or float(kr.min()) < 0 or float(kr.max()) > levels - 1:
        seen = f"the data span [{float(x.min()):.3g}, {float(x.max()):.3g}]"
        hint = "; image folders load onto [-1, 1]: --data-range=-1,1" if float(x.min()) < lo - 1e-6 else ""
        whole = integer_levels(x)
        if whole is not None and (lo, hi) != (0.0, float(whole - 1)):
            # --data-range is also the range the model is evaluated on: levels go in as integers
            hint = (f"; they are whole numbers {int(x.min())}..{int(x.max())}: if these are pixel levels, "
                    f"save them as integers (np.save(path, array.astype(np.uint8))), which --bpd reads as "
                    f"levels and maps onto [{lo:g}, {hi:g}], the model's range"
                    + (f", with --levels {whole}" if whole != levels else ""))
        raise ValueError(
            f"--bpd: the data are not on the {levels}-level grid of [{lo:g}, {hi:g}] ({seen}); pass integer "
            f"levels or the matching --levels/--data-range{hint}"
        )
    return kr.to(torch.long)


def _check_data_shape(shape: tuple[int, ...], expected: tuple[int, ...], model: str, data: str) -> None:
    """Refuse ``--data`` whose points do not have the model's shape, naming both.

    Raises:
        ValueError: ``shape != expected``.
    """
    if shape == expected:
        return
    hint = ""
    if len(shape) == 3 and len(expected) == 3 and Path(data).is_dir():
        c, h, w = expected
        hint = (f". A folder is read at its own size and channels: resize or convert the images as for "
                f"training and pass them as a file, np.save('test.npy', scoresde.data.load_data(folder, "
                f"image_size=({h}, {w}), channels={c}).images.numpy()), then --data test.npy")
    raise ValueError(f"--data {data} holds points of shape {shape}, but {model} models points of shape "
                     f"{expected}; pass data of that shape (the model's own training data, or held-out "
                     f"data like it){hint}")


def _default_divergence(args: argparse.Namespace, model_shape: tuple[int, ...]) -> None:
    """``--divergence`` left unset: Hutchinson for images ``(C, H, W)`` (the exact divergence costs
    ``C H W`` backward passes per evaluation: 64 for 8x8 digits, 3072 for CIFAR-sized images; a
    U-Net on 8x8 images did not finish 8 points in 5 minutes), exact for points."""
    if args.divergence is None:
        args.divergence = "hutchinson" if len(model_shape) == 3 else "exact"


NETWORK_TOL_FACTOR = 0.1
"""A checkpoint's adaptive tolerances are this times the library's default (exact divergence).

A trained network is rough in ``t``: the adaptive solver takes 5-6x the steps it takes on an
exact score, each within the local tolerance, and the errors add up. On two eight_gaussians
MLPs (350 and 500 training steps, 300 points each, against ``rtol = atol = 1e-9``) the
library default ``1e-5`` was 2.2e-3 and 4.0e-3 nats per point off (max 8e-2), ``1e-6`` 2.8e-4
and 1.9e-4 for 2x the NFE, ``1e-7`` 2e-5 (docs/likelihood.md)."""


def _network_tolerances(args: argparse.Namespace) -> None:
    """Tighten unset ``--rtol`` / ``--atol`` for a trained network (`NETWORK_TOL_FACTOR`)."""
    if args.divergence != "exact" or (args.rtol is not None and args.atol is not None):
        return  # Hutchinson: its own variance dominates, as in the library's default
    from ..likelihood.options import IntegratorOptions

    rtol, atol = IntegratorOptions().tolerances()
    args.rtol = NETWORK_TOL_FACTOR * rtol if args.rtol is None else args.rtol
    args.atol = NETWORK_TOL_FACTOR * atol if args.atol is None else args.atol


def _default_grid(args: argparse.Namespace, source: Any, image_model: bool = False,
                  trained_levels: int | None = None) -> None:
    """Fill ``--levels`` / ``--data-range`` left unset: from image data, which know their pixel
    grid (`scoresde.data.ImageDataset.levels`, on ``[-1, 1]``); for a checkpoint trained on raw
    pixel levels (``trained_levels``: an array of whole numbers ``0 .. L-1``, e.g. a ``uint8``
    ``.npy``), those levels themselves, ``[0, L-1]``; for a model of images ``(C, H, W)`` scoring
    a data file, the range images are trained on, ``[-1, 1]``, with 256 levels; else 256 levels
    on ``[0, 1]``."""
    levels = getattr(source, "levels", None)
    if levels is None and trained_levels is not None and args.data_range is None:
        levels = args.levels if args.levels is not None else trained_levels
        args.data_range = (0.0, float(levels - 1))
    if args.data_range is None:
        if levels is not None:
            args.data_range = tuple(source.data_range)
        else:
            args.data_range = (-1.0, 1.0) if image_model else (0.0, 1.0)
    if args.levels is None:
        args.levels = levels if levels is not None else 256


def _trained_rows(config: Any, own: Any) -> tuple[Any, Any]:
    """A checkpoint's training data as a tensor ``(N, *D)`` and their source, or ``(None, None)``
    when they cannot be found again (the rows are ``None`` too for a source that is not a fixed
    array). ``own``: that data source, when already loaded."""
    import torch

    from ..train.data import reference_data

    if own is None:
        try:
            own = reference_data(config, None)
        except Exception:  # the training data are gone or changed: nothing to go by
            return None, None
    rows = next((getattr(own, a) for a in ("data", "images") if isinstance(getattr(own, a, None), torch.Tensor)), None)
    return rows, own


INSIDE_FRACTION = 0.02
"""`_warn_range_mismatch` flags training data spanning less than this part of the ``--bpd``
range: a ``[0, 1]`` or ``[-1, 1]`` model read on ``[0, 255]`` spans 0.4-0.8% of it, while dark
8-bit images (levels 0..50) or 17-level digits (0..16) span 6-20% of theirs."""


def _warn_range_mismatch(rows: Any, data_range: tuple[float, float], checkpoint: str,
                         from_training_levels: bool = False) -> None:
    """Warn when ``--bpd`` maps the levels onto a range the training data ``rows`` stay far outside
    or, by a factor of 50 (`INSIDE_FRACTION`), inside (the model was trained on another scale, and
    the bits/dim mean nothing). ``from_training_levels``: the range is ``[0, L-1]`` of a run
    trained on raw levels, its own scale, so only data outside it are flagged."""
    if rows is None:
        return
    lo, hi = data_range
    a, b = float(rows.min()), float(rows.max())
    width = hi - lo
    outside = a < lo - 0.25 * width or b > hi + 0.25 * width
    inside = (b - a) < INSIDE_FRACTION * width and not from_training_levels
    if outside or inside:
        import warnings

        warnings.warn(
            f"--bpd maps the levels onto [{lo:g}, {hi:g}], but the training data of {checkpoint} span "
            f"[{a:.3g}, {b:.3g}]: the model was trained on another scale, so these bits/dim do not "
            "measure it; pass the --data-range the data were scaled to for training", stacklevel=2)


def _load(args: argparse.Namespace) -> tuple[Any, ...]:
    """`(sde, score, target or None, x, dim, label, gen)` from the command line (model and data)."""
    import numpy as np
    import torch

    from ..data.arrays import check_representable
    from ..likelihood import dequantize
    from ..sde import get_sde
    from ..targets import get_target

    target = None
    source: Any = None  # the data source, when the points come from one (its pixel grid for --bpd)
    if args.n < 1:
        raise ValueError("--n must be positive")
    gen = torch.Generator().manual_seed(args.seed)
    if args.checkpoint:
        if args.exact_prior:
            raise ValueError("--exact-prior needs --target")
        from ..train import load_model

        model, sde, config = load_model(args.checkpoint, ema=not args.raw_weights, device=args.device)
        check_checkpoint_sde(args.sde, config.sde.name, args.checkpoint)
        args.trained_t_min = model.min_score_time  # (for the report's first line)
        args.sde = config.sde.name  # what the settings record: the SDE actually used
        score = model.score_fn(sde)
        dtype = torch.float64 if args.float64 else config.torch_dtype
        if args.float64:
            model = model.to(torch.float64)
            score = model.score_fn(sde)
        label = f"{Path(args.checkpoint).name} ({config.data}, {config.sde.name})"
        model_shape = tuple(config.model.data_shape)
        _default_divergence(args, model_shape)
        _network_tolerances(args)
        model_name = f"the checkpoint {args.checkpoint} (trained on {config.data})"
    else:
        target = get_target(args.target)
        args.sde = args.sde or "vp"
        sde = get_sde(args.sde)
        score = target.score_fn(sde)
        dtype = torch.float64 if args.float64 else torch.float32
        label = f"exact {args.target} ({args.sde})"
        model_shape, model_name = (int(target.dim),), f"the target {args.target}"
        _default_divergence(args, model_shape)
    if args.data is None:
        if target is None:
            from ..train.data import check_fits_dtype, reference_data

            # the run's own training data, rebuilt from its config (a built-in name, or a file
            # still present and unchanged); otherwise a DataMismatchError that says what to pass
            source = reference_data(config, None, where=f"checkpoint {args.checkpoint}")
            check_fits_dtype(source, dtype, config.data, _overflow_hint(args))
            x, what = _points_of(source, args.n, gen, dtype, "its training data")
            label += f", {what}"
        else:
            x = target.sample(args.n, generator=gen, dtype=torch.float64)
    elif Path(args.data).suffix and not Path(args.data).is_dir():  # a folder may have a dot in its name
        x = _load_data(args.data, keep_integers=True)  # integers: pixel levels (--bpd, and a hint without it)
        check_representable(x, dtype, args.data, _overflow_hint(args))
        label += f", every row of {Path(args.data).name} (a file is scored whole; --n does not apply)"
    else:
        from ..train.data import check_fits_dtype, make_data

        source = make_data(args.data)
        check_fits_dtype(source, dtype, args.data, _overflow_hint(args))
        x, what = _points_of(source, args.n, gen, dtype, args.data)
        label += f", {what}"
    if x.ndim == 1:
        x = x[:, None]
    if args.data is not None:
        _check_data_shape(tuple(x.shape[1:]), model_shape, model_name, args.data)
    image_model = len(model_shape) == 3
    trained_levels, trained = None, None
    if args.checkpoint and (args.bpd or (image_model and not x.is_floating_point())):
        from ..data.arrays import integer_levels

        trained, trained_source = _trained_rows(config, source if args.data is None else None)
        if source is None and getattr(trained_source, "levels", None) is not None:
            # a file scored by a model of image data: that data's pixel grid (a 17-level digits
            # model read a file of its levels 0..16 on 256 levels, 7% of its range, silently)
            source = trained_source
        trained_levels = integer_levels(trained) if image_model and trained is not None else None
    if not args.bpd and not x.is_floating_point() and image_model and trained_levels is None:
        import warnings

        known = ("was not trained on raw levels" if trained is not None
                 else "may not have been trained on raw levels (its training data cannot be found to tell)")
        warnings.warn(
            f"--data {args.data} holds integers ({int(x.min())}..{int(x.max())}), which look like pixel "
            f"levels, but {model_name} {known}; they are scored as they are. Pass "
            "--bpd to score them as pixel levels on the model's range", stacklevel=2)
    range_set = args.data_range is not None
    _default_grid(args, source, image_model=image_model, trained_levels=trained_levels)
    if args.bpd and args.checkpoint:
        own_levels = trained_levels is not None and not range_set \
            and tuple(args.data_range) == (0.0, float(args.levels - 1))
        _warn_range_mismatch(trained, args.data_range, args.checkpoint, from_training_levels=own_levels)
    dim = int(np.prod(tuple(x.shape[1:])))
    if args.bpd:
        k = _to_levels(x, args.levels, args.data_range)
        x = dequantize(k, levels=args.levels, data_range=args.data_range, generator=gen, dtype=dtype)
    x = x.to(dtype=dtype, device=args.device)
    return sde, score, target, x, dim, label, gen
