"""Exact Gaussian-mixture targets: samples, densities, and the exact score of every noised marginal.

For ``p_0 = sum_k w_k N(mu_k, diag(s_k^2))`` and an SDE with affine marginals
``x_t = alpha(t) x_0 + sigma(t) z``, the noised marginal is again a mixture::

    p_t = sum_k w_k N(alpha mu_k, diag(alpha^2 s_k^2 + sigma^2))

so ``log p_t`` and its score ``s(x, t) = sum_k r_k(x) (alpha mu_k - x) / (alpha^2 s_k^2 + sigma^2)``
(``r_k`` the posterior responsibilities, computed by log-sum-exp) are known in closed form.
This "oracle score" tests solvers and likelihoods independently of any training.

The presets (``eight_gaussians``, the sharp targets, ``get_target``) are in `scoresde.targets`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from solvers.inputs import as_count, as_real, check_device, check_dtype, check_generator
from solvers.protocol import DiffusionSDE, HasMarginals, ScoreFn
from solvers.utils import batch_time

from .component_sums import fold_sum, logsumexp_over_components, softmax_over_components

#: Up to this many dimensions the mixture's per-component terms are laid out ``(K, D, B)``, so
#: that the sums over ``D`` and over components run over outer axes
#: (`GaussianMixture._component_terms`, `scoresde.component_sums`; `benchmarks/oracle_score.py`).
COMPONENTS_FIRST_MAX_DIM = 4

__all__ = ["GaussianMixture", "COMPONENTS_FIRST_MAX_DIM"]


def _wide_input_limit(dtype: torch.dtype) -> float | None:
    """Largest ``|x|`` a mixture's terms are computed with in ``dtype`` (beyond it, in float64):
    the fourth root of its largest number (float32: 4.3e9; float16: 16), so that a squared
    distance leaves room for a division by a variance down to the inverse of its square root.
    Past that, every component's squared distance overflowed to ``inf`` and the score came out
    NaN (float32, ``|x| = 1e20``) where its exact value, about ``-x / variance``, is finite.
    ``None`` for float64 (nothing wider to compute in)."""
    if dtype == torch.float64:
        return None
    return float(torch.finfo(dtype).max) ** 0.25


class GaussianMixture:
    """A mixture of axis-aligned Gaussians in ``D`` dimensions.

    Args:
        means: ``(K, D)`` component means.
        stds: ``(K,)`` isotropic or ``(K, D)`` diagonal standard deviations (> 0), or a float.
        weights: ``(K,)`` non-negative weights (normalised here); uniform if ``None``.
        name: label used in plots and tables.

    Raises:
        ValueError: ``means`` not ``(K, D)`` or not finite; ``stds`` of another shape, or not
            finite and positive; ``weights`` not ``(K,)``, negative, NaN/inf, all zero, or with
            a sum that overflows float64.

    Parameters are stored in float64; every method computes in the dtype and on the device
    of its input.
    """

    def __init__(
        self,
        means: Tensor | Sequence[Sequence[float]],
        stds: Tensor | Sequence[float] | float = 1.0,
        weights: Tensor | Sequence[float] | None = None,
        *,
        name: str = "mixture",
    ) -> None:
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.ndim != 2 or mu.shape[0] < 1 or mu.shape[1] < 1:
            raise ValueError(f"means must have shape (K, D), got {tuple(mu.shape)}")
        k, d = mu.shape
        sd = torch.as_tensor(stds, dtype=torch.float64)
        if sd.ndim == 0:
            sd = sd.expand(k)
        if sd.ndim == 1:
            if sd.shape[0] != k:
                raise ValueError(f"stds must have shape ({k},) or ({k}, {d}), got {tuple(sd.shape)}")
            sd = sd[:, None].expand(k, d)
        if sd.shape != (k, d):
            raise ValueError(f"stds must have shape ({k},) or ({k}, {d}), got {tuple(sd.shape)}")
        if not bool((sd > 0).all()) or not torch.isfinite(sd).all():
            raise ValueError("stds must be finite and positive")
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be ({k},) non-negative with positive sum")
        if not bool(torch.isfinite(w).all()) or not math.isfinite(float(w.sum())):
            raise ValueError(f"weights must be finite (no NaN/inf) with a finite sum, got {w.tolist()}")
        if not torch.isfinite(mu).all():
            raise ValueError("means must be finite")
        self.means = mu
        self.stds = sd.contiguous()
        self.weights = w / w.sum()
        self.name = name
        self._cache: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor]] = {}

    # --- basic properties --------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return self.means.shape[0]

    def mean(self) -> Tensor:
        """Mixture mean ``sum_k w_k mu_k``, ``(D,)``."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance ``(D, D)`` (law of total variance)."""
        m = self.mean()
        diff = self.means - m
        within = torch.diag(self.weights @ self.stds**2)
        return within + (self.weights[:, None] * diff).T @ diff

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Means ``(K, D)``, stds and log-weights ``(K,)`` in ``like``'s dtype and device.

        The stds are ``(K, 1)`` when every component is isotropic (the presets), ``(K, D)``
        otherwise: they broadcast either way, and the isotropic case computes one variance per
        component instead of ``D``.
        """
        key = (like.dtype, like.device)
        if key not in self._cache:
            isotropic = bool((self.stds == self.stds[:, :1]).all())
            self._cache[key] = (
                self.means.to(dtype=like.dtype, device=like.device),
                (self.stds[:, :1] if isotropic else self.stds).to(dtype=like.dtype, device=like.device),
                torch.log(self.weights).to(dtype=like.dtype, device=like.device),
            )
        return self._cache[key]

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: x must have shape (B, {self.dim}), got {got}")
        if not x.is_floating_point():
            raise ValueError(f"{self.name}: x must have a floating-point dtype, got {x.dtype} (use x.float())")

    @staticmethod
    def _check_sde(sde: DiffusionSDE) -> None:
        if not isinstance(sde, HasMarginals) or not hasattr(sde, "T"):
            raise TypeError(f"sde must be an SDE with affine marginals (marginal_coeffs(t) and T), "
                            f"e.g. scoresde.VPSDE(); got {type(sde).__name__}")

    # --- sampling ------------------------------------------------------------------------
    def sample_components(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` samples and their component labels: ``((n, D), (n,))``.

        Raises:
            TypeError: ``n`` not an integer (``2.5`` is refused, not truncated), ``generator``
                not a ``torch.Generator``.
            ValueError: ``n < 1``, ``dtype`` not floating point, an unknown ``device``.
        """
        n = as_count(n, "n")
        check_generator(generator, generator.device if isinstance(generator, torch.Generator) else torch.device("cpu"))
        dtype = check_dtype(dtype) if dtype is not None else dtype
        device = check_device(device) if device is not None else device
        gen_device = generator.device if generator is not None else device
        labels = torch.multinomial(self.weights.to(gen_device), n, replacement=True, generator=generator)
        z = torch.randn((n, self.dim), generator=generator, dtype=torch.float64, device=gen_device)
        x = self.means.to(gen_device)[labels] + self.stds.to(gen_device)[labels] * z
        return x.to(dtype=dtype, device=device), labels.to(device)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` exact samples of ``p_0``: ``(n, D)``.

        Raises:
            TypeError, ValueError: as `sample_components`.
        """
        return self.sample_components(n, generator=generator, dtype=dtype, device=device)[0]

    def sample_marginal(
        self,
        n: int,
        sde: DiffusionSDE,
        t: float,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` exact samples of the noised marginal ``p_t``: ``(n, D)``.

        Raises:
            TypeError: ``sde`` without ``marginal_coeffs``; ``t`` not a real number; as `sample_components`.
            ValueError: ``t`` not a finite number in ``[0, T]`` (or a tensor of several times); a
                ``dtype`` that is not floating point; as `sample_components`.
        """
        self._check_sde(sde)
        dtype = check_dtype(dtype)  # a name ("float64") works, an integer dtype is refused
        if isinstance(t, Tensor) and t.numel() != 1:
            raise ValueError(f"t must be one time (a float or a one-element tensor), got shape {tuple(t.shape)}")
        t = as_real(t, "t")
        if not 0.0 <= t <= sde.T * (1 + 1e-7):
            raise ValueError(f"t must be a finite time in [0, T={sde.T:g}], got {t!r}")
        x0 = self.sample(n, generator=generator, dtype=torch.float64, device=device)
        tt = torch.full((n,), float(t), dtype=torch.float64, device=x0.device)
        alpha, sigma = sde.marginal_coeffs(tt)
        z = torch.randn(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        return (alpha[:, None] * x0 + sigma[:, None] * z).to(dtype=dtype)

    # --- densities and scores ------------------------------------------------------------
    def _components_first(self) -> bool:
        """Whether `_component_terms` puts the components first, ``(K, D, B)`` (up to
        `COMPONENTS_FIRST_MAX_DIM` dimensions), rather than ``(B, K, D)``."""
        return self.dim <= COMPONENTS_FIRST_MAX_DIM

    def _component_terms(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component terms of the noised mixture at ``x: (B, D)``, ``alpha, sigma: (B,)``.

        Returns the logits ``log w_k + log N(x; alpha mu_k, diag(alpha^2 s_k^2 + sigma^2))``,
        the residuals ``alpha mu_k - x`` and their variances (with 1 in place of ``D`` when
        every component is isotropic). With `_components_first`: logits ``(K, B)``, the others
        ``(K, D, B)``, so that every sum (over ``D``, over components) runs over an outer axis:
        on a CPU a reduction over a short innermost axis, or a softmax over ``K`` on the last
        axis, is several times slower, and with few dimensions that is most of the work.
        Otherwise logits ``(B, K)`` and ``(B, K, D)``, where the ``D``-long rows dominate.
        Each sample's result is independent of its batch, to the last bit, in both layouts.
        """
        mu, sd, log_w = self._params(x)  # sd: (K, D) or (K, 1)
        if self._components_first():
            a, s2 = alpha[None, None, :], (sigma**2)[None, None, :]
            var = a**2 * (sd**2)[:, :, None] + s2
            resid = a * mu[:, :, None] - x.T[None]
            # at most COMPONENTS_FIRST_MAX_DIM terms, added in a fixed order (`fold_sum`)
            quad = fold_sum((resid**2 / var).transpose(0, 1))
            log_det = fold_sum(torch.log(2 * math.pi * var).transpose(0, 1))
            log_w, per_var = log_w[:, None], self.dim // var.shape[1]
        else:  # the sums over the innermost axis are per sample
            a, s2 = alpha[:, None, None], (sigma**2)[:, None, None]
            var = a**2 * (sd**2)[None] + s2
            resid = a * mu[None] - x[:, None, :]
            quad, log_det = (resid**2 / var).sum(dim=2), torch.log(2 * math.pi * var).sum(dim=2)
            log_w, per_var = log_w[None], self.dim // var.shape[2]
        # per_var: coordinates sharing each variance (D for isotropic components, else 1)
        return log_w - 0.5 * (quad + per_var * log_det), resid, var

    def _component_logits(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """The logits of `_component_terms` as ``(B, K)`` in either layout."""
        logits = self._component_terms(x, alpha, sigma)[0]
        return logits.T if self._components_first() else logits

    def _log_sum_components(self, logits: Tensor) -> Tensor:
        """``log sum_k exp(logits_k)`` -> ``(B,)`` for `_component_terms`' logits."""
        if self._components_first():
            return logsumexp_over_components(logits)
        return torch.logsumexp(logits, dim=1)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p_0(x)`` for ``x: (B, D)``; returns ``(B,)`` in ``x``'s dtype (`marginal_log_prob`)."""
        self._check_x(x)
        dtype, x = x.dtype, self._widened(x)
        one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        logits, _, _ = self._component_terms(x, one, torch.zeros_like(one))
        return self._log_sum_components(logits).to(dtype)

    def _coeffs(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> tuple[Tensor, Tensor, Tensor]:
        """``(x, alpha(t), sigma(t))`` after the checks, ``x`` in float64 where an entry exceeds
        `_wide_input_limit` for its dtype (one host read for both checks)."""
        self._check_x(x)
        self._check_sde(sde)
        tt = batch_time(t, x)
        # One host sync per call: a single combined check; details only on the error path.
        bad_t = ((tt < 0.0) | (tt > sde.T * (1 + 1e-7)) | ~torch.isfinite(tt)).any()
        limit = _wide_input_limit(x.dtype)
        if limit is None:
            flags = [bool(bad_t), False]
        else:
            flags = [bool(f) for f in torch.stack([bad_t, (x.detach().abs() > limit).any()]).tolist()]
        if flags[0]:
            if not torch.isfinite(tt).all():
                raise ValueError("t contains non-finite values")
            t_lo, t_hi = float(tt.min()), float(tt.max())
            raise ValueError(f"t must lie in [0, T={sde.T:g}], got values in [{t_lo:g}, {t_hi:g}]")
        if flags[1]:
            x, tt = x.to(torch.float64), tt.to(torch.float64)
        alpha, sigma = sde.marginal_coeffs(tt)
        return x, alpha, sigma

    def _widened(self, x: Tensor) -> Tensor:
        """``x``, in float64 where an entry exceeds `_wide_input_limit` for its dtype."""
        limit = _wide_input_limit(x.dtype)
        return x.to(torch.float64) if limit is not None and bool((x.detach().abs() > limit).any()) else x

    def marginal_log_prob(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> Tensor:
        """``log p_t(x)`` of the noised marginal under ``sde``; ``x: (B, D)``, ``t: (B,)`` -> ``(B,)``
        in ``x``'s dtype (computed in float64 where ``x`` holds entries whose squares, divided by a
        small variance, would overflow it: `_wide_input_limit`)."""
        dtype = x.dtype
        x, alpha, sigma = self._coeffs(x, t, sde)
        logits, _, _ = self._component_terms(x, alpha, sigma)
        return self._log_sum_components(logits).to(dtype)

    def marginal_score(self, x: Tensor, t: Tensor | float, sde: DiffusionSDE) -> Tensor:
        """Exact ``grad_x log p_t(x)``; ``x: (B, D)``, ``t: (B,)`` -> ``(B, D)`` in ``x``'s dtype
        (computed in float64 where ``x`` is too large for its own: `marginal_log_prob`)."""
        dtype = x.dtype
        x, alpha, sigma = self._coeffs(x, t, sde)
        logits, resid, var = self._component_terms(x, alpha, sigma)
        if self._components_first():
            return fold_sum(softmax_over_components(logits)[:, None, :] * resid / var).T.contiguous().to(dtype)
        return (torch.softmax(logits, dim=1)[:, :, None] * resid / var).sum(dim=1).to(dtype)

    def score_fn(self, sde: DiffusionSDE) -> ScoreFn:
        """The oracle score callable ``(x, t) -> grad_x log p_t(x)`` for ``sde``.

        The callable declares its SDE (``score.sde``), so a solver or the likelihood given
        another SDE, with other marginals, refuses it (`solvers.score_sde.check_score_sde`).

        Raises:
            TypeError: ``sde`` has no affine marginals (``marginal_coeffs``, ``T``).
        """
        self._check_sde(sde)

        def score(x: Tensor, t: Tensor) -> Tensor:
            return self.marginal_score(x, t, sde)

        score.sde = sde  # type: ignore[attr-defined]
        return score

    def log_prob_fn(self, sde: DiffusionSDE) -> Callable[[Tensor, Tensor], Tensor]:
        """``(x, t) -> log p_t(x)`` for ``sde``.

        Raises:
            TypeError: ``sde`` has no affine marginals (``marginal_coeffs``, ``T``).
        """
        self._check_sde(sde)

        def log_prob(x: Tensor, t: Tensor) -> Tensor:
            return self.marginal_log_prob(x, t, sde)

        return log_prob

    def responsibilities(self, x: Tensor) -> Tensor:
        """Posterior component probabilities under ``p_0``: ``(B, D) -> (B, K)`` in ``x``'s dtype
        (`marginal_log_prob`)."""
        self._check_x(x)
        dtype, x = x.dtype, self._widened(x)
        one = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        logits, _, _ = self._component_terms(x, one, torch.zeros_like(one))
        if self._components_first():
            # a component of weight 0 (logit -inf) gets exactly 0, not the exp floor's share
            resp = softmax_over_components(logits).masked_fill(torch.isneginf(logits), 0.0)
            return resp.T.contiguous().to(dtype)
        return torch.softmax(logits, dim=1).to(dtype)

    def __repr__(self) -> str:
        return f"GaussianMixture(name={self.name!r}, K={self.n_components}, D={self.dim})"
