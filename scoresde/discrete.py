"""An SDE from a discrete DDPM schedule ``alphas_cumprod`` (Ho et al. 2020; diffusers' convention).

A discrete schedule of ``N`` steps gives ``alpha_bar_k = prod_{j<=k} (1 - beta_j)`` for
timesteps ``k = 0 .. N-1``. It is placed in continuous time at ``t_k = (k + 1)/N`` (so
``T = 1`` is timestep ``N - 1`` and ``eps = 1/N`` is timestep 0), with ``alpha_bar(0) = 1``,
and ``ln alpha_bar`` is interpolated linearly in ``t`` between the knots. That is exactly a
VP SDE (Song et al. 2021, eq. 11) with the piecewise-constant rate
``beta(t) = -N (ln alpha_bar_k - ln alpha_bar_{k-1}) = -N ln(1 - beta_k)`` on
``(t_{k-1}, t_k]``, whose marginals hit the table exactly at every ``t_k``:
``alpha(t_k)^2 = alpha_bar_k``, ``sigma(t_k)^2 = 1 - alpha_bar_k``. (For small ``beta_k``,
``beta(t) ~ N beta_k``, the continuous limit of DDPM that Song et al. 2021 App. B take.)

`alphas_cumprod_from_config` rebuilds the table from a diffusers scheduler config
(``num_train_timesteps``, ``beta_start``, ``beta_end``, ``beta_schedule``, ``trained_betas``)
without importing diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .sde import VarPreservingSDE

__all__ = ["DiscreteVPSDE", "alphas_cumprod_from_config", "BETA_SCHEDULES"]

BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")


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
        ValueError: unknown ``beta_schedule``, or a config whose last ``alpha_bar`` is 0
            (``rescale_betas_zero_snr``: no Gaussian prior exists then).
    """
    n = int(config.get("num_train_timesteps", 1000))
    b0, b1 = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
    trained = config.get("trained_betas")
    kind = config.get("beta_schedule", "linear")
    if trained is not None:
        betas = torch.as_tensor(list(trained), dtype=torch.float64)
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


class DiscreteVPSDE(VarPreservingSDE):
    """VP SDE whose marginals match a discrete ``alphas_cumprod`` table at ``t_k = (k + 1)/N``.

    See the module docstring for the interpolation. ``T = 1`` (timestep ``N - 1``), ``eps = 1/N``
    (timestep 0); prior ``N(0, I)``.

    Args:
        alphas_cumprod: ``(N,)`` strictly decreasing values in ``(0, 1)``.

    Example::

        sde = DiscreteVPSDE.from_config({"beta_schedule": "linear", "num_train_timesteps": 1000})
        k = sde.timestep(t)    # continuous timestep N t - 1 for a network trained on k
    """

    def __init__(self, alphas_cumprod: Tensor | Sequence[float]) -> None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu().flatten()
        n = abar.numel()
        if n < 2:
            raise ValueError(f"alphas_cumprod needs at least 2 entries, got {n}")
        if not bool(((abar > 0) & (abar < 1)).all()):
            raise ValueError("alphas_cumprod must lie strictly inside (0, 1)")
        if not bool((abar[1:] < abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing")
        super().__init__(T=1.0, eps=1.0 / n)
        self.num_timesteps = n
        self.alphas_cumprod = abar
        # Knots t = 0, 1/N, ..., 1 of ln alpha_bar (alpha_bar(0) = 1).
        self._log_abar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.log(abar)])
        self._rate = -n * (self._log_abar[1:] - self._log_abar[:-1])  # beta on each interval, (N,)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DiscreteVPSDE:
        """From a diffusers scheduler config (see `alphas_cumprod_from_config`)."""
        return cls(alphas_cumprod_from_config(config))

    # --- timestep <-> time --------------------------------------------------------------
    def timestep(self, t: Tensor) -> Tensor:
        """Continuous timestep ``k(t) = N t - 1`` (integer ``k`` at ``t_k = (k + 1)/N``)."""
        return self.num_timesteps * t - 1.0

    def time(self, k: Tensor | int | float) -> Tensor:
        """Time ``t_k = (k + 1)/N`` of (possibly fractional) timesteps ``k``."""
        return (torch.as_tensor(k, dtype=torch.float64) + 1.0) / self.num_timesteps

    # --- schedule -----------------------------------------------------------------------
    def _interval(self, t: Tensor) -> tuple[Tensor, Tensor]:
        u = t * self.num_timesteps
        j = torch.clamp(torch.floor(u.detach()), 0, self.num_timesteps - 1).long()
        return j, u - j.to(t.dtype)

    def log_alpha(self, t: Tensor) -> Tensor:
        """``ln alpha(t) = ln alpha_bar(t) / 2``, linear in ``t`` between knots."""
        tab = self._log_abar.to(device=t.device, dtype=t.dtype)
        j, frac = self._interval(t)
        return 0.5 * (tab[j] + frac * (tab[j + 1] - tab[j]))

    def beta(self, t: Tensor) -> Tensor:
        """Piecewise-constant ``beta(t) = -d ln alpha_bar / dt``."""
        j, _ = self._interval(t)
        return self._rate.to(device=t.device, dtype=t.dtype)[j]

    def config(self) -> dict[str, float | bool]:
        return {"num_timesteps": self.num_timesteps}
