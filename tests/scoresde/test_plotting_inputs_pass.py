"""Plot inputs and comparison-curve axes from an outside visualisation pass."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

import scoresde as sd
import solvers
from scoresde import plotting as P

matplotlib.use("Agg")


def _records(metric: str, values: list[float]) -> list[dict[str, float | str | int]]:
    return [{"solver": "a", "budget": b, "seed": 0, "nfe": b, "seconds": 0.1, metric: v}
            for b, v in zip((5, 10, 20), values, strict=True)]


def test_coverage_is_drawn_on_a_linear_unit_axis() -> None:
    ax = P.plot_metric_curves(_records("coverage", [1.0, 1.0, 1.0]), "coverage")
    assert ax.get_yscale() == "linear" and ax.get_ylim()[1] == pytest.approx(1.05)
    ax = P.plot_metric_curves(_records("sliced_w2", [0.3, 0.2, 0.1]), "sliced_w2")
    assert ax.get_yscale() == "log"


def test_a_metric_missing_from_every_record_is_refused() -> None:
    with pytest.raises(ValueError, match="'sliced_w2' is in none of the records"):
        P.plot_metric_curves([{"solver": "a", "budget": 10, "seed": 0, "nfe": 10, "seconds": 1.0}], "sliced_w2")
    records = [{"solver": "a", "budget": b, "seed": 0, "nfe": b, "sliced_w2": 0.1} for b in (10, 100)]
    with pytest.raises(ValueError, match="x 'seconds' is in none of the records"):
        P.plot_metric_curves(records, "sliced_w2", x="seconds")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_density_vmax_scale_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="vmax_scale"):
        P.plot_density(sd.targets.eight_gaussians(), vmax_scale=bad)


def test_forward_reverse_checks_its_data_and_takes_arrays() -> None:
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    res = solvers.sample(sde, target.score_fn(sde), (64, 2), "ddim", steps=5, seed=0, keep_trajectory=True)
    x0 = target.sample(64, generator=torch.Generator().manual_seed(0))
    for bad in (x0[:, :1], torch.cat([x0, x0[:, :1]], dim=1), x0[None]):
        with pytest.raises(ValueError, match="x0 must be data points of shape"):
            P.plot_forward_reverse(sde, bad, res)
    fig = P.plot_forward_reverse(sde, x0.numpy(), res, steps=5)
    assert len([a for a in fig.axes if a.get_visible()]) >= 2


def test_a_toy_checkpoint_problem_carries_the_exact_mixture(tmp_path) -> None:
    from scoresde import compare
    from scoresde.cli.compare import load_checkpoint
    from scoresde.train import train_toy

    train_toy("eight_gaussians", steps=5, out_dir=tmp_path, progress=False)
    problem = compare.Problem.from_checkpoint(tmp_path, loader=load_checkpoint)
    assert problem.mixture is not None and problem.mixture.weights.numel() == 8
    assert problem.reference == "exact"
    assert np.allclose(problem.mixture.means.numpy(), sd.targets.eight_gaussians().means.numpy())
