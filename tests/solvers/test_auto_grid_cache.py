"""`grid="auto"`: the pilot's cache belongs to the score object (and a module's weights) that
made it, and the pilot's evaluations are reported (user pass on NFE accounting)."""

from __future__ import annotations

import gc

import torch

import scoresde as sd
import solvers
from solvers import auto_grid

F64 = torch.float64


class _Scaled(torch.nn.Module):
    """The exact score of N(0, I / inv_var) data; ``inv_var`` is a trainable parameter."""

    def __init__(self, sde):
        super().__init__()
        self.sde = sde
        self.inv_var = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))

    def forward(self, x, t):
        a, s = self.sde.marginal_coeffs(t)
        return -x / (a[:, None] ** 2 / self.inv_var + s[:, None] ** 2)


class _Counter:
    def __init__(self, score):
        self.score, self.calls = score, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


def test_auto_grid_is_not_shared_by_a_new_score_at_a_reused_address():
    sde = sd.VPSDE()
    wide, sharp = sd.targets.eight_gaussians(), sd.GaussianMixture([[0.0, 0.0]], 0.01, [1.0])
    auto_grid.clear_cache()
    # The score closures are freed after each call: CPython tends to reuse the address.
    auto_grid.auto_grid(sde, wide.score_fn(sde), 10, (8, 2))
    gc.collect()
    got = auto_grid.auto_grid(sde, sharp.score_fn(sde), 10, (8, 2))
    auto_grid.clear_cache()
    own = auto_grid.auto_grid(sde, sharp.score_fn(sde), 10, (8, 2))
    assert torch.equal(got, own)


def test_auto_grid_follows_a_module_trained_in_place():
    sde = sd.VPSDE()

    model = _Scaled(sde)
    auto_grid.clear_cache()
    before = auto_grid.auto_grid(sde, model, 12, (8, 2))
    assert torch.equal(auto_grid.auto_grid(sde, model, 12, (8, 2)), before)  # cached: same weights
    with torch.no_grad():
        model.inv_var.mul_(1e4)  # an in-place update: the data's std goes from 1 to 0.01
    after = auto_grid.auto_grid(sde, model, 12, (8, 2))
    auto_grid.clear_cache()
    assert torch.equal(after, auto_grid.auto_grid(sde, model, 12, (8, 2)))
    assert not torch.equal(after, before)


def test_auto_grid_reports_its_pilot_and_caches_under_half_precision():
    sde = sd.VPSDE()
    counter = _Counter(sd.targets.eight_gaussians().score_fn(sde))
    auto_grid.clear_cache()
    first = solvers.sample(sde, counter, (8, 2), "dpmpp_2m", steps=10, grid="auto", seed=0)
    assert first.stats["pilot_cached"] is False and first.stats["pilot_batch"] == 128
    assert first.stats["pilot_seconds"] > 0
    assert first.nfe + first.stats["pilot_nfe"] == counter.calls
    counter.calls = 0
    again = solvers.sample(sde, counter, (8, 2), "dpmpp_2m", steps=10, grid="auto", seed=0)
    assert again.stats["pilot_cached"] is True and again.stats["pilot_seconds"] == 0.0
    assert again.stats["pilot_nfe"] == first.stats["pilot_nfe"] and again.nfe == counter.calls
    # The per-call half-precision wrapper keys the cache on the user's score (and the dtype).
    half = [solvers.sample(sde, counter, (8, 2), "dpmpp_2m", steps=10, grid="auto", seed=0,
                           dtype=torch.bfloat16) for _ in range(2)]
    assert [h.stats["pilot_cached"] for h in half] == [False, True]
    assert torch.equal(half[0].times, half[1].times)


def test_auto_grid_follows_a_module_behind_a_closure_and_forgets_freed_scores():
    sde = sd.VPSDE()

    model = _Scaled(sde)

    def score(x, t):  # as ScoreModel.score_fn(sde) returns
        return model(x, t)

    auto_grid.clear_cache()
    first = solvers.sample(sde, score, (8, 2), "ddim", steps=12, grid="auto", seed=0)
    with torch.no_grad():
        model.inv_var.mul_(1e4)
    second = solvers.sample(sde, score, (8, 2), "ddim", steps=12, grid="auto", seed=0)
    assert second.stats["pilot_cached"] is False and not torch.equal(first.times, second.times)
    for _ in range(5):
        auto_grid.auto_grid(sde, lambda x, t: -x, 6, (8, 2))
    gc.collect()
    assert len(auto_grid._CACHE) == 1  # only the live closure's entry
