"""One entry point for every data source: ``load_data(spec)``.

``spec`` is a built-in name (a 2-D toy such as ``"ring"``, an exact mixture preset, or
``"digits"``), a path to an array file (``.npy``, ``.pt``, ``.csv`` ...; see
``scoresde.data.arrays``), a folder of PNG/JPEG images, or an array/tensor ``(N, *D)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from .. import targets
from .arrays import ARRAY_SUFFIXES, ArrayDataset, DataError, load_array
from .folder import IMAGE_SUFFIXES, load_image_folder
from .images import IMAGE_DATASETS
from .toys import TOYS, toy

__all__ = ["load_data", "builtin_names", "is_builtin", "looks_like_path"]


def builtin_names() -> list[str]:
    """Every built-in data name: toys, exact mixture presets and image sets."""
    return sorted(set(IMAGE_DATASETS) | set(TOYS) | set(targets.PRESETS))


def is_builtin(name: Any) -> bool:
    """Whether ``name`` is a built-in data name (and not an existing file or folder)."""
    return isinstance(name, str) and name in builtin_names() and not Path(name).exists()


def looks_like_path(spec: str) -> bool:
    """A file suffix, a path separator, or an existing file/folder."""
    suffix = Path(spec).suffix.lower()
    return Path(spec).exists() or "/" in spec or "\\" in spec or suffix in (*ARRAY_SUFFIXES, *IMAGE_SUFFIXES)


def load_data(
    spec: Any, *, image_size: int | tuple[int, int] | None = None, channels: int | None = None,
) -> Any:
    """The data source described by ``spec``; every source has ``sample(n, generator=g)``.

    Args:
        spec: built-in name, array-file path, image-folder path, or an array/tensor ``(N, *D)``.
            An existing file or folder wins over a built-in name of the same spelling.
        image_size: image folders only: resize to this size (int or ``(H, W)``).
        channels: image folders only: 1 (grayscale) or 3 (RGB); default from the files.

    Returns:
        A toy / ``GaussianMixture`` / ``ImageDataset`` / ``ArrayDataset``.

    Raises:
        FileNotFoundError: ``spec`` looks like a path but nothing is there.
        DataError: the file's content is unusable (empty, wrong shape, NaN ...).
        ValueError: an unknown name, or an empty string; ``image_size`` / ``channels`` for a
            source that is not an image folder.
        TypeError: ``spec`` is neither a name, a path, an array nor a sampler.
    """
    folder_only = [k for k, v in (("image_size", image_size), ("channels", channels)) if v is not None]
    if folder_only and not (isinstance(spec, (str, Path)) and Path(str(spec)).is_dir()):
        what = repr(str(spec)) if isinstance(spec, (str, Path)) else f"a {type(spec).__name__}"
        raise ValueError(f"{' and '.join(folder_only)} {'apply' if len(folder_only) > 1 else 'applies'} "
                         f"to image folders only, and {what} is not a folder (other sources are "
                         "returned as they are stored)")
    if isinstance(spec, (Tensor, np.ndarray)):
        return ArrayDataset(spec)
    if hasattr(spec, "sample") and callable(spec.sample):
        return spec
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"data must be a name, a path, an array or a sampler, got {type(spec).__name__}")
    text = str(spec)
    if not text.strip():
        raise ValueError(
            f"data is an empty name; give a built-in name ({', '.join(builtin_names())}), a file or a folder "
            "('.' for the current folder)"
        )
    p = Path(text)
    if p.is_dir():
        return load_image_folder(p, size=image_size, channels=channels)
    if p.is_file():
        return load_array(p)
    if text in IMAGE_DATASETS:
        return IMAGE_DATASETS[text]()
    if text in TOYS:
        return toy(text)
    if text in targets.PRESETS:
        return targets.get_target(text)
    if looks_like_path(text):
        raise FileNotFoundError(f"no data file or image folder at {p} (working directory {Path.cwd()})")
    raise ValueError(
        f"unknown data {text!r}: give a built-in name ({', '.join(builtin_names())}), a "
        f"{'/'.join(ARRAY_SUFFIXES)} file of shape (N, D), or a folder of PNG/JPEG images"
    )


__all__ += ["DataError"]
