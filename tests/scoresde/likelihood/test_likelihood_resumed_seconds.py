"""A likelihood run resumed from a store reports the whole computation's wall time, as it does its NFE."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import likelihood

RECORDED = 100.0  # seconds each stored piece is said to have taken in the interrupted process


class _Interrupted(Exception):
    pass


class _MemoryStore:
    """A `ChunkStore` in memory that stops the run before saving chunk `stop_at`."""

    def __init__(self) -> None:
        self.pilot: Any = None
        self.chunks: dict[int, Any] = {}
        self.stop_at: int | None = None

    def load_pilot(self) -> Any:
        return self.pilot

    def save_pilot(self, pilot: Any, rng_state: torch.Tensor) -> None:
        pilot.info["pilot_seconds"] = RECORDED
        self.pilot = (pilot, rng_state)

    def load_chunk(self, k: int) -> Any:
        return self.chunks.get(k)

    def save_chunk(self, k: int, solved: Any, stats: dict[str, Any], rng_state: torch.Tensor) -> None:
        if k == self.stop_at:
            raise _Interrupted
        assert stats["seconds"] >= 0.0  # each fresh chunk records its own time
        self.chunks[k] = (solved, {**stats, "seconds": RECORDED}, rng_state)


def test_a_resumed_run_adds_the_recorded_time_of_the_pieces_it_reused() -> None:
    sde = sd.VPSDE()
    target = sd.targets.eight_gaussians()
    x = target.sample(80, generator=torch.Generator().manual_seed(0)).double()
    # The pilot places the 8 steps and solves its 20 samples; the other 60 go in 3 chunks.
    kw: dict[str, Any] = dict(integrator="rk4_simpson", steps=8, batch_size=20, seed=0, pilot_size=20)
    store = _MemoryStore()
    store.stop_at = 2
    with pytest.raises(_Interrupted):
        likelihood(sde, target.score_fn(sde), x, store=store, **kw)
    assert sorted(store.chunks) == [0, 1]
    store.stop_at = None
    resumed = likelihood(sde, target.score_fn(sde), x, store=store, **kw)
    whole = likelihood(sde, target.score_fn(sde), x, **kw)
    torch.testing.assert_close(resumed.log_prob, whole.log_prob, rtol=0, atol=0)
    reused = 3 * RECORDED  # the pilot and chunks 0 and 1
    # Old code: the resumed process's time only (well under a minute here).
    assert reused <= resumed.seconds < reused + 60.0
    assert resumed.nfe == whole.nfe
