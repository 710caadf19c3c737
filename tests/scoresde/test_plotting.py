"""Plotting: every public function on the Agg canvas, checked for what it actually draws.

Beyond "it runs", each test checks a property a reader relies on: labels, the number of
paths / arrows / panels, the colours encoding time, the densities and fields being the
exact ones, files being written. Small sizes keep the whole file to a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection, PathCollection, QuadMesh
from matplotlib.contour import QuadContourSet
from matplotlib.image import AxesImage
from matplotlib.quiver import Quiver
from PIL import Image

import scoresde as sd
import solvers
from scoresde import plotting as P
from scoresde.targets import GaussianMixture

SDE = sd.VPSDE()
TARGET = sd.targets.eight_gaussians()
SCORE = TARGET.score_fn(SDE)


@pytest.fixture(scope="module")
def result() -> solvers.Solution:
    return solvers.sample(SDE, SCORE, (300, 2), "euler_maruyama", steps=30, seed=0,
                          keep_trajectory=True, max_frames=11, denoise=False)


def _png_ok(path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.size[0] > 100 and im.size[1] > 100


# --- marginals -------------------------------------------------------------------------------
def test_plot_samples_scatter_below_threshold_hist_above():
    x = TARGET.sample(500, generator=torch.Generator().manual_seed(0))
    ax = P.plot_samples(x, title="samples")
    coll = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(coll) == 1 and coll[0].get_offsets().shape == (500, 2)  # every point drawn once
    assert ax.get_xlabel() == "$x_1$" and ax.get_ylabel() == "$x_2$" and ax.get_title() == "samples"
    assert ax.get_aspect() == 1.0

    big = TARGET.sample(P.marginals.HIST_ABOVE + 1, generator=torch.Generator().manual_seed(1))
    ax = P.plot_samples(big)
    assert any(isinstance(c, QuadMesh) for c in ax.collections)  # 2-D histogram, no scatter
    assert not any(isinstance(c, PathCollection) for c in ax.collections)
    with pytest.raises(ValueError, match="kind"):
        P.plot_samples(x, kind="violin")
    with pytest.raises(ValueError, match="shape"):
        P.plot_samples(torch.zeros(10))


def test_density_grid_is_the_exact_marginal_density():
    # One isotropic Gaussian N(0, s^2 I): p_t = N(0, (alpha^2 s^2 + sigma^2) I) in closed form.
    s = 0.5
    g = GaussianMixture([[0.0, 0.0]], s)
    t = 0.3
    alpha, sigma = (float(v) for v in SDE.marginal_coeffs(torch.tensor([t], dtype=torch.float64)))
    var = alpha**2 * s**2 + sigma**2
    gx, gy, dens = P.density_grid(g, (-2.0, 2.0), sde=SDE, t=t, resolution=41)
    expected = np.exp(-(gx**2 + gy**2) / (2 * var)) / (2 * math.pi * var)
    np.testing.assert_allclose(dens, expected, rtol=1e-10)  # float64 closed form vs logsumexp
    with pytest.raises(ValueError, match="2-D"):
        P.density_grid(sd.targets.high_dim(4), (-1.0, 1.0))


def test_plot_density_image_and_contour_compose_on_one_axes():
    ax = P.plot_density(TARGET)
    assert len([a for a in ax.get_children() if isinstance(a, AxesImage)]) == 1
    ax2 = P.plot_density(TARGET, sde=SDE, t=0.1, ax=ax, kind="contour", levels=3)
    assert ax2 is ax  # drawn into the given axes
    contours = [c for c in ax.get_children() if isinstance(c, QuadContourSet)]
    assert len(contours) == 1 and len(contours[0].levels) == 3
    assert "t = 0.1" in ax.get_title()


def test_plot_snapshots_picks_nearest_frames(result):
    times = result.trajectory_times.numpy()
    assert P.marginals.nearest_frames(times, [1.0, 0.0]) == [0, len(times) - 1]
    fig = P.plot_snapshots(result, [1.0, 0.5, 0.0], target=TARGET, sde=SDE, suptitle="snap")
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 3
    idx = P.marginals.nearest_frames(times, [1.0, 0.5, 0.0])
    sig = [float(SDE.marginal_coeffs(torch.tensor([max(float(times[i]), 0.0)], dtype=torch.float64))[1])
           for i in idx]
    assert [a.get_title() for a in axes] == [f"t = {times[i]:.3g}, $\\sigma$ = {s:.3g}"
                                             for i, s in zip(idx, sig, strict=True)]
    assert all(any(isinstance(c, QuadContourSet) for c in a.get_children()) for a in axes)


# --- trajectories ----------------------------------------------------------------------------
def test_plot_trajectories_colours_segments_by_time(result):
    ax = P.plot_trajectories(result, n_paths=7, title="EM")
    lc = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lc) == 1
    n_frames = result.trajectory.shape[0]
    assert len(lc[0].get_segments()) == 7 * (n_frames - 1)  # one segment per path and step
    t = result.trajectory_times.numpy()
    np.testing.assert_allclose(lc[0].get_array()[: n_frames - 1], 0.5 * (t[:-1] + t[1:]))
    labels = [h.get_label() for h in ax.get_legend().legend_handles]
    assert labels[0].startswith("start, t = 1") and labels[1].startswith("end, t = 0.001")
    assert len(ax.figure.axes) == 2  # the panel and its colour bar
    assert ax.figure.axes[1].get_ylabel() == "t"
    with pytest.raises(ValueError, match="keep_trajectory"):
        P.plot_trajectories(solvers.sample(SDE, SCORE, (10, 2), steps=2, seed=0))


def test_simulate_forward_matches_closed_form_marginal():
    # Data at the origin: x_T ~ N(0, sigma(T)^2 I) exactly (the transitions compose).
    n = 4000
    frames, times = P.simulate_forward(SDE, torch.zeros(n, 2, dtype=torch.float64), steps=20,
                                       generator=torch.Generator().manual_seed(0))
    assert frames.shape == (21, n, 2) and float(times[0]) == 0.0 and float(times[-1]) == SDE.T
    _, sigma = SDE.marginal_coeffs(torch.tensor([SDE.T], dtype=torch.float64))
    var = frames[-1].var(dim=0)
    # Sample variance of 4000 normals has relative std sqrt(2/4000) = 2.2%; allow 4.5 sigma.
    torch.testing.assert_close(var, torch.full_like(var, float(sigma) ** 2), rtol=0.1, atol=0.0)


def test_plot_forward_reverse_shares_time_scale(result):
    x0 = TARGET.sample(300, generator=torch.Generator().manual_seed(2))
    fig = P.plot_forward_reverse(SDE, x0, result, n_paths=5, steps=10)
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title().split(" ")[0] for a in panels] == ["forward", "reverse-time"]
    norms = [next(c for c in a.collections if isinstance(c, LineCollection)).norm for a in panels]
    assert all((n.vmin, n.vmax) == (0.0, SDE.T) for n in norms)
    assert panels[0].get_xlim() == panels[1].get_xlim()


def test_ve_plots_keep_the_data_in_view_and_show_the_prior_in_an_inset():
    ve = sd.get_sde("ve")  # sigma_max = 50: the prior end is ~40x wider than the data
    res = solvers.sample(ve, TARGET.score_fn(ve), (400, 2), "euler_maruyama", steps=30, seed=0,
                         keep_trajectory=True, max_frames=16)
    ax = P.plot_trajectories(res)
    lo, hi = ax.get_xlim()
    data_half = float(np.abs(res.samples.numpy()).max())
    assert hi < 2 * data_half  # scaled to the data end, not to the sigma = 50 prior
    # The prior's extent is shown: in a corner inset where one is free of data, else in words
    # (eight modes on a circle fill every corner: an inset there hid a whole mode).
    insets = [c for c in ax.child_axes]
    said = [t.get_text() for t in ax.texts if "outside this view" in t.get_text()]
    assert (len(insets) == 1 and "view" in insets[0].get_title()) or (not insets and len(said) == 1)
    fig = P.plot_snapshots(res, [1.0, 0.0], target=TARGET, sde=ve)
    first = [a for a in fig.axes if a.get_visible()][0]
    assert "$\\sigma$ = 50" in first.get_title()
    assert any("outside this view" in t.get_text() for t in first.texts)


# --- fields ----------------------------------------------------------------------------------
def test_field_on_grid_evaluates_the_exact_score():
    gx, gy, u, v = P.field_on_grid(SCORE, 0.2, (-2.0, 2.0), density=5, dtype=torch.float64)
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1))
    exact = TARGET.marginal_score(pts, 0.2, SDE).numpy()
    np.testing.assert_allclose(np.stack([u.ravel(), v.ravel()], axis=1), exact, rtol=1e-12)


def test_velocity_field_is_minus_probability_flow_drift_in_sampling_direction():
    # Single Gaussian N(0, s^2 I) under VP: score = -x / v(t) with v = alpha^2 s^2 + sigma^2, so
    # dx/dt = -beta/2 x + beta/2 x / v; the sampling direction is its negative.
    s, t = 0.5, 0.4
    g = GaussianMixture([[0.0, 0.0]], s)
    ax = P.plot_velocity_field(SDE, g.score_fn(SDE), t, density=6, lims=(-2.0, 2.0))
    q = next(c for c in ax.collections if isinstance(c, Quiver))
    assert q.N == 36  # one arrow per grid point
    tt = torch.tensor([t], dtype=torch.float64)
    alpha, sigma = (float(x) for x in SDE.marginal_coeffs(tt))
    beta = float(SDE.diffusion(tt)) ** 2
    var = alpha**2 * s**2 + sigma**2
    coeff = -0.5 * beta + 0.5 * beta / var  # dx/dt = coeff * x
    xs = np.asarray(q.X)
    ys = np.asarray(q.Y)
    direction = -np.sign(coeff)  # sampling direction
    inward = np.hypot(xs, ys) > 0
    radial = (np.asarray(q.U) * xs + np.asarray(q.V) * ys)[inward]
    assert np.all(np.sign(radial) == direction)
    np.testing.assert_allclose(np.hypot(q.U, q.V)[inward], 1.0, rtol=1e-6)  # unit arrows
    assert ax.figure.axes[-1].get_ylabel() == "log$_{10}$ |v|"
    with pytest.raises(ValueError, match="direction"):
        P.plot_velocity_field(SDE, SCORE, t, direction="sideways")


def test_plot_score_field_stream_and_plot_fields_layout():
    ax = P.plot_score_field(SCORE, 0.1, sde=SDE, target=TARGET, kind="stream", density=8)
    assert any(isinstance(c, LineCollection) for c in ax.collections)  # stream lines
    assert any(isinstance(a, AxesImage) for a in ax.get_children())  # exact p_t underneath
    assert ax.get_title() == "score, t = 0.1"
    fig = P.plot_fields(SDE, SCORE, (1.0, 0.05), target=TARGET, density=6)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["score, t = 1", "score, t = 0.05", "PF-ODE −dx/dt\nt = 1", "PF-ODE −dx/dt\nt = 0.05"]
    with pytest.raises(ValueError, match="kind"):
        P.plot_vector_field(SCORE, 0.5, kind="arrows")


# --- solver grid -----------------------------------------------------------------------------
def test_plot_solver_grid_columns_titles_and_missing_trajectory(result):
    plain = solvers.sample(SDE, SCORE, (300, 2), "euler_maruyama", steps=5, seed=0, denoise=False)
    fig = P.plot_solver_grid({"EM 30": result, "EM 5 (no traj)": plain}, target=TARGET, sde=SDE,
                             n_paths=4)
    panels = [a for a in fig.axes if a.get_xlabel() == "$x_1$" or a.texts]
    assert len(panels) == 4  # 2 rows x 2 solvers
    assert panels[0].get_title() == "EM 30\nNFE 30" and panels[1].get_title() == "EM 5 (no traj)\nNFE 5"
    assert panels[1].texts and "no trajectory" in panels[1].texts[0].get_text()
    with pytest.raises(ValueError, match="rows"):
        P.plot_solver_grid({"a": result}, rows=("histograms",))


def test_multi_panel_functions_draw_into_given_axes(result):
    fig = P.new_figure(8, 3)
    axes = fig.subplots(1, 3)
    out = P.plot_snapshots(result, [1.0, 0.5, 0.0], ax=axes)
    assert out is fig and all(a.collections for a in axes)
    with pytest.raises(ValueError, match="sequence of 2"):
        P.plot_forward_reverse(SDE, TARGET.sample(10), result, ax=axes)


# --- animation -------------------------------------------------------------------------------
def _gif_duration_ms(path) -> int:
    # Pillow merges identical consecutive frames (the held ones) and adds up their durations,
    # so the total duration, not the frame count, reflects the frames written.
    total = 0
    with Image.open(path) as im:
        for k in range(im.n_frames):
            im.seek(k)
            total += im.info["duration"]
    return total


def test_animation_gif_has_one_frame_per_stored_state(result, tmp_path):
    n_frames = result.trajectory.shape[0]
    anim = P.animate_particles(result, n_points=50, hold=2, target=TARGET, sde=SDE)
    path = P.save_animation(anim, tmp_path / "rev.gif", fps=10, dpi=40)
    assert _gif_duration_ms(path) == (n_frames + 2) * 100  # 100 ms per frame at 10 fps
    with Image.open(path) as im:
        assert im.n_frames >= n_frames  # the stored states all differ
    x0 = TARGET.sample(300, generator=torch.Generator().manual_seed(3))
    anim = P.animate_forward_reverse(SDE, x0, result, forward_frames=4, hold=1, n_points=30)
    paths = P.save_animation_all(anim, tmp_path / "fr", fps=10, dpi=40)
    assert paths[0].suffix == ".gif" and paths[0].stat().st_size > 0
    # held data frame + 5 forward frames + the reverse frames + held final frame
    assert _gif_duration_ms(paths[0]) == (1 + 5 + n_frames + 1) * 100
    assert (len(paths) == 2) == P.ffmpeg_available()
    with pytest.raises(ValueError, match=".gif or .mp4"):
        P.save_animation(anim, tmp_path / "x.avi")
    if not P.ffmpeg_available():
        with pytest.raises(RuntimeError, match="ffmpeg"):
            P.save_animation(anim, tmp_path / "x.mp4")


# --- curves ----------------------------------------------------------------------------------
RECORDS = [
    {"solver": "a", "budget": 10, "seed": 0, "nfe": 10, "seconds": 0.1, "sliced_w2": 0.30, "status": "ok"},
    {"solver": "a", "budget": 10, "seed": 1, "nfe": 10, "seconds": 0.3, "sliced_w2": 0.50, "status": "ok"},
    {"solver": "a", "budget": 20, "seed": 0, "nfe": 20, "seconds": 0.2, "sliced_w2": 0.20, "status": "ok"},
    {"solver": "b", "budget": 10, "seed": 0, "nfe": 20, "seconds": 0.2, "sliced_w2": 0.10, "status": "ok"},
    {"solver": "b", "budget": 20, "seed": 0, "nfe": None, "seconds": None, "sliced_w2": None,
     "status": "error"},
]


def test_summarize_means_and_sample_std_over_seeds():
    rows = P.summarize(RECORDS, ["sliced_w2", "nfe"])
    assert [(r["solver"], r["budget"], r["n"]) for r in rows] == [("a", 10, 2), ("a", 20, 1), ("b", 10, 1)]
    assert rows[0]["sliced_w2_mean"] == pytest.approx(0.4)
    assert rows[0]["sliced_w2_std"] == pytest.approx(math.sqrt(0.02))  # ddof=1 of (0.3, 0.5)
    assert rows[1]["sliced_w2_std"] == 0.0


def test_metric_curves_one_errorbar_line_per_solver_and_floor(tmp_path):
    ax = P.plot_metric_vs_nfe(RECORDS, "sliced_w2", floor=(0.05, 0.01), title="8g")
    bars = ax.containers  # one ErrorbarContainer per solver; the failed cell is left out
    assert [c.get_label() for c in bars] == ["a", "b"]
    np.testing.assert_allclose(np.asarray(bars[0].lines[0].get_xdata(), float), [10, 20])
    np.testing.assert_allclose(np.asarray(bars[0].lines[0].get_ydata(), float), [0.4, 0.2])
    np.testing.assert_allclose(np.asarray(bars[1].lines[0].get_xdata(), float), [20])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "noise floor"]
    assert any(line.get_label() == "noise floor" for line in ax.get_lines())
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "NFE (score evaluations)" and ax.get_ylabel() == "sliced Wasserstein-2"
    ax = P.plot_metric_vs_time(RECORDS, "sliced_w2")
    assert ax.get_xlabel() == "wall time [s]"
    fig = P.plot_comparison(RECORDS, ["sliced_w2", "nfe"], floors={"sliced_w2": 0.05})
    assert sum(a.get_visible() for a in fig.axes) == 2
    path = P.save_figure(fig, tmp_path / "sub" / "curves.png", dpi=50)
    _png_ok(path)
    with pytest.raises(ValueError, match="no records"):
        P.plot_metric_curves([], "sliced_w2")


def test_error_cost_figure_keeps_one_style_per_method_and_tags_only_the_ends():
    a = {"rk4": [(10, 1e-2, "8"), (20, 1e-3, "16"), (40, 1e-4, "32")], "reference": [(100, 1e-5, "1e-05")]}
    b = {"rk4": [(0.1, 1e-2, "8"), (0.3, 1e-4, "32")], "dopri5": [(0.2, 1e-3, "1e-3"), (0.5, 1e-5, "1e-5")]}
    fig = P.error_cost_figure([{"series": a, "xlabel": "NFE", "ylabel": "err", "threshold": 1e-3},
                               {"series": b, "xlabel": "s", "ylabel": "err"}])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    colour = {ln.get_label(): ln.get_color() for ax in axes for ln in ax.get_lines() if ln.get_label() in a}
    rk4 = [ln.get_color() for ax in axes for ln in ax.get_lines() if ln.get_label() == "rk4"]
    assert len(rk4) == 2 and rk4[0] == rk4[1] == colour["rk4"]  # one colour per method in every panel
    assert [t.get_text() for t in axes[0].texts] == ["8", "32", "1e-05"]  # ends only, no pile of labels
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["rk4", "reference", "dopri5"]


def test_fuzzed_bad_input_gets_a_clear_error(tmp_path, result) -> None:
    x = torch.randn(50, 2)
    with pytest.raises(ValueError, match="no points to plot"):
        P.plot_samples(torch.randn(0, 2))  # "need at least one array to concatenate" before
    with pytest.raises(ValueError, match=r"dims \(0, 5\) out of range"):
        P.plot_samples(x, dims=(0, 5))  # IndexError before
    with pytest.raises(TypeError, match="dims must be a pair"):
        P.plot_samples(x, dims=(0, 1, 1))  # silently ignored the third index before
    with pytest.raises(ValueError, match="out of range"):
        P.plot_trajectories(result, dims=(0, 2))
    # An all-NaN cloud drew an empty panel without a word; now the panel says so.
    ax = P.plot_samples(torch.full((5, 2), float("nan")))
    assert any("5 of 5 points are NaN/inf" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError, match="no frames or no particles"):
        P.plot_trajectories(torch.randn(0, 10, 2), times=torch.zeros(0))
    with pytest.raises(ValueError, match="times contain NaN"):
        P.plot_trajectories(torch.randn(5, 10, 2), times=torch.full((5,), float("nan")))
    with pytest.raises(ValueError, match="n_paths must be an integer"):
        P.plot_trajectories(result, n_paths=2.5)
    with pytest.raises(ValueError, match="at must hold finite times"):
        P.plot_snapshots(result, at=[float("nan")])  # silently showed the first frame before
    with pytest.raises(ValueError, match="n_panels must be a positive integer"):
        P.plot_snapshots(result, n_panels=-1)
    with pytest.raises(TypeError, match="target must be an exact mixture"):
        P.plot_density(3)  # AttributeError before
    with pytest.raises(ValueError, match="resolution must be an integer >= 2"):
        P.plot_density(TARGET, resolution=0)
    with pytest.raises(TypeError, match="x0 must be a floating-point torch.Tensor"):
        P.simulate_forward(SDE, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="t_end must be a finite time"):
        P.simulate_forward(SDE, x, t_end=float("nan"))  # all-NaN frames before
    fig = P.plot_samples(x).figure
    with pytest.raises(TypeError, match="pass ax.figure"):
        P.save_figure(P.plot_samples(x), tmp_path / "a.png")  # AttributeError before
    with pytest.raises(ValueError, match="is a folder"):
        P.save_figure(fig, tmp_path)  # wrote <folder>.png next to it and returned the folder
    written = P.save_figure(fig, tmp_path / "noext")  # returned a path that did not exist
    assert written == tmp_path / "noext.png" and written.is_file()
