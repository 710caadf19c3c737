"""Bring your own schedule: closed-form SDEs from a ``beta(t)`` or ``sigma(t)`` callable.

* `BetaSDE` (VP type): ``dx = -beta(t) x/2 dt + sqrt(beta(t)) dW`` with
  ``alpha(t) = exp(-B(t)/2)``, ``B(t) = int_0^t beta``, ``sigma(t)^2 = 1 - alpha(t)^2``
  (Song et al. 2021, eq. 11 with a general ``beta``). ``B`` is the closed form you pass, or
  composite 64-point Gauss-Legendre quadrature of ``beta`` on adaptive panels
  (`scoresde.beta_integral.CompositeIntegral`: float64 round-off for smooth and for
  piecewise-smooth schedules, e.g. a warm-up or a jump of ``beta``; continuous, with
  ``dB/dt = beta``).
* `SigmaSDE` (VE type): ``dx = sqrt(d sigma^2/dt) dW``, ``alpha = 1`` (Song et al. 2021,
  eq. 9 with a general ``sigma``); ``d sigma^2/dt`` is the closed form you pass or autograd
  of ``sigma``.

Both satisfy ``solvers.DiffusionSDE`` (they are `scoresde.AffineSDE` subclasses) and so work
with every solver, loss and likelihood routine. Where ``beta`` jumps, the solvers that read the
coefficients at the points they visit (``ode_euler``, ``ode_heun``, ``ode_rk4``,
``euler_maruyama``) need their grid to resolve the jump: a step that starts on the large side
integrates the small side with the large rate. On the default log-SNR grid a jump from 0.5 to
25 at ``t = 0.37`` put one step of ``0.04`` across it at 100 steps, and ``ode_heun`` returned
modes of std 0.10 / 0.32 / 0.07 for 0.30 / 0.50 / 0.20 (an outside check; ``dpmpp_2m`` and the
other exponential integrators, exact on the linear part, were right there). Use those: more
steps of the explicit ones do not reliably help (``ode_heun`` read 0.29 / 0.49 / 0.20 at 200
steps, 0.24 / 0.45 / 0.16 at 500).

The prior. Samplers start from, and likelihoods evaluate, ``N(0, prior_std^2 I)``; this is
only right when ``p_T`` is close to it. `check_prior` measures how far it is and warns with
the numbers; ``prior="matched"`` (with ``data_std``) or ``prior=<float>`` replaces the
default prior by ``N(0, (alpha(T)^2 data_std^2 + sigma(T)^2) I)`` or ``N(0, prior^2 I)``,
the Gaussian with ``p_T``'s variance, which keeps likelihoods right when ``alpha(T)`` is
not small.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from solvers.inputs import as_real

from .beta_integral import CompositeIntegral, check_derivative, check_integral
from .prior_checks import (
    END_NOISE_RATIO,
    PRIOR_KL_TOL,
    PriorCheck,
    _as_prior_std,
    check_end_noise,
    check_prior,
    isotropic_prior_std,
    matched_prior_std,
)
from .sde import SCHEDULE_PROBE_KEY, AffineSDE, VarPreservingSDE, schedule_probe

__all__ = [
    "BetaSDE", "SigmaSDE", "EDMSDE", "PriorCheck", "check_prior", "isotropic_prior_std", "matched_prior_std", "PRIOR_KL_TOL",
    "check_end_noise", "END_NOISE_RATIO",
]

Schedule = Callable[[Tensor], Tensor]

class BetaSDE(VarPreservingSDE):
    """VP-type SDE from a noise schedule ``beta(t)``: ``dx = -beta x/2 dt + sqrt(beta) dW``.

    ``alpha(t) = exp(-B(t)/2)``, ``sigma(t) = sqrt(1 - exp(-B(t)))``, ``B(t) = int_0^t beta``
    (Song et al. 2021, eq. 11). Example: ``BetaSDE(lambda t: 0.1 + 19.9 * t**3)``.

    Args:
        beta: ``beta(t: (N,)) -> (N,)``, positive, written with torch operations.
        integral: optional closed form ``B(t) = int_0^t beta``; default: composite Gauss-Legendre
            quadrature on adaptive panels (`scoresde.beta_integral.CompositeIntegral`), exact to
            round-off also for a ``beta`` with jumps or kinks.
            A given one is checked against that quadrature on ``[0, T]`` (``B(0) = 0``, finite,
            non-decreasing, within relative `scoresde.beta_integral.INTEGRAL_RTOL`).
        T, eps: time horizon and the smallest sampling time.
        prior: ``None`` (``N(0, I)``), a float (the prior std) or ``"matched"``
            (std ``sqrt(alpha(T)^2 data_std^2 + sigma(T)^2)``).
        data_std: data std used by ``prior="matched"`` and by the construction-time `check_prior`.

    Raises:
        TypeError: ``beta`` / ``integral`` not callable or not returning a tensor.
        ValueError: ``beta`` negative or not finite on ``[0, T]``; ``integral`` not ``int_0^t beta``.

    Warns:
        UserWarning: from `check_prior` when ``prior`` is left at ``None`` and ``p_T`` is far from ``N(0, I)``.
    """

    def __init__(self, beta: Schedule, integral: Schedule | None = None, *, T: float = 1.0,
                 eps: float = 1e-3, prior: float | str | None = None, data_std: float = 1.0) -> None:
        super().__init__(T=T, eps=eps)
        if not callable(beta) or (integral is not None and not callable(integral)):
            raise TypeError("beta (and integral, if given) must be callables t -> tensor")
        self._beta, self._integral = beta, integral
        probe = torch.linspace(0.0, self.T, 257, dtype=torch.float64)
        b = beta(probe)
        if not isinstance(b, Tensor):
            raise TypeError(f"beta(t) must return a tensor of the shape of t (a constant: "
                            f"lambda t: torch.full_like(t, c)), got {type(b).__name__}")
        if b.shape != probe.shape or not bool(torch.isfinite(b).all()) or bool((b < 0).any()):
            raise ValueError("beta(t) must return finite, non-negative values of the shape of t on [0, T]")
        if integral is not None:
            check_integral(beta, integral, self.T, probe)
        self._quadrature = CompositeIntegral(beta, self.T) if integral is None else None
        if not float(self.integrated_beta(probe[-1:])[0]) > 0:
            raise ValueError("int_0^T beta must be positive")
        if not float(self.sigma(torch.tensor([self.eps], dtype=torch.float64))[0]) > 0:
            # every sampler's last step, and the score, divide by sigma(eps)
            raise ValueError(f"int_0^eps beta is 0 (beta = 0 up to eps={self.eps:g}): sigma(eps) = 0, where no "
                             "score exists; pass an eps past the start of the noise (or a beta > 0 near 0)")
        self._prior_std = _as_prior_std(self, prior, data_std, 1.0)
        self._prior_kind = prior
        self.prior_chosen = prior is not None  # the user picked the prior: no p_T check later
        if prior is None:
            check_prior(self, data_std, warn=True, stacklevel=3)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t)``, shape of ``t``."""
        return self._beta(t)

    def integrated_beta(self, t: Tensor) -> Tensor:
        """``B(t) = int_0^t beta(u) du`` (closed form if given, else composite quadrature)."""
        if self._integral is not None:
            return self._integral(t)
        assert self._quadrature is not None
        return self._quadrature(t)

    def log_alpha(self, t: Tensor) -> Tensor:
        return -0.5 * self.integrated_beta(t)

    @property
    def prior_std(self) -> float:
        return self._prior_std

    def config(self) -> dict[str, Any]:
        """``T``, ``eps``, ``prior_std`` and the schedule's log-SNR at 9 probe times
        (`scoresde.sde.schedule_probe`), which tells two ``beta`` callables apart."""
        return {**super().config(), "prior_std": self._prior_std, SCHEDULE_PROBE_KEY: schedule_probe(self)}


class SigmaSDE(AffineSDE):
    """VE-type SDE from a noise level ``sigma(t)``: ``dx = sqrt(d sigma^2/dt) dW``, ``alpha = 1``.

    ``x_t = x_0 + sigma(t) z`` (Song et al. 2021, eq. 9); ``sigma`` should increase with
    ``sigma(0) = 0`` (otherwise ``x_0`` already carries noise of std ``sigma(0)``).

    Args:
        sigma: ``sigma(t: (N,)) -> (N,)``, increasing, written with torch operations.
        dsigma2_dt: optional closed form of ``d sigma^2 / dt``; default: autograd of ``sigma``
            (also under ``torch.no_grad()`` and ``torch.inference_mode()``).
        T, eps: time horizon and the smallest sampling time.
        prior: ``None`` (``N(0, sigma(T)^2 I)``), a float (the prior std) or ``"matched"``.
        data_std: data std used by ``prior="matched"`` and the construction-time `check_prior`.

    Raises:
        TypeError: ``sigma`` / ``dsigma2_dt`` not callable or not returning a tensor; without
            ``dsigma2_dt``, a ``sigma`` autograd cannot differentiate.
        ValueError: ``sigma`` not finite, positive and strictly increasing on ``[eps, T]``;
            ``dsigma2_dt`` not finite and ``>= 0`` there, or not the derivative of ``sigma^2``
            (its quadrature off the growth of ``sigma^2`` by more than relative
            `scoresde.beta_integral.INTEGRAL_RTOL`).
    """

    def __init__(self, sigma: Schedule, dsigma2_dt: Schedule | None = None, *, T: float = 1.0,
                 eps: float = 1e-5, prior: float | str | None = None, data_std: float = 1.0) -> None:
        super().__init__(T=T, eps=eps)
        if not callable(sigma) or (dsigma2_dt is not None and not callable(dsigma2_dt)):
            raise TypeError("sigma (and dsigma2_dt, if given) must be callables t -> tensor")
        self._sigma, self._ds2 = sigma, dsigma2_dt
        probe = torch.linspace(self.eps, self.T, 257, dtype=torch.float64)
        s = sigma(probe)
        if not isinstance(s, Tensor):
            raise TypeError(f"sigma(t) must return a tensor of the shape of t (written with torch operations), "
                            f"got {type(s).__name__}")
        if s.shape != probe.shape or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise ValueError("sigma(t) must return finite, positive values of the shape of t on [eps, T]")
        if not bool((s[1:] > s[:-1]).all()):
            raise ValueError("sigma(t) must be strictly increasing on [eps, T]")
        self._check_dsigma2_dt(probe)
        self._prior_std = _as_prior_std(self, prior, data_std, float(s[-1]))
        self.prior_chosen = prior is not None  # the user picked the prior: no p_T check later
        if prior is None:
            check_prior(self, data_std, warn=True, stacklevel=3)

    def _check_dsigma2_dt(self, probe: Tensor) -> None:
        """``d sigma^2/dt`` on ``probe``: a tensor of its shape, finite and ``>= 0`` (``g = sqrt`` of it)."""
        name = "dsigma2_dt(t)" if self._ds2 is not None else "d sigma^2/dt (autograd of sigma)"
        if self._ds2 is not None:
            d = self._ds2(probe)
        else:
            try:
                d = self.dsigma2_dt(probe)
            except RuntimeError as err:
                raise TypeError(f"sigma must be differentiable by autograd (written with torch operations on t) "
                                f"when dsigma2_dt is not given; autograd failed: {err}. Pass dsigma2_dt=<closed "
                                f"form of d sigma^2/dt> or write sigma with torch operations") from None
        if not isinstance(d, Tensor):
            raise TypeError(f"{name} must return a tensor of the shape of t, got {type(d).__name__}")
        if d.shape != probe.shape or not bool(torch.isfinite(d).all()):
            raise ValueError(f"{name} must return finite values of the shape of t on [eps, T]")
        if bool((d < 0).any()):
            i = int(torch.argmin(d))
            raise ValueError(f"{name} must be >= 0 on [eps, T] (the diffusion is its square root); got "
                             f"{float(d[i]):.6g} at t = {float(probe[i]):.4g}")
        if self._ds2 is not None:  # a closed form must integrate to sigma^2 (autograd does by construction)
            check_derivative(self._ds2, lambda t: self._sigma(t) ** 2, self.eps, self.T,
                             rate_name="dsigma2_dt(t)", value_name="sigma(t)^2")

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def sigma(self, t: Tensor) -> Tensor:
        return self._sigma(t)

    def dsigma2_dt(self, t: Tensor) -> Tensor:
        """``d sigma^2/dt`` (closed form if given, else autograd; differentiable if ``t`` is)."""
        if self._ds2 is not None:
            return self._ds2(t)
        if t.requires_grad:  # keep the graph: d sigma^2/dt is itself differentiated
            with torch.enable_grad():
                (grad,) = torch.autograd.grad((self._sigma(t) ** 2).sum(), t, create_graph=True)
            return grad
        # A leaf copy of t that records a graph, also under torch.inference_mode() (where
        # enable_grad alone records nothing and t itself is an inference tensor).
        with torch.inference_mode(False), torch.enable_grad():
            tt = t.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad((self._sigma(tt) ** 2).sum(), tt)
        return grad

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(d sigma^2/dt)``."""
        return torch.sqrt(self.dsigma2_dt(t))

    @property
    def prior_std(self) -> float:
        return self._prior_std

    def config(self) -> dict[str, Any]:
        """``T``, ``eps``, ``prior_std`` and the schedule's log-SNR ``-ln sigma`` at 9 probe times
        (`scoresde.sde.schedule_probe`), which tells two ``sigma`` callables apart."""
        return {**super().config(), "prior_std": self._prior_std, SCHEDULE_PROBE_KEY: schedule_probe(self)}


class EDMSDE(AffineSDE):
    """The sigma-space SDE of Karras et al. 2022 ("EDM"): ``sigma(t) = t``, ``alpha = 1``.

    ``dx = sqrt(2 t) dW`` on ``[sigma_min, sigma_max]``, so time *is* the noise level and
    ``x_t = x_0 + t z``; prior ``N(0, sigma_max^2 I)``. Defaults are EDM's
    (``sigma_min = 0.002``, ``sigma_max = 80``, ``T = sigma_max``, ``eps = sigma_min``).

    Args:
        sigma_min, sigma_max: the noise range (``eps`` and ``T``).

    Warns:
        UserWarning: ``p_T`` far from ``N(0, sigma_max^2 I)`` for unit data, as `scoresde.VESDE`
            (``sigma_max`` below about 3.2, where the bound passes
            `scoresde.sde_warnings.BUILTIN_PRIOR_KL_WARN`; ``EDMSDE(sigma_max=0.5)``: up to 2 nats per
            dimension). Training and likelihoods check the actual data at 1e-3 nats per dimension,
            which asks for about 22.
    """

    _prior_fix = ("a larger sigma_max: at least sqrt(1 / (2 tolerance)) = 22.4 for data of unit spread, and at "
                  "least the largest distance between data points (scoresde.data.suggest_sigma_max); the default "
                  "is 80")

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0) -> None:
        lo, hi = as_real(sigma_min, "sigma_min"), as_real(sigma_max, "sigma_max")  # named, not as eps / T
        if not 0.0 < lo < hi < math.inf:
            raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        super().__init__(T=sigma_max, eps=sigma_min)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._warn_builtin_prior()

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = t``."""
        return t.clone()

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(d t^2/dt) = sqrt(2 t)``."""
        return torch.sqrt(2.0 * t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def config(self) -> dict[str, float | bool]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


EDMSDE._builtin = True  # the package's own: its construction checks run (AffineSDE._warn_builtin_prior)
