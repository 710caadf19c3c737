"""The problem a comparison samples: an SDE, a score and a sampler of the reference law.

A checkpoint's problem is built from what an injected loader returns (`CheckpointLoader`),
so this package never imports the training code; the CLI passes the loader of
`scoresde.train`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from solvers.protocol import DiffusionSDE, ScoreFn

from ..sde import SDES, AffineSDE, get_sde
from ..sde_config import custom_sde_config
from ..targets import GaussianMixture, get_target

__all__ = ["Problem", "LoadedCheckpoint", "CheckpointLoader"]


@dataclass
class LoadedCheckpoint:
    """What a checkpoint loader hands to `Problem.from_checkpoint`.

    Attributes:
        score: `score(x: (B, *D), t: (B,)) -> (B, *D)` of the trained model.
        sde: the model's forward SDE.
        data_name: label of the training data (used in the problem's name and cache key).
        data: the training data source: a `GaussianMixture` (exact reference, mode statistics)
            or any object with `sample(n, generator=g) -> (n, *D)`.
        dtype: the dtype of the model's parameters, in which it must be sampled (a float64
            network refuses a float32 state); `None`: torch's default dtype.
    """

    score: ScoreFn
    sde: DiffusionSDE
    data_name: str
    data: Any
    dtype: torch.dtype | None = None


class CheckpointLoader(Protocol):
    """`loader(path, ema=...) -> LoadedCheckpoint` (e.g. `scoresde.cli.compare.load_checkpoint`)."""

    def __call__(self, path: str | os.PathLike[str], *, ema: bool) -> LoadedCheckpoint: ...


@dataclass
class Problem:
    """What is sampled and what it is compared with.

    Attributes:
        name: label used in tables, file names and plots.
        sde: the forward SDE.
        score: `score(x: (B, *D), t: (B,)) -> (B, *D)`.
        sample_reference: `(n, generator) -> (n, *D)` samples of the law a default run should
            reproduce: the data law `p_0` (exact samples of a mixture target; the data
            otherwise), since every solver's default end-of-run step maps the state at
            `sde.eps` to `sigma = 0`.
        sample_reference_at_eps: the law of the state at `sde.eps`, for runs that stop there
            (`denoise="none"`): exact `p_eps` for a mixture; `None` when it is not known (data),
            and `sample_reference` serves both.
        data_shape: `D`, the shape of one sample.
        mixture: the exact mixture when known (enables mode statistics).
        spec: JSON-able description; part of every cell's cache key, so changing the problem
            never reuses stale cells.
        reference: short name of the reference law in tables (`"exact"` for exact mixture
            samples, `"data"` for samples of a data source); the noise-floor row reads
            `"<reference> vs <reference>"`.
        dtype: the dtype every solver samples in: a checkpoint's parameter dtype (a float64
            network only takes float64 states); `None` (exact targets): torch's default dtype.
        sample_reference_pair: for a finite data set, `(n, generator) -> (a, b)` two disjoint
            subsets of its rows, for the noise floor (`None`: two `sample_reference` draws).
        reference_rows: how many rows that data set has (`None`: an unlimited sampler).
    """

    name: str
    sde: DiffusionSDE
    score: ScoreFn
    sample_reference: Callable[[int, torch.Generator], Tensor]
    data_shape: tuple[int, ...]
    mixture: GaussianMixture | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    reference: str = "exact"
    sample_reference_at_eps: Callable[[int, torch.Generator], Tensor] | None = None
    dtype: torch.dtype | None = None
    sample_reference_pair: Callable[[int, torch.Generator], tuple[Tensor, Tensor]] | None = None
    reference_rows: int | None = None

    def for_end_step(self, end_step: str) -> Problem:
        """This problem with the reference law of a run that ended with `end_step`
        (`Solution.stats["end_step"]`): `p_eps` after `"none"` where it is known, else `p_0`."""
        if end_step == "none" and self.sample_reference_at_eps is not None:
            return replace(self, sample_reference=self.sample_reference_at_eps, sample_reference_at_eps=None)
        return self

    @classmethod
    def from_target(
        cls,
        target: str | GaussianMixture,
        sde: str | AffineSDE = "vp",
        **sde_kwargs: float | bool,
    ) -> Problem:
        """An exact mixture (a preset name of `scoresde.targets` or an instance) under `sde`
        (a name of `scoresde.sde.get_sde` or an instance), scored exactly."""
        mixture = get_target(target) if isinstance(target, str) else target
        if not isinstance(mixture, GaussianMixture):
            raise TypeError(f"target must be a preset name or a GaussianMixture, got {type(target).__name__}")
        if sde_kwargs and not isinstance(sde, str):
            raise TypeError("sde keyword arguments need an SDE name, not an instance")
        sde_obj = get_sde(sde, **sde_kwargs) if isinstance(sde, str) else sde

        def reference(n: int, g: torch.Generator) -> Tensor:
            return mixture.sample(n, generator=g)

        def reference_at_eps(n: int, g: torch.Generator) -> Tensor:
            return mixture.sample_marginal(n, sde_obj, sde_obj.eps, generator=g)

        spec = {
            "kind": "target",
            "target": mixture.name,
            "means": mixture.means.tolist(),
            "stds": mixture.stds.tolist(),
            "weights": mixture.weights.tolist(),
            "sde": type(sde_obj).__name__,
            "sde_config": sde_config(sde_obj),
        }
        return cls(mixture.name, sde_obj, mixture.score_fn(sde_obj), reference, (mixture.dim,),
                   mixture, spec, "exact", reference_at_eps)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        loader: CheckpointLoader,
        ema: bool = True,
        name: str | None = None,
    ) -> Problem:
        """A trained score network, read by `loader` (e.g. `scoresde.cli.compare.load_checkpoint`).

        The reference is the training data: exact samples when the data is a mixture (mode
        statistics then apply; floor row "exact vs exact"; exact `p_eps` for runs that stop
        at `eps`), else fresh samples of the data source (floor row "data vs data"). The
        problem samples in the loader's `LoadedCheckpoint.dtype` (the model's parameter dtype).
        """
        loaded = loader(path, ema=ema)
        sde_obj, data = loaded.sde, loaded.data
        # a built-in toy's data source carries its exact mixture (eight_gaussians, grid_25, ...)
        mixture = data if isinstance(data, GaussianMixture) else getattr(data, "mixture", None)
        mixture = mixture if isinstance(mixture, GaussianMixture) else None

        rows = None if mixture is not None else _fixed_rows(data)

        def reference(n: int, g: torch.Generator) -> Tensor:
            if rows is not None and n <= rows.shape[0]:
                # distinct rows: draws with replacement repeat rows, which exact samples never do
                return rows[torch.randperm(rows.shape[0], generator=g)[:n]].to(torch.get_default_dtype())
            return data.sample(n, generator=g)

        def reference_pair(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
            assert rows is not None
            if 2 * n > rows.shape[0]:  # no two disjoint sets of n rows: the floor reads low (warned)
                return reference(n, g), reference(n, g)
            perm = torch.randperm(rows.shape[0], generator=g)
            dt = torch.get_default_dtype()
            return rows[perm[:n]].to(dt), rows[perm[n:2 * n]].to(dt)

        def reference_at_eps(n: int, g: torch.Generator) -> Tensor:
            assert mixture is not None
            return mixture.sample_marginal(n, sde_obj, sde_obj.eps, generator=g)

        probe = reference(2, torch.Generator().manual_seed(0))
        spec = {"kind": "checkpoint", "checkpoint": _checkpoint_identity(Path(path)), "ema": ema,
                "data": loaded.data_name}
        return cls(name or f"{loaded.data_name} (trained)", sde_obj, loaded.score, reference,
                   tuple(probe.shape[1:]), mixture, spec, "exact" if mixture is not None else "data",
                   reference_at_eps if mixture is not None else None, loaded.dtype,
                   reference_pair if rows is not None else None,
                   None if rows is None else int(rows.shape[0]))


def _fixed_rows(data: Any) -> Tensor | None:
    """The rows ``(N, *D)`` of a finite data set (an array or image data set), else ``None``."""
    for attr in ("data", "images"):
        rows = getattr(data, attr, None)
        if isinstance(rows, Tensor) and rows.ndim >= 2 and rows.shape[0] >= 1:
            return rows
    return None


def _checkpoint_identity(path: Path) -> str:
    """SHA-256 of the checkpoint's bytes (a run folder's ``checkpoint.pt``): the model itself,
    whatever path names it and however often the file is touched. (Its path and modification
    time were the key: a comparison written inside the run folder changed the folder's newest
    time with every run, and ``run`` and ``run/checkpoint.pt`` were two models.) A folder
    without ``checkpoint.pt`` is identified by the digest of its files' names and bytes."""
    import hashlib

    files = [path] if path.is_file() else (
        [path / "checkpoint.pt"] if (path / "checkpoint.pt").is_file()
        else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [])
    digest = hashlib.sha256()
    for f in files:
        if len(files) > 1:
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def sde_config(sde: DiffusionSDE) -> dict[str, Any]:
    """JSON-able settings of `sde`: a registered class's `config()`; for another class `T`,
    `eps` and `scoresde.sde_config.custom_sde_config` (its config and schedule probe), so that
    cached cells of one custom SDE are not reused for another of the same class."""
    if type(sde) in SDES.values():
        return dict(sde.config())  # type: ignore[attr-defined]
    return {"T": float(sde.T), "eps": float(sde.eps), "config": custom_sde_config(sde)}
