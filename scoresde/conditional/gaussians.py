"""Gaussian mixtures with full covariances: the exact posteriors of linear measurements.

Conditioning an axis-aligned mixture on ``y = A x + noise`` gives a mixture whose components
have full (possibly singular) covariances. ``FullCovMixture`` holds such a mixture and, like
`GaussianMixture`, gives its noised marginals under an affine SDE in closed form::

    p_t = sum_k w_k N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I)

with the exact score ``s(x, t) = sum_k r_k(x) (alpha^2 Sigma_k + sigma^2 I)^{-1} (alpha mu_k - x)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from solvers.protocol import DiffusionSDE, ScoreFn
from solvers.utils import batch_time

__all__ = ["FullCovMixture"]


class FullCovMixture:
    """A mixture of full-covariance Gaussians in ``D`` dimensions.

    Args:
        means: ``(K, D)`` component means.
        covs: ``(K, D, D)`` symmetric positive semi-definite covariances (singular ones are
            allowed: a noiseless measurement pins ``x`` to an affine subspace; their noised
            marginals at ``t > 0`` are regular).
        weights: ``(K,)`` non-negative weights (normalised here).
        name: label used in tables.

    Parameters are stored in float64; methods compute in the dtype of their input.
    """

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor, *, name: str = "conditional") -> None:
        mu = torch.as_tensor(means, dtype=torch.float64)
        cov = torch.as_tensor(covs, dtype=torch.float64)
        w = torch.as_tensor(weights, dtype=torch.float64)
        if mu.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(mu.shape)}")
        k, d = mu.shape
        if cov.shape != (k, d, d):
            raise ValueError(f"covs must have shape ({k}, {d}, {d}), got {tuple(cov.shape)}")
        if w.shape != (k,) or bool((w < 0).any()) or not float(w.sum()) > 0:
            raise ValueError(f"weights must be ({k},) non-negative with positive sum")
        self.means = mu
        self.covs = 0.5 * (cov + cov.transpose(1, 2))
        self.weights = w / w.sum()
        self.name = name
        evals, evecs = torch.linalg.eigh(self.covs)
        # Square-root factor that also works for singular covariances: Sigma = F F^T.
        # Eigenvalues at rounding level (a pinned direction) are exactly zero.
        tol = 1e-12 * evals.abs().amax(dim=1, keepdim=True)
        evals = torch.where(evals > tol, evals, torch.zeros_like(evals))
        self._factor = evecs * evals.sqrt()[:, None, :]

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return self.means.shape[0]

    def mean(self) -> Tensor:
        """Mixture mean ``(D,)``."""
        return self.weights @ self.means

    # --- sampling ---------------------------------------------------------------------------
    def sample_components(
        self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """``n`` exact samples of ``p_0`` and their component labels: ``((n, D), (n,))``."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        x = self.means[labels] + torch.einsum("nij,nj->ni", self._factor[labels], z)
        return x.to(dtype), labels

    def sample(self, n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` exact samples of ``p_0``: ``(n, D)``."""
        return self.sample_components(n, generator=generator, dtype=dtype)[0]

    def sample_marginal(
        self,
        n: int,
        sde: DiffusionSDE,
        t: float,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``n`` exact samples of the noised marginal ``p_t``: ``(n, D)``."""
        x0 = self.sample(n, generator=generator, dtype=torch.float64)
        alpha, sigma = sde.marginal_coeffs(torch.full((n,), float(t), dtype=torch.float64))
        z = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        return (alpha[:, None] * x0 + sigma[:, None] * z).to(dtype)

    # --- densities and scores ---------------------------------------------------------------
    def _terms(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Log-weight + log-density ``(B, K)`` and the precision times residual ``(B, K, D)``.

        One time per call (``alpha, sigma`` scalars taken from the first row when all rows
        share it; otherwise per-row factorisations).
        """
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: x must have shape (B, {self.dim}), got {got}")
        mu = self.means.to(x)
        cov = self.covs.to(x)
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        # cov_t: (B, K, D, D) in general; (1, K, D, D) when the time is shared.
        same = bool((alpha == alpha[0]).all() and (sigma == sigma[0]).all())
        a = alpha[:1] if same else alpha
        s = sigma[:1] if same else sigma
        cov_t = a[:, None, None, None] ** 2 * cov[None] + s[:, None, None, None] ** 2 * eye
        chol, info = torch.linalg.cholesky_ex(cov_t)
        if bool((info != 0).any()):
            raise ValueError(
                f"{self.name}: the covariance at this time is singular (a noiseless measurement "
                "at t = 0); evaluate densities and scores at t > 0"
            )
        resid = x[:, None, :] - alpha[:, None, None] * mu[None]  # (B, K, D)
        if same:  # one factor per component: solve all rows at once, (K, D, B)
            rhs = resid.permute(1, 2, 0)
            white_k = torch.linalg.solve_triangular(chol[0], rhs, upper=False)
            prec_k = torch.linalg.solve_triangular(chol[0].transpose(-1, -2), white_k, upper=True)
            white, prec_resid = white_k.permute(2, 0, 1), prec_k.permute(2, 0, 1)
        else:
            w4 = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)  # (B, K, D, 1)
            prec_resid = torch.linalg.solve_triangular(chol.transpose(-1, -2), w4, upper=True)[..., 0]
            white = w4[..., 0]
        logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (1 or B, K)
        log_norm = -0.5 * ((white**2).sum(-1) + logdet + self.dim * math.log(2 * math.pi))
        return torch.log(self.weights.to(x))[None] + log_norm, prec_resid

    def _coeffs(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> tuple[Tensor, Tensor]:
        tt = batch_time(t, x)
        if bool(((tt < 0) | (tt > sde.T * (1 + 1e-7)) | ~torch.isfinite(tt)).any()):
            raise ValueError(f"t must lie in [0, T={sde.T:g}]")
        return sde.marginal_coeffs(tt)

    def marginal_log_prob(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> Tensor:
        """``log p_t(x)``; ``x: (B, D)``, ``t: (B,)`` or scalar -> ``(B,)``."""
        alpha, sigma = self._coeffs(x, t, sde)
        logits, _ = self._terms(x, alpha, sigma)
        return torch.logsumexp(logits, dim=1)

    def marginal_score(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> Tensor:
        """Exact ``grad_x log p_t(x)``; ``x: (B, D)`` -> ``(B, D)``."""
        alpha, sigma = self._coeffs(x, t, sde)
        logits, prec_resid = self._terms(x, alpha, sigma)
        resp = torch.softmax(logits, dim=1)
        return -(resp[:, :, None] * prec_resid).sum(dim=1)

    def score_fn(self, sde: DiffusionSDE) -> ScoreFn:
        """The oracle score callable ``(x, t) -> grad_x log p_t(x)`` for ``sde``."""

        def score(x: Tensor, t: Tensor) -> Tensor:
            return self.marginal_score(x, t, sde)

        score.sde = sde  # type: ignore[attr-defined]  # (solvers.score_sde.check_score_sde)
        return score

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p_0(x)``, ``(B, D) -> (B,)``; raises for singular covariances."""
        one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        logits, _ = self._terms(x, one, torch.zeros_like(one))
        return torch.logsumexp(logits, dim=1)

    def responsibilities(self, x: Tensor, t: float = 0.0, sde: DiffusionSDE | None = None) -> Tensor:
        """Posterior component probabilities under ``p_t`` (``p_0`` when ``sde`` is None): ``(B, K)``."""
        if sde is None:
            one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            logits, _ = self._terms(x, one, torch.zeros_like(one))
        else:
            alpha, sigma = self._coeffs(x, t, sde)
            logits, _ = self._terms(x, alpha, sigma)
        return torch.softmax(logits, dim=1)

    def __repr__(self) -> str:
        return f"FullCovMixture(name={self.name!r}, K={self.n_components}, D={self.dim})"
