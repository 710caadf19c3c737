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

A conditional that fixes some directions exactly (a noiseless measurement: every sample has
``A x = y``, so every component's covariance is singular along the rows of ``A`` and every
component's mean has the same value there) is compared
in the directions where it varies, as `ObservedCoordinates.free` does for a mask; there the
spread of ``p_t`` is ``sigma(t)`` smoothing alone, which a sampler that ends on ``A x = y`` (an
exact projection) does not have and should not be charged for. A fifth ratio, ``constraint``,
checks the fixed directions: the RMS distance of the samples from ``alpha(t)`` times the fixed
value, over the same for exact samples of ``p_t`` (about ``sigma(t)``); samples on the
constraint score about 0, samples off it by more than ``sigma(t)`` more than 1.
"""

from __future__ import annotations

import math
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


FIXED_REL = 1e-12
"""A direction is fixed when the summed covariances' eigenvalue along it is at most this times the
largest (rounding of a Kalman update leaves ~1e-16)."""


def _split_fixed(mix: FullCovMixture) -> tuple[Tensor, Tensor] | None:
    """Orthonormal bases ``(D, D_free)`` and ``(D, D_fixed)`` of the directions where ``mix`` varies
    and where every component is a point (``None`` when none or all are fixed)."""
    total = mix.covs.sum(0)
    evals, evecs = torch.linalg.eigh(0.5 * (total + total.transpose(0, 1)))
    top = float(evals.max())
    fixed = evals <= FIXED_REL * top
    if top <= 0 or not bool(fixed.any()) or bool(fixed.all()):
        return None
    # A constraint fixes one value for every component; components of singular covariance at
    # different places along a direction (modes the direction separates) are not one.
    along = mix.means[mix.weights > 0] @ evecs[:, fixed]  # (K', D_fixed)
    scale = 1.0 + float(mix.means.abs().max()) + math.sqrt(top)
    if float((along - along.mean(0)).abs().max()) > 1e-9 * scale:
        return None
    return evecs[:, ~fixed], evecs[:, fixed]


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
        self.fixed = _split_fixed(self.full)
        self.free_mix = self.full
        if self.fixed is not None:
            u, u0 = self.fixed
            f = self.full
            self.free_mix = FullCovMixture(f.means @ u, u.T @ f.covs @ u, f.weights, name=f.name)
            alpha, _ = self.sde.marginal_coeffs(torch.tensor([float(self.t)], dtype=torch.float64))
            self._fixed_at_t = float(alpha[0]) * (f.weights @ f.means) @ u0  # (D_fixed,)
        g = torch.Generator().manual_seed(self.seed)
        self.ref = self._free(self.draw(self.n, g))
        other = self._free(self.draw(self.n, g))
        self.bandwidths = metrics.median_bandwidths(self.ref, other)
        self.ref_stats = _mode_stats(self.ref, self.free_mix, self.sde, self.t)
        sums = {"sw": 0.0, "mmd": 0.0, "modes": 0.0, "spread": 0.0}
        if self.fixed is not None:
            sums["constraint"] = 0.0
        for _ in range(self.repeats):
            a_full, b_full = self.draw(self.n, g), self.draw(self.n, g)
            a, b = self._free(a_full), self._free(b_full)
            for k, v in self._raw(a, b, _mode_stats(b, self.free_mix, self.sde, self.t)).items():
                sums[k] += v / self.repeats
            if self.fixed is not None:
                sums["constraint"] += self._off_constraint(a_full) / self.repeats
        # Mode frequencies resolve 1/n; a one-mode conditional would otherwise have a zero floor.
        sums["modes"] = max(sums["modes"], 1.0 / self.n)
        if self.fixed is not None:  # at t = 0 exact samples sit on the constraint up to rounding
            sums["constraint"] = max(sums["constraint"], 1e-12 * (1.0 + float(self._fixed_at_t.abs().max())))
        self.floors = sums
        self.exact_combined = self.evaluate(self.draw(self.n, g))["combined"]

    def draw(self, n: int, g: torch.Generator) -> Tensor:
        """``n`` exact samples of ``p_t`` of the conditional: ``(n, D)`` float64 (all directions)."""
        return self.full.sample_marginal(n, self.sde, self.t, generator=g, dtype=torch.float64)

    def _free(self, x: Tensor) -> Tensor:
        """``x: (N, D)`` in the directions where the conditional varies ``(N, D_free)`` (all of them
        unless some are fixed)."""
        return x if self.fixed is None else x @ self.fixed[0]

    def _off_constraint(self, x: Tensor) -> float:
        """RMS distance of ``x: (N, D)`` from the fixed directions' value at ``t``."""
        assert self.fixed is not None
        return float((x @ self.fixed[1] - self._fixed_at_t).pow(2).mean().sqrt())

    def _raw(self, x: Tensor, y: Tensor, y_stats: tuple[Tensor, float]) -> dict[str, float]:
        fx, sx = _mode_stats(x, self.free_mix, self.sde, self.t)
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
            return {k: float("inf") for k in (*self.floors, "combined")}
        x_in_dtype = x.dtype
        x = x.to(torch.float64)
        raw = self._raw(self._free(x), self.ref, self.ref_stats)
        floors = dict(self.floors)
        if self.fixed is not None:
            raw["constraint"] = self._off_constraint(x)
            # Samples stored in a lower precision sit on the constraint only to their rounding,
            # which is relative to the samples' own size (each coordinate is rounded to eps |x_i|).
            eps = torch.finfo(x_in_dtype).eps if x_in_dtype.is_floating_point else 0.0
            size = float(x.pow(2).sum(dim=1).mean().sqrt())
            rounding = 4 * eps * (1.0 + max(size, float(self._fixed_at_t.abs().max())))
            floors["constraint"] = max(floors["constraint"], rounding)
        out = {k: raw[k] / max(floors[k], 1e-300) for k in raw}
        out["combined"] = max(out.values())
        return out
