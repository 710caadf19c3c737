"""A prior at ``T`` corrected towards the forward marginal ``p_T`` with the score (opt-in).

`likelihood` returns the density of the model ``(score, prior)``: the probability-flow ODE
carries ``x`` to ``x_T`` and the SDE's prior ``pi = N(0, v I)`` (``v = prior_std^2``) stands in for
``p_T``. Per point that differs from ``log p_0(x)`` by ``r(x_T) = log p_T(x_T) - log pi(x_T)``.
Its mean over the data is a KL divergence, tiny for a schedule that forgets the data, but its
scatter is first order: about ``alpha(T) |E x_0 . z|`` under VP and ``|E x_0 . z| / sigma_max``
under VE, so off-centre data and mixtures with unequal weights see it (``sharp_25`` / VP:
3.0e-3 nats per point; a 64-D mixture: 2.2e-2; benchmarks/prior_correction.py).

The score at ``T`` knows ``r`` up to a constant, since ``grad r(x) = s(x, T) + x / v``::

    r(x) - r(0) = int_0^1 (s(tau x, T) + tau x / v) . x dtau          (Gauss-Legendre in tau)

and the constant follows from ``E_pi[exp r] = int p_T = 1``::

    r(0) = -ln E_{z ~ pi} exp(r(z) - r(0))

estimated with antithetic prior draws (``z`` and ``-z``, which cancel the linear part of
``r``, the largest). `score_corrected_prior` returns ``x_T -> log pi(x_T) + r(x_T)`` for
``likelihood(..., prior=...)``.

Why it is not the default: it estimates ``log p_0`` pointwise but is exactly normalised only
when ``s(., T)`` is exactly a score; with a trained network its value at ``T`` (where the
network mostly outputs ``-x / v``) can err by more than the correction itself, and the
standard model density (Song et al. 2021) uses ``pi``. With an exact or trusted score (mixture
targets, analytic models) it removes the prior's scatter.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from solvers.protocol import DiffusionSDE, ScoreFn

__all__ = ["prior_log_ratio", "score_corrected_prior"]


def prior_log_ratio(score: ScoreFn, T: float, prior_var: float, x: Tensor, nodes: int = 3) -> Tensor:
    """``r(x) - r(0)`` per point, ``(B,)``, for ``x: (B, *D)``: the line integral of ``s(., T) + x / v``.

    ``nodes``-point Gauss-Legendre on ``tau in [0, 1]``; exact when ``p_T`` is Gaussian (then
    the integrand is linear in ``tau``) for any ``nodes >= 1``.
    """
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    u, w = np.polynomial.legendre.leggauss(nodes)
    t = torch.full((x.shape[0],), float(T), dtype=x.dtype, device=x.device)
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for node, weight in zip(u.tolist(), w.tolist(), strict=True):
            y = (0.5 * (node + 1.0)) * x
            integrand = ((score(y, t) + y / prior_var) * x).flatten(1).sum(1)
            total += (0.5 * weight) * integrand.to(torch.float64)
    return total


def score_corrected_prior(
    sde: DiffusionSDE, score: ScoreFn, *, nodes: int = 3, normalizer_samples: int = 1024,
    seed: int = 0, batch_size: int = 4096,
) -> Callable[[Tensor], Tensor]:
    """``x_T -> log pi(x_T) + r(x_T)``: the SDE's prior corrected towards ``p_T`` with the score.

    Args:
        sde: needs ``T``, ``prior_std`` (an isotropic Gaussian prior), ``prior_log_prob`` and
            ``prior_sample``.
        score: ``score(x: (B, *D), t: (B,))``, evaluated only at ``t = T``.
        nodes: Gauss-Legendre nodes of the line integral (``nodes`` score evaluations per point).
        normalizer_samples: antithetic pairs of prior draws for ``r(0)`` (``2 nodes`` evaluations
            each; computed once, at the first call, for that call's data shape and dtype).
        seed, batch_size: the draws' seed; points per score call for them.

    Returns:
        A prior for `likelihood` (``prior=``): ``(B, *D) -> (B,)``.
    """
    prior_std = getattr(sde, "prior_std", None)
    if prior_std is None:
        raise TypeError(f"{type(sde).__name__} has no prior_std: the correction needs an isotropic Gaussian prior")
    var, T = float(prior_std) ** 2, float(sde.T)
    constant: dict[tuple[tuple[int, ...], torch.dtype], float] = {}

    def log_r0(like: Tensor) -> float:
        key = (tuple(like.shape[1:]), like.dtype)
        if key not in constant:
            gen = torch.Generator(device=like.device).manual_seed(seed)
            z = sde.prior_sample((normalizer_samples, *key[0]), generator=gen, dtype=like.dtype, device=like.device)
            parts = []
            for chunk in z.split(batch_size):
                plus = prior_log_ratio(score, T, var, chunk, nodes)
                minus = prior_log_ratio(score, T, var, -chunk, nodes)
                parts.append(torch.logaddexp(plus, minus) - math.log(2.0))
            pairs = torch.cat(parts)
            constant[key] = -float(pairs.logsumexp(0) - math.log(pairs.numel()))
        return constant[key]

    def prior(x_T: Tensor) -> Tensor:
        ratio = prior_log_ratio(score, T, var, x_T, nodes) + log_r0(x_T)
        return sde.prior_log_prob(x_T) + ratio.to(x_T.dtype)

    return prior
