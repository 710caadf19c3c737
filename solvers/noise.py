"""Randomness for stochastic solvers: seeded i.i.d. noise or a Brownian path shared across grids.

A noise source answers two questions: the Brownian increment over ``[t_to, t_from]``
(variance ``|t_from - t_to|`` per element) and a fresh standard normal (for Langevin
correctors and other per-step draws that are not increments of one path).

* `GaussianNoise` draws i.i.d. increments from a ``torch.Generator``; cheapest.
* `BrownianPath` queries one Brownian motion (a virtual Brownian tree, via
  torchsde) so that two runs with different step counts see the *same* path. Use it
  for convergence studies and for step-count sweeps that compare like with like.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torchsde
from torch import Tensor

__all__ = ["NoiseSource", "GaussianNoise", "BrownianPath", "CountedNoise", "make_generator", "step_normal", "derived_seed",
           "NORMAL_STREAM"]


def make_generator(
    seed: int | None = None, device: torch.device | str | None = None
) -> torch.Generator:
    """A ``torch.Generator`` on ``device``, seeded with ``seed``.

    ``seed=None``: a seed drawn from torch's global CPU generator (which advances it), so that
    ``torch.manual_seed(s)`` makes an unseeded run reproducible, as it does ``torch.randn``, and
    successive unseeded runs differ.
    """
    g = torch.Generator(device=device if device is not None else "cpu")
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    g.manual_seed(int(seed))
    return g


NORMAL_STREAM = 1
"""Spawn key of `BrownianPath`'s ``normal()`` stream (`derived_seed`)."""


def derived_seed(seed: int, stream: int) -> int:
    """A seed in ``[0, 2^63)`` for stream ``stream`` of ``seed`` (any integer, taken modulo
    ``2^64``): ``SeedSequence(seed, spawn_key=(stream,))``, which NumPy makes statistically
    independent of the sequence of ``seed`` itself and of every other spawn key."""
    state = np.random.SeedSequence(int(seed) % 2**64, spawn_key=(int(stream),)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


@runtime_checkable
class NoiseSource(Protocol):
    """What stochastic solvers draw their randomness from."""

    def increment(self, t_from: float, t_to: float, like: Tensor) -> Tensor:
        """Brownian increment ``W(max) - W(min)`` over the interval, shape/dtype of ``like``."""
        ...

    def normal(self, like: Tensor) -> Tensor:
        """A fresh ``N(0, I)`` draw with the shape, dtype and device of ``like``."""
        ...


class GaussianNoise:
    """I.i.d. Gaussian increments ``sqrt(|dt|) z`` drawn from ``generator`` (or global RNG)."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def normal(self, like: Tensor) -> Tensor:
        return torch.randn(
            like.shape, generator=self.generator, dtype=like.dtype, device=like.device
        )

    def increment(self, t_from: float, t_to: float, like: Tensor) -> Tensor:
        return math.sqrt(abs(t_from - t_to)) * self.normal(like)


class BrownianPath:
    """One Brownian motion on ``[t0, t1]`` of shape ``shape``, consistent across query grids.

    Backed by ``torchsde.BrownianInterval(halfway_tree=True)``: the value of ``W`` at a time
    does not depend on which other times were queried (up to ``tol``), so a 10-step and a
    1000-step solve share one path. ``normal()`` draws come from a separate generator
    seeded from ``seed`` and do not touch the path.

    ``seed`` is any integer in ``[-2^63, 2^64)`` (taken modulo ``2^64``). The path's entropy is
    that integer; the ``normal()`` stream's seed is derived from it through a NumPy
    ``SeedSequence`` spawn key (`derived_seed`), so it matches no stream that a generator
    seeded with a plain integer draws (before, it was ``seed + 1``: seed ``s``'s Langevin
    noise was seed ``s + 1``'s prior draw).

    Args:
        shape: ``(B, *D)``, the shape of the state.
        t0, t1: the time interval (``t0 < t1``), usually ``[sde.eps, sde.T]``.
        seed: entropy of the path.
        tol: time resolution of the virtual tree.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        t0: float,
        t1: float,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        tol: float = 1e-7,
    ) -> None:
        if not t0 < t1:
            raise ValueError(f"need t0 < t1, got {t0}, {t1}")
        self.shape = tuple(shape)
        self.t0, self.t1 = float(t0), float(t1)
        self._bm = torchsde.BrownianInterval(
            t0=self.t0,
            t1=self.t1,
            size=self.shape,
            dtype=dtype,
            device=device,
            entropy=int(seed) % 2**64,
            halfway_tree=True,
            tol=tol * (self.t1 - self.t0),
        )
        self._gen = make_generator(derived_seed(int(seed), NORMAL_STREAM), device)

    def _clip(self, t: float) -> float:
        return min(max(float(t), self.t0), self.t1)

    def increment(self, t_from: float, t_to: float, like: Tensor) -> Tensor:
        if tuple(like.shape) != self.shape:
            raise ValueError(f"BrownianPath has shape {self.shape}, state has {tuple(like.shape)}")
        lo, hi = sorted((self._clip(t_from), self._clip(t_to)))
        if hi == lo:
            return torch.zeros_like(like)
        w: Tensor = self._bm(lo, hi)
        return w.to(dtype=like.dtype, device=like.device)

    def normal(self, like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=self._gen, dtype=like.dtype, device=like.device)


class CountedNoise:
    """A noise source that counts its draws (``draws``) and passes them through from ``source``.

    `Solver.solve` wraps the run's source in one, so that the end-of-run step knows whether
    the run drew noise (`solvers.end`): the draws themselves are those of ``source``.
    """

    def __init__(self, source: NoiseSource) -> None:
        self.source: NoiseSource = source.source if isinstance(source, CountedNoise) else source
        self.draws = 0

    def __getattr__(self, name: str) -> Any:
        # Anything else a custom source offers (its own methods, attributes) passes through.
        if name == "source":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def increment(self, t_from: float, t_to: float, like: Tensor) -> Tensor:
        self.draws += 1
        return self.source.increment(t_from, t_to, like)

    def normal(self, like: Tensor) -> Tensor:
        self.draws += 1
        return self.source.normal(like)


def step_normal(noise: NoiseSource, t: float, t_next: float, like: Tensor) -> Tensor:
    """The standard normal draw of the step ``[t_next, t]``: ``(W(t) - W(t_next)) / sqrt(t - t_next)``.

    i.i.d. ``N(0, I)`` for `GaussianNoise`, consistent across step counts for `BrownianPath`.
    """
    return noise.increment(t, t_next, like) / math.sqrt(t - t_next)
