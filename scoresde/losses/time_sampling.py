"""How training draws its times: importance sampling of ``t`` and EDM's log-normal noise levels.

See `scoresde.losses` for the estimator `ImportanceTimeSampler` keeps unbiased.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from solvers.inputs import as_integer, as_real, check_device, check_dtype, check_generator
from solvers.protocol import DiffusionSDE

from .weighting import check_options, check_sigma_data, check_t_min, loss_weight

__all__ = ["ImportanceTimeSampler", "edm_time_sample"]


class ImportanceTimeSampler:
    """Draws ``t ~ q(t) ∝ w(t)/sigma(t)^2`` on ``[t_min, T]`` with the unbiasing weights.

    The CDF is tabulated in float64 at ``n_grid`` points equally spaced in ``u = ln t``
    (cumulative trapezoid of ``h(t) t du``) and inverted piecewise-linearly in ``u``; the
    sampler's exact density is then ``q(t) = p_k / (du * t)`` on bin ``k`` (mass ``p_k``).

    Args:
        sde: the forward SDE; ``weighting``: one of `WEIGHTINGS`.
        t_min: lower end (default ``sde.eps``); ``n_grid``: table size.

    Raises:
        ValueError: an unknown ``weighting``, ``t_min`` outside ``(0, T)``, ``n_grid < 2``,
            ``sigma_data`` not finite and > 0.
        TypeError: ``sde`` is not an SDE; `NotAnIntegerError`: ``n_grid`` not an integer.
    """

    def __init__(
        self, sde: DiffusionSDE, weighting: str = "likelihood", *, t_min: float | None = None,
        n_grid: int = 4097, sigma_data: float = 1.0,
    ) -> None:
        check_options(weighting, "mean")
        n_grid = as_integer(n_grid, "n_grid", minimum=2)
        self.sde, self.weighting, self.sigma_data = sde, weighting, check_sigma_data(sigma_data)
        self.t_min, self.T = check_t_min(sde, t_min), float(sde.T)
        u = torch.linspace(math.log(self.t_min), math.log(self.T), n_grid, dtype=torch.float64)
        t = torch.exp(u)
        h = loss_weight(sde, t, weighting, sigma_data=self.sigma_data)
        if not bool(torch.isfinite(h).all()) or bool((h <= 0).any()):
            raise ValueError(f"w(t)/sigma(t)^2 is not finite and positive on [{self.t_min:g}, {self.T:g}]")
        f = h * t  # integrand in u = ln t
        du = float(u[1] - u[0])
        mass = 0.5 * (f[1:] + f[:-1]) * du
        self.normalizer = float(mass.sum())  # ≈ ∫ h(t) dt over [t_min, T]
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(mass, 0)]) / self.normalizer
        cdf[-1] = 1.0
        self._u, self._cdf, self._p, self._du = u, cdf, mass / self.normalizer, du
        self._tables: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """The tables ``(u, cdf, p)`` on ``device`` (copied once per device)."""
        if device not in self._tables:
            self._tables[device] = (self._u.to(device), self._cdf.to(device), self._p.to(device))
        return self._tables[device]

    def density(self, t: Tensor) -> Tensor:
        """Exact density ``q(t)`` of `sample` (float64), ``t: (B,) -> (B,)``.

        Raises:
            TypeError: ``t`` is not a tensor.
        """
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be a torch.Tensor of times (B,), got {type(t).__name__}")
        u, _, p = self._on(t.device)
        tt = t.detach().to(torch.float64)
        k = torch.clamp(torch.searchsorted(u, torch.log(tt), right=True) - 1, 0, len(p) - 1)
        return p[k] / (self._du * tt)

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Return ``(t, weight)``, each ``(n,)``: ``E_q[weight * f(t)] = E_U[h(t) f(t)]``.

        Raises:
            NotAnIntegerError: ``n`` is not an integer. ValueError: ``n < 0``, a non-floating
                ``dtype``, an unknown / unavailable ``device``.
            TypeError: ``generator`` is not a ``torch.Generator``.
        """
        n = as_integer(n, "n", minimum=0)
        check_generator(generator)
        dev = check_device(device) if device is not None else (
            generator.device if generator is not None else torch.device("cpu"))
        dtype = check_dtype(dtype)
        u, cdf, p = self._on(dev)
        r = torch.rand(n, generator=generator, dtype=torch.float64, device=dev)
        # Invert the piecewise-linear CDF: find the bin, then interpolate u within it.
        k = torch.clamp(torch.searchsorted(cdf, r, right=True) - 1, 0, len(p) - 1)
        frac = (r - cdf[k]) / p[k].clamp_min(1e-300)
        t64 = torch.exp(u[k] + frac.clamp(0.0, 1.0) * self._du).clamp(self.t_min, self.T)
        q = p[k] / (self._du * t64)
        h = loss_weight(self.sde, t64, self.weighting, sigma_data=self.sigma_data)
        weight = h / ((self.T - self.t_min) * q)
        return t64.to(dtype), weight.to(dtype)


def edm_time_sample(
    sde: DiffusionSDE, n: int, *, p_mean: float = -1.2, p_std: float = 1.2,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Times ``t: (n,)`` with ``ln sigma_edm(t) ~ N(p_mean, p_std^2)`` (Karras et al. 2022, Table 1).

    ``sigma_edm = sigma/alpha`` is inverted by bisection (``solvers.grids.time_from_edm_sigma``);
    levels outside ``[sigma_edm(eps), sigma_edm(T)]`` are clipped to the ends. Pass the result
    as ``t=`` to `dsm_per_sample` (with ``weighting="edm"``) for EDM's training objective.

    Raises:
        NotAnIntegerError: ``n`` is not an integer. ValueError: ``n < 0``, ``p_mean`` not
            finite, ``p_std`` not finite and >= 0, a non-floating ``dtype``.
        TypeError: ``generator`` is not a ``torch.Generator``.
    """
    from solvers.grids import time_from_edm_sigma

    n = as_integer(n, "n", minimum=0)
    if not math.isfinite(as_real(p_mean, "p_mean")):
        raise ValueError(f"p_mean must be finite, got {p_mean!r}")
    if not (math.isfinite(as_real(p_std, "p_std")) and p_std >= 0):
        raise ValueError(f"p_std must be finite and >= 0, got {p_std!r}")
    check_generator(generator)
    dtype = check_dtype(dtype)
    z = torch.randn(n, generator=generator, dtype=torch.float64)
    return time_from_edm_sigma(sde, torch.exp(p_mean + p_std * z)).to(dtype)
