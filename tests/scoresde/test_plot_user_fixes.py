"""Regression tests for the defects of a user's pass over the plots and the CLI plot paths.

D1 float64 checkpoints plot and compare; D2 ``plot --sde cosine`` at the defaults; D3 the
density view holds ``p_t``; D4 animation limits from the data end; D5 atomic saves and
animation times checked when built; D6 contours of an empty view; D7 NaN fields; D8 only 2-D
``--target`` choices; D9 the gallery text; M1-M8 the minor ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import scoresde as sd
import solvers
from scoresde import compare
from scoresde import plotting as P
from scoresde.cli import main
from scoresde.models import ModelConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"
VP = sd.VPSDE()
T8 = sd.targets.eight_gaussians()


def _gif_frames(path: Path) -> tuple[int, list[int]]:
    with Image.open(path) as im:
        durations = []
        for k in range(im.n_frames):
            im.seek(k)
            durations.append(im.info["duration"])
        return im.n_frames, durations


@pytest.fixture(scope="module")
def model64():
    """A small float64 score network (untrained: the plots only need it to run)."""
    return ModelConfig(net={"width": 16, "depth": 1}).build(seed=0).to(torch.float64).eval()


@pytest.fixture(scope="module")
def checkpoint64(tmp_path_factory):
    """A float64 run on moons, trained for a few steps."""
    out = tmp_path_factory.mktemp("run64") / "moons64"
    assert main(["train", "--data", "moons", "--steps", "3", "--dtype", "float64", "--width", "16",
                 "--depth", "1", "--batch-size", "64", "--out", str(out), "--no-progress"]) == 0
    return out


# --- D1: float64 models ------------------------------------------------------------------------
def test_field_plots_of_a_float64_network_evaluate_in_its_dtype(model64):
    score = model64.score_fn(VP)
    with pytest.raises(TypeError, match="float64"):  # what the plots hit before: a float32 grid
        score(torch.zeros(3, 2), torch.full((3,), 0.5))
    # Default: the network's parameter dtype; explicit dtype= / device= as plot_vector_field.
    P.plot_score_field(score, 0.3, density=5)
    assert P.fields.field_dtype_device(score) == (torch.float64, torch.device("cpu"))
    P.plot_score_field(score, 0.3, density=5, dtype=torch.float64, device="cpu")
    P.plot_velocity_field(VP, score, 0.3, density=5)
    P.plot_velocity_field(VP, score, 0.3, density=5, dtype=torch.float64)
    fig = P.plot_fields(VP, score, (1.0, 0.1), density=5, dtype=torch.float64, device="cpu")
    assert len([a for a in fig.axes if a.get_title()]) == 4
    # An exact score still runs in the default dtype.
    assert P.fields.field_dtype_device(T8.score_fn(VP)) == (torch.get_default_dtype(), torch.device("cpu"))


def test_write_sampling_figures_takes_the_model_dtype(model64, tmp_path):
    score = model64.score_fn(VP)
    res = compare.sample_solvers(VP, score, ["ode_euler"], shape=(40, 2), steps=3, max_frames=4,
                                 dtype=torch.float64)
    files = P.write_sampling_figures(tmp_path, res, sde=VP, score=score, which=["fields"], field_density=5,
                                     dtype=torch.float64, dpi=30)
    assert files["fields"].is_file()


def test_cli_plot_and_compare_accept_a_float64_checkpoint(checkpoint64, tmp_path, capsys):
    from scoresde.cli.compare import load_checkpoint

    assert main(["plot", "--checkpoint", str(checkpoint64), "--solvers", "euler_maruyama,dpmpp_2m",
                 "--steps", "4", "--n", "60", "--frames", "4", "--what", "solver_grid,fields",
                 "--dpi", "30", "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "fields.png").is_file()
    assert main(["compare", "--checkpoint", str(checkpoint64), "--solvers", "ode_euler", "--steps", "3",
                 "--seeds", "0", "--n", "40", "--metrics", "sliced_w2", "--floor-repeats", "1",
                 "--no-plots", "--no-progress", "--out", str(tmp_path / "cmp")]) == 0
    assert "float64" not in capsys.readouterr().err
    problem = compare.Problem.from_checkpoint(checkpoint64, loader=load_checkpoint)
    assert problem.dtype == torch.float64  # solvers sample in the parameters' dtype


def test_python_checkpoint_loader_samples_a_float64_run_in_float64(checkpoint64):
    from scoresde.train import checkpoint_loader

    problem = compare.Problem.from_checkpoint(checkpoint64, loader=checkpoint_loader())
    assert problem.dtype == torch.float64  # was None: every solver then ran in float32 and was refused
    result = compare.run_comparison(problem, ["ode_euler"], steps=[3], seeds=[0], n=40, metrics=["sliced_w2"],
                                    floor_repeats=1, progress=False)
    assert len(result.records) == 1 and not result.records[0]["error"], result.records


# --- D2: --fields-at default for every SDE ------------------------------------------------------
def test_cli_plot_cosine_sde_with_default_options(tmp_path):
    assert main(["plot", "--target", "eight_gaussians", "--sde", "cosine", "--solvers", "ode_heun",
                 "--n", "50", "--steps", "3", "--frames", "4", "--what", "solver_grid,fields",
                 "--dpi", "30", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fields.png").is_file()


def test_cli_plot_fields_at_checked_against_T_only_when_fields_are_drawn(tmp_path, capsys):
    assert main(["plot", "--sde", "cosine", "--fields-at", "1.0", "--what", "fields", "--n", "10",
                 "--out", str(tmp_path)]) == 2
    assert "--fields-at" in capsys.readouterr().err
    assert main(["plot", "--sde", "cosine", "--fields-at", "1.0", "--what", "solver_grid", "--solvers",
                 "ode_euler", "--n", "30", "--steps", "3", "--frames", "3", "--dpi", "30",
                 "--out", str(tmp_path)]) == 0


# --- D3: the density view holds the density ----------------------------------------------------
@pytest.mark.parametrize(("target", "sde", "t"), [
    (sd.targets.grid_25(), sd.VESDE(), 0.5),
    (sd.targets.ring(), sd.VPSDE(), 0.1),
    (sd.targets.eight_gaussians(), sd.SubVPSDE(), 0.3),
    (sd.targets.checker_mixture(), sd.VESDE(), 0.5),
])
def test_plot_density_default_view_holds_the_marginal(target, sde, t):
    ax = P.plot_density(target, sde=sde, t=t, resolution=20)
    (x_lo, x_hi), (y_lo, y_hi) = ax.get_xlim(), ax.get_ylim()
    x = target.sample_marginal(20_000, sde, t, generator=torch.Generator().manual_seed(0))
    inside = (x[:, 0] >= x_lo) & (x[:, 0] <= x_hi) & (x[:, 1] >= y_lo) & (x[:, 1] <= y_hi)
    assert 1.0 - float(inside.double().mean()) < 0.01  # was 21%, 11%, 9.5%, 12.5%
    # ... and is not needlessly wide: the 3-sigma box of p_t, padded by 10%.
    (lo, hi), _ = P.marginals.density_limits(target, sde, t)
    assert (x_lo, x_hi) == pytest.approx((lo, hi))
    reach = float(x.abs().max())
    assert x_hi - x_lo < 3 * reach


def test_density_limits_at_t0_keep_the_old_view():
    ring = sd.targets.ring()
    (lo, hi), _ = P.marginals.density_limits(ring)
    old = 1.1 * float((ring.means.abs() + 3 * ring.stds[:, None]).max())
    assert (lo, hi) == pytest.approx((-old, old))


# --- D4: animation limits from the data end -----------------------------------------------------
def test_animations_take_limits_from_the_data_end_under_ve():
    sde, ring = sd.VESDE(), sd.targets.ring()
    r = solvers.sample(sde, ring.score_fn(sde), shape=(300, 2), solver="ode_heun", steps=10, seed=0,
                       keep_trajectory=True, max_frames=6)
    anim = P.animate_forward_reverse(sde, ring.sample(300), r, target=ring, forward_frames=3, hold=1,
                                     n_points=100)
    assert max(abs(v) for v in anim._fig.axes[0].get_xlim()) < 3.0  # was +-123 (the prior end)
    anim = P.animate_particles(r, target=ring, sde=sde, hold=0, n_points=100)
    assert max(abs(v) for v in anim._fig.axes[0].get_xlim()) < 3.0  # was +-137
    # numpy data works as everywhere else in the plotting package
    P.animate_forward_reverse(sde, ring.sample(300).numpy(), r, forward_frames=2, hold=0, n_points=50)


# --- D5: atomic saves, times checked when the animation is built --------------------------------
def test_animation_times_outside_the_sde_are_refused_when_built():
    frames = torch.randn(6, 40, 2)
    with pytest.raises(ValueError, match=r"frame times must lie in \[0, T=1\]"):
        P.animate_particles(frames, torch.linspace(0.9, 1.3, 6), target=T8, sde=VP, hold=0)


def test_interrupted_animation_save_keeps_the_previous_gif(tmp_path):
    frames, times = torch.randn(8, 40, 2), torch.linspace(0.9, 0.1, 8)
    path = tmp_path / "a.gif"
    P.save_animation(P.animate_particles(frames, times, target=T8, sde=VP, hold=0, n_points=40), path,
                     dpi=30)
    n_before, _ = _gif_frames(path)
    anim = P.animate_particles(frames, times, target=T8, sde=VP, hold=0, n_points=40)
    draw, calls = anim._func, {"n": 0}

    def failing(k: int) -> list[object]:
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt  # Ctrl-C half-way through the save
        return draw(k)

    anim._func = failing
    with pytest.raises(KeyboardInterrupt):
        P.save_animation(anim, path, dpi=30)
    assert _gif_frames(path)[0] == n_before == 8  # was the frames rendered so far
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif"]  # no temporary file left


def test_failed_figure_save_keeps_the_previous_file(tmp_path):
    fig = P.plot_samples(torch.randn(20, 2)).figure
    path = P.save_figure(fig, tmp_path / "f.png", dpi=30)
    good = path.read_bytes()

    def failing(fname, *args, **kwargs):  # writes part of the file, then fails
        if hasattr(fname, "write"):
            fname.write(b"partial")
        else:
            Path(fname).write_bytes(b"partial")
        raise RuntimeError("renderer failed")

    fig.savefig = failing
    with pytest.raises(RuntimeError, match="renderer failed"):
        P.save_figure(fig, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


# --- D6: contours of a view without density ------------------------------------------------------
def test_contours_of_an_empty_view_are_skipped_with_a_note(tmp_path):
    ax = P.plot_density(T8, lims=(50, 60), kind="contour")
    assert any("~0 everywhere in this view" in t.get_text() for t in ax.texts)
    ax = P.plot_density(T8, lims=(50, 60))  # the image says so too
    assert any("~0 everywhere in this view" in t.get_text() for t in ax.texts)
    frames, times = torch.randn(5, 60, 2), torch.linspace(1.0, 0.01, 5)
    fig = P.plot_snapshots(frames, times=times, target=T8, sde=VP, lims=(30, 40))
    assert len(fig.axes) == 5
    P.save_animation(P.animate_particles(frames, times, target=T8, sde=VP, lims=(30, 40), hold=0),
                     tmp_path / "far.gif", dpi=30)


# --- D7: NaN fields ------------------------------------------------------------------------------
def test_all_nan_field_is_refused_and_partly_nan_field_is_marked():
    with pytest.raises(ValueError, match="NaN or infinite at every one of the 441 grid points"):
        P.plot_score_field(lambda x, t: torch.full_like(x, float("nan")), 0.5)
    exact = T8.score_fn(VP)

    def half_nan(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = exact(x, t)
        v[x[:, 0] > 0] = float("nan")
        return v

    with pytest.warns(RuntimeWarning, match="NaN or infinite at 210 of 441 grid points"):
        ax = P.plot_score_field(half_nan, 0.5)
    assert any("210 of 441 grid points NaN/inf" in t.get_text() for t in ax.texts)
    cbar = ax.figure.axes[-1]
    assert all(np.isfinite(cbar.get_ylim()))
    lo, hi = cbar.get_ylim()
    assert hi - lo > 0.3  # the finite half sets the colour range (was the default -0.1..0.1)


# --- D8: only 2-D targets for plot and demo -------------------------------------------------------
def test_plot_and_demo_offer_only_2d_targets(tmp_path, capsys):
    for cmd in (["plot", "--target", "sharp_32d", "--out", str(tmp_path / "p")],
                ["demo", "--quick", "--train-steps", "0", "--no-gif", "--target", "sharp_32d",
                 "--out", str(tmp_path / "d")]):
        with pytest.raises(SystemExit):  # argparse: invalid choice (was: sampled, then refused / projected)
            main(cmd)
        assert "invalid choice: 'sharp_32d'" in capsys.readouterr().err
    from scoresde.cli._help import targets_2d
    from scoresde.cli.demo import TARGETS_2D

    assert "sharp_32d" not in targets_2d() and TARGETS_2D == targets_2d()
    assert all(sd.targets.get_target(n).dim == 2 for n in targets_2d())


# --- D9: the gallery says what the figures show ----------------------------------------------------
def test_gallery_solver_grid_outlines_p0_like_the_code():
    text = (DOCS / "gallery.md").read_text(encoding="utf-8")
    para = text.split("## Eight Gaussians, VP SDE, exact score", 1)[1].split("![Solver grid]", 1)[0]
    assert "lines are the exact `p_0`" in para  # plot_solver_grid outlines p_0 after the end step
    assert "lines are the exact `p_eps`" not in para


# --- minor defects ------------------------------------------------------------------------------
def test_field_time_errors_name_the_time_not_the_dimension():
    score = T8.score_fn(VP)
    with pytest.raises(ValueError, match="field time t must be finite"):
        P.plot_score_field(score, float("nan"))
    with pytest.raises(ValueError, match=r"at t = 5") as err:
        P.plot_score_field(score, 5.0)
    assert "need 2-D" not in str(err.value)
    with pytest.raises(ValueError, match=r"must lie in \[0, T=1\]"):
        P.plot_velocity_field(VP, score, 5.0)
    with pytest.raises(ValueError, match="t must be a finite time"):
        P.plot_density(T8, sde=VP, t=float("nan"))  # was "lims must be (lo, hi)"


def test_density_and_bins_are_validated():
    score = T8.score_fn(VP)
    with pytest.raises(TypeError, match="density must be an integer"):
        P.plot_score_field(score, 0.5, density=2.5)  # torch's linspace() error before
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        P.plot_samples(torch.randn(10, 2), bins=0)  # numpy's "`bins[0]` must be positive" before


def test_animation_interval_sets_the_saved_frame_duration(tmp_path):
    frames, times = torch.randn(4, 30, 2), torch.linspace(1.0, 0.1, 4)
    for interval in (60, 500):
        path = P.save_animation(P.animate_particles(frames, times, interval=interval, hold=0),
                                tmp_path / f"i{interval}.gif", dpi=30)
        assert set(_gif_frames(path)[1]) == {interval}  # every GIF had 60 ms frames before


def test_save_figure_below_a_file_names_it(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    fig = P.plot_samples(torch.randn(5, 2)).figure
    with pytest.raises(ValueError, match="file.txt is a file, not a folder"):
        P.save_figure(fig, blocker / "fig.png")  # bare FileExistsError before


def test_cli_plot_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--fields-at"):
        main(["plot", "--debug", "--fields-at", "5", "--what", "fields", "--out", str(tmp_path)])


def test_cli_plot_refuses_bad_options_before_sampling(tmp_path, capsys, monkeypatch):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before checking the options")

    monkeypatch.setattr(compare, "sample_solvers", no_sampling)
    for extra, named in ((["--what", "solver_grid,bogus"], "--what"), (["--dpi", "0"], "--dpi"),
                         (["--seed", "-1"], "--seed")):
        assert main(["plot", "--out", str(tmp_path), *extra]) == 2
        assert named in capsys.readouterr().err
