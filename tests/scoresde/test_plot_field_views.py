"""Field plots look where the data are (an outside check): their default view follows the exact
p_t when a target is given, a time outside [0, T] is refused as the single-panel plots refuse it,
a target without an SDE is not dropped silently, and density images sit on their grid nodes."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

import scoresde as sd  # noqa: E402
from scoresde import plotting  # noqa: E402
from scoresde.mixture import GaussianMixture  # noqa: E402


def _off_centre() -> GaussianMixture:
    return GaussianMixture(torch.tensor([[6.0, 6.0], [8.0, 6.0]]), torch.tensor([0.2, 0.2]), torch.tensor([0.5, 0.5]))


def test_field_views_follow_the_target():
    import matplotlib.pyplot as plt

    vp = sd.VPSDE()
    off = _off_centre()
    ax = plotting.plot_score_field(off.score_fn(vp), 0.01, sde=vp, target=off)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for mx, my in off.means.tolist():  # both modes in view (the fixed (-3, 3) view held neither)
        assert x0 < mx - 0.6 and mx + 0.6 < x1 and y0 < my - 0.6 and my + 0.6 < y1
    ax = plotting.plot_velocity_field(vp, off.score_fn(vp), 0.01, target=off)
    assert ax.get_xlim()[0] > 4.0
    # Under VE the panel at T shows p_T (std ~50), the one at small t the data.
    ve, tg = sd.VESDE(), sd.targets.eight_gaussians()
    fig = plotting.plot_fields(ve, tg.score_fn(ve), target=tg)
    widths = [a.get_xlim()[1] - a.get_xlim()[0] for a in fig.axes[:4]]
    assert widths[0] > 250 and widths[-1] < 8
    # Without a target, or with lims, the view is as asked.
    assert plotting.plot_score_field(tg.score_fn(vp), 0.1).get_xlim() == (-3.0, 3.0)
    assert plotting.plot_score_field(off.score_fn(vp), 0.1, sde=vp, target=off, lims=(-1, 1)).get_xlim() == (-1, 1)
    plt.close("all")


def test_plot_fields_refuses_times_outside_the_interval():
    vp = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(vp)
    for bad in (5.0, -1.0):  # were drawn at T and eps under titles saying so
        with pytest.raises(ValueError, match=r"must lie in \[0, T=1\]"):
            plotting.plot_fields(vp, score, [0.5, bad])


def test_a_target_without_an_sde_warns():
    vp = sd.VPSDE()
    tg = sd.targets.eight_gaussians()
    with pytest.warns(UserWarning, match="target= draws the exact p_t underneath only with sde="):
        plotting.plot_score_field(tg.score_fn(vp), 0.1, target=tg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plotting.plot_score_field(tg.score_fn(vp), 0.1, sde=vp, target=tg)


def test_density_pixels_are_centred_on_their_nodes():
    vp = sd.VPSDE()
    tg = sd.targets.eight_gaussians()
    for res in (20, 200):
        ax = plotting.plot_density(tg, sde=vp, t=0.01, resolution=res, lims=(-3.0, 3.0))
        lo, hi, _, _ = ax.images[0].get_extent()
        width = (hi - lo) / res  # a pixel
        centres = lo + width * (np.arange(res) + 0.5)
        np.testing.assert_allclose(centres, np.linspace(-3.0, 3.0, res), atol=1e-12)
        assert ax.get_xlim() == (-3.0, 3.0)


def test_the_report_draws_exact_fields_in_their_own_view(tmp_path, monkeypatch):
    # scoresde plot / demo passed the samples' view to every field panel: under VE the panel at
    # T (p_T of std ~50) was flat grey.
    import solvers
    from scoresde.plotting import report

    seen = []
    original = report.plot_fields

    def spy(*args, **kw):
        seen.append(kw.get("lims"))
        return original(*args, **kw)

    monkeypatch.setattr(report, "plot_fields", spy)
    ve, tg = sd.VESDE(), sd.targets.eight_gaussians()
    res = {"ddim": solvers.sample(ve, tg.score_fn(ve), shape=(200, 2), solver="ddim", steps=10, seed=0,
                                  keep_trajectory=True)}
    report.write_sampling_figures(tmp_path, res, sde=ve, score=tg.score_fn(ve), target=tg, which=["fields"],
                                  field_density=5, gif=False)
    assert seen == [None]  # each panel: field_limits, the exact p_t's view
