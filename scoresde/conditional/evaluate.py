"""Distance of conditional samples to an exact conditional, in units of the noise floor.

Four two-sample statistics, each divided by its mean value between two independent exact
sample sets of the same size (the noise floor):

* ``sw``: sliced Wasserstein-2 (`scoresde.metrics.sliced_wasserstein`);
* ``mmd``: ``|MMD_u^2|`` with RBF bandwidths fixed from exact samples (`scoresde.metrics.mmd`);
* ``modes``: total variation between the two sets' component frequencies (each sample goes to
  its most responsible component of the exact conditional at the comparison time);
* ``spread``: difference of the mean squared Mahalanobis distance per dimension to the
  assigned component (within-mode spread; 1 for exact samples).

``combined`` is the worst of the four ratios; an exact sampler gives values of order 1-3
(``exact_combined`` reports what a second exact set scores against the same reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from solvers.inputs import as_count, as_integer, check_seed
from solvers.protocol import DiffusionSDE

from .. import metrics
from ..targets import GaussianMixture
from .gaussians import FullCovMixture

__all__ = ["as_full_cov", "ConditionalReference"]

SampleFn = Callable[[int, torch.Generator], Tensor]


def as_full_cov(mixture: GaussianMixture | FullCovMixture) -> FullCovMixture:
    """The same mixture as a `FullCovMixture` (diagonal covariances made explicit).

    Raises:
        TypeError: neither a `GaussianMixture` nor a `FullCovMixture`.
    """
    if not isinstance(mixture, (GaussianMixture, FullCovMixture)):
        raise TypeError(f"mixture must be a GaussianMixture or FullCovMixture, got {type(mixture).__name__}")
    if isinstance(mixture, FullCovMixture):
        return mixture
    return FullCovMixture(mixture.means, torch.diag_embed(mixture.stds**2), mixture.weights, name=mixture.name)


def _mode_stats(x: Tensor, mix: FullCovMixture, sde: DiffusionSDE, t: float) -> tuple[Tensor, float]:
    """Component frequencies ``(K,)`` and mean squared Mahalanobis distance per dimension."""
    x = x.to(torch.float64)
    alpha, sigma = sde.marginal_coeffs(torch.tensor([float(t)], dtype=torch.float64))
    resp = mix.responsibilities(x, t, sde)
    lab = resp.argmax(1)
    eye = torch.eye(mix.dim, dtype=torch.float64)
    cov_t = alpha**2 * mix.covs + sigma**2 * eye  # (K, D, D)
    chol = torch.linalg.cholesky(cov_t)[lab]
    resid = (x - alpha * mix.means[lab])[..., None]
    white = torch.linalg.solve_triangular(chol, resid, upper=False)[..., 0]
    freq = torch.bincount(lab, minlength=mix.n_components).to(torch.float64) / x.shape[0]
    return freq, float((white**2).sum(1).mean()) / mix.dim


@dataclass
class ConditionalReference:
    """Exact reference samples of a conditional at time ``t`` and the floors of the four statistics.

    Args:
        mixture: the exact conditional (its samples and modes).
        sde, t: the comparison is against ``p_t`` of ``mixture`` (use ``t = sde.eps``, where
            samplers stop).
        n: sample-set size.
        repeats: exact pairs for the floors.
        seed: of the reference and floor draws.

    Raises:
        TypeError: ``mixture`` not a mixture; `NotAnIntegerError`: ``n``, ``repeats`` or
            ``seed`` not an integer.
        ValueError: ``n < 2``, ``repeats < 1`` (the floors would be 0 and every ratio
            meaningless), a seed outside ``torch.Generator``'s range, ``t`` outside ``[0, T]``.
    """

    mixture: GaussianMixture | FullCovMixture
    sde: DiffusionSDE
    t: float
    n: int = 2000
    repeats: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        self.n = as_integer(self.n, "n", minimum=2)
        self.repeats = as_count(self.repeats, "repeats")
        self.seed = check_seed(as_integer(self.seed, "seed"))  # type: ignore[assignment]
        self.full = as_full_cov(self.mixture)
        g = torch.Generator().manual_seed(self.seed)
        self.ref = self.draw(self.n, g)
        other = self.draw(self.n, g)
        self.bandwidths = metrics.median_bandwidths(self.ref, other)
        self.ref_stats = _mode_stats(self.ref, self.full, self.sde, self.t)
        sums = {"sw": 0.0, "mmd": 0.0, "modes": 0.0, "spread": 0.0}
        for _ in range(self.repeats):
            a, b = self.draw(self.n, g), self.draw(self.n, g)
            for k, v in self._raw(a, b, _mode_stats(b, self.full, self.sde, self.t)).items():
                sums[k] += v / self.repeats
        # Mode frequencies resolve 1/n; a one-mode conditional would otherwise have a zero floor.
        sums["modes"] = max(sums["modes"], 1.0 / self.n)
        self.floors = sums
        self.exact_combined = self.evaluate(self.draw(self.n, g))["combined"]

    def draw(self, n: int, g: torch.Generator) -> Tensor:
        """``n`` exact samples of ``p_t`` of the conditional: ``(n, D)`` float64."""
        return self.full.sample_marginal(n, self.sde, self.t, generator=g, dtype=torch.float64)

    def _raw(self, x: Tensor, y: Tensor, y_stats: tuple[Tensor, float]) -> dict[str, float]:
        fx, sx = _mode_stats(x, self.full, self.sde, self.t)
        return {
            "sw": metrics.sliced_wasserstein(x, y),
            "mmd": abs(metrics.mmd(x, y, bandwidths=self.bandwidths)),
            "modes": 0.5 * float((fx - y_stats[0]).abs().sum()),
            "spread": abs(sx - y_stats[1]),
        }

    def evaluate(self, x: Tensor) -> dict[str, float]:
        """Ratios to the floors for samples ``x: (N, D)`` of the conditional, and ``combined`` (worst).

        Non-finite samples score ``inf`` everywhere.

        Raises:
            TypeError: ``x`` not a tensor. ValueError: ``x`` not ``(N, D)`` with ``N >= 1``.
        """
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor (N, {self.full.dim}), got {type(x).__name__}")
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != self.full.dim:
            raise ValueError(f"x must be samples (N, {self.full.dim}) with N >= 1, got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            return {"sw": float("inf"), "mmd": float("inf"), "modes": float("inf"), "spread": float("inf"),
                    "combined": float("inf")}
        raw = self._raw(x.to(torch.float64), self.ref, self.ref_stats)
        out = {k: raw[k] / max(self.floors[k], 1e-300) for k in raw}
        out["combined"] = max(out.values())
        return out
