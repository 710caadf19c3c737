"""The sharp presets and the combined noise-floor metric (scoresde.quality)."""

from __future__ import annotations

import math

import pytest
import torch

import scoresde as sd
from scoresde import metrics, quality


@pytest.mark.parametrize("name", sd.targets.SHARP_TARGETS)
def test_sharp_presets_are_sharp(name: str) -> None:
    t = sd.targets.get_target(name)
    d = torch.cdist(t.means, t.means) + 1e9 * torch.eye(t.n_components, dtype=torch.float64)
    nearest = d.min(dim=1).values  # distance from each mode to its neighbour
    ratio = t.stds.max(dim=1).values / nearest
    # The preset's promise: mode std between 1/30 and 1/20 of the neighbour distance.
    assert float(ratio.max()) <= 1 / 20 + 1e-12
    assert float(t.stds.min() / d.min()) >= 1 / 30 - 1e-12


def test_within_mode_spread_of_exact_samples_is_one() -> None:
    t = sd.targets.get_target("sharp_25")
    n = 20_000
    x = t.sample(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # mean r^2 / D has std sqrt(2 / (n D)) for exact samples; 4 of those on the square root.
    assert abs(quality.within_mode_spread(x, t) - 1.0) < 4 * math.sqrt(2 / (n * t.dim)) / 2
    # Blurring each sample with N(0, 0.02^2) raises the spread to sqrt(1 + (0.02/0.04)^2).
    xb = x + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs(quality.within_mode_spread(xb, t) - math.sqrt(1.25)) < 0.01
    f = quality.mode_frequencies(x, t)
    assert abs(float(f.sum()) - 1.0) < 1e-12
    # Multinomial frequencies: TV to the weights ~ sum sqrt(w(1-w)/n) / 2 < 0.02 at n = 20000.
    assert 0.5 * float((f - t.weights).abs().sum()) < 0.02


@pytest.fixture(scope="module")
def metric8() -> quality.CombinedMetric:
    return metrics.CombinedMetric(sd.targets.get_target("sharp_8"), 1000)


def test_combined_metric_exact_is_near_one(metric8: quality.CombinedMetric) -> None:
    t = metric8.target
    med = metrics.median_over_seeds(
        metric8, lambda s: t.sample(1000, generator=torch.Generator().manual_seed(50 + s), dtype=torch.float64)
    )
    # Exact-vs-exact: max of 4 ratios of mean 1 each; its 5-seed median ranged 1.07-2.57
    # over 60 draws (3 sharp targets x 20 seed offsets, n = 1000), far below the blur cases.
    assert 0.5 < med < 3.0


def test_combined_metric_sees_blur_and_collapse(metric8: quality.CombinedMetric) -> None:
    t = metric8.target
    def blurred(s: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(70 + s)
        x = t.sample(1000, generator=g, dtype=torch.float64)
        return x + 0.03 * torch.randn(x.shape, generator=g, dtype=torch.float64)

    def one_mode_heavy(s: int) -> torch.Tensor:
        x = t.sample(1000, generator=torch.Generator().manual_seed(90 + s), dtype=torch.float64)
        x[:300] = t.means[0] + 0.05 * torch.randn(300, 2, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
        return x

    # Blur 0.03 on std 0.05: spread sqrt(1.36) = 1.17, i.e. 0.17 / floor ~0.02 -> ratio ~8.
    assert metrics.median_over_seeds(metric8, blurred) > 5
    # 30% of the mass moved to one mode: weight TV ~0.26 against a floor ~0.05.
    r = metric8.ratios(one_mode_heavy(0), metric8.exact_reference(0))
    assert r["mode_tv"] > 4
    assert metric8(one_mode_heavy(0), metric8.exact_reference(0)) >= r["mode_tv"]


def test_combined_metric_errors(metric8: quality.CombinedMetric) -> None:
    with pytest.raises(ValueError, match="n = 1000"):
        metric8.ratios(torch.zeros(10, 2), torch.zeros(10, 2))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        metric8.components(torch.zeros(10, 3), torch.zeros(10, 3))
    bad = torch.full((1000, 2), float("nan"))
    assert metric8(bad, metric8.exact_reference(0)) == math.inf
    with pytest.raises(TypeError, match="GaussianMixture"):
        quality.CombinedMetric("sharp_8", 100)  # type: ignore[arg-type]


def test_combined_metric_of_a_one_component_target() -> None:
    # Every sample falls in the one mode: the mode-weight TV and its floor are both 0 (this
    # divided by zero before); the other three statistics still judge the samples.
    import torch

    from scoresde.quality import CombinedMetric
    from scoresde.targets import GaussianMixture

    target = GaussianMixture(torch.zeros(1, 2), 0.5)
    metric = CombinedMetric(target, 200, repeats=4)
    assert metric.floors["mode_tv"] == 0.0
    x = target.sample(200, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = target.sample(200, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ratios = metric.ratios(x, y)
    assert ratios["mode_tv"] == 0.0 and metric(x, y) == max(ratios.values()) < 5
    assert metric(1.5 * x, y) > 5  # a 1.5x too wide Gaussian is still caught
