"""From the data to the ODE's end time: the `[0, t_end]` piece of the data density.

The probability-flow ODE cannot be started at `t = 0` (a score network is not trained, or is
singular, there), so the ODE gives `log p_{t_end}`, the density of the data blurred by noise
of standard deviation `sigma(t_end)`. For the data density `log p_0` the last piece is added
analytically. With `x_t = alpha(t) x_0 + sigma(t) z`, write `nu = sigma / alpha` and
`q_nu(y) = (p_0 * N(0, nu^2 I))(y)`, so that `p_t(x) = alpha^(-d) q_nu(x / alpha)`. The heat
equation `dq/dnu = nu Lap q` gives along the flow `dy/dnu = -nu grad log q_nu(y)`::

    d log q_nu(y_nu) / dnu = nu Lap log q_nu(y_nu),

so to first order in `nu_e^2` (the Laplacian taken at the end point; Song et al. 2021, App.
D.2, for the flow; the heat-equation form of the Fokker–Planck equation for the end piece)::

    x_e = alpha_e x - (sigma_e^2 / 2) s(alpha_e x, t_end)          (the flow from 0 to t_end)
    log p_0(x) = log p_{t_end}(x_e) + d log alpha_e - (sigma_e^2 / 2) div s(x_e, t_end),

with `s = grad_x log p_t` the score. The neglected terms are of relative size
`sigma_e^2 / s_min^2` (`s_min`: the finest scale of the data): at `t_end = 1e-5` under VP
(`sigma_e^2 ~ 1e-6`) the remaining bias on mixtures with mode std 0.04 is below 1e-5 nats,
while leaving the piece out costs 2e-4 to 4e-4 nats per point (and 2e-2 to 5e-2 at
`t_end = 1e-3`; `benchmarks/likelihood.py --sections sharp`). For modes of std 0.002 under VP
(`nu_e^2 / s^2 = 0.25`) the first-order piece is 2e-2 nats per point off.

**Gaussian end piece (default with the exact divergence, `d <= 256`; the Jacobians are formed in chunks of points).** Where the data are
locally Gaussian, `p_0 ~ N(mu, Sigma)` near `x`, the piece is exact at any `nu_e`: then
`q_nu = N(mu, A)` with `A = Sigma + nu^2 I`, the score's Jacobian at the end time is
`J = -A^{-1}` (in `y = x/alpha`), and the flow keeps `A^{-1/2} (y_nu - mu)` proportional to
`Sigma^{-1/2} (x - mu)`. From one score evaluation with its full Jacobian at `y = x`
(`s_y = alpha s(alpha x)`, `J = alpha^2 ds/dx`, symmetrised; eigenvalues `-1/a_k`)::

    mu  = x + A s_y                                           (A = -J^{-1})
    y_e = x - V diag(a_k (sqrt(a_k / (a_k - nu_e^2)) - 1)) V^T s_y
    log p_0(x) = log p_{t_end}(alpha_e y_e) + d log alpha_e + (1/2) sum_k ln(a_k / (a_k - nu_e^2))

(the quadratic form `(y - mu)^T A^{-1} (y - mu)` is the same at both ends). For `a_k >> nu_e^2`
this is the first-order piece above (`sum_k nu_e^2 / (2 a_k) = -(nu_e^2 / 2) tr J`). A point
whose Jacobian is not that of a Gaussian (an eigenvalue of `J` that is positive, as between
two modes, or with `a_k <= (1 + 1e-6) nu_e^2`, a mode narrower than 1e-3 of the end noise's
std) gets the first-order piece instead, from the same evaluation. Tested to 1e-8 nats on
modes of std 0.002 at `t_end` up to 2e-2 (`nu_e / s = 31`) under VP, sub-VP and VE.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from solvers.dynamics import NonFiniteScoreError
from solvers.protocol import DiffusionSDE
from solvers.score_sde import trained_time_floor

from .flow import AugmentedFlow

__all__ = ["DATA_END_TIME", "data_end_time", "data_correction", "warn_if_below_trained_range"]

DATA_END_TIME = 1e-5
"""End time of the ODE for the data density (Song et al. 2021 evaluate likelihoods at 1e-5)."""


def data_end_time(sde: DiffusionSDE, score: object = None) -> float:
    """The ODE's end time for `density="data"`: `min(sde.eps, DATA_END_TIME)`, but not below
    `min_score_time` where the SDE or the score callable has one: a discrete schedule's first
    timestep (`scoresde.DiscreteVPSDE`), or the earliest time a trained `ScoreModel` was trained
    at (its `score_fn` carries it). A network is not asked below the times it was trained at."""
    end = min(float(sde.eps), DATA_END_TIME)
    floor = trained_time_floor(score, sde)
    return end if floor is None else max(end, floor)


def warn_if_below_trained_range(eps: float | None, score_fn: object, sde: DiffusionSDE) -> None:
    """Warn when an explicit ``eps`` (of the likelihood's ODE or the reverse-SDE bound) lies below
    the earliest time the network was trained at (``min_score_time`` of the score or the SDE): its
    score there is extrapolated."""
    floor = None if eps is None else trained_time_floor(score_fn, sde)
    if eps is not None and floor is not None and float(eps) < floor:
        from ..interop._warn import warn_at_user

        warn_at_user(
            f"eps = {float(eps):g} is below the earliest time the network was trained at ({floor:g}): its "
            f"score on [{float(eps):g}, {floor:g}] is extrapolated, not learned; without eps the likelihood "
            "starts at that time and adds the rest as the data density's end piece (docs/likelihood.md)")


def data_correction(flow: AugmentedFlow, sde: DiffusionSDE, x: Tensor, t_end: float, *,
                    warn: bool = True) -> tuple[Tensor, Tensor]:
    """The start point `x_e` of the ODE and the `[0, t_end]` term of `log p_0(x)`.

    Args:
        flow: supplies the (counted) score and its divergence (exact or the flow's probes).
        sde: an affine SDE (`marginal_coeffs(t) -> (alpha, sigma)`).
        x: `(B, *D)` data points.
        t_end: the ODE's end time.
        warn: warn when the first-order piece neglects a large term (`FIRST_ORDER_WARN_NATS`);
            off for a pilot whose results are not returned.

    Returns:
        `(x_e: (B, *D), c: (B, M))` with `log p_0(x) ~= log p_{t_end}(x_e) + c` (one column
        per divergence estimate). With the exact divergence and `d <= GAUSSIAN_END_MAX_DIM`:
        the Gaussian end piece, one score evaluation with its Jacobian (`d` backward passes);
        otherwise the first-order piece, two score evaluations, one with a divergence.
    """
    x_e, c = _data_correction(flow, sde, x, t_end, warn)
    if not (bool(torch.isfinite(x_e).all()) and bool(torch.isfinite(c).all())):
        raise NonFiniteScoreError(
            f"score returned NaN/inf (or values whose Jacobian overflows) near the data, at t = {t_end:.4g}, "
            "in the [0, t_end] end piece of log p_0; check the model, the time range and the dtype")
    return x_e, c


def _data_correction(flow: AugmentedFlow, sde: DiffusionSDE, x: Tensor, t_end: float,
                     warn: bool = True) -> tuple[Tensor, Tensor]:
    """`data_correction` without its finiteness check."""
    t = torch.tensor([t_end], dtype=torch.float64)
    alpha_t, sigma_t = sde.marginal_coeffs(t)
    alpha, var = float(alpha_t), float(sigma_t) ** 2
    d = x[0].numel()
    if flow.divergence == "exact" and d <= GAUSSIAN_END_MAX_DIM:
        return _gaussian_end_piece(flow, x, t_end, alpha, var)
    s0 = flow.score(alpha * x, t_end)
    x_e = alpha * x - (0.5 * var) * s0
    _, div = flow.score_divergence(x_e, t_end)
    if warn:
        _warn_second_order(var * div, d, flow.divergence)
    return x_e, d * math.log(alpha) - (0.5 * var) * div


GAUSSIAN_END_MAX_DIM = 256
"""Largest ``d`` for which `data_correction` forms the score's full Jacobian and its
eigendecomposition (``O(d^3)`` per point; in chunks of `JACOBIAN_CHUNK_FLOATS` floats)."""

JACOBIAN_CHUNK_FLOATS = 2**24
"""At most this many Jacobian entries (``points x d^2``) are held at once by the Gaussian end piece."""

FIRST_ORDER_WARN_NATS = 1e-3
"""Warn when the first-order end piece neglects at least this much per point (on average)."""


def _warn_second_order(nu2_div: Tensor, d: int, divergence: str) -> None:
    """Warn when the first-order piece's neglected second-order term is large.

    With ``kappa_k = 1/a_k`` the eigenvalues of ``-J`` (module docstring), the exact log term is
    ``sum_k -(1/2) ln(1 - nu^2 kappa_k) = sum_k [nu^2 kappa_k / 2 + (nu^2 kappa_k)^2 / 4 + ...]``;
    the first-order piece keeps the first sum, and by Cauchy-Schwarz the second is at least
    ``(nu^2 sum_k kappa_k)^2 / (4 d) = (sigma_e^2 div s)^2 / (4 d)``, from the divergence
    already computed (``nu2_div = sigma_e^2 div s``: ``(B, M)``).
    """
    bound = float((nu2_div.double() ** 2).mean()) / (4 * d)
    if not bound > FIRST_ORDER_WARN_NATS:
        return
    import warnings

    why = (f"d = {d} > {GAUSSIAN_END_MAX_DIM}" if divergence == "exact"
           else f"divergence={divergence!r}")
    warnings.warn(
        f"the [0, t_end] piece of log p_0 is first order here ({why}, no local Gaussian fit) and "
        f"neglects a second-order term of at least {bound:.2g} nats per point (the error of log p_0 is of "
        "that order; other terms can cancel part of it): the data are sharp on the scale of the noise at "
        "t_end. Pass a smaller eps (a smaller t_end), or divergence='exact' with d <= "
        f"{GAUSSIAN_END_MAX_DIM} for the Gaussian end piece, or density='marginal' for log p_eps",
        RuntimeWarning, stacklevel=4)

GAUSSIAN_END_MIN_RATIO = 1.0 + 1e-6
"""A local Gaussian is trusted when every ``a_k = 1/eig(-J) >= GAUSSIAN_END_MIN_RATIO * nu_e^2``."""


def _gaussian_end_piece(flow: AugmentedFlow, x: Tensor, t_end: float, alpha: float, var: float) -> tuple[Tensor, Tensor]:
    """The Gaussian end piece (module docstring); first order where the local fit fails.

    Shapes: ``x: (B, *D)`` -> ``(x_e: (B, *D), c: (B, 1))``. One score evaluation, ``d``
    backward passes.
    """
    d = x[0].numel()
    chunk = max(1, JACOBIAN_CHUNK_FLOATS // (d * d))
    parts = [_gaussian_end_chunk(s_x, jac_x, x[rows], alpha, var)
             for rows, s_x, jac_x in flow.score_jacobians(alpha * x, t_end, chunk)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _gaussian_end_chunk(s_x: Tensor, jac_x: Tensor, x: Tensor, alpha: float, var: float) -> tuple[Tensor, Tensor]:
    """`_gaussian_end_piece` for the points ``x: (b, *D)`` with their score ``s_x`` at
    ``alpha x`` and its Jacobian ``jac_x: (b, d, d)``."""
    b, d = x.shape[0], x[0].numel()
    nu2 = var / alpha**2
    s_y = (alpha * s_x).reshape(b, d).to(torch.float64)
    jac = (alpha**2) * jac_x.to(torch.float64)
    jac = 0.5 * (jac + jac.transpose(1, 2))
    kappa, vecs = torch.linalg.eigh(-jac)  # eigenvalues 1/a_k of A^{-1} = -J
    ok = (kappa > 0).all(dim=1) & (kappa * nu2 <= 1.0 / GAUSSIAN_END_MIN_RATIO).all(dim=1)
    a = 1.0 / kappa.clamp_min(torch.finfo(torch.float64).tiny)
    ratio = (a / (a - nu2).clamp_min(torch.finfo(torch.float64).tiny)).where(ok[:, None], torch.ones_like(a))
    # w = V^T s_y and shift = V diag(a (sqrt(ratio) - 1)) w, per sample.
    w = (vecs * s_y[:, :, None]).sum(dim=1)
    shift = (vecs * (a * (ratio.sqrt() - 1.0) * w)[:, None, :]).sum(dim=2)
    y_gauss = x.reshape(b, d).to(torch.float64) - shift
    c_gauss = 0.5 * ratio.log().sum(dim=1)
    # First order (the module's formula, Laplacian at the data point) where the fit fails.
    y_first = x.reshape(b, d).to(torch.float64) - 0.5 * nu2 * s_y
    c_first = -0.5 * nu2 * jac.diagonal(dim1=1, dim2=2).sum(dim=1)
    y_e = torch.where(ok[:, None], y_gauss, y_first)
    c = torch.where(ok, c_gauss, c_first) + d * math.log(alpha)
    x_e = (alpha * y_e).reshape(x.shape).to(x.dtype)
    return x_e, c[:, None].to(x.dtype)
