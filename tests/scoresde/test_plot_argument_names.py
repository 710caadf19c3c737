"""Plotting helpers name the argument that was wrong (they failed inside other code)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import scoresde as sd  # noqa: E402
import solvers  # noqa: E402
from scoresde import plotting  # noqa: E402

SDE = sd.VPSDE()
TARGET = sd.targets.eight_gaussians()


@pytest.mark.parametrize("t_end", [2.0, 0.0, -1.0])
def test_simulate_forward_names_t_end(t_end: float) -> None:
    # t_end=2 reported "t must lie in [0, T=1]; got values in [1.02, 1.02]"; t_end=0 was accepted
    with pytest.raises(ValueError, match=rf"t_end must be a finite time in \(0, T=1\], got {t_end}"):
        plotting.simulate_forward(SDE, torch.zeros(5, 2), t_end=t_end)


def test_animate_forward_reverse_names_forward_frames() -> None:
    res = solvers.sample(SDE, TARGET.score_fn(SDE), (50, 2), "ddim", steps=4, seed=0, keep_trajectory=True)
    with pytest.raises(ValueError, match="forward_frames must be a positive integer"):
        plotting.animate_forward_reverse(SDE, TARGET.sample(50), res, forward_frames=0)


def test_solver_grid_needs_a_mapping_and_curves_take_one_metric_name() -> None:
    res = solvers.sample(SDE, TARGET.score_fn(SDE), (50, 2), "ddim", steps=4, seed=0, keep_trajectory=True)
    with pytest.raises(TypeError, match="results must be a mapping label -> Solution"):
        plotting.plot_solver_grid([res, res])  # type: ignore[arg-type]
    recs = [{"solver": s, "budget": b, "seed": 0, "nfe": b, "seconds": 0.1, "status": "ok", "mmd": 0.1 / b}
            for s in ("a", "b") for b in (10, 20)]
    fig = plotting.plot_comparison(recs, metrics="mmd")  # was split into 'm', 'm', 'd'
    assert len(fig.axes) >= 1
    plt.close("all")


def test_complex_input_is_refused_not_cut_to_its_real_part() -> None:
    with pytest.raises(TypeError, match="plots need real numbers"):
        plotting.plot_samples(torch.randn(10, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="plots need real numbers"):
        plotting.to_numpy(torch.ones(2, dtype=torch.complex64).numpy())
    plt.close("all")


def test_an_empty_data_shape_is_refused_where_the_config_is_built() -> None:
    from scoresde.models import ModelConfig

    with pytest.raises(ValueError, match="data_shape must be non-empty"):
        ModelConfig(data_shape=())
