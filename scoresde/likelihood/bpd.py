"""Bits per dimension of discrete data under a continuous model, with uniform dequantization.

Data ``k in {0, ..., L - 1}^D`` (``L = 2^n_bits`` levels, or ``levels``) are dequantized to the
unit cube, ``u = (k + v) / L`` with ``v ~ U[0, 1)^D`` (Theis et al. 2016; Ho et al. 2019), then
mapped to the model's range ``y = lo + (hi - lo) u`` (e.g. ``[0, 1]`` or ``[-1, 1]``). Since
each bin has volume ``L^(-D)`` in ``u``, Jensen's inequality gives, with ``a = hi - lo``::

    -log P(k) <= E_v[-log p_y(y)] - D ln a + D ln L,

    bpd = E_v[-log p_y(y)] / (D ln 2) + log2(L) - log2(a).

The offset ``log2(L) - log2(a)`` is stated, not hidden: 8 for 8-bit data scaled to ``[0, 1]``
(``(-log p + D ln 256) / (D ln 2)``, the uniform-dequantization bound of Theis et al. 2016), 7 for ``[-1, 1]`` (Song et al.'s code:
``offset = 7 - inverse_scaler(-1)``). The result is an upper bound on the bits per dimension
of the discrete data; one dequantization draw per image gives an unbiased estimate of it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from solvers.inputs import check_device, check_dtype, check_generator, check_seed
from solvers.noise import make_generator
from solvers.protocol import DiffusionSDE, ScoreFn

from .core import likelihood

__all__ = ["dequantize", "bpd_offset", "bpd_from_log_prob", "bits_per_dim"]


def _check_range(data_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in data_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be (lo, hi) with lo < hi, got {data_range}")
    return lo, hi


def _levels(n_bits: int, levels: int | None) -> int:
    """Number of discrete levels ``L``: ``levels`` if given, else ``2^n_bits``."""
    if levels is not None:
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
        return levels
    if isinstance(n_bits, bool) or not isinstance(n_bits, int) or not (1 <= n_bits <= 16):
        raise ValueError(f"n_bits must be an integer in [1, 16], got {n_bits!r}")
    return 2**n_bits


def _check_levels_tensor(k: Any) -> None:
    if not isinstance(k, Tensor):
        raise TypeError(f"k must be a tensor of integer levels, got {type(k).__name__}; convert it with "
                        "torch.as_tensor(k)")


def dequantize(
    k: Tensor,
    *,
    n_bits: int = 8,
    levels: int | None = None,
    data_range: tuple[float, float] = (-1.0, 1.0),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | str | None = None,
) -> Tensor:
    """Uniformly dequantize integer levels ``k: (B, *D)`` to ``lo + (hi - lo) (k + v) / L``.

    ``k`` must hold integers in ``[0, L - 1]`` (any integer or float dtype), ``L = 2^n_bits``
    unless ``levels`` is given. ``v ~ U[0, 1)`` is drawn from ``generator``. Returns a float
    tensor of ``k``'s shape (``dtype``: a floating dtype or its name, ``"float64"``; default
    torch's default float dtype).

    Raises:
        TypeError: ``k`` is not a tensor.
        ValueError: ``k`` outside ``[0, L - 1]`` or not integral; a ``dtype`` that is not floating.
    """
    levels = _levels(n_bits, levels)
    lo, hi = _check_range(data_range)
    dtype = check_dtype(dtype)  # integers would floor every value to the bin's edge
    _check_levels_tensor(k)
    kf = k.to(torch.float64)
    if not bool(torch.equal(kf, kf.round())) or bool((kf < 0).any()) or bool((kf > levels - 1).any()):
        raise ValueError(f"k must hold integers in [0, {levels - 1}] ({levels} levels)")
    v = torch.rand(k.shape, generator=generator, dtype=torch.float64, device=k.device)
    u = (kf + v) / levels
    return (lo + (hi - lo) * u).to(dtype)


def bpd_offset(
    *, n_bits: int = 8, levels: int | None = None, data_range: tuple[float, float] = (-1.0, 1.0)
) -> float:
    """The additive constant ``log2(L) - log2(hi - lo)`` of `bpd_from_log_prob`.

    8 for 8-bit data in ``[0, 1]``, 7 for 8-bit data in ``[-1, 1]`` (the default range of
    every function here: the package's image scaling, `ImageDataset.data_range`).
    """
    lo, hi = _check_range(data_range)
    return math.log2(_levels(n_bits, levels)) - math.log2(hi - lo)


def bpd_from_log_prob(
    log_prob: Tensor,
    dim: int,
    *,
    n_bits: int = 8,
    levels: int | None = None,
    data_range: tuple[float, float] = (-1.0, 1.0),
) -> Tensor:
    """``bpd = -log p_y(y) / (D ln 2) + log2(L) - log2(hi - lo)``, ``(B,) -> (B,)``.

    ``log_prob`` is the model log-density (nats) of the dequantized data in the model's
    range ``[lo, hi]``; ``dim = D`` is the number of dimensions of one sample.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    offset = bpd_offset(n_bits=n_bits, levels=levels, data_range=data_range)
    return -log_prob / (dim * math.log(2.0)) + offset


def bits_per_dim(
    sde: DiffusionSDE,
    score_fn: ScoreFn,
    k: Tensor,
    *,
    n_bits: int = 8,
    levels: int | None = None,
    data_range: tuple[float, float] = (-1.0, 1.0),
    n_dequant: int = 1,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Tensor:
    """Bits/dim of integer data ``k: (B, *D)`` (``L`` levels) under the PF-ODE model: ``(B,)``.

    Dequantizes ``n_dequant`` times, computes `log_likelihood`
    of each draw (``options`` are passed on, e.g. ``divergence="hutchinson"``) and averages
    the bounds. The model must have been trained on data in ``data_range``; the default
    ``(-1, 1)`` is the scaling of every image set of this package (`ImageDataset.data_range`,
    ``x = 2 k / (L - 1) - 1`` up to the dequantization), as in Song et al. 2021. Pass
    ``data_range=(0, 1)`` for a model of pixels in ``[0, 1]``.

    Randomness (dequantization noise, and the likelihood's probes and pilot subset): ``seed``
    (default 0; draw ``r`` runs the likelihood with ``seed + r``), ``None`` for a seed drawn from torch's global generator
    as in `likelihood`, or ``generator``, which then drives both (with ``seed`` left at its
    default or ``None``; another seed together with a generator is refused).
    """
    if isinstance(n_dequant, bool) or not isinstance(n_dequant, int) or n_dequant < 1:
        raise ValueError(f"n_dequant must be a positive integer, got {n_dequant!r}")
    _check_levels_tensor(k)
    seed = check_seed(seed)
    device = k.device if options.get("device") is None else check_device(options["device"])
    if generator is not None:
        if seed not in (None, 0):
            raise ValueError("pass either seed or generator, not both")
        g = check_generator(generator, device)
        assert g is not None
    else:
        g = make_generator(seed, device)
    dim = k[0].numel()
    total = None
    for r in range(n_dequant):
        y = dequantize(k.to(device), n_bits=n_bits, levels=levels, data_range=data_range,
                       generator=g, dtype=options.get("dtype"))
        randomness: dict[str, Any] = {"seed": None, "generator": g} if generator is not None else \
            {"seed": None if seed is None else seed + r}
        lp = likelihood(sde, score_fn, y, **randomness, **options).log_prob
        bpd = bpd_from_log_prob(lp, dim, n_bits=n_bits, levels=levels, data_range=data_range)
        total = bpd if total is None else total + bpd
    assert total is not None
    return total / n_dequant
