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


@pytest.mark.parametrize(("kw", "match"), [({"pad": -1.0}, "pad must be a finite number >= 0"),
                                           ({"pad": float("nan")}, "pad must be a finite number >= 0"),
                                           ({"quantile": 0.2}, r"quantile must be in \(0.5, 1\]"),
                                           ({"quantile": 1.5}, r"quantile must be in \(0.5, 1\]")])
def test_square_limits_refuses_a_view_that_cannot_hold_the_points(kw: dict[str, float], match: str) -> None:
    # pad=-1 gave a view of zero width, quantile=0.2 one with lo > hi; both were accepted
    with pytest.raises(ValueError, match=match):
        plotting.square_limits(TARGET.sample(100).numpy(), **kw)


@pytest.mark.parametrize("size", [0.0, -0.3, 1.5])
def test_prior_inset_refuses_a_size_outside_the_axes(size: float) -> None:
    from scoresde.plotting.extent import prior_inset
    _, ax = plt.subplots()
    start = 10 * torch.randn(200, 2, generator=torch.Generator().manual_seed(0)).numpy()
    with pytest.raises(ValueError, match=r"size must be in \(0, 1\]"):  # size=0 drew an empty inset
        prior_inset(ax, start, ((-1.0, 1.0), (-1.0, 1.0)), size=size)
    plt.close("all")


_RECORDS = [{"solver": "a", "budget": b, "seed": 0, "nfe": b, "seconds": 0.1, "status": "ok", "mmd": 0.1 / b}
            for b in (10, 20)]


@pytest.mark.parametrize("floor", [float("nan"), (0.1, -0.01), (float("inf"), 0.0), "0.1"])
def test_metric_curves_refuse_a_floor_that_cannot_be_drawn(floor: object) -> None:
    # a NaN floor was drawn as nothing and a negative std as an inverted band, both silently
    with pytest.raises(ValueError, match="floor must be"):
        plotting.plot_metric_curves(_RECORDS, "mmd", floor=floor)  # type: ignore[arg-type]
    plt.close("all")


def test_metric_curves_say_when_no_value_is_finite() -> None:
    # every run diverged: the panel was blank, with no word of why
    recs = [{**r, "mmd": float("nan")} for r in _RECORDS]
    ax = plotting.plot_metric_curves(recs, "mmd", floor=0.01)
    assert any(t.get_text() == "no finite mmd values" for t in ax.texts)
    ok = plotting.plot_metric_curves(_RECORDS, "mmd")
    assert not ok.texts
    plt.close("all")


def test_figures_into_a_path_that_is_a_file_are_refused_by_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from scoresde.atomic import OutputPathError
    res = solvers.sample(SDE, TARGET.score_fn(SDE), (50, 2), "ddim", steps=4, seed=0, keep_trajectory=True)
    afile = tmp_path / "figs"
    afile.write_text("not a folder")
    with pytest.raises(OutputPathError, match="figs exists and is not a directory"):  # was a raw FileExistsError
        plotting.write_sampling_figures(afile, {"ddim": res}, sde=SDE, score=TARGET.score_fn(SDE),
                                        target=TARGET, which=["solver_grid"])


def test_a_failed_figure_write_names_the_figure_not_its_temporary_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from scoresde.atomic import atomic_write_bytes
    blocked = tmp_path / "gone"
    blocked.mkdir()
    target = blocked / "fig.png"
    blocked.rmdir()  # the folder vanishes between the check and the write: mkstemp fails
    import unittest.mock as mock
    with mock.patch("pathlib.Path.mkdir"), pytest.raises(FileNotFoundError) as err:
        atomic_write_bytes(target, b"x")
    assert err.value.filename == str(target) and ".tmp" not in str(err.value)
