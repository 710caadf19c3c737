"""Mode statistics of samples against a Gaussian mixture, and the noise floor of any metric.

Both are re-exported by `scoresde.metrics`, which holds the two-sample distances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from solvers.inputs import as_count, as_integer

from ._sample_checks import _as_samples, _seed, _work_dtype
from .mixture import GaussianMixture

__all__ = ["mode_stats", "noise_floor"]


# --- Gaussian-mixture mode statistics ----------------------------------------------------------
def _outlier_radius2(max_std: float, dim: int, calibrated: bool) -> float:
    """Squared scaled-distance threshold beyond which a sample is an outlier."""
    if not calibrated:
        return max_std * max_std
    # Same tail mass as |Z| > max_std in 1-D: P(chi^2_D > r^2) = erfc(max_std / sqrt 2).
    from scipy.stats import chi2

    return float(chi2.isf(math.erfc(max_std / math.sqrt(2.0)), dim))


def mode_stats(
    x: Tensor,
    mixture: GaussianMixture,
    *,
    max_std: float = 3.0,
    min_fraction: float = 0.1,
    calibrated: bool = True,
) -> dict[str, Any]:
    """Mode coverage, mode-weight error and outlier fraction of ``x: (N, D)`` for ``mixture``.

    1. Assignment: each sample goes to its most responsible component
       ``k(x) = argmax_k w_k N(x; mu_k, diag(s_k^2))``.
    2. Outliers: with the per-dimension scaled distance ``r^2 = sum_d ((x_d - mu_kd) / s_kd)^2``
       to its component, a sample is an outlier if ``r^2 > r_max^2``. With ``calibrated``
       (default) ``r_max^2`` is the chi-square quantile with the same tail mass as
       ``|Z| > max_std`` in 1-D, ``P(chi^2_D > r_max^2) = erfc(max_std / sqrt 2)``
       (0.27% for ``max_std = 3`` in every dimension; ``r_max = max_std`` when ``D = 1``).
       With ``calibrated=False``, ``r_max = max_std`` literally, which flags most exact
       samples once ``D`` is large (``E r^2 = D``).
    3. Coverage: component ``k`` (with ``w_k > 0``) is covered when it received, among the
       non-outliers, at least ``min_fraction * w_k * N`` samples (default: 10% of its
       expected count). ``coverage`` is the covered fraction of those components.
    4. Weight error: total-variation distance ``1/2 sum_k |c_k / sum_j c_j - w_k|`` between the
       empirical component frequencies of the non-outliers (counts ``c_k``) and the true
       weights; 1.0 if every sample is an outlier.

    Args:
        x: ``(N, D)`` samples (any floating dtype/device).
        mixture: the exact `GaussianMixture` ``x`` should follow.
        max_std: outlier threshold in (1-D equivalent) standard deviations, > 0.
        min_fraction: share of the expected count a component needs to count as covered.
        calibrated: calibrate ``max_std`` to the dimension (see 2.).

    Returns:
        ``{"coverage", "weight_error", "outlier_fraction"}`` (floats) plus ``"n_covered"``
        (int), ``"counts"`` (non-outlier samples per component) and ``"frequencies"``
        (lists of length ``K``).
    """
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a scoresde.targets.GaussianMixture, got {type(mixture).__name__}")
    x = _as_samples(x, "x", min_n=1)
    if x.shape[1] != mixture.dim:
        raise ValueError(f"x must have shape (N, {mixture.dim}) for this mixture, got {tuple(x.shape)}")
    if not (max_std > 0 and math.isfinite(max_std)):
        raise ValueError(f"max_std must be positive and finite, got {max_std!r}")
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must lie in [0, 1], got {min_fraction!r}")
    x = x.to(_work_dtype(x.device))
    n = x.shape[0]
    k = mixture.n_components

    # Assign each sample to its most responsible component.
    labels = mixture.responsibilities(x).argmax(dim=1)  # (N,)
    mu = mixture.means.to(x)[labels]  # (N, D)
    sd = mixture.stds.to(x)[labels]
    # Per-dimension scaled squared distance to the assigned component.
    r2 = (((x - mu) / sd) ** 2).sum(dim=1)
    outlier = r2 > _outlier_radius2(float(max_std), mixture.dim, calibrated)

    counts = torch.bincount(labels[~outlier], minlength=k).cpu()
    weights = mixture.weights  # float64, CPU
    live = weights > 0
    expected = weights * n
    covered = (counts.to(torch.float64) >= min_fraction * expected) & live
    total = int(counts.sum())
    if total > 0:
        freq = counts.to(torch.float64) / total
        weight_error = 0.5 * float((freq - weights).abs().sum())
    else:
        freq = torch.zeros(k, dtype=torch.float64)
        weight_error = 1.0
    return {
        "coverage": int(covered.sum()) / int(live.sum()),
        "weight_error": weight_error,
        "outlier_fraction": float(outlier.sum()) / n,
        "n_covered": int(covered.sum()),
        "counts": counts.tolist(),
        "frequencies": freq.tolist(),
    }


# --- noise floor -------------------------------------------------------------------------------
def _exact_set(out: object, n: int, name: str) -> Tensor:
    """One set drawn by ``sample_fn``: an ``(n, D)`` tensor (a NumPy array is converted)."""
    if isinstance(out, np.ndarray):
        out = torch.as_tensor(out)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != n:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"sample_fn(n, generator) must return an ({n}, D) tensor or array, got {got} "
                         f"for the set {name}")
    return out


def noise_floor(
    metric: Callable[[Tensor, Tensor], float],
    sample_fn: Callable[[int, torch.Generator], Tensor],
    n: int,
    *,
    repeats: int = 5,
    seed: int = 0,
    sample_pair: Callable[[int, torch.Generator], tuple[Tensor, Tensor]] | None = None,
) -> tuple[float, float]:
    """Mean and standard deviation of ``metric(a, b)`` for independent exact sets ``a, b``.

    For ``r = 1..repeats``: ``a = sample_fn(n, g)``, ``b = sample_fn(n, g)`` with one CPU
    ``g = torch.Generator().manual_seed(seed)`` drawn from in sequence, so every set is
    independent and the result is reproducible. Returns ``(mean, std)`` (``std`` with
    ``repeats - 1`` degrees of freedom; 0.0 when ``repeats == 1``). Use the same ``n`` as
    the sample set being judged: the floor depends on it (SW_2 ~ n^(-1/2), MMD^2 ~ n^-1).
    Metric options go in with ``functools.partial`` (e.g. fixed MMD bandwidths); for mode
    statistics use ``lambda a, b: mode_stats(a, mix)["weight_error"]``.

    Args:
        metric: ``(a: (n, D), b: (n, D)) -> float``.
        sample_fn: ``(n, generator) -> (n, D)`` exact samples, e.g.
            ``lambda n, g: target.sample_marginal(n, sde, sde.eps, generator=g)``.
        n: size of each sample set (>= 2).
        repeats: number of independent pairs (>= 1).
        seed: seed of the generator.
        sample_pair: ``(n, generator) -> (a, b)``, used instead of two ``sample_fn`` calls when
            given: for a finite data set, two *disjoint* subsets (draws with replacement from the
            same rows share rows, and a floor from them reads low).

    Raises:
        TypeError: ``metric`` / ``sample_fn`` not callable; ``n``, ``repeats`` or ``seed`` not
            integers (``2.5`` is refused, not truncated).
        ValueError: ``n < 2``, ``repeats < 1``; ``sample_fn`` not returning an ``(n, D)``
            tensor or array (either set of a pair); ``metric`` returning NaN/inf for two exact sets.
    """
    if not callable(metric) or not callable(sample_fn):
        raise TypeError("metric and sample_fn must be callables")
    n = as_integer(n, "n", minimum=2)
    repeats = as_count(repeats, "repeats")
    gen = torch.Generator().manual_seed(_seed(seed))
    values = []
    for _ in range(repeats):
        pa, pb = sample_pair(n, gen) if sample_pair is not None else (sample_fn(n, gen), sample_fn(n, gen))
        a = _exact_set(pa, n, "a")
        b = _exact_set(pb, n, "b")
        if a.shape != b.shape:
            raise ValueError(f"sample_fn returned sets of different shapes: a {tuple(a.shape)}, b {tuple(b.shape)}")
        value = float(metric(a, b))
        if not math.isfinite(value):
            raise ValueError(f"metric(a, b) returned {value} for two exact sample sets of size {n}; "
                             "a noise floor must be finite")
        values.append(value)
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if repeats > 1 else 0.0
    return float(arr.mean()), std
