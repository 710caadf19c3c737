"""Trajectory plots of a run with per-sample steps (adaptive_sde's default) say that a frame's
time is only its samples' mean: the frames hold samples at times far apart."""

from __future__ import annotations

import warnings

import pytest

import scoresde as sd
import solvers
from scoresde.plotting import plot_snapshots, plot_trajectories

SDE = sd.VPSDE()
TARGET = sd.targets.eight_gaussians()


def _run(**options: object) -> solvers.Solution:
    return solvers.sample(SDE, TARGET.score_fn(SDE), (32, 2), "adaptive_sde", seed=0, keep_trajectory=True,
                          **options)


def test_per_sample_frames_are_warned_about_at_the_callers_line() -> None:
    r = _run()
    per = r.stats["trajectory_sample_times"]
    assert r.trajectory is not None and per.shape == (r.trajectory.shape[0], 32)
    spread = float((per.amax(1) - per.amin(1)).max())
    assert spread > 0.1  # the premise: one frame holds samples far apart in t
    for plot in (plot_snapshots, plot_trajectories):
        with pytest.warns(UserWarning, match=r"frames of this trajectory hold samples at different times") as rec:
            plot(r)
        assert rec[0].filename == __file__
        assert f"up to {spread:.3g} apart" in str(rec[0].message) and "per_sample=False" in str(rec[0].message)


@pytest.mark.parametrize("run", [
    lambda: _run(per_sample=False),
    lambda: solvers.sample(SDE, TARGET.score_fn(SDE), (32, 2), "euler_maruyama", steps=20, seed=0,
                           keep_trajectory=True),
])
def test_frames_at_one_time_each_are_not_warned_about(run: object) -> None:
    r = run()  # type: ignore[operator]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_snapshots(r)
        plot_trajectories(r)


def test_times_given_by_the_caller_are_not_second_guessed() -> None:
    r = _run()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_trajectories(r, times=r.trajectory_times)
