"""A target of another dimension than the data is refused by the figures that outline it (its
2-D density was drawn over 3-D samples, and one message blamed the data's dimension)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import scoresde as sd  # noqa: E402
import solvers  # noqa: E402
from scoresde import plotting  # noqa: E402

SDE = sd.VPSDE()
T2 = sd.targets.eight_gaussians()
T3 = sd.targets.GaussianMixture([[3.0, 1.0, 2.0]], [[0.3, 1.0, 1.0]])


@pytest.fixture(scope="module")
def run3() -> solvers.Solution:
    return solvers.sample(SDE, T3.score_fn(SDE), (200, 3), "dpmpp_2m", steps=8, seed=0, keep_trajectory=True)


@pytest.mark.parametrize("draw", [
    lambda r: plotting.plot_solver_grid({"dpmpp_2m": r}, target=T2, sde=SDE),
    lambda r: plotting.plot_snapshots(r, target=T2, sde=SDE),
    lambda r: plotting.plot_snapshots(r, target=T2, sde=SDE, dims=(1, 2)),
])
def test_a_target_of_another_dimension_is_refused(run3: solvers.Solution, draw: object) -> None:
    with pytest.raises(ValueError, match="the target 'eight_gaussians' has D=2 but the data have D=3"):
        draw(run3)  # type: ignore[operator]
    plt.close("all")


def test_the_datas_own_target_is_outlined(run3: solvers.Solution) -> None:
    plotting.plot_snapshots(run3, target=T3, sde=SDE, dims=(1, 2))
    plotting.plot_solver_grid({"dpmpp_2m": run3}, target=T3, sde=SDE)
    plt.close("all")
