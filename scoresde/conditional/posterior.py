"""Posterior-guidance scores for ``y = A x + n``: ΠGDM (Song et al. 2023) and DPS (Chung et al. 2022).

Both approximate the conditional score ``grad log p_t(x | y) = s(x, t) + grad log p_t(y | x)``
by replacing the intractable ``p_t(y | x_t)`` with a Gaussian around the Tweedie denoiser
``x0(x_t) = (x_t + sigma^2 s(x_t, t)) / alpha``::

    pigdm: p_t(y | x_t) ≈ N(y; A x0, r_t^2 A A^T + s_y^2 I),  r_t^2 = d^2 v / (d^2 + v),  v = sigma^2 / alpha^2
    dps:   p_t(y | x_t) ≈ N(y; A x0, s_y^2 I)

and differentiate through ``x0`` (vector-Jacobian product, one backward pass per call):
``grad = (d x0 / d x)^T A^T C^{-1} (y - A x0)``. ``d`` is the data standard deviation of
ΠGDM's Gaussian prior (1 by default). Both are biased for non-Gaussian priors (measured in
docs/conditional.md); ΠGDM is exact for a Gaussian prior with variance ``d^2 I``. DPS here is
the Gaussian-likelihood form of Chung et al. 2022 (their eq. 16), not their normalised step
size, so it is a score usable by every solver.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.score_sde import check_score_sde
from solvers.utils import append_dims

from .checks import (
    NOISELESS_RANK_WHY,
    as_tensor,
    check_data_shape,
    check_data_std,
    check_finite_observed,
    check_full_row_rank,
    check_noise_std,
    check_scale,
)
from .operators import MaskOperator, MatrixOperator, as_operator

__all__ = ["PosteriorGuidance"]


class PosteriorGuidance:
    """Score wrapper ``(x, t) -> s(x, t) + scale * grad_x log p~_t(y | x)``.

    Args:
        score: unconditional score ``(x: (B, *D), t: (B,)) -> (B, *D)``, differentiable in ``x``.
        sde: the forward SDE.
        A: a boolean mask of the data shape (inpainting), a `MaskOperator`/`MatrixOperator`,
            or a matrix ``(M, prod(D))``.
        y: ``(M,)`` measurement (for a mask: the masked values, or a full ``*D`` array whose
            masked entries are used).
        data_shape: ``*D``.
        noise_std: measurement noise ``s_y >= 0`` (DPS needs ``> 0``).
        method: ``"pigdm"`` or ``"dps"``.
        scale: guidance scale (1 = the approximation as derived).
        data_std: ``d`` of ΠGDM's prior.

    Raises:
        ValueError: an unknown ``method``; ``A`` / ``y`` of the wrong shape or with NaN / inf;
            a matrix ``A`` without full row rank when ``noise_std = 0``;
            ``noise_std`` or ``scale`` negative or not finite (``dps`` with ``noise_std = 0``);
            ``data_std`` not finite and > 0; a bad ``data_shape``.
        TypeError: ``A`` or ``y`` not numeric arrays, ``data_shape`` not a tuple of ints.
    """

    def __init__(
        self,
        score: ScoreFn,
        sde: DiffusionSDE,
        A: Any,
        y: Any,
        data_shape: tuple[int, ...],
        *,
        noise_std: float = 0.0,
        method: str = "pigdm",
        scale: float = 1.0,
        data_std: float = 1.0,
    ) -> None:
        if method not in ("pigdm", "dps"):
            raise ValueError(f"unknown method {method!r}; use 'pigdm' or 'dps'")
        self.op: MaskOperator | MatrixOperator = as_operator(A, check_data_shape(data_shape))
        yy = as_tensor(y, "y", torch.float64)
        if isinstance(self.op, MaskOperator) and tuple(yy.shape) == self.op.data_shape:
            yy = yy[self.op.mask]
        if tuple(yy.shape) != (self.op.m,):
            raise ValueError(f"y must have shape ({self.op.m},) for this operator, got {tuple(yy.shape)}")
        check_finite_observed(yy, "measurement y")
        self.noise_std = check_noise_std(noise_std)
        if method == "dps" and self.noise_std == 0:
            raise ValueError("method 'dps' needs noise_std > 0 (its likelihood is N(y; A x0, noise_std^2 I))")
        if isinstance(self.op, MatrixOperator) and self.noise_std == 0:
            check_full_row_rank(self.op.A, NOISELESS_RANK_WHY, "drop redundant rows or give noise_std > 0")
        check_score_sde(score, sde)  # the guidance uses sde's alpha, sigma with the score's t
        self.score, self.sde, self.y, self.method = score, sde, yy, method
        self.scale = check_scale(scale)
        self.data_std = check_data_std(data_std)

    @property
    def min_score_time(self) -> float | None:
        """The wrapped score's ``min_score_time`` (a trained network's earliest training time)."""
        return getattr(self.score, "min_score_time", None)

    def _covariance(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """``C = r_t^2 A A^T + s_y^2 I`` per sample: ``(B, M, M)``."""
        eye = torch.eye(self.op.m, dtype=x.dtype, device=x.device)
        noise = self.noise_std**2 * eye
        if self.method == "dps":
            return noise.expand(x.shape[0], -1, -1)
        v = (sigma / alpha) ** 2
        r2 = self.data_std**2 * v / (self.data_std**2 + v)
        return r2[:, None, None] * self.op.gram(x)[None] + noise[None]

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = self.sde.marginal_coeffs(t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = self.score(xg, t)
            x0 = (xg + append_dims(sigma**2, x.ndim) * s) / append_dims(alpha, x.ndim)
            resid = self.y.to(x)[None] - self.op.forward(x0)  # (B, M)
            cov = self._covariance(x, alpha, sigma)
            v = torch.linalg.solve(cov, resid[..., None])[..., 0]
            (grad,) = torch.autograd.grad(x0, xg, grad_outputs=self.op.adjoint(v.detach()))
        return s.detach() + self.scale * grad
