"""Small image data sets: the 8x8 handwritten digits that scikit-learn ships (no download).

Images are tensors ``(N, C, H, W)`` scaled to ``[-1, 1]``. `ImageDataset` has the
same ``sample(n, generator=g)`` interface as the 2-D toys, drawing ``n`` images uniformly
with replacement (so a training run's data stream is fixed by one generator state, which is
what makes resuming exact). scikit-learn is the optional extra ``scoresde[images]``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from solvers.inputs import as_integer, as_real

from .arrays import check_sample_dtype, draw_rows

__all__ = ["ImageDataset", "digits", "image_grid", "IMAGE_DATASETS"]


class ImageDataset:
    """A fixed set of images ``(N, C, H, W)`` in ``[-1, 1]`` with a seeded sampler.

    Args:
        images: ``(N, C, H, W)`` tensor, already scaled to ``[-1, 1]``.
        name: label for logs and configs.
        levels: number of discrete pixel levels ``L`` when the values lie on the grid
            ``-1 + 2 k / (L - 1)``, ``k = 0 .. L-1`` (8-bit files: 256; the digits: 17); ``None``
            when they do not (e.g. resampled 16-bit images). Bits per dimension of these data
            are computed on that grid (`data_range` ``(-1, 1)``).
    """

    data_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(self, images: Tensor, *, name: str = "images", levels: int | None = None) -> None:
        if images.ndim != 4 or images.shape[0] < 1:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or levels < 2):
            raise ValueError(f"levels must be an integer >= 2 or None, got {levels!r}")
        self.images = images
        self.name = name
        self.levels = levels

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """``n`` images drawn uniformly with replacement: ``(n, C, H, W)``.

        Raises:
            NotAnIntegerError: ``n`` is not an integer (``2.0`` included).
            ValueError: ``n < 1``, or an unknown / unavailable ``device``.
            TypeError: ``generator`` is not a ``torch.Generator``; ``dtype`` not a floating dtype.
        """
        dtype = check_sample_dtype(dtype)
        out, where = draw_rows(self.images, n, generator, device)
        return out.to(dtype=dtype or out.dtype, device=where)

    @staticmethod
    def to_unit(x: Tensor) -> Tensor:
        """Map ``[-1, 1]`` images to ``[0, 1]`` (clamped), for display."""
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"ImageDataset(name={self.name!r}, n={len(self)}, shape={self.shape})"


def digits(*, dtype: torch.dtype = torch.float32) -> ImageDataset:
    """The 1,797 8x8 digit images of scikit-learn (``load_digits``), ``(N, 1, 8, 8)`` in ``[-1, 1]``.

    Pixel values 0..16 are mapped linearly: ``x = k / 8 - 1``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits data set needs scikit-learn: pip install 'scoresde[images]'"
        ) from err
    raw = torch.as_tensor(load_digits().images, dtype=torch.float64)
    return ImageDataset((raw / 8.0 - 1.0).to(dtype)[:, None], name="digits", levels=17)


IMAGE_DATASETS = {"digits": digits}


def image_grid(x: Tensor, *, nrow: int | None = None, pad: int = 1, pad_value: float = 0.5) -> Tensor:
    """Tile images ``x: (B, C, H, W)`` in ``[-1, 1]`` into one ``(C, H', W')`` image in ``[0, 1]``.

    ``nrow`` images per row (default about ``sqrt(B)``; ``0`` or ``None`` picks it), ``pad``
    pixels of ``pad_value`` between them. The default mid grey stays visible next to both black
    and white pixels (with white, an image's white border merged into the separator).

    Raises:
        TypeError: ``x`` is not a tensor; `NotAnIntegerError`: ``nrow`` or ``pad`` not an integer.
        ValueError: ``x`` not 4-D or without images, ``nrow < 0``, ``pad < 0``, or ``pad_value``
            outside ``[0, 1]``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (B, C, H, W) with B >= 1, got {tuple(x.shape)}")
    pad = as_integer(pad, "pad", minimum=0)
    fill = as_real(pad_value, "pad_value")
    if not 0.0 <= fill <= 1.0:
        raise ValueError(f"pad_value must lie in [0, 1] (the grid's scale), got {pad_value!r}")
    b, c, h, w = x.shape
    nrow = None if nrow is None else as_integer(nrow, "nrow", minimum=0)
    nrow = nrow or max(1, math.ceil(math.sqrt(b)))
    ncol = math.ceil(b / nrow)
    grid = torch.full((c, ncol * (h + pad) + pad, nrow * (w + pad) + pad), fill, dtype=x.dtype)
    unit = ImageDataset.to_unit(x.detach().cpu())
    for i in range(b):  # a display helper, not a hot path
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = unit[i]
    return grid
