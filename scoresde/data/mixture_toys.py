"""2-D toys backed by exact Gaussian mixtures: eight_gaussians, grid_25, ring.

They default to ``standardize=False``: they ARE the presets of `scoresde.targets` of the same
name, so a network trained on the toy is compared with the exact target without rescaling,
and ``.mixture`` gives the exact score of every noised marginal.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import targets
from ..targets import GaussianMixture
from .toys import Toy, _check_sample_args

__all__ = ["MixtureToy", "EightGaussians", "Grid25", "Ring"]


class MixtureToy(Toy):
    """A toy backed by an exact 2-D `GaussianMixture`.

    With ``standardize`` the mixture itself is shifted and scaled (means ``(mu_k - m) / s``,
    stds ``s_k / s``, same weights; ``m`` and ``s^2 = tr Cov / 2`` from the mixture's exact
    mean and covariance), so `mixture` is exactly the law that `sample` draws
    from and gives exact scores of its noised marginals.
    """

    name = "mixture"

    def __init__(self, mixture: GaussianMixture, *, standardize: bool = True) -> None:
        if not isinstance(mixture, GaussianMixture) or mixture.dim != 2:
            raise ValueError("MixtureToy needs a 2-D scoresde.targets.GaussianMixture")
        self._raw_mixture = mixture
        super().__init__(standardize=standardize)
        self.mixture = mixture
        if self.standardize:
            self.mixture = GaussianMixture(
                (mixture.means - self.center) / self.scale,
                mixture.stds / self.scale,
                mixture.weights,
                name=mixture.name,
            )

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        mean = self._raw_mixture.mean()
        avg_var = float(torch.trace(self._raw_mixture.covariance())) / 2.0
        return (float(mean[0]), float(mean[1])), avg_var

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` exact samples of `mixture`: ``(n, 2)`` (errors as in `Toy.sample`)."""
        n = _check_sample_args(n, generator, dtype)
        return self.mixture.sample(n, generator=generator, dtype=dtype, device=device)


class EightGaussians(MixtureToy):
    """8 Gaussians on a circle (`scoresde.targets.eight_gaussians`) (the preset itself by default)."""

    name = "eight_gaussians"

    def __init__(self, *, radius: float = 2.0, std: float = 0.15, standardize: bool = False) -> None:
        super().__init__(targets.eight_gaussians(radius, std), standardize=standardize)


class Grid25(MixtureToy):
    """5x5 grid of Gaussians, unequal weights (`scoresde.targets.grid_25`) (the preset itself by default)."""

    name = "grid_25"

    def __init__(self, *, spacing: float = 1.0, std: float = 0.08, standardize: bool = False) -> None:
        super().__init__(targets.grid_25(spacing, std), standardize=standardize)


class Ring(MixtureToy):
    """Narrow Gaussians on a ring (`scoresde.targets.ring`) (the preset itself by default)."""

    name = "ring"

    def __init__(
        self, *, n: int = 12, radius: float = 1.5, std: float = 0.05, standardize: bool = False
    ) -> None:
        super().__init__(targets.ring(n, radius, std), standardize=standardize)
