"""An SDE from a discrete DDPM schedule ``alphas_cumprod`` (Ho et al. 2020; diffusers' convention).

A discrete schedule of ``N`` steps gives ``alpha_bar_k = prod_{j<=k} (1 - beta_j)`` for
timesteps ``k = 0 .. N-1``. It is placed in continuous time at ``t_k = (k + 1)/N`` (so
``T = 1`` is timestep ``N - 1`` and ``eps = 1/N`` is timestep 0), with ``alpha_bar(0) = 1``,
and ``ln alpha_bar`` is interpolated between the knots by the monotone cubic Hermite
interpolant of Fritsch & Carlson (1980, "Monotone Piecewise Cubic Interpolation"). That is a
VP SDE (Song et al. 2021, eq. 11) whose marginals hit the table exactly at every ``t_k``,
``alpha(t_k)^2 = alpha_bar_k``, ``sigma(t_k)^2 = 1 - alpha_bar_k``, with a rate
``beta(t) = -d ln alpha_bar / dt`` that is continuous and non-negative (piecewise quadratic)
and integrates to ``-ln(1 - beta_k)`` over each interval ``(t_{k-1}, t_k]``; for small
``beta_k``, ``beta(t_k) ~ N beta_k``, the continuous limit of DDPM that Song et al. 2021
App. B take. A continuous rate matters to every integrator of the drift: linear interpolation
of ``ln alpha_bar`` (a rate that jumps at each of the ``N`` knots) held Runge-Kutta and
adaptive solves of the probability-flow ODE to first order, and likelihoods to ~50x the error
of the continuous VP SDE at 4x its evaluations.

`alphas_cumprod_from_config` rebuilds the table from a diffusers scheduler config
(``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule``, ``trained_betas``)
without importing diffusers.

The prior. As for `scoresde.BetaSDE`, the default prior is ``N(0, I)`` and a table whose
last ``alpha_bar`` leaves ``p_T`` far from it warns at construction (`scoresde.check_prior`,
here with the threshold `TABLE_PRIOR_KL_TOL`); ``prior="matched"`` (with ``data_std``) or
``prior=<std>`` choose the Gaussian prior instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .prior_checks import _as_prior_std, check_prior
from .sde import SCHEDULE_PROBE_KEY, VarPreservingSDE, schedule_probe

__all__ = ["DiscreteVPSDE", "alphas_cumprod_from_config", "monotone_slopes", "BETA_SCHEDULES",
           "TABLE_PRIOR_KL_TOL"]

BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")

TABLE_PRIOR_KL_TOL = 1e-2
"""Construction-time `check_prior` threshold of `DiscreteVPSDE` (nats per dimension).

Per dimension, for unit data, the bound is ``-ln sigma(T) = -ln(1 - alpha_bar_{N-1}) / 2``.
A trained table is what its network was trained on, and diffusers' pipelines start it from
``N(0, I)`` at the last timestep too, so the threshold is 10x `scoresde.schedules.PRIOR_KL_TOL`:
the published 1000-step tables stay below it (linear 2.0e-5, squaredcos_cap_v2 1.2e-9,
Stable Diffusion's scaled_linear 0.00085-0.012: 2.3e-3), and a table that never reaches the
prior warns (10-step linear, ``alpha_bar_{N-1} = 0.904``: 1.17; 100-step linear: 0.23)."""


def _cosine_betas(n: int, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, eq. 17 with ``s = 0.008``: ``beta_k = 1 - abar((k+1)/n)/abar(k/n)``, capped."""
    def abar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([min(1.0 - abar((k + 1) / n) / abar(k / n), max_beta) for k in range(n)],
                        dtype=torch.float64)


def alphas_cumprod_from_config(config: Mapping[str, Any]) -> Tensor:
    """``alphas_cumprod`` ``(N,)`` float64 of a diffusers-style scheduler config.

    Args:
        config: a mapping (or a diffusers ``scheduler.config``) with ``num_train_timesteps``
            (default 1000), ``beta_start`` (1e-4), ``beta_end`` (0.02), ``beta_schedule``
            (``"linear"``; also ``"scaled_linear"``, ``"squaredcos_cap_v2"``, ``"sigmoid"``)
            or ``trained_betas``.

    Raises:
        ValueError: unknown ``beta_schedule``; ``trained_betas`` of another length than a given
            ``num_train_timesteps``; or a config whose last ``alpha_bar`` is 0
            (``rescale_betas_zero_snr``: no Gaussian prior exists then).
    """
    n = int(config.get("num_train_timesteps", 1000))
    b0, b1 = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    trained = config.get("trained_betas")
    kind = config.get("beta_schedule", "linear")
    if trained is not None:
        betas = torch.as_tensor(list(trained), dtype=torch.float64)
        if "num_train_timesteps" in config and betas.numel() != n:
            raise ValueError(f"trained_betas has {betas.numel()} entries but num_train_timesteps is {n}: "
                             f"the scheduler's timesteps 0..{n - 1} index that table, so they must agree")
    elif kind == "linear":
        betas = torch.linspace(b0, b1, n, dtype=torch.float64)
    elif kind == "scaled_linear":
        betas = torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float64) ** 2
    elif kind == "squaredcos_cap_v2":
        betas = _cosine_betas(n)
    elif kind == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6, 6, n, dtype=torch.float64)) * (b1 - b0) + b0
    else:
        raise ValueError(f"unknown beta_schedule {kind!r}; supported: {', '.join(BETA_SCHEDULES)} or trained_betas")
    if config.get("rescale_betas_zero_snr", False):
        raise ValueError("rescale_betas_zero_snr gives alpha_bar = 0 at the last step: no SDE with a "
                         "Gaussian prior matches it; use a config without it")
    return torch.cumprod(1.0 - betas, dim=0)


def monotone_slopes(y: Tensor, h: float) -> Tensor:
    """Slopes ``(K,)`` at equally spaced knots ``y`` ``(K,)`` (spacing ``h``) of the monotone
    cubic Hermite interpolant (Fritsch & Carlson 1980; Fritsch & Butland's weighted harmonic
    mean of the neighbouring secants, equal to the secant's harmonic mean on a uniform grid).

    For a strictly monotone ``y`` every slope has the secants' sign and the interpolant is
    monotone. The end slopes are the three-point one-sided estimates ``(3 s_0 - s_1)/2``,
    limited to ``[0, 3 s_0]`` in the secant's direction (Fritsch & Carlson's region), so that a
    smooth schedule's rate is followed up to the ends instead of wiggling in the end intervals.
    """
    secant = (y[1:] - y[:-1]) / h
    left, right = secant[:-1], secant[1:]
    inner = 2.0 * left * right / (left + right)
    inner = torch.where(left * right > 0, inner, torch.zeros_like(inner))
    return torch.cat([_end_slope(secant[0], secant[1]), inner, _end_slope(secant[-1], secant[-2])])


def _end_slope(s0: Tensor, s1: Tensor) -> Tensor:
    """One-sided slope ``(3 s0 - s1)/2`` at an end knot, kept in ``[0, 3 s0]`` (sign of ``s0``)."""
    d = 1.5 * s0 - 0.5 * s1
    d = torch.where(d * s0 > 0, d, torch.zeros_like(d))
    d = torch.where(d.abs() > 3 * s0.abs(), 3 * s0, d)
    return d.reshape(1)


class DiscreteVPSDE(VarPreservingSDE):
    """VP SDE whose marginals match a discrete ``alphas_cumprod`` table at ``t_k = (k + 1)/N``.

    See the module docstring for the interpolation. ``T = 1`` (timestep ``N - 1``), ``eps = 1/N``
    (timestep 0); prior ``N(0, I)`` unless ``prior`` says otherwise.

    Args:
        alphas_cumprod: ``(N,)`` strictly decreasing values in ``(0, 1)``.
        prior: ``None`` (``N(0, I)``), a float (the prior std) or ``"matched"`` (std
            ``sqrt(alpha_bar_{N-1} data_std^2 + 1 - alpha_bar_{N-1})``, the std of ``p_T``),
            as for `scoresde.BetaSDE`; ``prior_std``, ``prior_sample`` and ``prior_log_prob``
            follow it.
        data_std: data std used by ``prior="matched"`` and by the construction-time check.

    Raises:
        ValueError: ``alphas_cumprod`` not ``(N,)`` with ``N >= 2``, not strictly decreasing
            or not inside ``(0, 1)``; ``prior`` not ``None``, ``"matched"`` or a positive
            finite std; ``data_std`` not positive with ``prior="matched"``.

    Warns:
        UserWarning: from `scoresde.check_prior` (threshold `TABLE_PRIOR_KL_TOL`) when
            ``prior`` is left at ``None`` and ``p_T`` is far from ``N(0, I)``: the table stops
            short of the prior (e.g. ``num_train_timesteps=10``, ``alpha_bar_{N-1} = 0.904``).

    Example::

        sde = DiscreteVPSDE.from_config({"beta_schedule": "linear", "num_train_timesteps": 1000})
        k = sde.timestep(t)    # continuous timestep N t - 1 for a network trained on k
    """

    def __init__(self, alphas_cumprod: Tensor | Sequence[float], *, prior: float | str | None = None,
                 data_std: float = 1.0) -> None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        if abar.dim() != 1:
            raise ValueError(f"alphas_cumprod must be one-dimensional (N,), got shape {tuple(abar.shape)}")
        n = abar.numel()
        if n < 2:
            raise ValueError(f"alphas_cumprod needs at least 2 entries, got {n}")
        if not bool(((abar > 0) & (abar < 1)).all()):  # NaN fails this too
            raise ValueError("alphas_cumprod must lie strictly inside (0, 1)")
        if not bool((abar[1:] < abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        super().__init__(T=1.0, eps=1.0 / n)
        self.num_timesteps = n
        self.alphas_cumprod = abar
        # Knots t = 0, 1/N, ..., 1 of ln alpha_bar (alpha_bar(0) = 1) and its slopes there.
        self._log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.log(abar)])
        self._slope = monotone_slopes(self._log_abar, 1.0 / n)
        self._prior_std = _as_prior_std(self, prior, data_std, 1.0)
        self.prior_chosen = prior is not None  # the user picked the prior: no p_T check later
        if prior is None:
            self._warn_if_prior_far(data_std)

    def _warn_if_prior_far(self, data_std: float) -> None:
        """`scoresde.check_prior` at `TABLE_PRIOR_KL_TOL`, warning with the table's last entry."""
        res = check_prior(self, data_std, tol=TABLE_PRIOR_KL_TOL, warn=False)
        if not res.ok:
            last = float(self.alphas_cumprod[-1])
            warnings.warn(f"the alphas_cumprod table (N = {self.num_timesteps}) stops at alpha_bar_{{N-1}} = "
                          f"{last:.4g}, short of the prior: {res.message()}", UserWarning, stacklevel=3)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, prior: float | str | None = None,
                    data_std: float = 1.0) -> DiscreteVPSDE:
        """From a diffusers scheduler config (see `alphas_cumprod_from_config`); ``prior`` and
        ``data_std`` as for the constructor."""
        return cls(alphas_cumprod_from_config(config), prior=prior, data_std=data_std)

    @property
    def prior_std(self) -> float:
        """Std of the prior ``N(0, prior_std^2 I)``: 1 by default, else from ``prior``."""
        return self._prior_std

    @property
    def min_score_time(self) -> float:
        """The earliest time a network of this schedule was trained at: ``t_0 = 1/N`` (timestep 0).

        Below it the network would be called at a negative timestep it never saw, so the
        likelihood's data-density ODE ends here (`scoresde.likelihood.data_end_time`) and the
        rest, ``[0, 1/N]``, is the analytic end piece.
        """
        return 1.0 / self.num_timesteps

    # --- timestep <-> time --------------------------------------------------------------
    def timestep(self, t: Tensor) -> Tensor:
        """Continuous timestep ``k(t) = N t - 1`` (integer ``k`` at ``t_k = (k + 1)/N``)."""
        return self.num_timesteps * t - 1.0

    def time(self, k: Tensor | int | float) -> Tensor:
        """Time ``t_k = (k + 1)/N`` of (possibly fractional) timesteps ``k``."""
        k = torch.as_tensor(k, dtype=torch.float64)
        if not bool(((k >= -1) & (k <= self.num_timesteps - 1)).all()):
            raise ValueError(f"timesteps must lie in [-1, {self.num_timesteps - 1}] (t in [0, T = 1]); "
                             f"got values in [{k.min().item():g}, {k.max().item():g}]")
        return (k + 1.0) / self.num_timesteps

    # --- schedule -----------------------------------------------------------------------
    def _interval(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Interval index ``j`` in ``[0, N - 1]`` (long) and position ``u = N t - j`` in it.

        ``t`` should be float32 or wider: ``N - 1`` (e.g. 999) need not be representable in a
        16-bit float. The index is clamped after the conversion to integers.
        """
        u = t * self.num_timesteps
        j = torch.floor(u.detach()).long().clamp(0, self.num_timesteps - 1)
        return j, u - j.to(t.dtype)

    def _hermite(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(ln alpha_bar(t), d ln alpha_bar/dt)`` of the cubic Hermite piece holding ``t``.

        On ``[t_j, t_j + 1/N]`` with ``u`` in ``[0, 1]``, values ``y0, y1`` and slopes
        ``d0, d1`` (per unit ``t``): ``y = y0 + u(y1 - y0) + u(1 - u)[(1 - u) a - u b]`` with
        ``a = d0/N - (y1 - y0)``, ``b = d1/N - (y1 - y0)``. Computed in at least float32
        (bfloat16 / float16 ``t`` is promoted, the results cast back to its dtype;
        differentiable in ``t``).
        """
        work = torch.promote_types(t.dtype, torch.float32)
        if work != t.dtype:
            value, slope = self._hermite(t.to(work))
            return value.to(t.dtype), slope.to(t.dtype)
        y = self._log_abar.to(device=t.device, dtype=t.dtype)
        d = self._slope.to(device=t.device, dtype=t.dtype) / self.num_timesteps
        j, u = self._interval(t)
        y0, y1, d0, d1 = y[j], y[j + 1], d[j], d[j + 1]
        dy = y1 - y0
        a, b = d0 - dy, d1 - dy
        value = y0 + u * dy + u * (1 - u) * ((1 - u) * a - u * b)
        # d/du of the above, times du/dt = N.
        du = dy + (1 - 2 * u) * ((1 - u) * a - u * b) - u * (1 - u) * (a + b)
        return value, du * self.num_timesteps

    def log_alpha(self, t: Tensor) -> Tensor:
        """``ln alpha(t) = ln alpha_bar(t) / 2`` (monotone cubic between the knots)."""
        return 0.5 * self._hermite(t)[0]

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = -d ln alpha_bar / dt``: continuous, non-negative, piecewise quadratic."""
        return (-self._hermite(t)[1]).clamp_min(0.0)

    def config(self) -> dict[str, Any]:
        """``num_timesteps``, ``prior_std`` when a prior was chosen, and the table's log-SNR at 9
        probe times (`scoresde.sde.schedule_probe`), which tells two tables of one length apart."""
        cfg: dict[str, Any] = {"num_timesteps": self.num_timesteps}
        if self.prior_chosen:
            cfg["prior_std"] = self._prior_std
        cfg[SCHEDULE_PROBE_KEY] = schedule_probe(self)
        return cfg
