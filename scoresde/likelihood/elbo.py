"""Variational bound on the log-likelihood of the reverse SDE (Song, Durkan, Murray & Ermon 2021b).

"Maximum likelihood training of score-based diffusion models", Thm. 3 (the denoising
score-matching form of the bound of Thm. 2): for the model ``p^SDE`` defined by the reverse
SDE ``dx = [f - g^2 s] dt + g dW_bar`` started from the prior ``pi`` at ``T``, and a point ``x``
at the start time (here ``eps``; the theorem's ``0``)::

    -log p^SDE(x) <= L(x) = -E[log pi(x_T)]
                           + 1/2 int_eps^T E[ g^2 ||s(x_t, t) - grad log p(x_t | x)||^2
                                             - g^2 ||grad log p(x_t | x)||^2 - 2 div f(x_t, t) ] dt

with ``x_t = a x + b z`` the exact forward transition from ``eps`` to ``t``
(`solvers.dynamics.forward_transition`) and ``grad log p(x_t | x) = -z / b``. The two
squared norms combine to ``g^2 (||s||^2 + 2 s.z / b)``, which is estimated here with
antithetic pairs ``(z, -z)`` (their mean is finite as ``t -> eps``, where ``1/b`` blows up)
and stratified ``t`` on ``[eps, T]``. For an affine SDE ``f = (d ln alpha/dt) x``, so
``div f = sum_i f_i(1, t)``.

`elbo` returns ``-L(x)``, a lower bound on ``log p^SDE_eps(x)`` (nats). It bounds the
density of the *SDE* model; the probability-flow ODE density (`log_likelihood`)
is a different number unless the score is exact. With the exact score and ``pi = p_T`` the
model's path measure equals the forward one, so the bound is tight: ``-L(x) = log p_eps(x)``
(a test checks this).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from solvers.dynamics import CountedScore, forward_transition
from solvers.inputs import check_dtype, check_generator, check_score
from solvers.noise import make_generator
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.score_sde import check_score_sde
from solvers.utils import append_dims

from .core import check_data
from .endpoint import warn_if_below_trained_range
from .options import DensityOptions, RunOptions, check_interval, checked_prior

__all__ = ["ElboResult", "elbo"]


@dataclass
class ElboResult:
    """Output of `elbo`.

    Attributes:
        elbo: ``(B,)`` Monte-Carlo estimate of ``-L(x)``, a lower bound on ``log p^SDE_eps(x)``.
        std_err: ``(B,)`` its standard error (over the time/noise samples).
        prior_term: ``(B,)`` estimate of ``E[log pi(x_T)]``.
        diffusion_term: ``(B,)`` estimate of the time integral (so ``elbo = prior - diffusion``).
        n_samples: time/noise samples per point.
    """

    elbo: Tensor
    std_err: Tensor
    prior_term: Tensor
    diffusion_term: Tensor
    n_samples: int


def elbo(
    sde: DiffusionSDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    n_samples: int = 256,
    eps: float | None = None,
    T: float | None = None,
    prior: Callable[[Tensor], Tensor] | None = None,
    batch_size: int | None = None,
    dtype: torch.dtype | str | None = None,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> ElboResult:
    """Monte-Carlo estimate of the reverse-SDE bound ``-L(x) <= log p^SDE_eps(x)``; ``x: (B, *D)``.

    Args:
        sde: forward SDE with affine marginals (any `DiffusionSDE`).
        score_fn: ``score(x: (B, *D), t: (B,)) -> (B, *D)``.
        x: data ``(B, *D)`` at time ``eps``.
        n_samples: time/noise samples per point, even (``n_samples / 2`` antithetic pairs,
            each at its own stratified time).
        eps, T: interval, ``0 < eps < T <= sde.T`` (default ``sde.eps``, ``sde.T``).
        prior: ``log pi``, ``(B, *D) -> (B,)`` (default ``sde.prior_log_prob``).
        batch_size: points per chunk (the score sees ``batch_size * n_samples`` rows).
        dtype: of the computation, or its name (default: that of ``x``); half precision is refused.
        seed, generator: randomness of ``t`` and ``z``.

    The arguments, the data and the outputs of ``score_fn`` and ``prior`` are checked as by
    `likelihood`.

    Raises:
        TypeError: ``x`` is not a tensor, or a bad ``seed``/``generator``/``prior`` output.
        ValueError: bad data or arguments, a score output of the wrong shape, a prior output
            that is not a finite ``(B,)`` tensor.
        solvers.dynamics.NonFiniteScoreError: the score returned NaN/inf.
    """
    # likelihood's checks: the score, chunk size, dtype, seed, generator, a prior that is not callable.
    check_score(score_fn)
    check_score_sde(score_fn, sde)
    RunOptions(batch_size=batch_size, dtype=dtype, seed=seed, generator=generator).validate()
    DensityOptions(prior=prior).resolved()
    asked = None if dtype is None else check_dtype(dtype)
    check_data(x, asked)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2 or n_samples % 2:
        raise ValueError(f"n_samples must be an even integer >= 2, got {n_samples!r}")
    lo, hi = check_interval(sde, sde.eps if eps is None else eps, sde.T if T is None else T)
    warn_if_below_trained_range(eps, score_fn, sde)
    dtype = (x.dtype if x.is_floating_point() else torch.get_default_dtype()) if asked is None else asked
    x = x.detach().to(dtype)
    gen = make_generator(seed, x.device) if generator is None else check_generator(generator, x.device)
    assert gen is not None
    prior_fn = checked_prior(sde.prior_log_prob if prior is None else prior)
    size = x.shape[0] if batch_size is None else max(1, int(batch_size))
    parts = [_elbo_chunk(sde, score_fn, x[i : i + size], n_samples, lo, hi, prior_fn, gen)
             for i in range(0, x.shape[0], size)]
    return ElboResult(
        elbo=torch.cat([p[0] for p in parts]),
        std_err=torch.cat([p[1] for p in parts]),
        prior_term=torch.cat([p[2] for p in parts]),
        diffusion_term=torch.cat([p[3] for p in parts]),
        n_samples=n_samples,
    )


def _elbo_chunk(
    sde: DiffusionSDE, score_fn: ScoreFn, x: Tensor, n_samples: int, lo: float, hi: float,
    prior_fn: Callable[[Tensor], Tensor], gen: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    b, shape = x.shape[0], tuple(x.shape[1:])
    pairs = n_samples // 2
    like: dict[str, Any] = dict(dtype=x.dtype, device=x.device)
    # Stratified times: pair j of every point lies in the j-th of `pairs` equal sub-intervals.
    u = (torch.arange(pairs, **like)[None, :] + torch.rand(b, pairs, generator=gen, **like)) / pairs
    t = (lo + (hi - lo) * u).reshape(-1)  # (b * pairs,)
    z = torch.randn((b * pairs, *shape), generator=gen, **like)
    x_rep = x.repeat_interleave(pairs, dim=0)
    a, s = forward_transition(sde, torch.full_like(t, lo), t)
    mean = append_dims(a, x_rep.ndim) * x_rep
    noise = append_dims(s, x_rep.ndim) * z
    with torch.no_grad():
        # Score at both members of each antithetic pair, in one batch.
        tt = torch.cat([t, t])
        # Counted like likelihood's score: refused when of the wrong shape or NaN/inf.
        score = CountedScore(score_fn)(torch.cat([mean + noise, mean - noise]), tt)
        s_plus, s_minus = score[: b * pairs], score[b * pairs :]
        g2 = sde.diffusion(t) ** 2
        ones = torch.ones((b * pairs, *shape), **like)
        div_f = sde.drift(ones, t).reshape(b * pairs, -1).sum(dim=1)

        def sq(v: Tensor) -> Tensor:
            return v.reshape(v.shape[0], -1).pow(2).sum(dim=1)

        def dot(v: Tensor, w: Tensor) -> Tensor:
            return (v * w).reshape(v.shape[0], -1).sum(dim=1)

        # g^2 (||s||^2 + 2 s.z/b) for z and -z, averaged: the 1/b term becomes a difference.
        cross = dot(s_plus - s_minus, z) / s
        integrand = g2 * (0.5 * (sq(s_plus) + sq(s_minus)) + cross) - 2.0 * div_f
        # Time integral by the stratified mean: (T - eps) * mean_j integrand_j, then 1/2.
        diff_terms = 0.5 * (hi - lo) * integrand.reshape(b, pairs)
        # Prior term at x_T = a_T x + b_T z, one antithetic pair per sample pair j.
        t_end = torch.full((b * pairs,), hi, **like)
        a_T, s_T = forward_transition(sde, torch.full_like(t_end, lo), t_end)
        m_T = append_dims(a_T, x_rep.ndim) * x_rep
        n_T = append_dims(s_T, x_rep.ndim) * z
        prior_terms = (0.5 * (prior_fn(m_T + n_T) + prior_fn(m_T - n_T))).reshape(b, pairs)
    # Per-pair contributions to -L(x); their mean is the estimate, their spread its error
    # (stratified samples treated as independent: a conservative standard error).
    contrib = prior_terms - diff_terms
    se = contrib.std(dim=1) / math.sqrt(pairs) if pairs > 1 else torch.zeros(b, **like)
    return contrib.mean(dim=1), se, prior_terms.mean(dim=1), diff_terms.mean(dim=1)
