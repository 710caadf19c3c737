"""2-D toy distributions, reachable by name, all on one comparable scale.

    from scoresde import data
    x = data.toy("checkerboard").sample(10_000, generator=torch.Generator().manual_seed(0))
    data.available_toys()   # ['moons', 'swiss_roll', 'circles', ...]

Scale convention: every toy is defined by a *raw* shape (documented on its class) and, by
default (``standardize=True``), shifted and scaled isotropically,
``x = (x_raw - center) / scale``, with ``center`` the exact mean of the raw law and
``scale^2`` its exact average per-coordinate variance ``tr Cov(x_raw) / 2`` (closed forms
below, not estimates). So every toy has mean 0 and ``tr Cov = 2``: unit variance per
coordinate on average. The scaling is isotropic so shapes are not distorted, hence the
per-coordinate stds of an anisotropic toy differ from 1: moons 1.22 and 0.71, the others
within 3% of 1. ``standardize=False`` gives the raw shape.

``eight_gaussians``, ``grid_25`` and ``ring`` are exact Gaussian mixtures and, unlike the
other toys, default to ``standardize=False``: they ARE the presets of `scoresde.targets`
of the same name (already of unit-order scale), so a network trained on the toy is compared
with the exact target without any rescaling. Their ``.mixture`` is the
`GaussianMixture` they sample from (standardized or not), so the
exact score of every noised marginal is available for them.

Sampling draws float64 numbers on the generator's device (or ``device`` without a
generator) and casts to ``dtype``/``device`` at the end, so a seed gives the same points in
every dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from solvers.inputs import as_count, as_integer, as_real, check_device, check_generator

from .arrays import check_sample_dtype

__all__ = [
    "Toy",
    "Moons",
    "SwissRoll",
    "Circles",
    "Checkerboard",
    "Pinwheel",
    "TwoSpirals",
    "MixtureToy",
    "EightGaussians",
    "Grid25",
    "Ring",
    "TOYS",
    "toy",
    "available_toys",
]


class Toy:
    """Base class of the 2-D toys: a raw sampler plus the exact moments that standardize it.

    Subclasses implement `_sample_raw` (float64 ``(n, 2)`` on the generator's device)
    and `raw_moments` (exact mean and average per-coordinate variance of the raw law).
    """

    name: str = "toy"
    dim: int = 2

    def __init__(self, *, standardize: bool = True) -> None:
        self.standardize = bool(standardize)
        mean, avg_var = self.raw_moments()
        if self.standardize:
            self.center = torch.tensor(mean, dtype=torch.float64)
            self.scale = math.sqrt(avg_var)
        else:
            self.center = torch.zeros(2, dtype=torch.float64)
            self.scale = 1.0

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        """Exact ``(mean (2,), tr Cov / 2)`` of the raw (unstandardized) law."""
        raise NotImplementedError

    def _sample_raw(self, n: int, generator: torch.Generator | None, device: torch.device | None) -> Tensor:
        raise NotImplementedError

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``n`` samples: ``(n, 2)`` of ``dtype`` on ``device``.

        Raises:
            NotAnIntegerError: ``n`` is not an integer (``2.0`` included).
            ValueError: ``n < 1``, or an unknown / unavailable ``device``.
            TypeError: ``generator`` is not a ``torch.Generator``, or ``dtype`` is not floating.
        """
        n = _check_sample_args(n, generator, dtype)
        device = None if device is None else check_device(device)
        gen_device = generator.device if generator is not None else device
        raw = self._sample_raw(n, generator, gen_device)
        x = (raw - self.center.to(raw.device)) / self.scale
        return x.to(dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(standardize={self.standardize})"


def _check_sample_args(n: int, generator: torch.Generator | None, dtype: torch.dtype) -> int:
    """``n`` as a positive int, after checking ``generator`` and ``dtype``."""
    n = as_count(n, "n")
    check_generator(generator)
    if dtype is None:
        raise TypeError("dtype must be a floating torch.dtype, got None")
    check_sample_dtype(dtype)
    return n


def _check_nonneg(**values: float) -> None:
    for key, v in values.items():
        x = as_real(v, key)
        if not (x >= 0 and math.isfinite(x)):
            raise ValueError(f"{key} must be finite and >= 0, got {v!r}")


def _uniform(n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64, device=device)


def _normal(shape: tuple[int, ...], g: torch.Generator | None, device: torch.device | None) -> Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64, device=device)


def _coin(n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
    """Fair 0/1 labels as a float64 ``(n,)`` tensor."""
    return torch.randint(0, 2, (n,), generator=g, device=device).to(torch.float64)


class Moons(Toy):
    """Two interleaving half circles ("moons").

    Raw law: ``theta ~ U(0, pi)``, a fair label picks the upper arc ``(cos theta, sin theta)``
    or the lower arc ``(1 - cos theta, 1/2 - sin theta)``, plus ``N(0, noise^2 I)``.
    Mean ``(1/2, 1/4)``; ``Var x = 3/4``, ``Var y = 9/16 - 1/pi`` (+ ``noise^2`` each).
    """

    name = "moons"

    def __init__(self, *, noise: float = 0.1, standardize: bool = True) -> None:
        _check_nonneg(noise=noise)
        self.noise = float(noise)
        super().__init__(standardize=standardize)

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        var_x, var_y = 0.75, 9.0 / 16.0 - 1.0 / math.pi
        return (0.5, 0.25), 0.5 * (var_x + var_y) + self.noise**2

    def _sample_raw(self, n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
        theta = math.pi * _uniform(n, g, device)
        lower = _coin(n, g, device)
        c, s = torch.cos(theta), torch.sin(theta)
        # Upper arc when lower == 0, mirrored and shifted arc when lower == 1.
        x = c + lower * (1.0 - 2.0 * c)
        y = s + lower * (0.5 - 2.0 * s)
        return torch.stack([x, y], dim=1) + self.noise * _normal((n, 2), g, device)


class SwissRoll(Toy):
    """The 2-D Swiss roll: a noisy Archimedean spiral.

    Raw law: ``t ~ U(3 pi / 2, 9 pi / 2)`` (1.5 turns), point ``t (cos t, sin t)`` plus
    ``N(0, noise^2 I)``. Mean ``(E[t cos t], E[t sin t])`` and ``E t^2`` by integration by
    parts: ``int t cos t = t sin t + cos t``, ``int t sin t = sin t - t cos t``.
    """

    name = "swiss_roll"
    t0 = 1.5 * math.pi
    t1 = 4.5 * math.pi

    def __init__(self, *, noise: float = 1.0, standardize: bool = True) -> None:
        _check_nonneg(noise=noise)
        self.noise = float(noise)
        super().__init__(standardize=standardize)

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        a, b = self.t0, self.t1
        span = b - a
        mx = ((b * math.sin(b) + math.cos(b)) - (a * math.sin(a) + math.cos(a))) / span
        my = ((math.sin(b) - b * math.cos(b)) - (math.sin(a) - a * math.cos(a))) / span
        e_t2 = (b**3 - a**3) / (3.0 * span)
        return (mx, my), 0.5 * (e_t2 - mx**2 - my**2) + self.noise**2

    def _sample_raw(self, n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
        t = self.t0 + (self.t1 - self.t0) * _uniform(n, g, device)
        spiral = t[:, None] * torch.stack([torch.cos(t), torch.sin(t)], dim=1)
        return spiral + self.noise * _normal((n, 2), g, device)


class Circles(Toy):
    """Two concentric circles of radii 1 and ``factor``.

    Raw law: a fair label picks the radius, the angle is ``U(0, 2 pi)``, plus
    ``N(0, noise^2 I)``. Mean 0; per-coordinate variance ``(1 + factor^2) / 4 + noise^2``.
    """

    name = "circles"

    def __init__(self, *, factor: float = 0.5, noise: float = 0.08, standardize: bool = True) -> None:
        if not 0 < as_real(factor, "factor") < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
        _check_nonneg(noise=noise)
        self.factor, self.noise = float(factor), float(noise)
        super().__init__(standardize=standardize)

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        return (0.0, 0.0), 0.25 * (1.0 + self.factor**2) + self.noise**2

    def _sample_raw(self, n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
        angle = 2.0 * math.pi * _uniform(n, g, device)
        radius = 1.0 + (self.factor - 1.0) * _coin(n, g, device)
        circle = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        return circle + self.noise * _normal((n, 2), g, device)


class Checkerboard(Toy):
    """Uniform on the 8 dark squares of a 4x4 checkerboard.

    Raw law: a cell ``(i, j)``, ``i, j in {0..3}``, ``i + j`` even, chosen uniformly, then a
    uniform point in ``[-2 + i, -1 + i] x [-2 + j, -1 + j]``. Each coordinate is marginally
    ``U(-2, 2)``: mean 0, variance ``4/3``.
    """

    name = "checkerboard"

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        return (0.0, 0.0), 4.0 / 3.0

    def _sample_raw(self, n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
        cell = torch.randint(0, 8, (n,), generator=g, device=device)
        i = cell // 2
        j = 2 * (cell % 2) + i % 2  # the column parity makes i + j even
        corner = torch.stack([i, j], dim=1).to(torch.float64) - 2.0
        u = torch.rand((n, 2), generator=g, dtype=torch.float64, device=device)
        return corner + u


class Pinwheel(Toy):
    """Curved Gaussian arms ("pinwheel"; Johnson et al. 2016, SVAE experiments).

    Raw law: arm ``k ~ U{0..n_arms-1}``, ``f = (1 + radial_std z_1, tangential_std z_2)``,
    rotated by ``2 pi k / n_arms + rate exp(f_1)``. The ``n_arms``-fold symmetry
    (``n_arms >= 2``) makes the mean 0, and rotations keep ``|f|``, so
    ``tr Cov / 2 = (1 + radial_std^2 + tangential_std^2) / 2``.
    """

    name = "pinwheel"

    def __init__(
        self,
        *,
        n_arms: int = 5,
        radial_std: float = 0.3,
        tangential_std: float = 0.1,
        rate: float = 0.25,
        standardize: bool = True,
    ) -> None:
        n_arms = as_integer(n_arms, "n_arms", minimum=2)
        _check_nonneg(radial_std=radial_std, tangential_std=tangential_std)
        if not math.isfinite(as_real(rate, "rate")):
            raise ValueError(f"rate must be finite, got {rate!r}")
        self.n_arms = n_arms
        self.radial_std, self.tangential_std, self.rate = float(radial_std), float(tangential_std), float(rate)
        super().__init__(standardize=standardize)

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        return (0.0, 0.0), 0.5 * (1.0 + self.radial_std**2 + self.tangential_std**2)

    def _sample_raw(self, n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
        arm = torch.randint(0, self.n_arms, (n,), generator=g, device=device).to(torch.float64)
        z = _normal((n, 2), g, device)
        f1 = 1.0 + self.radial_std * z[:, 0]
        f2 = self.tangential_std * z[:, 1]
        # The further out along the arm, the more it is rotated: this bends the arms.
        angle = 2.0 * math.pi * arm / self.n_arms + self.rate * torch.exp(f1)
        c, s = torch.cos(angle), torch.sin(angle)
        return torch.stack([c * f1 - s * f2, s * f1 + c * f2], dim=1)


class TwoSpirals(Toy):
    """Two interleaved spirals, one the point reflection of the other.

    Raw law: ``theta = sqrt(u) theta_max``, ``u ~ U(0, 1)``, ``theta_max = 2 pi turns``
    (``sqrt`` spreads points evenly along the arm), point ``+- theta (cos theta, sin theta)``
    with a fair sign, plus ``N(0, noise^2 I)``. The sign symmetry makes the mean 0, and
    ``E theta^2 = theta_max^2 / 2`` gives ``tr Cov / 2 = theta_max^2 / 4 + noise^2``.
    """

    name = "two_spirals"

    def __init__(self, *, turns: float = 1.5, noise: float = 0.4, standardize: bool = True) -> None:
        if not (as_real(turns, "turns") > 0 and math.isfinite(turns)):
            raise ValueError(f"turns must be positive and finite, got {turns!r}")
        _check_nonneg(noise=noise)
        self.turns, self.noise = float(turns), float(noise)
        super().__init__(standardize=standardize)

    def raw_moments(self) -> tuple[tuple[float, float], float]:
        theta_max = 2.0 * math.pi * self.turns
        return (0.0, 0.0), 0.25 * theta_max**2 + self.noise**2

    def _sample_raw(self, n: int, g: torch.Generator | None, device: torch.device | None) -> Tensor:
        theta = torch.sqrt(_uniform(n, g, device)) * (2.0 * math.pi * self.turns)
        sign = 1.0 - 2.0 * _coin(n, g, device)
        arm = (sign * theta)[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
        return arm + self.noise * _normal((n, 2), g, device)


# The exact-mixture toys and the name table live in their own modules; re-exported here.
from .mixture_toys import EightGaussians, Grid25, MixtureToy, Ring  # noqa: E402
from .toy_registry import TOYS, available_toys, toy  # noqa: E402
