"""Reverse-time dynamics built from a forward SDE and a score: written once, used by every solver.

The reverse family (Song et al. 2021, eq. 6 and 13; Zhang & Chen 2022 for the lambda family),
integrated from ``T`` down to ``eps``::

    dx = [f(x, t) - (1 + lam^2)/2 * g(t)^2 * s(x, t)] dt + lam * g(t) dW_bar,   lam in [0, 1]

``lam = 1`` is the reverse SDE (:func:`ReverseSDE`), ``lam = 0`` the probability-flow ODE
(:func:`ProbabilityFlowODE`). Every score evaluation goes through :class:`CountedScore`, so the
number of function evaluations (NFE) a solver reports is counted, never self-reported.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .protocol import DiffusionSDE, ScoreFn
from .utils import append_dims

__all__ = [
    "CountedScore",
    "NonFiniteScoreError",
    "ReverseDynamics",
    "ReverseSDE",
    "ProbabilityFlowODE",
    "forward_transition",
]


class NonFiniteScoreError(FloatingPointError):
    """The score callable returned NaN or inf."""


def forward_transition(sde: DiffusionSDE, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Exact forward transition ``x_t = a x_s + b z`` of an affine SDE, for ``s <= t``.

    ``a = alpha(t)/alpha(s)`` and ``b^2 = sigma(t)^2 - a^2 sigma(s)^2``: since
    ``d(sigma^2/alpha^2)/dt = g^2/alpha^2``, this equals the variance
    ``int_s^t (alpha(t)/alpha(u))^2 g(u)^2 du`` of the linear SDE. It gives VP's
    ``a = sqrt(1 - beta_i), b = sqrt(beta_i)`` and VE's ``a = 1, b^2 = sigma_t^2 - sigma_s^2``
    (Song et al. 2021, App. E/F) and is exact for sub-VP and cosine schedules too.

    Shapes: ``s, t: (B,)`` -> ``a, b: (B,)``.
    """
    alpha_s, sigma_s = sde.marginal_coeffs(s)
    alpha_t, sigma_t = sde.marginal_coeffs(t)
    a = alpha_t / alpha_s
    b2 = sigma_t**2 - (a * sigma_s) ** 2
    return a, torch.sqrt(torch.clamp(b2, min=0.0))


class CountedScore:
    """Wraps a score callable: counts calls (NFE) and checks shape and finiteness of outputs.

    ``calls`` is the number of batched evaluations made. ``check_finite=True`` raises
    :class:`NonFiniteScoreError` when the score returns NaN/inf (on an accelerator this is a
    host sync per call; pass ``check_finite=False`` to skip it).
    """

    def __init__(self, score: ScoreFn, *, check_finite: bool = True) -> None:
        if isinstance(score, CountedScore):
            score = score.score
        if not callable(score):
            raise TypeError(f"score must be callable (x, t) -> tensor, got {type(score).__name__}")
        self.score = score
        self.check_finite = check_finite
        self.calls = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        out = self.score(x, t)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"score returned shape {got}, expected the shape of x {tuple(x.shape)}")
        if self.check_finite and not bool(torch.isfinite(out).all()):
            t_lo, t_hi = float(t.min()), float(t.max())
            raise NonFiniteScoreError(
                f"score returned NaN/inf at t in [{t_lo:.4g}, {t_hi:.4g}] (evaluation {self.calls}); "
                "check the model, the time range and the dtype"
            )
        return out


class ReverseDynamics:
    """The reverse-time family ``dx = [f - (1+lam^2)/2 g^2 s] dt + lam g dW_bar``.

    Args:
        sde: any object satisfying :class:`~solvers.protocol.DiffusionSDE`.
        score: ``score(x: (B, *D), t: (B,)) -> (B, *D)``; wrapped once in :class:`CountedScore`.
        lam: noise level in ``[0, 1]``; 1 = reverse SDE, 0 = probability-flow ODE.
        check_finite: raise on NaN/inf scores.
    """

    def __init__(
        self, sde: DiffusionSDE, score: ScoreFn, lam: float = 1.0, *, check_finite: bool = True
    ) -> None:
        missing = [
            name
            for name in ("T", "eps", "drift", "diffusion", "marginal_coeffs", "prior_sample")
            if not hasattr(sde, name)
        ]
        if missing:
            raise TypeError(f"{type(sde).__name__} does not satisfy DiffusionSDE: missing {missing}")
        if not (0.0 <= lam <= 1.0):
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        self.sde = sde
        self.lam = float(lam)
        self.score = CountedScore(score, check_finite=check_finite)

    @property
    def is_ode(self) -> bool:
        """True for the deterministic probability-flow ODE (``lam = 0``)."""
        return self.lam == 0.0

    @property
    def nfe(self) -> int:
        """Score evaluations made so far through this object."""
        return self.score.calls

    def drift_from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """``f(x, t) - (1 + lam^2)/2 g(t)^2 score`` for a score already evaluated at ``(x, t)``."""
        g2 = self.sde.diffusion(t) ** 2
        return self.sde.drift(x, t) - append_dims(0.5 * (1.0 + self.lam**2) * g2, x.ndim) * score

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Reverse drift at ``(x: (B, *D), t: (B,))``; one score evaluation."""
        return self.drift_from_score(x, t, self.score(x, t))

    def diffusion(self, t: Tensor) -> Tensor:
        """``lam g(t)``, shape ``(B,)``."""
        return self.lam * self.sde.diffusion(t)

    # --- reparameterisations used by exponential integrators and the final denoiser ---
    def x0_from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Tweedie's denoiser ``E[x_0 | x_t] = (x + sigma^2 s) / alpha``."""
        alpha, sigma = self.sde.marginal_coeffs(t)
        return (x + append_dims(sigma**2, x.ndim) * score) / append_dims(alpha, x.ndim)

    def eps_from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Noise prediction ``eps_hat = -sigma s``."""
        _, sigma = self.sde.marginal_coeffs(t)
        return -append_dims(sigma, x.ndim) * score

    def x0_pred(self, x: Tensor, t: Tensor) -> Tensor:
        """Data prediction at ``(x, t)``; one score evaluation."""
        return self.x0_from_score(x, t, self.score(x, t))

    def eps_pred(self, x: Tensor, t: Tensor) -> Tensor:
        """Noise prediction at ``(x, t)``; one score evaluation."""
        return self.eps_from_score(x, t, self.score(x, t))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sde={self.sde!r}, lam={self.lam})"


def ReverseSDE(sde: DiffusionSDE, score: ScoreFn, *, check_finite: bool = True) -> ReverseDynamics:
    """Reverse-time SDE ``dx = [f - g^2 s] dt + g dW_bar`` (Song et al. 2021, eq. 6)."""
    return ReverseDynamics(sde, score, 1.0, check_finite=check_finite)


def ProbabilityFlowODE(
    sde: DiffusionSDE, score: ScoreFn, *, check_finite: bool = True
) -> ReverseDynamics:
    """Probability-flow ODE ``dx/dt = f - g^2 s / 2`` (Song et al. 2021, eq. 13)."""
    return ReverseDynamics(sde, score, 0.0, check_finite=check_finite)
