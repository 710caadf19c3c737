"""2-D toy samplers: shapes, seeding, dtypes, the documented scale, and their geometry."""

from __future__ import annotations

import math

import pytest
import torch

from scoresde import data, targets

NAMES = data.available_toys()
N = 20_000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_lists_the_required_toys() -> None:
    required = {"moons", "swiss_roll", "circles", "checkerboard", "pinwheel", "two_spirals",
                "eight_gaussians", "grid_25", "ring"}
    assert required <= set(NAMES)
    assert set(NAMES) == set(data.TOYS)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_seeding(name: str) -> None:
    t = data.toy(name)
    x = t.sample(257, generator=_gen(0))
    assert x.shape == (257, 2) and x.dtype == torch.float32 and bool(torch.isfinite(x).all())
    assert torch.equal(x, t.sample(257, generator=_gen(0)))  # same seed, same points
    assert not torch.equal(x, t.sample(257, generator=_gen(1)))
    # float64: the same draws (made in float64), only not rounded to float32.
    x64 = t.sample(257, generator=_gen(0), dtype=torch.float64)
    assert x64.dtype == torch.float64
    torch.testing.assert_close(x64.float(), x, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_documented_scale(name: str) -> None:
    # Mean 0 and average per-coordinate variance tr Cov / 2 = 1, from exact raw moments.
    # (Mixture toys are the presets unless asked to standardize.)
    x = data.toy(name, standardize=True).sample(N, generator=_gen(2), dtype=torch.float64)
    mean = x.mean(dim=0)
    # 5 standard errors of the sample mean (std at most 1.25 per coordinate).
    assert float(mean.abs().max()) < 5 * 1.25 / math.sqrt(N)
    half_sq = 0.5 * ((x - mean) ** 2).sum(dim=1)  # its mean estimates tr Cov / 2
    se = float(half_sq.std()) / math.sqrt(N)
    assert abs(float(half_sq.mean()) - 1.0) < 5 * se  # 5 standard errors
    std = x.std(dim=0)
    if name == "moons":
        # Isotropic scaling keeps the aspect: exact stds sqrt(0.76 / s^2), sqrt(0.2542 / s^2).
        s2 = 0.5 * (0.76 + 9 / 16 - 1 / math.pi + 0.01)
        expected = torch.tensor([math.sqrt(0.76 / s2), math.sqrt((9 / 16 - 1 / math.pi + 0.01) / s2)])
        torch.testing.assert_close(std, expected.double(), rtol=0.02, atol=0)  # ~5 sampling SE
    else:
        assert float((std - 1).abs().max()) < 0.05  # documented 3%, plus sampling error


def test_unknown_name_and_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="unknown toy 'spiral'.*checkerboard.*two_spirals"):
        data.toy("spiral")
    with pytest.raises(ValueError, match="noise"):
        data.toy("moons", noise=-0.1)
    with pytest.raises(ValueError, match="factor"):
        data.toy("circles", factor=1.5)
    with pytest.raises(ValueError, match="n_arms"):
        data.toy("pinwheel", n_arms=1)
    with pytest.raises(TypeError):
        data.toy("checkerboard", noise=0.1)  # checkerboard has no noise option
    with pytest.raises(ValueError, match="n must be"):
        data.toy("moons").sample(0)
    with pytest.raises(TypeError, match="dtype"):
        data.toy("moons").sample(5, dtype=torch.int64)


def test_checkerboard_lies_on_dark_squares() -> None:
    x = data.toy("checkerboard", standardize=False).sample(4000, generator=_gen(3), dtype=torch.float64)
    assert float(x.abs().max()) <= 2.0
    cells = torch.floor(x).long() + 2
    assert bool(((cells.sum(dim=1) % 2) == 0).all())
    # All 8 dark cells are used, about equally (each 500 +- 22; 6 std).
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16)
    dark = counts[(torch.arange(16) // 4 + torch.arange(16) % 4) % 2 == 0]
    assert int((dark - 500).abs().max()) < 6 * math.sqrt(4000 * (1 / 8) * (7 / 8))


def test_noise_free_curves_have_their_geometry() -> None:
    g = _gen(4)
    # Circles: radii 1 and factor, after division by the scale.
    t = data.toy("circles", noise=0.0, factor=0.4)
    r = torch.linalg.vector_norm(t.sample(500, generator=g, dtype=torch.float64), dim=1) * t.scale
    assert bool((torch.minimum((r - 1).abs(), (r - 0.4).abs()) < 1e-12).all())  # rounding
    # Moons: raw points on the unit circle or on the shifted, mirrored one.
    m = data.toy("moons", noise=0.0, standardize=False).sample(500, generator=g, dtype=torch.float64)
    on_upper = (torch.linalg.vector_norm(m, dim=1) - 1).abs() < 1e-12
    on_lower = (torch.linalg.vector_norm(m - torch.tensor([1.0, 0.5], dtype=torch.float64), dim=1) - 1).abs() < 1e-12
    assert bool((on_upper | on_lower).all()) and bool(on_upper.any()) and bool(on_lower.any())
    # Two spirals: |x| equals the polar angle along the arm, up to the sign flip.
    s = data.toy("two_spirals", noise=0.0, standardize=False).sample(500, generator=g, dtype=torch.float64)
    rad = torch.linalg.vector_norm(s, dim=1)
    torch.testing.assert_close(torch.cos(rad).abs(), (s[:, 0] / rad).abs(), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "preset"),
    [("eight_gaussians", targets.eight_gaussians), ("grid_25", targets.grid_25), ("ring", targets.ring)],
)
def test_mixture_toys_are_the_exact_presets_rescaled(name: str, preset) -> None:
    raw = data.toy(name).mixture  # the default is the preset itself
    ref = preset()
    assert torch.equal(raw.means, ref.means) and torch.equal(raw.weights, ref.weights)
    assert torch.equal(raw.stds, ref.stds)
    t = data.toy(name, standardize=True)
    mix = t.mixture
    # The standardized mixture: exact mean 0 and tr Cov / 2 = 1 (1e-12: rounding).
    assert float(mix.mean().abs().max()) < 1e-12
    assert float(torch.trace(mix.covariance())) / 2 == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(mix.means, (ref.means - ref.mean()) / t.scale)
    torch.testing.assert_close(mix.stds, ref.stds / t.scale)
    # Sampling the toy is sampling its mixture.
    assert torch.equal(t.sample(100, generator=_gen(5)), mix.sample(100, generator=_gen(5)))


def test_raw_toys_match_their_exact_raw_moments() -> None:
    # standardize=False: the sample mean and tr Cov / 2 agree with raw_moments().
    for name in ["moons", "swiss_roll", "pinwheel"]:
        t = data.toy(name, standardize=False)
        (mx, my), avg_var = t.raw_moments()
        x = t.sample(N, generator=_gen(6), dtype=torch.float64)
        half_sq = 0.5 * ((x - x.mean(0)) ** 2).sum(dim=1)
        se = float(half_sq.std()) / math.sqrt(N)
        assert abs(float(half_sq.mean()) - avg_var) < 5 * se  # 5 standard errors
        mean_se = float(x.std(dim=0).max()) / math.sqrt(N)
        assert float((x.mean(0) - torch.tensor([mx, my], dtype=torch.float64)).abs().max()) < 5 * mean_se


def test_fuzzed_sample_and_option_errors_name_the_argument() -> None:
    moons = data.toy("moons")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        moons.sample(3, device="gpu")  # a raw RuntimeError from torch before
    with pytest.raises(ValueError, match="n must be an integer"):
        moons.sample(2.0)  # type: ignore[arg-type]
    assert moons.sample(torch.tensor(3)).shape == (3, 2)  # integer-like counts are accepted
    assert data.toy("ring").sample(_np_int(3)).shape == (3, 2)
    with pytest.raises(TypeError, match="noise must be a real number"):
        data.toy("moons", noise="a")  # "'>=' not supported between 'str' and 'int'" before
    with pytest.raises(TypeError, match="factor must be a real number"):
        data.toy("circles", factor="a")
    with pytest.raises(TypeError, match="turns must be a real number"):
        data.toy("two_spirals", turns="1")
    assert data.toy("pinwheel", n_arms=_np_int(3)).n_arms == 3


def _np_int(n: int) -> object:
    import numpy as np

    return np.int64(n)
