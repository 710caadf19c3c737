"""Preset Gaussian-mixture targets by name: 2-D toys, high-dimensional and sharp mixtures.

Each preset is a `scoresde.mixture.GaussianMixture` (exact samples, densities and the exact
score of every noised marginal, re-exported here as ``scoresde.targets.GaussianMixture``);
`get_target` builds one by name (`PRESETS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from solvers.inputs import as_count, as_integer
from solvers.registry import closest_name

from .mixture import COMPONENTS_FIRST_MAX_DIM, GaussianMixture

__all__ = [
    "GaussianMixture",
    "COMPONENTS_FIRST_MAX_DIM",
    "eight_gaussians",
    "grid_25",
    "ring",
    "two_gaussians",
    "checker_mixture",
    "high_dim",
    "sharp_8",
    "sharp_25",
    "sharp_32d",
    "SHARP_TARGETS",
    "PRESETS",
    "get_target",
]


def eight_gaussians(radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
    """8 equal-weight isotropic Gaussians evenly spaced on a circle of ``radius`` (2-D)."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    return GaussianMixture(means, std, name="eight_gaussians")


def grid_25(spacing: float = 1.0, std: float = 0.08) -> GaussianMixture:
    """5x5 grid of Gaussians with unequal weights (from 1 to 7 across the grid), centred (2-D)."""
    coords = (torch.arange(5, dtype=torch.float64) - 2.0) * spacing
    gx, gy = torch.meshgrid(coords, coords, indexing="ij")
    means = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    weights = 1.0 + (torch.arange(25, dtype=torch.float64) % 5) + (torch.arange(25) // 5).double() * 0.5
    return GaussianMixture(means, std, weights, name="grid_25")


def ring(n: int = 12, radius: float = 1.5, std: float = 0.05) -> GaussianMixture:
    """``n`` narrow Gaussians on a ring: thin, well-separated modes (2-D).

    Raises:
        TypeError, ValueError: ``n`` not a positive integer.
    """
    n = as_count(n, "n")
    ang = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    return GaussianMixture(means, std, name="ring")


def two_gaussians() -> GaussianMixture:
    """Two anisotropic (diagonal) Gaussians with weights 0.3 / 0.7 (2-D)."""
    means = [[-1.5, 0.5], [1.0, -0.5]]
    stds = [[0.2, 0.6], [0.5, 0.15]]
    return GaussianMixture(means, stds, [0.3, 0.7], name="two_gaussians")


def checker_mixture(std: float = 0.12) -> GaussianMixture:
    """8 Gaussians at the centres of the dark squares of a 4x4 checkerboard on [-2, 2]^2."""
    centres = [(-1.5 + i, -1.5 + j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    return GaussianMixture(centres, std, name="checker_mixture")


def high_dim(dim: int = 16, n_components: int = 6, *, seed: int = 0, spread: float = 1.0) -> GaussianMixture:
    """A ``dim``-dimensional mixture with random means, diagonal stds and weights (fixed ``seed``).

    Raises:
        TypeError, ValueError: ``dim`` or ``n_components`` not a positive integer.
    """
    dim, n_components = as_count(dim, "dim"), as_count(n_components, "n_components")
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn((n_components, dim), generator=g, dtype=torch.float64)
    stds = 0.1 + 0.3 * torch.rand((n_components, dim), generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(n_components, generator=g, dtype=torch.float64)
    return GaussianMixture(means, stds, weights, name=f"high_dim_{dim}")


# --- sharp presets: mode std 1/20 to 1/30 of the distance between neighbouring modes --------
def sharp_8(radius: float = 1.5, std: float = 0.05) -> GaussianMixture:
    """8 equal-weight modes on a circle; std / neighbour spacing = 0.05 / 1.148 = 1/23 (2-D)."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)
    return GaussianMixture(means, std, name="sharp_8")


def sharp_25(spacing: float = 1.0, std: float = 0.04) -> GaussianMixture:
    """5x5 grid, weights 1 to 7 across the grid (as ``grid_25``), std / spacing = 1/25 (2-D)."""
    mix = grid_25(spacing, std)
    return GaussianMixture(mix.means, std, mix.weights, name="sharp_25")


def sharp_32d(dim: int = 32, n_components: int = 10, *, seed: int = 0) -> GaussianMixture:
    """``dim``-D mixture, random means and weights (fixed ``seed``), diagonal stds in
    ``[d_min/30, d_min/20]`` with ``d_min`` the smallest distance between two means.

    Raises:
        TypeError, ValueError: ``dim`` not a positive integer, ``n_components`` not an integer >= 2.
    """
    dim, n_components = as_count(dim, "dim"), as_integer(n_components, "n_components", minimum=2)
    g = torch.Generator().manual_seed(seed)
    means = torch.randn((n_components, dim), generator=g, dtype=torch.float64)
    d = torch.cdist(means, means) + torch.eye(n_components, dtype=torch.float64) * 1e9
    d_min = float(d.min())
    stds = d_min * (1 / 30 + (1 / 20 - 1 / 30) * torch.rand((n_components, dim), generator=g, dtype=torch.float64))
    weights = 0.5 + torch.rand(n_components, generator=g, dtype=torch.float64)
    return GaussianMixture(means, stds, weights, name=f"sharp_{dim}d")


#: The sharp benchmark targets (issue: sample the data, not its blurred neighbour).
SHARP_TARGETS: tuple[str, ...] = ("sharp_8", "sharp_25", "sharp_32d")


PRESETS: dict[str, Callable[[], GaussianMixture]] = {
    "eight_gaussians": eight_gaussians,
    "grid_25": grid_25,
    "ring": ring,
    "two_gaussians": two_gaussians,
    "checker_mixture": checker_mixture,
    "high_dim_16": lambda: high_dim(16),
    "high_dim_32": lambda: high_dim(32),
    "sharp_8": sharp_8,
    "sharp_25": sharp_25,
    "sharp_32d": sharp_32d,
}


def get_target(name: str) -> GaussianMixture:
    """Preset mixture by name; the error lists the valid names."""
    try:
        return PRESETS[name]()
    except KeyError:
        guess = closest_name(PRESETS, name)
        advice = f" did you mean {guess!r}?" if guess is not None else ""
        raise ValueError(f"unknown target {name!r};{advice} valid targets: {', '.join(PRESETS)}") from None
