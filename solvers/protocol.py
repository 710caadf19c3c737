"""What a solver needs of a diffusion: small protocols, each asked for only where it is used.

Conventions (Song et al. 2021, "Score-Based Generative Modeling through SDEs"):

* forward SDE ``dx = f(x, t) dt + g(t) dW`` on ``t in [0, T]``;
* affine marginals ``x_t = alpha(t) x_0 + sigma(t) z``, ``z ~ N(0, I)``;
* samplers integrate from ``T`` down to ``eps`` (never to exactly 0).

Layers of the protocol:

* `ReverseSDEParts`: ``T``, ``eps``, ``drift``, ``diffusion``. Enough for Euler-Maruyama,
  the fixed-step and adaptive ODE solvers, torchsde and the adaptive SDE solver.
* `HasMarginals`: ``marginal_coeffs(t) -> (alpha, sigma)``. Needed by solvers whose
  ``needs_marginals`` is true (exponential integrators, exact transitions, Langevin weights)
  and by the Tweedie denoiser.
* `HasPrior`: ``prior_sample``. Needed only when `solvers.sample` draws ``x_T`` itself.
* `MarginalSDE`: `ReverseSDEParts` and `HasMarginals` together.
* `DiffusionSDE`: all of the above plus ``prior_log_prob`` (``scoresde.VPSDE`` and friends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["ScoreFn", "ReverseSDEParts", "HasMarginals", "HasPrior", "MarginalSDE", "DiffusionSDE"]

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score(x: (B, *D), t: (B,)) -> (B, *D)``, an estimate of ``grad_x log p_t(x)``."""


@runtime_checkable
class ReverseSDEParts(Protocol):
    """The minimum every solver needs: a time range and the forward drift and diffusion.

    Attributes:
        T: end of the forward process; the prior approximates ``p_T``.
        eps: smallest time samplers integrate to.
    """

    T: float
    eps: float

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """``f(x, t)`` for ``x: (B, *D)``, ``t: (B,)``; returns the shape of ``x``."""
        ...

    def diffusion(self, t: Tensor) -> Tensor:
        """``g(t)`` for ``t: (B,)``; returns ``(B,)``."""
        ...


@runtime_checkable
class HasMarginals(Protocol):
    """Affine marginals ``x_t = alpha(t) x_0 + sigma(t) z``."""

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha(t), sigma(t))``, each ``(B,)``, for ``t: (B,)``."""
        ...


@runtime_checkable
class HasPrior(Protocol):
    """A prior to draw ``x_T`` from."""

    def prior_sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``x_T`` of ``shape = (B, *D)`` from the prior."""
        ...


@runtime_checkable
class MarginalSDE(ReverseSDEParts, HasMarginals, Protocol):
    """A time range, drift, diffusion and affine marginals (exponential integrators, log-SNR grids)."""


@runtime_checkable
class DiffusionSDE(ReverseSDEParts, HasMarginals, HasPrior, Protocol):
    """A forward SDE with affine (Gaussian-conditional) marginals and a prior."""

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """Log-density of the prior at ``z: (B, *D)``, summed over ``D``; returns ``(B,)``."""
        ...
