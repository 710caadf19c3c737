"""`AffineSDE`: the base class of the forward SDEs with closed-form affine marginals.

``dx = f(x, t) dt + g(t) dW`` with ``f(x, t) = (d ln alpha / dt) x`` and marginals
``x_t = alpha(t) x_0 + sigma(t) z`` (Song et al. 2021, eqs. 29-31): a subclass gives
``log_alpha``, its derivative, ``sigma`` and ``g``; the base class derives the drift, the
transition kernels, marginal sampling, the prior and its log-density, and the config that
rebuilds it. The schedules themselves (VP, sub-VP, VE, cosine VP) are in `scoresde.sde`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from solvers.dynamics import forward_transition
from solvers.inputs import as_real
from solvers.utils import append_dims

from .sde_config import SCHEDULE_PROBE_KEY
from .sde_warnings import warn_builtin

__all__ = ["AffineSDE"]


def _finite(name: str, value: float) -> float:
    """``float(value)``; raises ``ValueError`` naming ``name`` when it is NaN or infinite, and
    ``TypeError`` when it is not a real number (a string such as ``"1"`` included)."""
    v = as_real(value, name)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return v


class AffineSDE(ABC):
    """Base class: a forward SDE with affine marginals, satisfying ``solvers.DiffusionSDE``.

    Subclasses implement `log_alpha`, `dlog_alpha_dt`, `sigma`,
    `diffusion` and `prior_std`; everything else is derived here.
    """

    def __init__(self, *, T: float, eps: float) -> None:
        T, eps = _finite("T", T), _finite("eps", eps)
        if not (0.0 < eps < T):
            raise ValueError(f"need 0 < eps < T, got eps={eps}, T={T}")
        self.T = float(T)
        self.eps = float(eps)

    # --- schedule (subclasses) -------------------------------------------------------
    @abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor:
        """``ln alpha(t)``, shape of ``t``."""

    @abstractmethod
    def dlog_alpha_dt(self, t: Tensor) -> Tensor:
        """``d ln alpha / dt``, shape of ``t`` (the linear drift coefficient)."""

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor:
        """Marginal noise scale ``sigma(t)``, shape of ``t``."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t)``, shape of ``t``."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Standard deviation of the isotropic Gaussian prior ``N(0, prior_std^2 I)``."""

    # --- derived -------------------------------------------------------------------
    def alpha(self, t: Tensor) -> Tensor:
        """Marginal mean scale ``alpha(t) = exp(ln alpha(t))``."""
        return torch.exp(self.log_alpha(t))

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha(t), sigma(t))`` with ``x_t = alpha x_0 + sigma z``, for ``t`` in ``[0, T]``.

        Raises:
            ValueError: a CPU ``t`` outside ``[0, T]`` beyond round-off (1e-5 T), or NaN; the
                schedule is not defined there. Accelerator tensors are not checked (a host sync
                per call).
        """
        if t.device.type == "cpu" and t.numel():
            tol = 1e-5 * self.T
            if bool(torch.isnan(t).any()):
                raise ValueError(f"t contains NaN; it must lie in [0, T={self.T:g}]")
            if bool(((t < -tol) | (t > self.T + tol)).any()):
                raise ValueError(f"t must lie in [0, T={self.T:g}]; got values in "
                                 f"[{float(t.min()):.6g}, {float(t.max()):.6g}]")
        return self.alpha(t), self.sigma(t)

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t) = (d ln alpha/dt) x`` for ``x: (B, *D)``, ``t: (B,)``."""
        return append_dims(self.dlog_alpha_dt(t), x.ndim) * x

    def log_snr(self, t: Tensor) -> Tensor:
        """Half log signal-to-noise ratio ``lambda(t) = ln(alpha/sigma)`` (DPM-Solver's time)."""
        return self.log_alpha(t) - torch.log(self.sigma(t))

    def edm_sigma(self, t: Tensor) -> Tensor:
        """EDM noise level ``sigma(t)/alpha(t)``, so that ``x/alpha = x_0 + sigma_edm z``."""
        return self.sigma(t) / self.alpha(t)

    def transition(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Exact forward transition ``x_t = a x_s + b z`` from time ``s`` to ``t >= s``.

        ``a = alpha(t)/alpha(s)``, ``b^2 = sigma(t)^2 - a^2 sigma(s)^2`` (`solvers.forward_transition`).

        Raises:
            ValueError: some ``s > t`` (beyond round-off, 1e-7 T): the forward transition runs
                forward in time; ``b^2`` would be negative there.
        """
        s, t = torch.as_tensor(s), torch.as_tensor(t)
        if s.numel() and t.numel() and bool((s.detach() > t.detach() + 1e-7 * self.T).any()):
            raise ValueError(f"transition(s, t) needs s <= t (from time s forward to t); got s up to "
                             f"{float((s.detach() - t.detach()).max()):.6g} above t")
        return forward_transition(self, s, t)

    def marginal_sample(
        self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw ``x_t = alpha(t) x0 + sigma(t) z``; returns ``(x_t, z)`` with ``x0: (B, *D)``."""
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        a, s = self.marginal_coeffs(t)
        return append_dims(a, x0.ndim) * x0 + append_dims(s, x0.ndim) * z, z

    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``x_T ~ N(0, prior_std^2 I)`` of ``shape = (B, *D)``."""
        z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
        return self.prior_std * z

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """``log N(z; 0, prior_std^2 I)`` summed over non-batch dims; ``(B, *D) -> (B,)`` (``B = 0`` too)."""
        d = math.prod(z.shape[1:])
        sq = z.reshape(z.shape[0], d).pow(2).sum(dim=1)
        var = self.prior_std**2
        return -0.5 * sq / var - 0.5 * d * math.log(2 * math.pi * var)

    def check_time(self, t: Tensor | float, *, lo: float | None = None) -> None:
        """Raise ``ValueError`` unless every ``t`` lies in ``[lo, T]`` (``lo`` defaults to eps)."""
        lo = self.eps if lo is None else lo
        tt = torch.as_tensor(t, dtype=torch.float64)
        tol = 1e-7 * max(1.0, self.T)
        if not torch.isfinite(tt).all():
            raise ValueError("t contains non-finite values")
        tmin, tmax = float(tt.min()), float(tt.max())
        if tmin < lo - tol or tmax > self.T + tol:
            raise ValueError(
                f"t must lie in [{lo:g}, T={self.T:g}] for {type(self).__name__}; "
                f"got values in [{tmin:g}, {tmax:g}]"
            )

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != SCHEDULE_PROBE_KEY)
        return f"{type(self).__name__}({fields})"

    # The fix a built-in's prior warning suggests (its parameters that reach the prior).
    _prior_fix: str = "use the default parameters"

    _builtin: bool = False
    """Set on the package's own classes (`SDES`, `scoresde.EDMSDE`) to run their construction checks."""

    def _warn_builtin_prior(self) -> None:
        """The construction checks of the package's own classes (`scoresde.sde_warnings`);
        subclasses defined elsewhere are not checked (their attributes may not exist yet)."""
        if type(self).__dict__.get("_builtin", False):
            warn_builtin(self, self._prior_fix)

    def config(self) -> dict[str, float | bool]:
        """Constructor arguments, JSON-serialisable (for checkpoints and configs)."""
        return {"T": self.T, "eps": self.eps}
