"""Training data by name: image sets, 2-D toys (``scoresde.data.toy``) and exact mixture targets.

A data source is any object with ``sample(n, generator=g) -> Tensor (n, *D)``; the trainer
draws every batch from it with its own seeded generator (the state that makes resuming exact).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from .. import data as data_pkg
from .. import targets

__all__ = ["DataSource", "make_data", "data_names"]


@runtime_checkable
class DataSource(Protocol):
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor: ...


def _toy_names() -> list[str]:
    names = getattr(data_pkg, "TOYS", None) or getattr(data_pkg, "TOY_NAMES", None)
    if isinstance(names, dict):
        return list(names)
    return list(names) if names else []


def data_names() -> list[str]:
    """Every name :func:`make_data` accepts."""
    return sorted(set(data_pkg.IMAGE_DATASETS) | set(_toy_names()) | set(targets.PRESETS))


def make_data(name: str) -> Any:
    """The data source called ``name``: ``digits``, a toy of :func:`scoresde.data.toy`, or a
    preset of :mod:`scoresde.targets` (exact Gaussian mixtures)."""
    if name in data_pkg.IMAGE_DATASETS:
        return data_pkg.IMAGE_DATASETS[name]()
    toy = getattr(data_pkg, "toy", None)
    if toy is not None:
        try:
            return toy(name)
        except (KeyError, ValueError):
            pass
    if name in targets.PRESETS:
        return targets.get_target(name)
    raise ValueError(f"unknown data {name!r}; valid: {', '.join(data_names())}")


def sample_shape(source: Any) -> tuple[int, ...]:
    """Shape ``D`` of one sample of ``source`` (draws two samples with a throwaway generator)."""
    x = source.sample(2, generator=torch.Generator().manual_seed(0))
    return tuple(int(s) for s in x.shape[1:])
