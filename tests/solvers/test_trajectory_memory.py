"""Memory of `keep_trajectory`: O(max_frames) states while recording, no second copy at the end."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import solvers
import solvers.trajectory as trajectory_module
from scoresde import VPSDE
from solvers.trajectory import TrajectoryRecorder


def _tensors(obj: Any, seen: set[int], out: dict[int, torch.Tensor]) -> None:
    """Every tensor reachable from ``obj`` through attributes, lists, tuples and dicts, by storage."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        out[obj.untyped_storage().data_ptr()] = obj
    elif isinstance(obj, (list, tuple, set)):
        for item in obj:
            _tensors(item, seen, out)
    elif isinstance(obj, dict):
        for item in obj.values():
            _tensors(item, seen, out)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for item in vars(obj).values():
            _tensors(item, seen, out)



def _held(recorder: object) -> dict[int, torch.Tensor]:
    out: dict[int, torch.Tensor] = {}
    _tensors(recorder, set(), out)
    return out


def _held_bytes(recorder: object) -> int:
    return sum(t.untyped_storage().nbytes() for t in _held(recorder).values())


class _Watch:
    """Wraps `TrajectoryRecorder.add` / `result`: the most bytes and the storages the recorder held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.peak = 0
        self.adds = 0
        self.storages: set[int] = set()
        add, result = TrajectoryRecorder.add, TrajectoryRecorder.result
        watch = self

        def add_and_measure(rec: TrajectoryRecorder, *args: Any, **kwargs: Any) -> None:
            add(rec, *args, **kwargs)
            watch.adds += 1
            held = _held(rec)
            watch.storages |= set(held)
            watch.peak = max(watch.peak, sum(t.untyped_storage().nbytes() for t in held.values()))

        def result_and_measure(rec: TrajectoryRecorder) -> Any:
            held = _held(rec)
            watch.storages |= set(held)
            watch.peak = max(watch.peak, sum(t.untyped_storage().nbytes() for t in held.values()))
            return result(rec)

        monkeypatch.setattr(trajectory_module.TrajectoryRecorder, "add", add_and_measure)
        monkeypatch.setattr(trajectory_module.TrajectoryRecorder, "result", result_and_measure)


def _score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -x


@pytest.mark.parametrize(("solver", "max_frames"), [("adaptive_sde", 4), ("ode_dopri5", 2), ("ode_rk45", 2)])
def test_adaptive_run_holds_at_most_2_max_frames_states(
    monkeypatch: pytest.MonkeyPatch, solver: str, max_frames: int
) -> None:
    # An adaptive run has many more iterations than frames: the recorder must thin as frames
    # arrive, not keep every state until the end (the solver's step count is unknown up front).
    watch = _Watch(monkeypatch)
    shape = (64, 8)
    r = solvers.sample(VPSDE(), _score, shape, solver, seed=0, keep_trajectory=True, max_frames=max_frames)
    frame_bytes = 64 * 8 * 4
    assert watch.adds >= 4 * max_frames  # the run offered many more frames than the budget
    assert r.trajectory is not None and r.trajectory.shape == (max_frames, *shape)
    assert r.trajectory_times is not None and r.trajectory_times.shape == (max_frames,)
    # States plus small per-sample time vectors (64 float64 each) of at most 2 max_frames frames.
    assert watch.peak <= 2 * max_frames * (frame_bytes + 64 * 8)


def test_adaptive_sde_frames_match_times_and_run_ends() -> None:
    sde = VPSDE()
    r = solvers.sample(sde, _score, (32, 2), "adaptive_sde", seed=0, keep_trajectory=True, max_frames=6,
                       denoise=False)
    assert r.stats["iterations"] > 12
    assert r.trajectory is not None and r.trajectory.shape == (6, 32, 2)
    times = r.trajectory_times
    assert times is not None and times[0] == sde.T and times[-1] == sde.eps
    assert bool((times.diff() < 0).all())
    assert torch.equal(r.trajectory[-1], r.samples)
    per = r.stats["trajectory_sample_times"]
    assert per.shape == (6, 32) and per.dtype == torch.float64
    assert bool((per[0] == sde.T).all()) and bool((per[-1] == sde.eps).all())
    # Each frame's time is the batch mean of its per-sample times (before the end every sample
    # is still running; the frame times are among the solver's visited times).
    visited = set(r.times.tolist())
    assert all(t in visited for t in times.tolist())


def test_fixed_grid_result_is_the_preallocated_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    # With a known number of steps the frames are copied into one (F, B, *D) tensor: the
    # returned trajectory is that tensor, not a stack of per-frame clones (2x the memory).
    watch = _Watch(monkeypatch)
    steps, shape = 30, (16, 3, 4)
    r = solvers.sample(VPSDE(), _score, shape, "euler_maruyama", steps=steps, seed=0,
                       keep_trajectory=True, max_frames=None, denoise=False)
    traj = r.trajectory
    assert traj is not None and traj.shape == (steps + 1, *shape) and traj.dtype == torch.float32
    same = traj.untyped_storage().data_ptr() in watch.storages
    assert same, "the trajectory is a copy of the frames the recorder held (stacked at the end)"
    assert torch.equal(traj[-1], r.samples)
    assert watch.peak <= traj.untyped_storage().nbytes() + 4096


def test_fixed_grid_thinned_frames_values(monkeypatch: pytest.MonkeyPatch) -> None:
    watch = _Watch(monkeypatch)
    full = solvers.sample(VPSDE(), _score, (8, 2), "euler_maruyama", steps=40, seed=0,
                          keep_trajectory=True, max_frames=None, denoise=False, dtype=torch.float64)
    thin = solvers.sample(VPSDE(), _score, (8, 2), "euler_maruyama", steps=40, seed=0,
                          keep_trajectory=True, max_frames=9, denoise=False, dtype=torch.float64)
    keep = torch.linspace(0, 40, 9).round().long()
    assert thin.trajectory is not None and full.trajectory is not None
    assert thin.trajectory_times is not None and full.trajectory_times is not None
    assert thin.trajectory.dtype == torch.float64
    assert torch.equal(thin.trajectory, full.trajectory[keep])
    assert torch.equal(thin.trajectory_times, full.trajectory_times[keep])
    same = thin.trajectory.untyped_storage().data_ptr() in watch.storages
    assert same, "the trajectory is a copy of the frames the recorder held (stacked at the end)"


def test_recorder_thins_as_frames_arrive() -> None:
    # Direct use: frame i holds the value i, so the returned frames name their own indices.
    for max_frames in (2, 3, 5, 11):
        for n in (1, max_frames, 2 * max_frames - 2, 2 * max_frames + 1, 97, 300):
            rec = TrajectoryRecorder(True, None, max_frames)
            peak = 0
            for i in range(n):
                rec.add(1.0 - i / n, torch.full((3, 2), float(i)), torch.full((3,), 1.0 - i / n, dtype=torch.float64))
                peak = max(peak, len(_held(rec)))
            # Held states (and their per-sample time vectors) never exceed 2 max_frames frames.
            assert peak <= 2 * (2 * max_frames)
            traj, times, per = rec.result()
            assert traj is not None and times is not None and per is not None
            idx = traj[:, 0, 0].long().tolist()
            assert len(idx) == min(n, max_frames) and idx[0] == 0 and idx[-1] == n - 1
            assert all(a < b for a, b in zip(idx, idx[1:], strict=False))
            assert times.tolist() == [1.0 - i / n for i in idx]  # times belong to their frames
            assert torch.equal(per[:, 0], times)
            ideal = torch.linspace(0, n - 1, max_frames).round().long().tolist() if n > max_frames else list(range(n))
            if n <= 2 * max_frames - 2:
                assert idx == ideal  # nothing dropped yet: the frames the whole run would give
            else:
                spacing = (n - 1) / (max_frames - 1)
                assert max(abs(a - b) for a, b in zip(idx, ideal, strict=True)) <= spacing / 2


def test_recorder_without_budget_keeps_every_frame() -> None:
    rec = TrajectoryRecorder(True, None, None)
    for i in range(50):
        rec.add(float(-i), torch.full((2,), float(i)))
    traj, times, per = rec.result()
    assert traj is not None and times is not None and per is None
    assert traj[:, 0].tolist() == [float(i) for i in range(50)] and times.tolist() == [float(-i) for i in range(50)]
    assert TrajectoryRecorder(False, None, 5).result() == (None, None, None)
    assert TrajectoryRecorder(True, 10, 5).result() == (None, None, None)
