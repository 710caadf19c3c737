"""Sample-quality metrics between two sample sets, mode statistics for Gaussian mixtures.

Every metric compares ``x: (N, D)`` with ``y: (M, D)`` (``N`` and ``M`` may differ) and
returns a Python float. Inputs may have any floating dtype and live on any device (both on
the same one); the arithmetic is done in float64 on that device (float32 on MPS, which
has no float64), so values near the noise floor are not swamped by rounding. Pairwise
kernels are evaluated in row blocks of at most ``max_elements`` entries, so memory stays
bounded for large ``N``.

A metric is only meaningful next to its *noise floor*: the value it takes between two
independent exact sample sets of the same size (`noise_floor`). A sampler "reaches
the noise floor" when its value against exact samples is within the floor's spread.

    from scoresde import metrics
    sw = metrics.sliced_wasserstein(samples, target.sample(10_000, generator=g))
    floor, floor_std = metrics.noise_floor(metrics.sliced_wasserstein,
                                           lambda n, g: target.sample(n, generator=g), 10_000)

References: sliced Wasserstein (Rabin et al. 2011; Bonneel et al. 2015); MMD (Gretton et
al. 2012, JMLR 13, eq. 3 for the unbiased estimator); energy distance (Szekely & Rizzo
2013, eq. 2.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from solvers.inputs import as_count, as_integer, as_real

from ._sample_checks import _as_samples, _seed, _work_dtype

__all__ = [
    "DEFAULT_BANDWIDTH_FACTORS",
    "sliced_wasserstein",
    "mmd",
    "median_bandwidths",
    "energy_distance",
    "mode_stats",
    "noise_floor",
]

#: Multiples of the median pairwise distance used as default MMD bandwidths.
DEFAULT_BANDWIDTH_FACTORS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

#: Largest number of pairwise entries (or projected values) held at once: small blocks
#: stay in cache, which is several times faster on CPU than large ones.
_MAX_ELEMENTS = 2**16


# --- input checks ----------------------------------------------------------------------------
def _check_pair(x: Any, y: Any, *, min_n: int) -> tuple[Tensor, Tensor]:
    """Validate ``x: (N, D)``, ``y: (M, D)`` and cast both to the working dtype."""
    x = _as_samples(x, "x", min_n=min_n)
    y = _as_samples(y, "y", min_n=min_n)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}")
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
    dtype = _work_dtype(x.device)
    return x.to(dtype), y.to(dtype)


def _centred_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` less their pooled mean: pairwise distances are unchanged, and forming
    them as ``|a|^2 + |b|^2 - 2 a.b`` (`_pair_sum`) no longer cancels for sets far from 0."""
    centre = torch.cat([x, y]).mean(dim=0)
    return x - centre, y - centre


def _check_max_elements(max_elements: int) -> int:
    return as_count(max_elements, "max_elements")


def _bandwidth(h: Any) -> float:
    """One bandwidth as a float: a real number (Python, NumPy or 0-d tensor); strings and bools refused."""
    if isinstance(h, (bool, np.bool_)) or (isinstance(h, Tensor) and h.dtype == torch.bool):
        raise TypeError(f"bandwidths must be positive numbers, got the boolean {h!r}")
    if isinstance(h, (str, bytes)):
        raise TypeError(f"bandwidths must be positive numbers or a sequence of them, got the string {h!r}")
    return as_real(h, "bandwidths")


def _bandwidths(bandwidths: Any) -> tuple[float, ...]:
    """``bandwidths`` (a number, a 0-d array / tensor, or a sequence of numbers) as a tuple of floats."""
    if isinstance(bandwidths, (np.ndarray, Tensor)) and bandwidths.ndim == 0:
        return (_bandwidth(bandwidths.item()),)
    if isinstance(bandwidths, (str, bytes)) or not hasattr(bandwidths, "__iter__"):
        return (_bandwidth(bandwidths),)
    return tuple(_bandwidth(h) for h in bandwidths)


def _finite_result(value: float, what: str) -> float:
    """``value`` if finite; otherwise the distances between the samples overflowed."""
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}: the distances between the samples overflow "
                         f"float64; rescale x and y (their entries are finite but too large)")
    return value


# --- sliced Wasserstein-2 --------------------------------------------------------------------
def _quantile_pairing(n: int, m: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Exact coupling of two sorted empirical 1-D measures with ``n`` and ``m`` atoms.

    The quantile functions ``F^-1`` (steps at ``i/n``) and ``G^-1`` (steps at ``j/m``) are
    both constant on each interval between consecutive merged breakpoints. Returns, for
    each of the ``n + m`` intervals, the index into the sorted ``x``, the index into the
    sorted ``y`` and the interval length (breakpoints compared in exact integer arithmetic
    on the common denominator ``n * m``).
    """
    bx = torch.arange(1, n + 1, dtype=torch.int64, device=device) * m
    by = torch.arange(1, m + 1, dtype=torch.int64, device=device) * n
    upper = torch.sort(torch.cat([bx, by])).values
    lower = torch.cat([upper.new_zeros(1), upper[:-1]])
    # On (lower, upper] / (n m), F^-1 is x_(ceil(u n)) (1-based), i.e. index lower // m.
    # (clamped: the zero-width interval at u = 1 would index one past the end).
    ix = (lower // m).clamp_max(n - 1)
    iy = (lower // n).clamp_max(m - 1)
    width = (upper - lower).to(dtype) / (n * m)
    return ix, iy, width


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    *,
    n_projections: int = 512,
    seed: int = 0,
    max_elements: int = _MAX_ELEMENTS,
) -> float:
    """Sliced Wasserstein-2 distance between the empirical measures of ``x`` and ``y``.

    ``SW_2(x, y) = ( E_theta W_2^2(theta^T x, theta^T y) )^(1/2)``, ``theta`` uniform on the
    unit sphere ``S^(D-1)``, estimated with ``n_projections`` directions drawn (as normalised
    Gaussians, on the CPU so the value does not depend on the device) from
    ``torch.Generator().manual_seed(seed)``. The 1-D distances are exact:
    ``W_2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du`` with the empirical quantile functions, i.e.
    the mean squared difference of the sorted projections when ``N == M`` and, when
    ``N != M``, the same integral over the merged steps of both quantile functions.

    Closed forms for tests: ``SW_2^2 = |m_x - m_y|^2 / D + (s_x - s_y)^2`` between
    ``N(m_x, s_x^2 I)`` and ``N(m_y, s_y^2 I)`` (since ``E (theta . v)^2 = |v|^2 / D``);
    ``SW_2 = W_2`` when ``D = 1``.

    Args:
        x: ``(N, D)`` samples; y: ``(M, D)`` samples.
        n_projections: number of random directions (Monte-Carlo error ~ ``1/sqrt(L)``).
        seed: seed of the directions; keep it fixed when comparing samplers.
        max_elements: bound on ``(N + M) x projections`` held at once (chunking).

    Returns:
        ``SW_2`` (a distance in the units of ``x``; not its square).

    Raises:
        TypeError: ``x`` / ``y`` not tensors (or arrays), complex or bool; ``n_projections``,
            ``max_elements`` or ``seed`` not integers.
        ValueError: ``x`` / ``y`` not ``(N, D)`` with ``N >= 1``, different ``D``, NaN/inf
            entries or different devices; ``n_projections`` / ``max_elements`` below 1; the
            distance overflows float64.
    """
    x, y = _check_pair(x, y, min_n=1)
    n_projections = as_count(n_projections, "n_projections")
    max_elements = _check_max_elements(max_elements)
    seed = _seed(seed)
    n, d = x.shape
    m = y.shape[0]
    # Random directions: normalised Gaussians are uniform on the sphere.
    gen = torch.Generator().manual_seed(int(seed))
    theta = torch.randn((n_projections, d), generator=gen, dtype=torch.float64)
    theta = theta / torch.linalg.vector_norm(theta, dim=1, keepdim=True).clamp_min(1e-300)
    theta = theta.to(device=x.device, dtype=x.dtype)
    pairing = None if n == m else _quantile_pairing(n, m, x.device, x.dtype)

    total = x.new_zeros(())
    chunk = max(1, max_elements // (n + m))
    for start in range(0, n_projections, chunk):
        th = theta[start : start + chunk]  # (c, D)
        # Project and sort: the sorted values are the empirical quantile functions.
        px = torch.sort(th @ x.T, dim=1).values  # (c, N)
        py = torch.sort(th @ y.T, dim=1).values  # (c, M)
        if pairing is None:
            w2 = (px - py).square_().mean(dim=1)
        else:
            ix, iy, width = pairing
            w2 = (px[:, ix] - py[:, iy]).square_() @ width
        total = total + w2.sum()
    return _finite_result(math.sqrt(max(float(total) / n_projections, 0.0)), "sliced_wasserstein")


# --- kernel two-sample statistics --------------------------------------------------------------
def _pair_sum(
    a: Tensor,
    b: Tensor,
    fn: Callable[[Tensor], Tensor],
    *,
    same: bool,
    max_elements: int,
) -> Tensor:
    """``sum_{i,j} fn(|a_i - b_j|^2)`` over row blocks of ``a``; ``same`` drops ``i == j``.

    ``a: (N, D)``, ``b: (M, D)`` -> 0-d tensor. ``fn`` maps a block of squared distances
    to a block of values and may overwrite its argument. With ``same`` (``a is b``) the
    diagonal is removed exactly, whatever rounding the squared distance had there.
    """
    a_sq = (a * a).sum(dim=1)
    b_sq = (b * b).sum(dim=1)
    rows = max(1, max_elements // b.shape[0])
    total = a.new_zeros(())
    for i0 in range(0, a.shape[0], rows):
        ab = a[i0 : i0 + rows]
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, clamped at 0 against rounding (in place: cheap).
        d2 = torch.addmm(b_sq[None, :], ab, b.T, alpha=-2.0)
        d2.add_(a_sq[i0 : i0 + rows, None]).clamp_min_(0.0)
        v = fn(d2)
        s = v.sum()
        if same:
            s = s - v.diagonal(offset=i0).sum()
        total = total + s
    return total


def _rbf_sum(coeffs: Sequence[float]) -> Callable[[Tensor], Tensor]:
    """Block function ``d2 -> sum_c exp(-c d2)`` for coefficients ``c = 1 / (2 h^2)``."""
    cs = sorted(coeffs)  # widest kernel first

    def kernel(d2: Tensor) -> Tensor:
        out = torch.zeros_like(d2)
        e = torch.empty_like(d2)
        for i, c in enumerate(cs):
            mant, expo = math.frexp(c / cs[i - 1]) if i > 0 else (0.0, 0)
            if mant == 0.5 and expo >= 2:
                # c = 2^j c_prev (the default factors): exp(-c d2) = exp(-c_prev d2)^(2^j),
                # j squarings, exact up to rounding and much cheaper than another exp.
                for _ in range(expo - 1):
                    e.square_()
            else:
                torch.mul(d2, -c, out=e).exp_()
            out.add_(e)
        return out

    return kernel


def median_bandwidths(
    x: Tensor,
    y: Tensor,
    *,
    factors: Sequence[float] = DEFAULT_BANDWIDTH_FACTORS,
    max_points: int = 2048,
    seed: int = 0,
) -> tuple[float, ...]:
    """Default RBF bandwidths: ``factors`` times the median pairwise distance of the pooled sample.

    The median is taken over all pairs ``i < j`` of at most ``max_points`` points drawn
    without replacement (seeded) from the pooled ``x: (N, D)`` and ``y: (M, D)``. To compare
    several samplers on one scale, compute the bandwidths once (e.g. from two exact sample
    sets) and pass them to `mmd`.

    Raises:
        TypeError: bad ``x`` / ``y`` (as `sliced_wasserstein`); ``max_points`` or ``seed`` not
            integers.
        ValueError: bad ``x`` / ``y``; ``factors`` empty or not positive and finite;
            ``max_points < 2``; a median distance that is 0 or overflows.
    """
    x, y = _check_pair(x, y, min_n=1)
    max_points = as_integer(max_points, "max_points", minimum=2)
    seed = _seed(seed)
    if isinstance(factors, (int, float)) or len(factors) < 1 or any(not (f > 0 and math.isfinite(f)) for f in factors):
        raise ValueError(f"factors must be a non-empty sequence of positive numbers, got {factors!r}")
    pooled = torch.cat([x, y])
    if pooled.shape[0] > max_points:
        gen = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(pooled.shape[0], generator=gen)[:max_points].to(pooled.device)
        pooled = pooled[idx]
    if pooled.shape[0] < 2:
        raise ValueError("need at least two pooled points to choose bandwidths")
    dist = torch.pdist(pooled)
    med = float(torch.median(dist))
    if not med > 0:
        raise ValueError("median pairwise distance is 0 (points coincide); pass bandwidths explicitly")
    _finite_result(med, "the median pairwise distance")
    return tuple(float(f) * med for f in factors)


def mmd(
    x: Tensor,
    y: Tensor,
    *,
    bandwidths: Sequence[float] | float | None = None,
    seed: int = 0,
    max_elements: int = _MAX_ELEMENTS,
) -> float:
    """Unbiased squared maximum mean discrepancy with a sum of RBF kernels.

    ``k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))`` and (Gretton et al. 2012, eq. 3)::

        MMD_u^2 = 1/(N(N-1)) sum_{i != j} k(x_i, x_j) + 1/(M(M-1)) sum_{i != j} k(y_i, y_j)
                  - 2/(N M) sum_{i, j} k(x_i, y_j)

    It is an unbiased estimate of the population ``MMD^2`` (for fixed bandwidths) when ``x``
    and ``y`` are independent, so it fluctuates around 0 and may be slightly negative when
    they share a law. One set passed as both (equal tensors) returns 0: the estimate above
    assumes independent sets, and for ``x = y`` it would be ``-2/N`` times the mean gap
    between ``k(0)`` and the other kernel values, a negative number larger than the noise of
    two independent sets (3.7 times it for 200 points of a sharp mixture).

    Distances are formed after subtracting the pooled mean (the value is translation
    invariant; ``|a|^2 + |b|^2 - 2 a.b`` would otherwise cancel for tight sets far from the
    origin: 3-20% off in float64 for spread 0.01 at distance 1e6).

    Args:
        x: ``(N, D)``, y: ``(M, D)``, ``N, M >= 2``.
        bandwidths: kernel length scales ``h`` (> 0); default
            `median_bandwidths` of the pooled sample (``DEFAULT_BANDWIDTH_FACTORS``
            times the median pairwise distance). Pass fixed values to compare runs.
        seed: seed of the subsample used for the default bandwidths.
        max_elements: bound on the pairwise block held at once.

    Returns:
        ``MMD_u^2`` (squared, unbiased).

    Raises:
        TypeError: bad ``x`` / ``y`` (as `sliced_wasserstein`); ``max_elements`` or ``seed``
            not integers.
        ValueError: bad ``x`` / ``y`` (``N, M >= 2``); ``bandwidths`` empty, not positive and
            finite, or so small that ``1 / (2 h^2)`` overflows; ``max_elements < 1``; the
            value overflows float64.
    """
    x, y = _centred_pair(*_check_pair(x, y, min_n=2))
    max_elements = _check_max_elements(max_elements)
    if bandwidths is None:
        hs = median_bandwidths(x, y, seed=seed)
    else:
        hs = _bandwidths(bandwidths)
        if len(hs) < 1 or any(not (h > 0 and math.isfinite(h)) for h in hs):
            raise ValueError(f"bandwidths must be positive and finite, got {bandwidths!r}")
        if any(h * h == 0.0 or not math.isfinite(1.0 / (2.0 * h * h)) for h in hs):
            raise ValueError(f"bandwidths {bandwidths!r} are too small: 1 / (2 h^2) overflows float64")
    kernel = _rbf_sum([1.0 / (2.0 * h * h) for h in hs])

    if torch.equal(x, y):
        return 0.0  # one set against itself (see the docstring)
    n, m = x.shape[0], y.shape[0]
    kxx = _pair_sum(x, x, kernel, same=True, max_elements=max_elements) / (n * (n - 1))
    kyy = _pair_sum(y, y, kernel, same=True, max_elements=max_elements) / (m * (m - 1))
    kxy = _pair_sum(x, y, kernel, same=False, max_elements=max_elements) / (n * m)
    return _finite_result(float(kxx + kyy - 2.0 * kxy), "mmd")


def energy_distance(x: Tensor, y: Tensor, *, max_elements: int = _MAX_ELEMENTS) -> float:
    """Squared energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Szekely & Rizzo 2013).

    Estimated with U-statistics (``i != j`` within each set) for the two self terms::

        E^2 = 2/(N M) sum_{i,j} |x_i - y_j| - 1/(N(N-1)) sum_{i != j} |x_i - x_j|
              - 1/(M(M-1)) sum_{i != j} |y_i - y_j|

    which is unbiased for independent sets, so it fluctuates around 0 (possibly below) when
    ``x`` and ``y`` share a law. The population value is ``>= 0`` and ``= 0`` iff the laws are
    equal. One set passed as both returns 0, and distances are formed about the pooled mean,
    as in `mmd`.
    ``x: (N, D)``, ``y: (M, D)``, ``N, M >= 2``.

    Raises:
        TypeError, ValueError: bad ``x`` / ``y`` or ``max_elements`` (as `mmd`); the value
            overflows float64.
    """
    x, y = _centred_pair(*_check_pair(x, y, min_n=2))
    max_elements = _check_max_elements(max_elements)
    if torch.equal(x, y):
        return 0.0  # one set against itself (see `mmd`)
    n, m = x.shape[0], y.shape[0]
    dxx = _pair_sum(x, x, torch.sqrt_, same=True, max_elements=max_elements) / (n * (n - 1))
    dyy = _pair_sum(y, y, torch.sqrt_, same=True, max_elements=max_elements) / (m * (m - 1))
    dxy = _pair_sum(x, y, torch.sqrt_, same=False, max_elements=max_elements) / (n * m)
    return _finite_result(float(2.0 * dxy - dxx - dyy), "energy_distance")


# Mode statistics and the noise floor live in scoresde.mode_metrics; re-exported here.
from .mode_metrics import mode_stats, noise_floor  # noqa: E402


# The combined noise-floor metric lives in scoresde.quality (it builds on the metrics above);
# exposed here lazily so that importing either module first works.
def __getattr__(name: str) -> Any:
    if name in ("CombinedMetric", "median_over_seeds"):
        from . import quality

        return getattr(quality, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
