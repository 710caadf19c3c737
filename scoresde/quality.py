"""One number for sample quality on a Gaussian-mixture target, in units of its noise floor.

``CombinedMetric(target, n)`` judges a sample set ``x: (n, D)`` against an independent
exact set ``y: (n, D)`` of ``p_0`` with four two-sample statistics:

1. ``sliced_w2``: sliced 2-Wasserstein distance (Bonneel et al. 2015);
2. ``mmd``: ``|MMD^2_u|``, the absolute unbiased RBF-kernel MMD^2 (Gretton et al. 2012,
   eq. 3) at fixed bandwidths (median heuristic on exact samples, chosen once);
3. ``mode_tv``: total variation ``1/2 sum_k |f_k(x) - f_k(y)|`` between the component
   frequencies of ``x`` and ``y`` (each sample assigned to its most responsible component);
4. ``spread``: ``|s(x) - s(y)|`` with the within-mode spread
   ``s(x) = sqrt(mean_i r_i^2 / D)``, ``r_i^2 = sum_d ((x_id - mu_kd) / s_kd)^2`` the scaled
   squared distance of sample ``i`` to its assigned component ``k`` (``s = 1`` for exact
   samples in expectation; a blurred sample set has ``s > 1``, an over-sharpened one ``s < 1``).

Each statistic is divided by its *floor*: its mean between two independent exact sample
sets of the same size ``n`` (``repeats`` pairs, seeded). The combined value is the worst
(largest) of the four ratios, so 1.0 means "as close to ``p_0`` as another exact sample
set is, on every statistic". Because it is the maximum of four noisy ratios, exact samples
themselves do not score exactly 1: the 5-seed median (``median_over_seeds``, the reported
number) of exact samples ranged 1.07-2.57 over 60 draws (sharp targets, ``n = 1000``), so
only values clearly above ~2.5 indicate a systematic error.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from solvers.inputs import as_integer

from ._sample_checks import _as_samples, _seed
from .metrics import median_bandwidths, mmd, sliced_wasserstein
from .targets import GaussianMixture

__all__ = ["CombinedMetric", "STATISTICS", "median_over_seeds", "mode_frequencies", "within_mode_spread"]

#: Names of the four statistics, in the order they are reported.
STATISTICS: tuple[str, ...] = ("sliced_w2", "mmd", "mode_tv", "spread")


def _check_target(target: Any, name: str = "target") -> None:
    if not isinstance(target, GaussianMixture):
        raise TypeError(f"{name} must be a GaussianMixture, got {type(target).__name__}")


def _assign(x: Tensor, target: GaussianMixture) -> tuple[Tensor, Tensor]:
    """Most responsible component ``(N,)`` and scaled squared distance ``r^2: (N,)`` of ``x: (N, D)``."""
    _check_target(target)
    x = _as_samples(x, "x", min_n=1).to(torch.float64)
    labels = target.responsibilities(x).argmax(dim=1)
    mu = target.means.to(x)[labels]
    sd = target.stds.to(x)[labels]
    return labels, (((x - mu) / sd) ** 2).sum(dim=1)


def mode_frequencies(x: Tensor, target: GaussianMixture) -> Tensor:
    """Share of ``x: (N, D)`` assigned to each component (argmax responsibility): ``(K,)``.

    Raises:
        TypeError: ``target`` not a `GaussianMixture`; ``x`` not a real tensor (or array).
        ValueError: ``x`` not ``(N, D)`` with ``N >= 1`` and the target's ``D``, or NaN/inf entries.
    """
    labels, _ = _assign(x, target)
    return torch.bincount(labels, minlength=target.n_components).to(torch.float64) / x.shape[0]


def within_mode_spread(x: Tensor, target: GaussianMixture) -> float:
    """``sqrt(mean_i r_i^2 / D)`` for ``x: (N, D)`` (1 for exact samples; > 1 when blurred).

    Raises:
        TypeError, ValueError: as `mode_frequencies`.
    """
    _, r2 = _assign(x, target)
    return float((r2.mean() / target.dim).sqrt())


class CombinedMetric:
    """Worst of four two-sample statistics, each in units of its exact-vs-exact floor.

    Args:
        target: the exact mixture ``p_0``.
        n: sample-set size the floors are computed for (judge sets of this size only).
        repeats: exact pairs averaged per floor (floor standard error ~ ``1/sqrt(repeats)``).
        seed: seed of the exact sets used for the bandwidths and floors.
        mmd_n: at most this many points enter the MMD (its cost is ``O(mmd_n^2)``).

    Call ``metric(x, y)`` with ``x, y: (n, D)`` (``y`` exact samples of ``p_0``) for the
    combined value; ``metric.components(x, y)`` gives the four raw statistics and
    ``metric.ratios(x, y)`` them divided by ``metric.floors``.

    Raises:
        TypeError: ``target`` not a `GaussianMixture`; ``n``, ``repeats``, ``seed`` or
            ``mmd_n`` not integers (``2.5`` is refused, not truncated).
        ValueError: ``n < 10``, ``repeats < 2`` or ``mmd_n < 2``.
    """

    def __init__(
        self, target: GaussianMixture, n: int, *, repeats: int = 32, seed: int = 0, mmd_n: int = 2000
    ) -> None:
        _check_target(target)
        n = as_integer(n, "n", minimum=10)
        repeats = as_integer(repeats, "repeats", minimum=2)
        self.target, self.n, self.mmd_n = target, n, as_integer(mmd_n, "mmd_n", minimum=2)
        gen = torch.Generator().manual_seed(_seed(seed))
        a = target.sample(n, generator=gen, dtype=torch.float64)
        b = target.sample(n, generator=gen, dtype=torch.float64)
        m = min(self.mmd_n, n)
        self.bandwidths = median_bandwidths(a[:m], b[:m])
        values = [self.components(a, b)]
        for _ in range(repeats - 1):
            a = target.sample(n, generator=gen, dtype=torch.float64)
            b = target.sample(n, generator=gen, dtype=torch.float64)
            values.append(self.components(a, b))
        self.floors = {k: statistics.fmean(v[k] for v in values) for k in STATISTICS}

    def components(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """The four raw statistics between ``x: (N, D)`` and ``y: (M, D)``; all ``inf`` when
        either set has NaN/inf entries (a diverged sampler).

        Raises:
            TypeError: ``x`` / ``y`` not real tensors (or arrays).
            ValueError: not ``(N, D)`` with ``N >= 1`` (``N >= 2`` for the MMD) and the target's ``D``.
        """
        x = _as_samples(x, "x", min_n=1, finite=False).to(torch.float64)
        y = _as_samples(y, "y", min_n=1, finite=False).to(torch.float64)
        if x.ndim != 2 or x.shape[1] != self.target.dim or y.ndim != 2 or y.shape[1] != self.target.dim:
            raise ValueError(
                f"x and y must be (N, {self.target.dim}); got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
            return {k: float("inf") for k in STATISTICS}
        m = min(self.mmd_n, x.shape[0], y.shape[0])
        tv = 0.5 * float((mode_frequencies(x, self.target) - mode_frequencies(y, self.target)).abs().sum())
        return {
            "sliced_w2": sliced_wasserstein(x, y),
            "mmd": abs(mmd(x[:m], y[:m], bandwidths=self.bandwidths)),
            "mode_tv": tv,
            "spread": abs(within_mode_spread(x, self.target) - within_mode_spread(y, self.target)),
        }

    def ratios(self, x: Tensor, y: Tensor) -> dict[str, float]:
        """Each statistic divided by its floor (1.0 = as far as another exact set).

        A statistic whose floor is exactly 0 (the mode-weight TV of a one-component target,
        where every sample falls in the one mode) carries no information: its ratio is 0 when
        the statistic is 0 too, and ``inf`` otherwise.

        Raises:
            TypeError, ValueError: as `components`; ``x`` or ``y`` not of the ``n`` rows the
                floors are for.
        """
        x = _as_samples(x, "x", min_n=1, finite=False)
        if x.shape[0] != self.n:
            raise ValueError(f"this metric's floors are for n = {self.n} samples, got {x.shape[0]}")
        y_shape = getattr(y, "shape", None)
        if y_shape is not None and len(y_shape) >= 1 and y_shape[0] != self.n:
            # The floors are distances between two sets of n: a smaller reference is farther from
            # any sample set, so the ratio would blame the sampler for the reference's size.
            raise ValueError(f"this metric's floors are for a reference of n = {self.n} samples, "
                             f"got y of {y_shape[0]} (use exact_reference(seed))")
        return {k: _ratio(v, self.floors[k]) for k, v in self.components(x, y).items()}

    def __call__(self, x: Tensor, y: Tensor) -> float:
        """Combined value ``max_k stat_k(x, y) / floor_k``."""
        return max(self.ratios(x, y).values())

    def exact_reference(self, seed: int) -> Tensor:
        """An exact ``(n, D)`` float64 sample of ``p_0`` for judging run ``seed`` (fixed per seed).

        Raises:
            TypeError: ``seed`` not an integer.
        """
        gen = torch.Generator().manual_seed(_seed(30_000 + as_integer(seed, "seed")))
        return self.target.sample(self.n, generator=gen, dtype=torch.float64)


def _ratio(value: float, floor: float) -> float:
    """``value / floor``, with ``0 / 0 = 0`` (a statistic that is 0 for any sample set)."""
    if floor > 0:
        return value / floor
    return 0.0 if value == 0 else math.inf


def median_over_seeds(
    metric: CombinedMetric, sample_fn: Callable[[int], Tensor], seeds: Sequence[int] = (0, 1, 2, 3, 4)
) -> float:
    """Median over ``seeds`` of ``metric(sample_fn(seed), metric.exact_reference(seed))``.

    ``sample_fn(seed) -> (n, D)`` draws the sample set to judge for that seed.

    Raises:
        TypeError: ``metric`` not a `CombinedMetric`, ``sample_fn`` not callable, ``seeds``
            not a sequence of integers.
        ValueError: ``seeds`` empty.
    """
    if not isinstance(metric, CombinedMetric):
        raise TypeError(f"metric must be a CombinedMetric, got {type(metric).__name__}")
    if not callable(sample_fn):
        raise TypeError(f"sample_fn must be a callable seed -> (n, D) samples, got {type(sample_fn).__name__}")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of integers, got {type(seeds).__name__} {seeds!r}")
    seeds = [as_integer(s, "every seed in seeds") for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    return statistics.median(metric(sample_fn(s), metric.exact_reference(s)) for s in seeds)
