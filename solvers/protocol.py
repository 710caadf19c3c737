"""What a solver needs of a diffusion: the :class:`DiffusionSDE` protocol and :data:`ScoreFn`.

Solvers depend on this module only. Any object with these attributes works with every
solver that the object's capabilities allow; ``scoresde.VPSDE`` and friends satisfy it.

Conventions (Song et al. 2021, "Score-Based Generative Modeling through SDEs"):

* forward SDE  ``dx = f(x, t) dt + g(t) dW`` on ``t in [0, T]``;
* affine marginals ``x_t = alpha(t) x_0 + sigma(t) z``, ``z ~ N(0, I)``;
* samplers integrate from ``T`` down to ``eps`` (never to exactly 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]
"""``score(x: (B, *D), t: (B,)) -> (B, *D)``, an estimate of ``grad_x log p_t(x)``."""


@runtime_checkable
class DiffusionSDE(Protocol):
    """A forward SDE with affine (Gaussian-conditional) marginals.

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

    def marginal_coeffs(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha(t), sigma(t))``, each ``(B,)``, with ``x_t = alpha x_0 + sigma z``."""
        ...

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

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """Log-density of the prior at ``z: (B, *D)``, summed over ``D``; returns ``(B,)``."""
        ...
