"""`ConditionalReference` on a noiseless measurement: compare where the conditional varies.

For ``y = A x`` exactly, every exact sample has ``A x = y``; ``p_eps`` has ``sigma(eps)``
smoothing across that plane, so whitening by it made exact samples of ``p_0`` score 27x the
floor (spread), and at ``t = 0`` the reference could not be built (singular covariances).
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
from scoresde.conditional import ConditionalReference, condition_on_measurement
from scoresde.targets import GaussianMixture

F64 = torch.float64
VP = sd.VPSDE()
# Sharp modes (std 0.05, spacing ~1) with unequal weights.
MIX = GaussianMixture(torch.tensor([[0.0, -1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5], [-1.0, 0.0]], dtype=F64), 0.05,
                      torch.tensor([0.2, 0.6, 0.15, 0.05, 0.1], dtype=F64))


def _project(x: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection of the rows of ``x`` onto ``{x : a x = y}`` (``a``: one row)."""
    v = a / a.norm()
    return x + (y / a.norm() - x @ v.T) @ v


@pytest.mark.parametrize("a", [[[1.0, 1.0]], [[1.0, 0.0]]], ids=["diagonal", "axis"])
def test_exact_samples_on_the_constraint_score_at_the_floor(a) -> None:
    A, y = torch.tensor(a, dtype=F64), torch.tensor([1.0 if a[0][1] else 0.5], dtype=F64)
    post = condition_on_measurement(MIX, A, y, 0.0)
    ref = ConditionalReference(post, VP, VP.eps, n=1000, repeats=4)
    g = torch.Generator().manual_seed(5)
    at_eps = ref.draw(1000, g)
    x0 = post.sample(1000, generator=g, dtype=F64)
    for x in (at_eps, _project(at_eps, A, y), x0):
        e = ref.evaluate(x)
        assert e["combined"] < 5, e
    assert ref.evaluate(_project(at_eps, A, y))["constraint"] < 0.1  # on the plane: no distance
    assert 0.7 < ref.evaluate(at_eps)["constraint"] < 1.3  # sigma(eps) off it, as exact p_eps samples
    off = x0 + 0.05 * (A / A.norm())  # 5 sigma(eps) off the plane
    assert ref.evaluate(off)["constraint"] > 3


def test_a_reference_at_t_0_is_built_and_checks_the_constraint() -> None:
    A, y = torch.tensor([[1.0, 0.0]], dtype=F64), torch.tensor([0.5], dtype=F64)
    post = condition_on_measurement(MIX, A, y, 0.0)
    ref = ConditionalReference(post, VP, 0.0, n=1000)
    x0 = post.sample(1000, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert ref.evaluate(x0)["combined"] < 5
    assert ref.evaluate(x0 + torch.tensor([1e-3, 0.0], dtype=F64))["constraint"] > 1e6


def test_a_noisy_measurement_is_compared_in_every_direction() -> None:
    post = condition_on_measurement(MIX, torch.tensor([[1.0, 1.0]], dtype=F64), torch.tensor([1.0], dtype=F64), 0.1)
    ref = ConditionalReference(post, VP, VP.eps, n=500)
    e = ref.evaluate(ref.draw(500, torch.Generator().manual_seed(2)))
    assert "constraint" not in e and set(e) == {"sw", "mmd", "modes", "spread", "combined"}


def test_singular_modes_at_different_places_are_not_a_constraint() -> None:
    # Two components, each a line (zero variance along x2) at x2 = -1 and +1: x2 separates the
    # modes, it is not fixed; moving every sample to one mode must show.
    from scoresde.conditional.gaussians import FullCovMixture

    mix = FullCovMixture(torch.tensor([[0.0, -1.0], [0.0, 1.0]], dtype=F64),
                         torch.diag_embed(torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)),
                         torch.tensor([0.5, 0.5], dtype=F64))
    ref = ConditionalReference(mix, VP, VP.eps, n=1000, repeats=4)
    exact = ref.draw(1000, torch.Generator().manual_seed(3))
    collapsed = exact.clone()
    collapsed[:, 1] = collapsed[:, 1].abs()
    assert "constraint" not in ref.evaluate(exact)
    assert ref.evaluate(exact)["combined"] < 5 < 20 < ref.evaluate(collapsed)["modes"]


def test_float32_samples_on_the_constraint_at_t_0_score_at_the_floor() -> None:
    A, y = torch.tensor([[1.0, 1.0]], dtype=F64), torch.tensor([1.0], dtype=F64)
    post = condition_on_measurement(MIX, A, y, 0.0)
    ref = ConditionalReference(post, VP, 0.0, n=1000, repeats=4)
    x0 = post.sample(1000, generator=torch.Generator().manual_seed(4), dtype=F64)
    e = ref.evaluate(x0.to(torch.float32))  # solvers.sample's default dtype
    assert e["constraint"] < 1 and e["combined"] < 5
    assert ref.evaluate((x0 + 1e-3 * A / A.norm()).to(torch.float32))["constraint"] > 100
