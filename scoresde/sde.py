"""Forward SDEs with closed-form affine marginals: VP, sub-VP, VE and cosine VP.

Every class implements ``dx = f(x, t) dt + g(t) dW`` with ``f(x, t) = (d ln alpha / dt) x``
and marginals ``x_t = alpha(t) x_0 + sigma(t) z`` (Song et al. 2021, eqs. 9-11, 29-31;
Nichol & Dhariwal 2021 for the cosine schedule). Each schedule formula lives here once;
solvers, losses and plots ask the SDE. All methods take ``t: (B,)`` (or 0-d) tensors and
work for any data shape ``x: (B, *D)``, dtype and device.

The general identity ``g(t)^2 = d sigma^2/dt - 2 (d ln alpha/dt) sigma^2`` holds for every
class (``sigma(0) = 0``), which is what makes the discrete transition
`solvers.dynamics.forward_transition` exact for all of them.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor

from solvers.inputs import check_flag

from .affine_sde import AffineSDE, _finite
from .sde_config import (
    CONFIG_RTOL,
    SCHEDULE_PROBE_KEY,
    SCHEDULE_PROBES,
    configs_match,
    schedule_probe,
)
from .sde_warnings import (
    BUILTIN_PRIOR_KL_WARN,
    FORGOTTEN_EDM_SIGMA,
    OVERSHOOT_EDM_SIGMA,
)

__all__ = ["AffineSDE", "VarPreservingSDE", "VPSDE", "SubVPSDE", "VESDE", "CosineVPSDE", "get_sde", "SDES",
           "SCHEDULE_PROBE_KEY", "SCHEDULE_PROBES", "CONFIG_RTOL", "schedule_probe", "configs_match",
           "BUILTIN_PRIOR_KL_WARN", "FORGOTTEN_EDM_SIGMA", "OVERSHOOT_EDM_SIGMA"]


class _LinearBetaSDE(AffineSDE):
    """Shared linear schedule ``beta(t) = beta_min + t (beta_max - beta_min)``.

    ``T`` is where the schedule stops, not a rescaling: ``beta`` keeps its formula in ``t``, so
    ``beta(T) = beta_min + T (beta_max - beta_min)``, which is ``beta_max`` only for ``T = 1``.

    Warns:
        UserWarning: ``p_T`` far from ``N(0, I)`` (`scoresde.check_prior` for unit data), e.g.
            ``T = 0.1`` or a small ``beta_max``; the defaults are quiet.
    """

    _prior_fix = ("a larger T or beta_max, so that alpha(T) is small (the defaults beta_max = 20, T = 1 give "
                  "alpha(T) = 0.0066)")

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, *, T: float = 1.0, eps: float = 1e-3
    ) -> None:
        super().__init__(T=T, eps=eps)
        _finite("beta_min", beta_min)
        _finite("beta_max", beta_max)
        if not (0.0 <= beta_min <= beta_max) or beta_max <= 0:
            raise ValueError(f"need 0 <= beta_min <= beta_max, beta_max > 0; got {beta_min}, {beta_max}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self._warn_builtin_prior()

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integrated_beta(self, t: Tensor) -> Tensor:
        """``B(t) = int_0^t beta = beta_min t + t^2 (beta_max - beta_min) / 2``."""
        return self.beta_min * t + 0.5 * t * t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        """``ln alpha(t) = -B(t) / 2``."""
        return -0.5 * self.integrated_beta(t)

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        """``d ln alpha/dt = -beta(t) / 2``."""
        return -0.5 * self.beta(t)

    @property
    def prior_std(self) -> float:
        return 1.0

    def config(self) -> dict[str, float | bool]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, **super().config()}


class VPSDE(_LinearBetaSDE):
    """Variance-preserving SDE (continuous DDPM): ``dx = -beta x/2 dt + sqrt(beta) dW``.

    ``alpha = exp(-B/2)``, ``sigma = sqrt(1 - exp(-B))``; prior ``N(0, I)``.
    Defaults ``beta_min=0.1, beta_max=20, T=1, eps=1e-3`` as in Song et al. 2021.
    """

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = sqrt(1 - exp(-B(t)))`` (``expm1`` keeps small t accurate)."""
        return torch.sqrt(-torch.expm1(-self.integrated_beta(t)))

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t))``."""
        return torch.sqrt(self.beta(t))


class SubVPSDE(_LinearBetaSDE):
    """Sub-VP SDE: ``dx = -beta x/2 dt + sqrt(beta (1 - exp(-2B))) dW`` (Song et al. 2021, eq. 12).

    ``alpha = exp(-B/2)``, ``sigma = 1 - exp(-B)`` (below the VP sigma at every t).
    """

    def sigma(self, t: Tensor) -> Tensor:
        """``sigma(t) = 1 - exp(-B(t))``."""
        return -torch.expm1(-self.integrated_beta(t))

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sqrt(beta(t) (1 - exp(-2 B(t))))``."""
        return torch.sqrt(self.beta(t) * -torch.expm1(-2.0 * self.integrated_beta(t)))


class VESDE(AffineSDE):
    """Variance-exploding SDE (SMLD/NCSN): ``dx = sigma_v(t) sqrt(2 ln(sigma_max/sigma_min) / T) dW``.

    ``sigma_v(t) = sigma_min (sigma_max/sigma_min)^(t/T)``, ``alpha = 1``; prior ``N(0, sigma_max^2 I)``.
    ``T`` rescales time: ``sigma_v(T) = sigma_max`` for every ``T`` (``T = 1``: Song et al. 2021).

    Convention: with ``exact_sigma=True`` (default) the marginal noise is the exact
    ``sigma(t) = sqrt(sigma_v(t)^2 - sigma_min^2)`` implied by the SDE started at ``x_0``
    (``sigma(0) = 0``). The reference code of Song et al. uses ``sigma(t) = sigma_v(t)``
    (``exact_sigma=False``): the two differ by at most ``sigma_min`` in quadrature.

    Warns:
        UserWarning: ``p_T`` far from ``N(0, sigma_max^2 I)`` for unit data (`scoresde.check_prior`):
            ``sigma_max`` below about 3.2, where the bound ``KL <= 1/(2 sigma_max^2)`` per dimension
            passes `scoresde.sde_warnings.BUILTIN_PRIOR_KL_WARN` (0.05); the defaults are quiet. Training
            and likelihoods check the actual data at 1e-3 nats per dimension, which asks for about 22.
    """

    _prior_fix = ("a larger sigma_max: at least sqrt(1 / (2 tolerance)) = 22.4 for data of unit spread (the "
                  "bound is about 1/(2 sigma_max^2)), and at least the largest distance between data points "
                  "(Song & Ermon 2020; scoresde.data.suggest_sigma_max); the default is 50")

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        *,
        T: float = 1.0,
        eps: float = 1e-5,
        exact_sigma: bool = True,
    ) -> None:
        super().__init__(T=T, eps=eps)
        _finite("sigma_min", sigma_min)
        _finite("sigma_max", sigma_max)
        if not (0.0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.exact_sigma = check_flag(exact_sigma, "exact_sigma")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)
        self._warn_builtin_prior()

    def sigma_v(self, t: Tensor) -> Tensor:
        """Geometric noise level ``sigma_min (sigma_max/sigma_min)^(t/T)``."""
        return self.sigma_min * torch.exp(self._log_ratio * t / self.T)

    def log_alpha(self, t: Tensor) -> Tensor:
        return 0.0 * t  # alpha = 1; written as 0*t so autograd through t still works

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return 0.0 * t

    def sigma(self, t: Tensor) -> Tensor:
        """``sqrt(sigma_v^2 - sigma_min^2)`` (exact) or ``sigma_v`` (reference convention)."""
        if not self.exact_sigma:
            return self.sigma_v(t)
        # sigma_min * sqrt(exp(2 L t / T) - 1), with expm1 for accuracy near t = 0.
        return self.sigma_min * torch.sqrt(torch.expm1(2.0 * self._log_ratio * t / self.T))

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t) = sigma_v(t) sqrt(2 ln(sigma_max/sigma_min) / T)`` so that ``g^2 = d sigma_v^2/dt``."""
        return self.sigma_v(t) * math.sqrt(2.0 * self._log_ratio / self.T)

    @property
    def prior_std(self) -> float:
        return self.sigma_max

    def config(self) -> dict[str, float | bool]:
        return {
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "exact_sigma": self.exact_sigma,
            **super().config(),
        }


class VarPreservingSDE(AffineSDE):
    """A variance-preserving SDE given by its ``beta(t)`` and ``ln alpha(t) = -1/2 int_0^t beta``.

    ``f = -beta x / 2``, ``g = sqrt(beta)``, ``sigma = sqrt(1 - alpha^2)`` (``expm1`` keeps
    small ``t`` accurate) and the prior ``N(0, I)`` (Song et al. 2021, eq. 11; Ho et al. 2020).
    Subclasses implement `beta` and `log_alpha` (and may override ``prior_std``).
    """

    @abstractmethod
    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = -d ln alpha^2 / dt >= 0``, shape of ``t``."""

    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def diffusion(self, t: Tensor) -> Tensor:
        return torch.sqrt(self.beta(t))

    @property
    def prior_std(self) -> float:
        return 1.0


class CosineVPSDE(VarPreservingSDE):
    """VP SDE with the cosine schedule of Nichol & Dhariwal (2021).

    ``alpha_bar(t) = cos^2(pi/2 (t+s)/(1+s)) / cos^2(pi/2 s/(1+s))``, ``alpha = sqrt(alpha_bar)``,
    ``sigma = sqrt(1 - alpha^2)``, ``beta(t) = -d ln alpha_bar/dt = pi/(1+s) tan(pi/2 (t+s)/(1+s))``,
    ``g = sqrt(beta)``. ``beta`` diverges at ``t = 1``, so ``T`` defaults to 0.9946 (where
    ``alpha(T) ~ 0.008``, as in DPM-Solver) instead of clipping beta, which would break the
    closed-form marginals.

    Warns:
        UserWarning: ``p_T`` far from ``N(0, I)`` for unit data (`scoresde.check_prior`), e.g.
            ``T = 0.5``; the default is quiet.
    """

    _prior_fix = "T closer to 1 (the default T = 0.9946 gives alpha(T) = 0.0084)"

    def __init__(self, s: float = 0.008, *, T: float = 0.9946, eps: float = 1e-3) -> None:
        super().__init__(T=T, eps=eps)
        _finite("s", s)
        if not (s > 0 and T < 1.0):
            raise ValueError(f"need s > 0 and T < 1 for the cosine schedule, got s={s}, T={T}")
        self.s = float(s)
        self._tan0 = math.tan(0.5 * math.pi * self.s / (1.0 + self.s))
        self._warn_builtin_prior()

    def _angle(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * (t + self.s) / (1.0 + self.s)

    def log_alpha(self, t: Tensor) -> Tensor:
        """``ln alpha = ln(cos(a0 + d) / cos a0) = log1p(-2 sin^2(d/2) - tan(a0) sin d)``.

        ``a0 = pi/2 s/(1+s)``, ``d = pi/2 t/(1+s)``. The difference of two logs near ``t = 0``
        cancelled to a relative error of about 1e-3 in ``sigma`` at ``t = 1e-3`` in float32;
        ``log1p`` of the small argument keeps it at round-off. Clamped to ``<= 0`` so that
        ``sigma = sqrt(1 - alpha^2)`` can never be NaN.
        """
        d = (0.5 * math.pi / (1.0 + self.s)) * t
        arg = -2.0 * torch.sin(0.5 * d) ** 2 - self._tan0 * torch.sin(d)
        return torch.clamp(torch.log1p(arg), max=0.0)

    def beta(self, t: Tensor) -> Tensor:
        """``beta(t) = -d ln alpha_bar / dt = pi/(1+s) tan(pi/2 (t+s)/(1+s))``."""
        return math.pi / (1.0 + self.s) * torch.tan(self._angle(t))

    def config(self) -> dict[str, float | bool]:
        return {"s": self.s, **super().config()}


SDES: dict[str, type[AffineSDE]] = {
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "ve": VESDE,
    "cosine": CosineVPSDE,
}
for _cls in SDES.values():
    _cls._builtin = True  # in the class's own __dict__: a user's subclass is not checked


def get_sde(name: str, **kwargs: float | bool) -> AffineSDE:
    """Build an SDE by name (``vp``, ``subvp``, ``ve``, ``cosine``) with constructor kwargs."""
    try:
        cls = SDES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown SDE {name!r}; valid names: {', '.join(sorted(SDES))}") from None
    return cls(**kwargs)  # type: ignore[arg-type]
