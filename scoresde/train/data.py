"""Training data: built-in names, your own files, and the identity stored with a run.

A data source is any object with ``sample(n, generator=g) -> Tensor (n, *D)``; the trainer
draws every batch from it with its own seeded generator (the state that makes resuming exact).
``make_data(spec)`` is `scoresde.data.load_data`: a built-in name, an array file, an image
folder or an array. ``stamp_identity`` records what a run was trained on in
``TrainConfig.data_id``; ``reference_data`` gives back that data for a trained checkpoint and
refuses (``DataMismatchError``, naming both) any other.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..data import (
    DataMismatchError,
    builtin_names,
    data_identity,
    describe_identity,
    is_builtin,
    load_data,
    same_data,
)
from ..data.identity import dtype_hint, fingerprint, is_stateless

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["DataSource", "make_data", "data_names", "sample_shape", "stamp_identity", "reference_data",
           "checkpoint_loader", "draw", "check_fits_dtype"]


@runtime_checkable
class DataSource(Protocol):
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor: ...


def data_names() -> list[str]:
    """Every built-in name `make_data` accepts (it also takes files, folders and arrays)."""
    return builtin_names()


def make_data(spec: Any) -> Any:
    """The data source ``spec``: a built-in name (``digits``, a toy of `scoresde.data.toy`, an
    exact mixture preset of `scoresde.targets`), a ``.npy``/``.pt``/``.csv`` file, a folder of
    images, or an array ``(N, *D)``. See `scoresde.data.load_data`."""
    return load_data(spec)


def passed_data_hint(run_dir: Path | None, label: str) -> str:
    """The way out when a resume cannot load ``label`` because the run at ``run_dir`` was trained
    on data passed in Python (``Trainer(..., data=array_or_sampler)``): pass the same data
    again. ``""`` when the run's ``config.json`` does not say so (or cannot be read)."""
    from .runfiles import CONFIG_NAME

    if run_dir is None:
        return ""
    try:
        ident = json.loads((Path(run_dir) / CONFIG_NAME).read_text()).get("data_id") or {}
    except (OSError, ValueError, AttributeError):
        return ""
    if ident.get("kind") not in ("array", "sampler") or ident.get("source") != label:
        return ""
    return (f"cannot resume without data=: the run in {run_dir} was trained on data passed in Python "
            f"({describe_identity(ident)}), which is not stored with the run, and {label!r} is no "
            "built-in name, file or folder; pass the same data again: Trainer(config, data=..., "
            "out_dir=..., resume=True)")


def sample_shape(source: Any) -> tuple[int, ...]:
    """Shape ``D`` of one sample of ``source`` (draws two samples with a throwaway generator)."""
    x = source.sample(2, generator=torch.Generator().manual_seed(0))
    return tuple(int(s) for s in x.shape[1:])


def _takes_dtype(source: Any) -> bool:
    """Whether ``source.sample`` takes a ``dtype`` keyword (every built-in source does)."""
    try:
        params = inspect.signature(source.sample).parameters.values()
    except (TypeError, ValueError):  # no signature to read: call it the protocol's way
        return False
    return any(p.name == "dtype" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def draw(source: Any, n: int, *, generator: torch.Generator | None, dtype: torch.dtype,
         check_rows: bool = True) -> Tensor:
    """``n`` samples of ``source`` drawn in ``dtype`` (not drawn in float32 and cast afterwards).

    ``dtype`` is passed to ``source.sample`` when it takes one; a sampler of the bare protocol
    (``sample(n, generator=g)``) is cast afterwards.

    Raises:
        TypeError: ``sample`` returned no tensor. ValueError: not ``n`` rows (`check_rows`).
    """
    if _takes_dtype(source):
        x = source.sample(n, generator=generator, dtype=dtype)
    else:
        x = source.sample(n, generator=generator)
    if not isinstance(x, Tensor):
        raise TypeError(f"the data source's sample(n) must return a torch.Tensor (n, *D); "
                        f"{type(source).__name__}.sample returned {type(x).__name__}")
    if check_rows:
        check_rows_drawn(x, n)
    return x.to(dtype)


def check_rows_drawn(x: Tensor, n: int) -> None:
    """Raise `ValueError` unless a data source's ``sample(n)`` gave ``x`` of ``n`` rows."""
    if x.ndim < 1 or x.shape[0] != n:
        raise ValueError(f"the data source's sample({n}) returned shape {tuple(x.shape)}; it must return "
                         f"{n} rows (one sample per row), or the batch size would silently differ")


def check_fits_dtype(source: Any, dtype: torch.dtype, label: str, hint: str) -> None:
    """Refuse a data set (``ArrayDataset`` / ``ImageDataset``) holding values that overflow ``dtype``.

    Raises:
        DataError: naming ``label``, the first row that overflows, and ``hint``.
    """
    from ..data.arrays import check_representable

    for attr in ("data", "images"):
        value = getattr(source, attr, None)
        if isinstance(value, Tensor):
            check_representable(value, dtype, label, hint)
            return


def _identity(label: str, source: Any, *, explicit: bool) -> dict[str, Any]:
    """Identity of ``source`` run under ``label``; built-in only if it IS the built-in data."""
    builtin = is_builtin(label)
    if builtin and explicit:  # a user object labelled with a built-in name: is it that data?
        builtin = is_stateless(source) and fingerprint(source) == fingerprint(load_data(label))
    return data_identity(source, name=label, builtin=builtin)


def stamp_identity(config: TrainConfig, source: Any, *, explicit: bool) -> TrainConfig:
    """``config`` with the identity of ``source`` in ``data_id`` (a copy; the caller's config is
    not changed), or ``config`` itself after checking the identity already there.

    Args:
        config: the run's config (``config.data`` is the label).
        source: the data source the trainer draws from.
        explicit: ``source`` was passed in by the caller (not built from ``config.data``).

    Raises:
        DataMismatchError: ``config.data_id`` is set and describes other data.
    """
    ident = _identity(config.data, source, explicit=explicit)
    if config.data_id is None:
        return dataclasses.replace(config, data_id=ident)
    if not same_data(config.data_id, ident):
        raise DataMismatchError(
            f"this config was made for {describe_identity(config.data_id)} but the data given is "
            f"{describe_identity(ident)}{dtype_hint(config.data_id, ident)}"
            f"{_resized_images_hint(config.data_id, ident, config.data)}"
        )
    return config


def _resized_images_hint(stored: dict[str, Any], given: dict[str, Any], path: Any) -> str:
    """The way out when a run was trained on a folder's images resized or converted in Python:
    the same folder (the one the run recorded), the same number of images, another
    ``(C, H, W)``; else ``""`` (another folder is other data, not a resized copy)."""
    a, b = tuple(stored.get("shape", ())), tuple(given.get("shape", ()))
    if not (isinstance(path, (str, Path)) and Path(path).is_dir() and len(a) == 4 and len(b) == 4
            and a[0] == b[0] and a[1:] != b[1:] and _same_folder(stored.get("source"), path)):
        return ""
    c, h, w = a[1:]
    return (f". The run saw these images as {c}x{h}x{w} (resized or converted in Python: "
            f"load_data(folder, image_size=({h}, {w}), channels={c})), but a folder is read at its own size "
            f"and channels here; save the images you trained on, np.save('train.npy', "
            f"load_data(folder, image_size=({h}, {w}), channels={c}).images.numpy()), and pass that file "
            f"(--data train.npy)")


def _same_folder(recorded: Any, path: str | Path) -> bool:
    """Whether ``path`` is the folder a run recorded as its data source (``recorded``)."""
    if not isinstance(recorded, str) or not recorded:
        return False
    try:
        return Path(recorded).resolve() == Path(path).resolve()
    except OSError:
        return False


def reference_data(config: TrainConfig, data: Any = None, *, where: str = "the checkpoint") -> Any:
    """The data a trained run was trained on, for reference samples (compare, plot, sample).

    Args:
        config: the run's config (from `load_model`).
        data: the data to use (name, path, array or sampler); ``None`` rebuilds it from
            ``config.data`` when that is possible (a built-in name, or a file still present).
        where: how to name the run in error messages.

    Raises:
        DataMismatchError: ``data`` (or what ``config.data`` names now) is not the training data,
            or the training data cannot be found again; the message names both identities.
    """
    stored = getattr(config, "data_id", None)
    if data is None:
        if stored is None or stored.get("kind") == "builtin":
            return load_data(config.data)  # an older run without identity: trust the name
        if stored.get("kind") == "array" and Path(config.data).exists():
            data = config.data
        else:
            same_name = (f"; the built-in data set {config.data!r} of the same name is different data "
                         "and is not used") if is_builtin(config.data) else ""
            raise DataMismatchError(
                f"{where} was trained on {describe_identity(stored)}, which cannot be rebuilt from its "
                f"name{same_name}. Pass the training data again: --data PATH on the command line, "
                "data=... in Python"
            )
    source = load_data(data)
    if stored is None:
        return source
    label = str(data) if isinstance(data, (str, Path)) else getattr(source, "name", "array")
    ident = _identity(label, source, explicit=not isinstance(data, (str, Path)))
    if not same_data(stored, ident):
        raise DataMismatchError(
            f"{where} was trained on {describe_identity(stored)}, but the data given is "
            f"{describe_identity(ident)}{dtype_hint(stored, ident)}; pass the training data (--data PATH / data=...)"
            f"{_resized_images_hint(stored, ident, data)}"
        )
    return source


def checkpoint_loader(data: Any = None, *, sde: Any = None) -> Any:
    """A checkpoint loader for `scoresde.compare.Problem.from_checkpoint`.

    Args:
        data: the training data (name, path, array or sampler), checked against the checkpoint's
            data identity (see `reference_data`); ``None`` rebuilds it from the run's config.
        sde: the SDE object of a run trained with a custom SDE.

    Returns:
        ``load(path, *, ema=True) -> scoresde.compare.LoadedCheckpoint`` (EMA weights by default).
    """

    def load(path: Any, *, ema: bool = True) -> Any:
        from ..compare import LoadedCheckpoint
        from .trainer import load_model

        model, sde_obj, config = load_model(path, ema=ema, sde=sde)
        source = reference_data(config, data, where=f"checkpoint {path}")
        param = next(model.parameters(), None)  # sample in the network's own dtype (float64 runs)
        return LoadedCheckpoint(model.score_fn(sde_obj), sde_obj, config.data, source,
                                dtype=None if param is None else param.dtype)

    return load


def warn_pixel_levels(source: Any, shape: tuple[int, ...], name: Any) -> None:
    """Warn when images ``(C, H, W)`` from an array hold raw pixel levels (whole numbers up to
    255 or 65535, e.g. a ``uint8`` ``.npy``): the model then learns them as they are, about 100
    times the scale the VP prior ``N(0, I)`` and the image recipe presume, whereas an image
    folder is put on ``[-1, 1]``."""
    from ..data.arrays import integer_levels

    rows = getattr(source, "data", None)
    if len(shape) != 3 or not isinstance(rows, torch.Tensor):
        return
    levels = integer_levels(rows)
    if levels is None:
        return
    warnings.warn(
        f"{name}: the images hold raw pixel levels (whole numbers {int(rows.min())}..{int(rows.max())}); "
        f"the model learns them as they are, while image folders are put on [-1, 1] and the image "
        f"recipe and the VP prior presume that scale. To train on images, save them as x / "
        f"{(levels - 1) / 2:g} - 1 (then `likelihood --bpd --data-range=-1,1` scores them on the "
        f"{levels}-level grid)", stacklevel=3)
