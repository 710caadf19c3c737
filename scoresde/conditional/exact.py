"""Exact conditionals of an axis-aligned `GaussianMixture`: the oracles for conditional sampling.

For ``p_0 = sum_k w_k N(mu_k, S_k)`` with diagonal ``S_k``:

* **Coordinates given the others** (imputation). With observed coordinates ``o`` fixed to
  ``y_o`` and free coordinates ``u``, ``p(x_u | x_o = y_o) = sum_k w'_k N(mu_{k,u}, S_{k,u})`` with
  ``w'_k ∝ w_k N(y_o; mu_{k,o}, S_{k,o})``: again an axis-aligned mixture.
* **A linear measurement** ``y = A x + n``, ``n ~ N(0, s_y^2 I)``. Per component (Kalman update):
  ``G_k = A S_k A^T + s_y^2 I``, ``K_k = S_k A^T G_k^{-1}``, ``mu'_k = mu_k + K_k (y - A mu_k)``,
  ``S'_k = (I - K_k A) S_k``, ``w'_k ∝ w_k N(y; A mu_k, G_k)``: a `FullCovMixture`.
* **A class label**, classes being groups of components: ``p(x | c)`` keeps the components of
  class ``c`` with renormalised weights, and ``p_t(c | x) = sum_{k in c} w_k N_t(x; k) / p_t(x)``.

Each result is a mixture, so its noised marginals ``p_t(x_t | y)`` (the law of
``alpha x_0 + sigma z`` with ``x_0 ~ p(x_0 | y)``), their exact scores, densities and samples
at every ``t`` follow (Song et al. 2021, sec. 5 and App. I for conditional sampling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from solvers.inputs import NotAnIntegerError, as_integer
from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.utils import batch_time

from ..targets import GaussianMixture
from .checks import as_tensor, check_mask, check_matrix, check_noise_std, check_observed
from .gaussians import FullCovMixture

__all__ = ["ObservedCoordinates", "condition_on_measurement", "ClassMixture"]


def _check_mixture(mixture: Any) -> None:
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a scoresde.targets.GaussianMixture, got {type(mixture).__name__}")


def _log_normal_diag(y: Tensor, mu: Tensor, var: Tensor) -> Tensor:
    """``log N(y; mu, diag(var))`` summed over the last axis."""
    return -0.5 * (((y - mu) ** 2) / var + torch.log(2 * math.pi * var)).sum(-1)


class ObservedCoordinates:
    """The exact conditional of a mixture given some of its coordinates.

    Args:
        mixture: the prior ``p_0`` over ``x: (D,)``.
        mask: ``(D,)`` booleans, True = observed (some but not all).
        observed: ``(D,)`` values; only the masked entries are used.

    Attributes:
        conditional: ``p(x_u | x_o = y_o)`` as a `GaussianMixture` over the free coordinates.

    Raises:
        TypeError: ``mixture`` not a `GaussianMixture`; ``mask`` / ``observed`` not arrays.
        ValueError: a bad ``mask`` (see `check_mask`), ``observed`` of another shape or not
            finite at the masked positions. The methods raise ``ValueError`` for states whose
            shape is not ``(B, D)`` (``(B, D_u)`` free coordinates for `embed`).
    """

    def __init__(self, mixture: GaussianMixture, mask: Any, observed: Any) -> None:
        _check_mixture(mixture)
        self.mixture = mixture
        self.mask = check_mask(mask, (mixture.dim,))
        y = check_observed(observed, (mixture.dim,)).to(torch.float64)
        if not bool(torch.isfinite(y[self.mask]).all()):
            raise ValueError("observed values at the masked positions must be finite")
        self.observed = torch.where(self.mask, y, torch.zeros_like(y))
        o, u = self.mask, ~self.mask
        logw = torch.log(mixture.weights) + _log_normal_diag(
            self.observed[o][None], mixture.means[:, o], mixture.stds[:, o] ** 2
        )
        self.log_evidence = float(torch.logsumexp(logw, 0))
        self.conditional = GaussianMixture(
            mixture.means[:, u], mixture.stds[:, u], torch.softmax(logw, 0), name=f"{mixture.name}|x_o"
        )

    def _check_state(self, x: Tensor, name: str = "x") -> None:
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.mixture.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be full states (B, {self.mixture.dim}), got {got}")

    def free(self, x: Tensor) -> Tensor:
        """The free (unobserved) coordinates ``(B, D_u)`` of ``x: (B, D)``."""
        self._check_state(x)
        return x[:, ~self.mask.to(x.device)]

    def embed(self, x_free: Tensor, x_obs: Tensor | None = None) -> Tensor:
        """Full ``(B, D)`` states from free coordinates ``(B, D_u)``; observed ones = ``x_obs`` or ``y``."""
        n_free = int((~self.mask).sum())
        if not isinstance(x_free, Tensor) or x_free.ndim != 2 or x_free.shape[1] != n_free:
            got = tuple(x_free.shape) if isinstance(x_free, Tensor) else type(x_free).__name__
            raise ValueError(f"x_free must be the free coordinates (B, {n_free}), got {got}")
        b = x_free.shape[0]
        out = torch.empty((b, self.mixture.dim), dtype=x_free.dtype, device=x_free.device)
        m = self.mask.to(x_free.device)
        out[:, ~m] = x_free
        out[:, m] = self.observed.to(x_free)[m] if x_obs is None else x_obs
        return out

    def sample(
        self,
        n: int,
        sde: DiffusionSDE | None = None,
        t: float = 0.0,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``n`` exact samples ``(n, D)`` of ``p_t(x_t | y)`` (of ``p_0(x | y)`` when ``sde`` is None).

        At time ``t`` both parts are noised: ``x_{t,o} = alpha y_o + sigma z``, and ``x_{t,u}``
        follows the noised conditional.
        """
        if sde is None:
            return self.embed(self.conditional.sample(n, generator=generator, dtype=dtype))
        free = self.conditional.sample_marginal(n, sde, t, generator=generator, dtype=torch.float64)
        alpha, sigma = sde.marginal_coeffs(torch.full((n,), float(t), dtype=torch.float64))
        n_obs = int(self.mask.sum())
        z = torch.randn((n, n_obs), generator=generator, dtype=torch.float64)
        obs = alpha[:, None] * self.observed[self.mask][None] + sigma[:, None] * z
        return self.embed(free, obs).to(dtype)

    def marginal_score(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> Tensor:
        """Exact ``grad_x log p_t(x | y)`` for full states ``x: (B, D)``.

        Free part: the conditional mixture's noised score; observed part:
        ``(alpha y_o - x_o) / sigma^2`` (the forward transition from ``y_o``).
        """
        self._check_state(x)
        tt = batch_time(t, x)
        m = self.mask.to(x.device)
        out = torch.empty_like(x)
        out[:, ~m] = self.conditional.marginal_score(x[:, ~m], tt, sde)
        alpha, sigma = sde.marginal_coeffs(tt)
        out[:, m] = (alpha[:, None] * self.observed.to(x)[m] - x[:, m]) / sigma[:, None] ** 2
        return out

    def score_fn(self, sde: DiffusionSDE) -> ScoreFn:
        """``(x, t) -> grad_x log p_t(x | y)`` for full states: sampling with it is exact."""

        def score(x: Tensor, t: Tensor) -> Tensor:
            return self.marginal_score(x, t, sde)

        score.sde = sde  # type: ignore[attr-defined]  # (solvers.score_sde.check_score_sde)
        return score


def condition_on_measurement(mixture: GaussianMixture, A: Any, y: Any, noise_std: float = 0.0) -> FullCovMixture:
    """The exact posterior ``p(x | y)`` for ``y = A x + n``, ``n ~ N(0, noise_std^2 I)``.

    Args:
        mixture: the prior, ``D``-dimensional.
        A: ``(M, D)`` measurement matrix.
        y: ``(M,)`` measurement.
        noise_std: ``s_y >= 0``; with 0, ``A S_k A^T`` must be invertible (full row rank).

    Returns:
        A `FullCovMixture` (covariances singular when ``noise_std = 0``).

    Raises:
        TypeError: ``mixture`` not a `GaussianMixture`; ``A`` / ``y`` not numeric arrays.
        ValueError: on shapes that do not match, NaN / inf in ``A`` or ``y``, a negative or
            non-finite ``noise_std``, or a rank-deficient noiseless ``A``.
    """
    _check_mixture(mixture)
    a, yy = check_matrix(A, mixture.dim, y)
    assert yy is not None
    sy = check_noise_std(noise_std)
    s2 = mixture.stds**2  # (K, D)
    m = a.shape[0]
    g = (a[None] * s2[:, None, :]) @ a.T + sy**2 * torch.eye(m, dtype=torch.float64)  # (K, M, M)
    chol, info = torch.linalg.cholesky_ex(g)
    if bool((info != 0).any()):
        raise ValueError(
            "A S_k A^T + noise_std^2 I is singular: A needs full row rank when noise_std = 0 "
            "(drop redundant rows or give noise_std > 0)"
        )
    resid = yy[None] - mixture.means @ a.T  # (K, M)
    g_inv_r = torch.cholesky_solve(resid[..., None], chol)[..., 0]  # (K, M)
    sat = s2[:, :, None] * a.T[None]  # S_k A^T: (K, D, M)
    means = mixture.means + (sat @ g_inv_r[..., None])[..., 0]
    gain = torch.cholesky_solve(sat.transpose(1, 2), chol).transpose(1, 2)  # K_k = S A^T G^-1: (K, D, M)
    covs = torch.diag_embed(s2) - gain @ sat.transpose(1, 2)
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_lik = -0.5 * ((resid * g_inv_r).sum(-1) + logdet + m * math.log(2 * math.pi))
    w = torch.softmax(torch.log(mixture.weights) + log_lik, 0)
    return FullCovMixture(means, covs, w, name=f"{mixture.name}|Ax")


class ClassMixture:
    """A mixture whose components are grouped into classes: exact ``p(x | c)`` and ``p_t(c | x)``.

    Args:
        mixture: the prior.
        classes: ``(K,)`` integer class of each component (classes ``0 .. C-1``, each used).

    Class-conditional sampling with the exact ``p_t(c | x)`` is classifier guidance
    (Dhariwal & Nichol 2021; Song et al. 2021, eq. 14): ``grad log p_t(x | c) =
    grad log p_t(x) + grad log p_t(c | x)``.

    Raises:
        TypeError: ``mixture`` not a `GaussianMixture`, ``classes`` not integers (``0.5`` is
            refused, not truncated).
        ValueError: not one class per component, or classes not ``0 .. C-1`` each used.
    """

    def __init__(self, mixture: GaussianMixture, classes: Sequence[int] | Tensor) -> None:
        _check_mixture(mixture)
        raw = as_tensor(classes, "classes")
        if raw.shape != (mixture.n_components,):
            raise ValueError(f"classes must give one class per component: shape ({mixture.n_components},), got {tuple(raw.shape)}")
        if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool:
            raise TypeError(f"classes must be integers 0 .. C-1, got {raw.dtype} values")
        c = raw.to(torch.long)
        n = int(c.max()) + 1
        if int(c.min()) < 0 or torch.bincount(c, minlength=n).min() == 0:
            raise ValueError("classes must be 0 .. C-1, each used by at least one component")
        self.mixture = mixture
        self.classes = c
        self.n_classes = n
        self.class_weights = torch.zeros(n, dtype=torch.float64).index_add_(0, c, mixture.weights)

    def check_label(self, label: int) -> int:
        """Return ``label`` as an int (Python, NumPy or one-element torch integer), or raise
        ``ValueError`` naming the valid classes (a float such as ``1.7`` is refused, not truncated)."""
        try:
            c = as_integer(label, "label")
        except NotAnIntegerError:
            c = -1
        if not 0 <= c < self.n_classes:
            raise ValueError(f"unknown class {label!r}; valid classes are 0 .. {self.n_classes - 1}")
        return c

    def conditional(self, label: int) -> GaussianMixture:
        """``p(x | c = label)``: the components of that class, weights renormalised."""
        keep = self.classes == self.check_label(label)
        m = self.mixture
        return GaussianMixture(m.means[keep], m.stds[keep], m.weights[keep], name=f"{m.name}|c={int(label)}")

    def log_prob(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> Tensor:
        """Exact ``log p_t(c | x)`` for every class: ``x: (B, D)`` -> ``(B, C)``."""
        dtype = x.dtype
        x, alpha, sigma = self.mixture._coeffs(x, t, sde)  # x in float64 where too large for its dtype
        logits = self.mixture._component_logits(x, alpha, sigma)  # (B, K)
        per_class = torch.full((x.shape[0], self.n_classes), -math.inf, dtype=x.dtype, device=x.device)
        idx = self.classes.to(x.device)[None].expand_as(logits)
        per_class = per_class.scatter_reduce(1, idx, logits, reduce="amax", include_self=True)
        shifted = torch.exp(logits - per_class.gather(1, idx))
        sums = torch.zeros_like(per_class).scatter_add(1, idx, shifted)
        log_joint = per_class + torch.log(sums)
        return (log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True)).to(dtype)

    def classifier(self, sde: DiffusionSDE) -> Any:
        """``(x, t) -> (B, C)`` exact log-probabilities ``log p_t(c | x)`` (a time-dependent classifier)."""

        def clf(x: Tensor, t: Tensor) -> Tensor:
            return self.log_prob(x, t, sde)

        clf.sde = sde  # type: ignore[attr-defined]  # (ClassifierGuidance compares it with the score's)
        return clf
