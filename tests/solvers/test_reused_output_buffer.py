"""A score that writes every output into one preallocated buffer (an outside pass).

CUDA graphs, ``torch.compile(mode="reduce-overhead")`` and hand-written models with a static
output tensor return the same memory on every call. `CountedScore` kept earlier outputs by
reference for the end-of-run step's Gaussian fit, so that fit read the newest output twice and
the default ``denoise="ode"`` returned wrong samples without an error.
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers
from solvers.dynamics import CountedScore, ScoreModifiedInputError

F64 = torch.float64


class BufferedScore:
    """The exact score, copied into one output tensor that every call returns."""

    def __init__(self, score: solvers.protocol.ScoreFn) -> None:
        self.score = score
        self.buffer: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.score(x, t)
        if self.buffer is None or self.buffer.shape != out.shape:
            self.buffer = torch.empty_like(out)
        return self.buffer.copy_(out)


@pytest.mark.parametrize("solver", ["euler_maruyama", "dpmpp_2m", "annealed_langevin", "ode_rk45", "adaptive_sde"])
def test_a_buffered_score_samples_what_a_fresh_one_does(solver: str) -> None:
    sde = sd.VPSDE()
    score = sd.targets.eight_gaussians().score_fn(sde)
    kw = dict(shape=(300, 2), solver=solver, steps=6, seed=0, dtype=F64)
    fresh = solvers.sample(sde, score, **kw).samples
    buffered = solvers.sample(sde, BufferedScore(score), **kw).samples
    torch.testing.assert_close(buffered, fresh, rtol=0, atol=1e-12)


def test_records_of_a_reused_buffer_are_dropped_then_copied() -> None:
    buffer = torch.empty(4, 2, dtype=F64)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return buffer.copy_(-x * t[:, None])

    counted = CountedScore(score)
    x = torch.ones(4, 2, dtype=F64)
    for t in (0.9, 0.5, 0.3):
        counted(x, torch.full((4,), t, dtype=F64))
    _, tp, sp, ok = counted.previous_other_time(x, 0.3)
    assert ok.all() and bool((tp == 0.5).all())
    torch.testing.assert_close(sp, -x * 0.5)  # the value returned at 0.5, not the buffer's current one


def test_a_fresh_output_per_call_is_kept_without_a_copy() -> None:
    counted = CountedScore(lambda x, t: -x)
    x = torch.ones(3, 2, dtype=F64)
    out = counted(x, torch.full((3,), 0.5, dtype=F64))
    assert counted._recent[-1][3] is out and not counted._copy_outputs


@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("solver", ["dpmpp_2m", "euler_maruyama", "pc"])
def test_a_score_writing_into_its_input_leaves_the_callers_x_T_alone(solver: str, batch_size: int | None) -> None:
    sde = sd.VPSDE()
    exact = sd.targets.eight_gaussians().score_fn(sde)

    def clamping(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return exact(x.clamp_(-3.0, 3.0), t)  # an in-place layer on the input

    x_T = 5.0 * torch.randn(48, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    before = x_T.clone()
    # Such a score changes the run's state too, so it is refused (test_score_input_guard.py);
    # the caller's x_T is left alone all the same.
    with pytest.raises(ScoreModifiedInputError):
        solvers.sample(sde, clamping, x_T=x_T, solver=solver, steps=4, seed=0, batch_size=batch_size)
    assert torch.equal(x_T, before)
