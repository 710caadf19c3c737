"""Metrics against closed forms: sliced W2, MMD, energy distance, mode statistics, noise floors."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from scoresde import metrics, targets


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gauss(n: int, d: int, g: torch.Generator, *, mean: float | torch.Tensor = 0.0, std: float = 1.0) -> torch.Tensor:
    return mean + std * torch.randn((n, d), generator=g, dtype=torch.float64)


# --- sliced Wasserstein ----------------------------------------------------------------------
def test_sw2_of_identical_and_permuted_sets_is_zero() -> None:
    x = _gauss(200, 3, _gen(0))
    assert metrics.sliced_wasserstein(x, x) == 0.0
    # Order does not matter: the sorted projections are the same.
    perm = torch.randperm(200, generator=_gen(1))
    assert metrics.sliced_wasserstein(x, x[perm]) < 1e-12  # rounding of the projections only


def test_sw2_one_dimensional_hand_computed_unequal_sizes() -> None:
    # Quantile functions of {0, 1, 2} and {0, 3}: W2^2 = 1/6 * 1 + 1/6 * 4 + 1/3 * 1 = 7/6.
    x = torch.tensor([[0.0], [1.0], [2.0]])
    y = torch.tensor([[3.0], [0.0]])
    # In D = 1 every direction is +-1, so SW2 = W2 exactly; 1e-12: float64 rounding.
    assert metrics.sliced_wasserstein(x, y) == pytest.approx(math.sqrt(7 / 6), rel=1e-12)
    assert metrics.sliced_wasserstein(y, x) == pytest.approx(math.sqrt(7 / 6), rel=1e-12)


def test_sw2_one_dimensional_shift_is_exact() -> None:
    x = _gauss(500, 1, _gen(2))
    assert metrics.sliced_wasserstein(x, x + 0.7) == pytest.approx(0.7, rel=1e-12)  # float64 rounding


def test_sw2_unequal_sizes_same_empirical_measure_is_zero() -> None:
    # Every point duplicated: the same empirical measure with M = 2N (exercises the N != M merge).
    x = _gauss(300, 2, _gen(3))
    y = x.repeat(2, 1)[torch.randperm(600, generator=_gen(4))]
    assert metrics.sliced_wasserstein(x, y) < 1e-12  # rounding only


def test_sw2_translation_matches_the_sphere_average() -> None:
    # y = x + v: every projected W2^2 is exactly (theta . v)^2, so SW2^2 is the projection
    # average of (theta . v)^2, with mean |v|^2 / D; (theta . e)^2 ~ Beta(1/2, (D-1)/2) has
    # variance 2 (D - 1) / (D^2 (D + 2)).
    d, n_proj = 3, 4000
    v = torch.tensor([0.6, -0.8, 0.0], dtype=torch.float64)  # |v| = 1
    x = _gauss(50, d, _gen(5))
    sw2_sq = metrics.sliced_wasserstein(x, x + v, n_projections=n_proj, seed=7) ** 2
    mc_std = math.sqrt(2 * (d - 1) / (d**2 * (d + 2)) / n_proj)
    assert abs(sw2_sq - 1 / d) < 4 * mc_std  # 4 Monte-Carlo standard errors of the projections


def test_sw2_between_gaussians_matches_closed_form() -> None:
    # N(0, I) vs N(mu, s^2 I): each projection is N(0, 1) vs N(theta . mu, s^2), W2^2 =
    # (theta . mu)^2 + (1 - s)^2, so SW2^2 = |mu|^2 / D + (1 - s)^2 = 1/4 + 1/4 = 0.5 here.
    d, n = 4, 2000
    mu = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    x = _gauss(n, d, _gen(10))
    y = _gauss(n, d, _gen(11), mean=mu, std=1.5)
    sw2_sq = metrics.sliced_wasserstein(x, y, n_projections=256) ** 2
    # Spread of this estimate over 40 seeds (sampling + projections): std 0.033; 4 std.
    assert sw2_sq == pytest.approx(0.5, abs=0.13)


def test_sw2_chunking_seed_and_dtype() -> None:
    x, y = _gauss(120, 3, _gen(12)), _gauss(90, 3, _gen(13), mean=0.3)
    ref = metrics.sliced_wasserstein(x, y, n_projections=64)
    # Chunking over projections does not change the value (up to summation order).
    assert metrics.sliced_wasserstein(x, y, n_projections=64, max_elements=500) == pytest.approx(ref, rel=1e-12)
    assert metrics.sliced_wasserstein(x, y, n_projections=64, seed=0) == ref  # seeded directions
    assert metrics.sliced_wasserstein(x, y, n_projections=64, seed=1) != ref
    # float32 input: computed in float64 after the cast, so only the input rounding differs.
    assert metrics.sliced_wasserstein(x.float(), y.float(), n_projections=64) == pytest.approx(ref, rel=1e-5)


# --- MMD and energy distance -----------------------------------------------------------------
def _naive_mmd(x: torch.Tensor, y: torch.Tensor, hs: tuple[float, ...]) -> float:
    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - kxx.diag().sum()) / (n * (n - 1))
        + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def _naive_energy(x: torch.Tensor, y: torch.Tensor) -> float:
    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).sqrt()

    n, m = len(x), len(y)
    return float(2 * dist(x, y).mean() - dist(x, x).sum() / (n * (n - 1)) - dist(y, y).sum() / (m * (m - 1)))


def test_mmd_and_energy_match_direct_formulas_with_chunking() -> None:
    x, y = _gauss(70, 3, _gen(20)), _gauss(45, 3, _gen(21), mean=0.5)
    hs = (0.5, 1.0, 1.7)  # not a geometric ladder: every kernel by its own exp
    for max_elements in (2**16, 100):  # one block, and many blocks crossing the diagonal
        # 1e-10: float64 rounding of the |a|^2 + |b|^2 - 2ab distances.
        assert metrics.mmd(x, y, bandwidths=hs, max_elements=max_elements) == pytest.approx(
            _naive_mmd(x, y, hs), rel=1e-10
        )
        assert metrics.energy_distance(x, y, max_elements=max_elements) == pytest.approx(
            _naive_energy(x, y), rel=1e-10
        )
    # The default bandwidths are powers-of-two multiples (kernels by repeated squaring).
    hs_default = metrics.median_bandwidths(x, y)
    assert metrics.mmd(x, y) == pytest.approx(_naive_mmd(x, y, hs_default), rel=1e-10)  # rounding


def test_median_bandwidths_are_factors_times_median_distance() -> None:
    x, y = _gauss(40, 2, _gen(22)), _gauss(30, 2, _gen(23))
    med = float(torch.median(torch.pdist(torch.cat([x, y]))))
    hs = metrics.median_bandwidths(x, y)
    assert hs == pytest.approx(tuple(f * med for f in metrics.DEFAULT_BANDWIDTH_FACTORS), rel=1e-12)


def _mean_and_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values)
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(len(arr)))


def test_mmd_is_unbiased_against_the_gaussian_closed_form() -> None:
    # N(0, s^2 I) vs N(delta, s^2 I), RBF bandwidth h, c = (h^2 / (h^2 + 2 s^2))^(D/2):
    # MMD^2 = 2 c (1 - exp(-|delta|^2 / (2 (h^2 + 2 s^2)))).
    d, n, h, shift, reps = 2, 150, 1.0, 0.5, 24
    c = (h**2 / (h**2 + 2.0)) ** (d / 2)
    exact = 2 * c * (1 - math.exp(-(shift**2) / (2 * (h**2 + 2.0))))
    delta = torch.tensor([shift, 0.0], dtype=torch.float64)
    g = _gen(30)
    vals = [metrics.mmd(_gauss(n, d, g), _gauss(n, d, g, mean=delta), bandwidths=h) for _ in range(reps)]
    mean, se = _mean_and_se(vals)
    assert abs(mean - exact) < 4 * se  # unbiased: the mean of repeats is within 4 standard errors
    assert exact > 8 * se  # and the shift is clearly resolved


def test_mmd_same_law_is_zero_within_noise_and_positive_for_shift() -> None:
    sample = lambda n, g: _gauss(n, 2, g)  # noqa: E731
    stat = partial(metrics.mmd, bandwidths=(0.5, 1.0, 2.0))  # fixed bandwidths: exactly unbiased
    mean, std = metrics.noise_floor(stat, sample, 150, repeats=24, seed=31)
    assert abs(mean) < 4 * std / math.sqrt(24)  # 4 standard errors of the mean of 24 repeats
    g = _gen(32)
    shifted = stat(_gauss(150, 2, g), _gauss(150, 2, g, mean=1.0))
    assert shifted > mean + 10 * std  # a unit shift is far outside the noise floor


def test_one_set_against_itself_is_zero_and_not_below_the_noise() -> None:
    # The unbiased estimates assume independent sets; for x = y they would be -2/N times the
    # gap between k(0) and the other kernel values (about -0.02 at N = 200 on sharp_8, 3.7
    # times the floor of two independent sets), which CombinedMetric's |MMD| read as an error.
    tg = targets.get_target("sharp_8")
    y = tg.sample(200, generator=_gen(3), dtype=torch.float64)
    assert metrics.mmd(y, y) == 0.0
    assert metrics.mmd(y, y.clone(), bandwidths=0.3) == 0.0
    assert metrics.energy_distance(y, y) == 0.0
    cm = metrics.CombinedMetric(tg, 200, repeats=4)
    assert cm(y, y) == 0.0
    # a different set is still judged by the unbiased estimates
    z = tg.sample(200, generator=_gen(4), dtype=torch.float64)
    assert metrics.mmd(y, z) != 0.0 and metrics.energy_distance(y, z) != 0.0


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_mmd_and_energy_are_translation_invariant_far_from_the_origin(offset: float) -> None:
    # Tight sets far from 0: |a|^2 + |b|^2 - 2 a.b cancelled (3-20% off at 1e6 in float64).
    g = _gen(5)
    x = 0.01 * torch.randn(500, 2, generator=g, dtype=torch.float64)
    y = 0.01 * torch.randn(500, 2, generator=g, dtype=torch.float64) + 0.002
    for stat in (metrics.energy_distance, partial(metrics.mmd, bandwidths=[0.01])):
        assert stat(x + offset, y + offset) == pytest.approx(stat(x, y), rel=1e-6)


def test_energy_distance_is_unbiased_against_the_1d_closed_form() -> None:
    # X ~ N(0, 1), Y ~ N(delta, 1): E|X - X'| = 2 / sqrt(pi) and X - Y ~ N(-delta, 2), whose
    # absolute mean is 2/sqrt(pi) exp(-delta^2 / 4) + delta (1 - 2 Phi(-delta / sqrt 2)).
    delta, n, reps = 0.8, 150, 24
    phi = 0.5 * math.erfc(delta / 2)  # Phi(-delta / sqrt 2)
    e_xy = 2 / math.sqrt(math.pi) * math.exp(-(delta**2) / 4) + delta * (1 - 2 * phi)
    exact = 2 * e_xy - 2 * (2 / math.sqrt(math.pi))
    g = _gen(33)
    vals = [metrics.energy_distance(_gauss(n, 1, g), _gauss(n, 1, g, mean=delta)) for _ in range(reps)]
    mean, se = _mean_and_se(vals)
    assert abs(mean - exact) < 4 * se  # unbiased U-statistics: within 4 standard errors
    assert exact > 8 * se


# --- noise floor -------------------------------------------------------------------------------
def test_noise_floor_shrinks_with_n_and_is_reproducible() -> None:
    sample = lambda n, g: _gauss(n, 2, g)  # noqa: E731
    sw = partial(metrics.sliced_wasserstein, n_projections=64)
    small = metrics.noise_floor(sw, sample, 100, repeats=4)
    large = metrics.noise_floor(sw, sample, 1600, repeats=4)
    # For a Gaussian the SW2 floor decays like n^(-1/2): 16x the samples, about 4x smaller.
    assert large[0] < small[0] / 2.5
    assert metrics.noise_floor(sw, sample, 100, repeats=4) == small  # seeded
    assert metrics.noise_floor(sw, sample, 100, repeats=1)[1] == 0.0
    # The MMD^2 floor (its spread: the mean is ~0) decays like 1/n.
    mmd = partial(metrics.mmd, bandwidths=1.0)
    assert metrics.noise_floor(mmd, sample, 400, repeats=6)[1] < metrics.noise_floor(mmd, sample, 50, repeats=6)[1] / 3


# --- mode statistics ---------------------------------------------------------------------------
def _tv_bound(weights: torch.Tensor, n: int) -> float:
    """4-sigma bound on the total-variation error of empirical frequencies of n draws."""
    w = weights.double()
    return 0.5 * float((4 * torch.sqrt(w * (1 - w) / n)).sum())


def test_mode_stats_of_exact_samples() -> None:
    mix, n = targets.grid_25(), 4000
    stats = metrics.mode_stats(mix.sample(n, generator=_gen(40)), mix)
    assert stats["coverage"] == 1.0 and stats["n_covered"] == 25
    assert stats["weight_error"] < _tv_bound(mix.weights, n)
    # Outliers of exact samples: tail mass erfc(3 / sqrt 2) = 0.27%; 4 binomial std.
    p = math.erfc(3 / math.sqrt(2))
    assert abs(stats["outlier_fraction"] - p) < 4 * math.sqrt(p * (1 - p) / n)
    assert sum(stats["counts"]) == round(n * (1 - stats["outlier_fraction"]))
    assert sum(stats["frequencies"]) == pytest.approx(1.0)


def test_mode_stats_is_calibrated_in_high_dimension() -> None:
    mix, n = targets.high_dim(16), 3000
    x = mix.sample(n, generator=_gen(41))
    p = math.erfc(3 / math.sqrt(2))
    frac = metrics.mode_stats(x, mix)["outlier_fraction"]
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)  # 4 binomial std
    # The literal 3-std radius flags most exact samples in 16-D (E r^2 = 16 > 9).
    assert metrics.mode_stats(x, mix, calibrated=False)["outlier_fraction"] > 0.5


def test_mode_stats_detects_a_dropped_mode() -> None:
    mix = targets.eight_gaussians()
    x, labels = mix.sample_components(4000, generator=_gen(42))
    stats = metrics.mode_stats(x[labels != 0], mix)
    assert stats["coverage"] == 7 / 8 and stats["counts"][0] == 0
    # TV = (1/8 + sum_k |f_k - 1/8|) / 2 = 1/8 exactly once every kept frequency f_k >= 1/8
    # (here f_k ~ 1/7 +- 0.006, three std above 1/8); 1e-12: rounding.
    assert min(stats["frequencies"][1:]) > 1 / 8
    assert stats["weight_error"] == pytest.approx(1 / 8, abs=1e-12)


def test_mode_stats_detects_wrong_weights_and_outliers() -> None:
    mix = targets.eight_gaussians()
    wrong_w = torch.tensor([2.0, 1, 1, 1, 1, 1, 1, 1]) / 9
    wrong = targets.GaussianMixture(mix.means, mix.stds, wrong_w)
    n = 4000
    x = wrong.sample(n, generator=_gen(43))
    true_tv = 0.5 * float((wrong_w.double() - mix.weights).abs().sum())  # = 0.0972
    stats = metrics.mode_stats(x, mix)
    assert stats["coverage"] == 1.0
    assert stats["weight_error"] == pytest.approx(true_tv, abs=_tv_bound(wrong_w, n))
    # 400 points far from every mode are outliers (and only those, up to the 0.27% tail).
    far = torch.full((400, 2), 10.0) + torch.rand((400, 2), generator=_gen(44))
    stats = metrics.mode_stats(torch.cat([x, far]), mix)
    assert stats["outlier_fraction"] == pytest.approx(400 / 4400, abs=0.005)  # + at most ~0.5% tail
    # Points half-way between two neighbouring modes (0.77 apart, std 0.15) are outliers too.
    mid = (0.5 * (mix.means[0] + mix.means[1])).expand(10, 2)
    assert metrics.mode_stats(mid, mix)["outlier_fraction"] == 1.0
    all_out = metrics.mode_stats(far, mix)
    assert all_out["weight_error"] == 1.0 and all_out["coverage"] == 0.0


def test_mode_stats_thresholds_in_one_dimension() -> None:
    mix = targets.GaussianMixture([[0.0], [100.0]], 1.0)
    # In 1-D the calibrated radius is exactly max_std standard deviations.
    assert metrics.mode_stats(torch.tensor([[2.9], [100.0]]), mix)["outlier_fraction"] == 0.0
    assert metrics.mode_stats(torch.tensor([[3.1], [100.0]]), mix)["outlier_fraction"] == 0.5
    # Coverage rule: >= 10% of the expected count w_k N. 100 + 5 samples: 5 < 0.1 * 52.5.
    x5 = torch.cat([torch.zeros(100, 1), torch.full((5, 1), 100.0)])
    assert metrics.mode_stats(x5, mix)["coverage"] == 0.5
    x6 = torch.cat([torch.zeros(100, 1), torch.full((6, 1), 100.0)])  # 6 >= 0.1 * 53
    assert metrics.mode_stats(x6, mix)["coverage"] == 1.0


# --- bad input ---------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors() -> None:
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        metrics.sliced_wasserstein(torch.randn(10), x)
    with pytest.raises(ValueError, match="flatten"):
        metrics.mmd(torch.randn(10, 1, 2, 2), torch.randn(10, 1, 2, 2))
    with pytest.raises(ValueError, match="same dimension"):
        metrics.energy_distance(x, torch.randn(10, 3))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.mmd(x, torch.full((10, 2), float("nan")))
    with pytest.raises(ValueError, match="non-finite"):
        metrics.sliced_wasserstein(x, torch.full((10, 2), float("inf")))
    with pytest.raises(TypeError, match="torch.Tensor"):
        metrics.sliced_wasserstein([[0.0, 1.0]], x)
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.mmd(x[:1], x)
    with pytest.raises(ValueError, match="n_projections"):
        metrics.sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ValueError, match="bandwidths"):
        metrics.mmd(x, x, bandwidths=(1.0, -1.0))
    with pytest.raises(ValueError, match="max_elements"):
        metrics.energy_distance(x, x, max_elements=0)
    mix = targets.eight_gaussians()
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        metrics.mode_stats(torch.randn(10, 3), mix)
    with pytest.raises(TypeError, match="GaussianMixture"):
        metrics.mode_stats(x, "eight_gaussians")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_std"):
        metrics.mode_stats(x, mix, max_std=0.0)
    sample = lambda n, g: torch.randn((n, 2), generator=g)  # noqa: E731
    with pytest.raises(ValueError, match="n must be"):
        metrics.noise_floor(metrics.mmd, sample, 1)
    with pytest.raises(ValueError, match="repeats"):
        metrics.noise_floor(metrics.mmd, sample, 10, repeats=0)
    with pytest.raises(ValueError, match="sample_fn"):
        metrics.noise_floor(metrics.mmd, lambda n, g: torch.randn(n + 1, 2), 10)


# --- fuzzed bad inputs (each used to fail deep in torch or return a wrong value silently) ------
def test_integer_options_refuse_floats_and_accept_numpy_ints():
    x, y = torch.randn(20, 2, generator=_gen(0)), torch.randn(30, 2, generator=_gen(1))
    with pytest.raises(TypeError, match="seed must be an integer"):
        metrics.sliced_wasserstein(x, y, seed=2.5)  # was silently truncated to 2
    with pytest.raises(TypeError, match="n_projections must be an integer"):
        metrics.sliced_wasserstein(x, y, n_projections=True)  # was a raw torch.randn TypeError
    with pytest.raises(ValueError, match="max_points must be an integer >= 2"):
        metrics.median_bandwidths(x, y, max_points=-5)  # was silently pooled[:-5]
    with pytest.raises(TypeError, match="max_points must be an integer"):
        metrics.median_bandwidths(x, y, max_points=2.5)  # was a raw slice-index TypeError
    ref = metrics.sliced_wasserstein(x, y, n_projections=5, max_elements=100)
    assert metrics.sliced_wasserstein(x, y, n_projections=np.int64(5), max_elements=np.int64(100)) == ref


def test_mmd_bandwidth_scalars_and_tiny_bandwidths():
    x, y = torch.randn(20, 2, generator=_gen(0)), torch.randn(30, 2, generator=_gen(1))
    ref = metrics.mmd(x, y, bandwidths=1.0)
    # 0-d tensors / NumPy scalars used to raise "iteration over a 0-d tensor" / "not iterable".
    assert metrics.mmd(x, y, bandwidths=torch.tensor(1.0)) == ref
    assert metrics.mmd(x, y, bandwidths=np.float32(1.0)) == ref
    with pytest.raises(ValueError, match="too small"):
        metrics.mmd(x, y, bandwidths=1e-200)  # was ZeroDivisionError
    with pytest.raises(TypeError, match="boolean"):
        metrics.mmd(x, y, bandwidths=True)  # was silently h = 1.0


def test_metrics_accept_inputs_that_require_grad():
    x = torch.randn(20, 2, generator=_gen(0)).requires_grad_()
    y = torch.randn(30, 2, generator=_gen(1))
    # mmd used to raise "functions with out=... arguments don't support automatic differentiation".
    assert metrics.mmd(x, y, bandwidths=1.0) == metrics.mmd(x.detach(), y, bandwidths=1.0)


def test_overflowing_distances_raise():
    x = torch.full((5, 2), 1e200, dtype=torch.float64)
    y = torch.zeros(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="overflow"):
        metrics.sliced_wasserstein(x, y)  # was inf
    with pytest.raises(ValueError, match="overflow"):
        metrics.energy_distance(x, y)  # was nan
    with pytest.raises(ValueError, match="overflow"):
        metrics.mmd(x, y)  # was ZeroDivisionError


def test_noise_floor_bad_inputs():
    mix = targets.eight_gaussians()

    def sample(n: int, g: torch.Generator) -> torch.Tensor:
        return mix.sample(n, generator=g)

    with pytest.raises(ValueError, match="returned nan"):
        metrics.noise_floor(lambda a, b: float("nan"), sample, 10)  # was (nan, nan)
    with pytest.raises(TypeError, match="seed must be an integer"):
        metrics.noise_floor(metrics.sliced_wasserstein, sample, 10, seed=2.5)
    assert metrics.noise_floor(metrics.sliced_wasserstein, sample, np.int64(10), repeats=2) == (
        metrics.noise_floor(metrics.sliced_wasserstein, sample, 10, repeats=2))


def test_quality_helpers_bad_inputs():
    from scoresde.quality import (
        CombinedMetric,
        median_over_seeds,
        mode_frequencies,
        within_mode_spread,
    )

    mix = targets.eight_gaussians()
    with pytest.raises(ValueError, match="non-finite"):
        mode_frequencies(torch.full((5, 2), float("nan")), mix)  # NaN rows went to component 0
    with pytest.raises(ValueError, match="at least 1 samples"):
        within_mode_spread(torch.zeros(0, 2), mix)  # was nan
    with pytest.raises(TypeError, match="torch.Tensor"):
        mode_frequencies(None, mix)  # was AttributeError
    with pytest.raises(TypeError, match="GaussianMixture"):
        mode_frequencies(torch.zeros(5, 2), None)  # was AttributeError
    with pytest.raises(ValueError, match="mmd_n must be an integer >= 2"):
        CombinedMetric(mix, 10, repeats=2, mmd_n=-3)  # used x[:-3] silently
    metric = CombinedMetric(mix, 10, repeats=2)
    y = mix.sample(10, generator=_gen(0))
    with pytest.raises(TypeError, match="torch.Tensor"):
        metric(None, y)  # was AttributeError
    with pytest.raises(TypeError, match="real-valued"):
        metric(y.to(torch.complex64), y)  # imaginary part was dropped with a warning
    assert metric(y.numpy(), y) == metric(y, y)  # arrays used to raise AttributeError
    assert metric(torch.full((10, 2), float("nan")), y) == float("inf")  # unchanged
    with pytest.raises(TypeError, match="seed must be an integer"):
        metric.exact_reference(2.5)  # was a RuntimeError from manual_seed
    with pytest.raises(ValueError, match="at least one seed"):
        median_over_seeds(metric, lambda s: y, seeds=[])  # was StatisticsError
    with pytest.raises(TypeError, match="CombinedMetric"):
        median_over_seeds(None, lambda s: y)  # was AttributeError
