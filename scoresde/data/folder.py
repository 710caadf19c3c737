"""Your own images: a folder of PNG/JPEG files as an ``ImageDataset`` ``(N, C, H, W)`` in ``[-1, 1]``.

    data = load_image_folder("my_images/", size=32)          # resize to 32x32
    data = load_image_folder("my_images/", channels=1)        # force grayscale

Files are found recursively (sorted by path, so the order and the content hash are stable).
Pixel values ``k`` in 0..255 map linearly to ``x = k / 127.5 - 1``; 16-bit grayscale PNGs
(0..65535) to ``x = k / 32767.5 - 1``, their full range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from solvers.warning_types import warn

from .arrays import DataError, as_tensor_data
from .images import ImageDataset

__all__ = ["load_image_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow's 16-bit grayscale (PNG: I;16 or I)


def _size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``(H, W)`` from an integer or a pair of integers, each >= 1; a clear error otherwise."""
    from solvers.inputs import as_integer

    if size is None:
        return None
    if isinstance(size, (np.ndarray, torch.Tensor)) and size.ndim == 1:
        size = [v.item() for v in size]  # an array of sizes reads as the list it holds
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (as_integer(size[0], "image size (height)", minimum=1),
                as_integer(size[1], "image size (width)", minimum=1))
    if isinstance(size, (tuple, list)):
        raise ValueError(f"image size must be an integer or a pair (H, W), got {len(size)} values {tuple(size)!r}")
    n = as_integer(size, "image size", minimum=1)
    return n, n


def _is_gray(im: Any) -> bool:
    """Whether an image holds grayscale pixels: a grayscale mode, or a palette of grays only (the
    colours the pixels use; some tools save grayscale PNGs with a palette)."""
    if im.mode in ("L", "1", "LA", *SIXTEEN_BIT_MODES):
        return True
    if im.mode in ("P", "PA"):
        palette = im.getpalette()
        if not palette:
            return False
        rgb = np.asarray(palette, dtype=np.int64)[: len(palette) // 3 * 3].reshape(-1, 3)
        used = np.unique(np.asarray(im.getchannel(0) if im.mode == "PA" else im))
        used = used[used < rgb.shape[0]]
        return bool(((rgb[used, 0] == rgb[used, 1]) & (rgb[used, 1] == rgb[used, 2])).all())
    return False


def load_image_folder(
    path: str | Path, *, size: int | tuple[int, int] | None = None, channels: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> ImageDataset:
    """Read every PNG/JPEG under ``path`` into an ``ImageDataset`` ``(N, C, H, W)`` in ``[-1, 1]``.

    Args:
        path: a folder (searched recursively).
        size: resize every image to ``size x size`` (int) or ``(H, W)`` (bilinear). Without it
            all images must have the same size.
        channels: 1 (grayscale) or 3 (RGB). Default: 1 if every image is grayscale, else 3.
        dtype: floating dtype of the stored images.

    Raises:
        FileNotFoundError: ``path`` is not a folder.
        DataError: no images, unreadable files, or mixed sizes without ``size``.
    """
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no {'/'.join(s[1:].upper() for s in IMAGE_SUFFIXES)} images found")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    hw = _size(size)
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except OSError as err:
            raise DataError(f"{f}: not a readable image ({err})") from None
    transparent = [f.name for f, im in zip(files, images, strict=True) if _has_transparency(im)]
    if transparent:
        warn(
            f"{root}: {len(transparent)} of {len(files)} images have transparent pixels (e.g. {transparent[0]}); "
            "their alpha channel is dropped, so each transparent pixel keeps whatever colour is stored under "
            "it. Composite the images onto a background first (e.g. PIL's Image.alpha_composite)",
            UserWarning)
    if channels is None:
        channels = 1 if all(_is_gray(im) for im in images) else 3
    arrays = []
    for f, im in zip(files, images, strict=True):
        a = _pixels(f, im, channels, hw)
        if arrays and a.shape != arrays[0].shape:
            raise DataError(
                f"{root}: images differ in size ({files[0].name}: {arrays[0].shape[:2]}, {f.name}: "
                f"{a.shape[:2]} as H, W); resize the files to one size (the scoresde commands have no "
                "image-size option), or in Python pass load_data(path, image_size=H) or "
                "load_image_folder(path, size=H) to resize them all"
            )
        arrays.append(a)
    x = np.stack(arrays)
    x = x[:, None] if channels == 1 else x.transpose(0, 3, 1, 2)
    t = as_tensor_data(x, str(root)).to(dtype)
    return ImageDataset(t, name=root.name or str(root), levels=_levels(images, hw))


def _has_transparency(im: Any) -> bool:
    """Whether an image has an alpha channel (or a palette transparency) with a pixel below opaque."""
    if im.mode in ("P", "PA") or (im.mode in ("L", "RGB") and "transparency" in im.info):
        if im.mode != "PA" and "transparency" not in im.info:
            return False
        im = im.convert("RGBA")
    if "A" not in im.getbands():
        return False
    return bool(np.asarray(im.getchannel("A")).min() < 255)


def _levels(images: list[Any], hw: tuple[int, int] | None) -> int | None:
    """The pixel grid the loaded values lie on: 256 levels for 8-bit files, 65536 when any is
    16-bit (the 8-bit grid ``k / 127.5 - 1`` is part of it: ``k16 = 257 k8``); ``None`` when a
    16-bit image was resampled in floating point (8-bit resampling stays on its grid)."""
    sixteen = [im for im in images if im.mode in SIXTEEN_BIT_MODES]
    if not sixteen:
        return 256
    if hw is not None and any(im.size != (hw[1], hw[0]) for im in sixteen):
        return None
    return 65536


def _pixels(f: Path, im: Any, channels: int, hw: tuple[int, int] | None) -> np.ndarray:
    """One image as ``(H, W)`` (``channels == 1``) or ``(H, W, 3)`` float64 values in ``[-1, 1]``.

    8-bit images map ``k`` in 0..255 to ``k / 127.5 - 1``; 16-bit grayscale ones (modes
    ``I;16*`` and ``I``, as Pillow reads 16-bit PNGs) ``k`` in 0..65535 to ``k / 32767.5 - 1``.
    """
    from PIL import Image

    if im.mode not in SIXTEEN_BIT_MODES:
        im = im.convert("L" if channels == 1 else "RGB")
        if hw is not None and im.size != (hw[1], hw[0]):
            im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.float64) / 127.5 - 1.0
    k = np.asarray(im).astype(np.float64)  # Pillow's "L"/"RGB" conversions clip these at 255
    if k.ndim != 2 or k.min() < 0 or k.max() > 65535:
        raise DataError(f"{f}: {im.mode} pixel values outside 0..65535 (not a 16-bit grayscale image)")
    if hw is not None and k.shape != hw:
        k = np.asarray(Image.fromarray(k.astype(np.float32)).resize(
            (hw[1], hw[0]), Image.Resampling.BILINEAR), dtype=np.float64)
    a = k / 32767.5 - 1.0
    return a if channels == 1 else np.repeat(a[:, :, None], 3, axis=2)
