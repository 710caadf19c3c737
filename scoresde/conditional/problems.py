"""Conditioning problems with multimodal exact answers, shared by the tests, benchmark and docs.

Each returns the prior mixture and the observation; the exact conditionals follow from
`ObservedCoordinates` / `condition_on_measurement`.
"""

from __future__ import annotations

import torch

from ..targets import GaussianMixture, eight_gaussians

__all__ = ["imputation_2d", "imputation_16d", "measurement_2d", "measurement_16d"]


def imputation_2d() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    """Eight Gaussians with ``x_1 = 1`` observed: ``x_2`` is bimodal (near +-1.41), 1-D free part."""
    return eight_gaussians(), torch.tensor([True, False]), torch.tensor([1.0, 0.0], dtype=torch.float64)


def _paired_mixture(dim: int, seed: int) -> GaussianMixture:
    """Four components in pairs that share their first ``dim // 2`` means (the observed part)."""
    g = torch.Generator().manual_seed(seed)
    half = dim // 2
    means = torch.randn((4, dim), generator=g, dtype=torch.float64)
    means[1, :half] = means[0, :half]
    means[3, :half] = means[2, :half]
    stds = 0.2 + 0.2 * torch.rand((4, dim), generator=g, dtype=torch.float64)
    stds[:, :half] = 0.3
    return GaussianMixture(means, stds, [0.1, 0.3, 0.2, 0.4], name=f"paired_{dim}")


def imputation_16d() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    """16-D, first 8 coordinates observed midway between the two pairs: 4 modes in the free 8-D part.

    Both pairs explain ``y`` equally well, so the conditional mode weights are ``(0.1, 0.3, 0.2, 0.4)``.
    """
    mix = _paired_mixture(16, seed=3)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[:8] = True
    y = torch.zeros(16, dtype=torch.float64)
    y[:8] = 0.5 * (mix.means[0, :8] + mix.means[2, :8])
    return mix, mask, y


def measurement_2d() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor, float]:
    """Eight Gaussians observed through ``y = x_1 + x_2 + n``, ``n ~ N(0, 0.1^2)``, ``y = 1.5``."""
    return eight_gaussians(), torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([1.5]), 0.1


def measurement_16d() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor, float]:
    """16-D paired mixture, 4 random projections of the first 8 coordinates with noise 0.1.

    ``y`` is the projection of the midpoint between the pairs, so all four modes stay.
    """
    mix, _, _ = imputation_16d()
    g = torch.Generator().manual_seed(11)
    A = torch.zeros((4, 16), dtype=torch.float64)
    A[:, :8] = torch.randn((4, 8), generator=g, dtype=torch.float64) / 8**0.5
    x_mid = 0.5 * (mix.means[0] + mix.means[2])
    return mix, A, A @ x_mid, 0.1
