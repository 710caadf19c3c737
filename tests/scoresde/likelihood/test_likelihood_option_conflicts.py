"""Options that a call would silently drop are refused or warned about, naming the option."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import scoresde as sd
from scoresde.likelihood import likelihood


def _problem(n: int = 8) -> tuple[sd.VPSDE, object, torch.Tensor]:
    sde = sd.VPSDE()
    target = sd.targets.get_target("eight_gaussians")
    x = target.sample(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sde, target.score_fn(sde), x


@pytest.mark.parametrize("store", ["/tmp/chunks", Path("/tmp/chunks"), True, object()])
def test_a_store_that_is_not_a_chunk_store_is_refused_up_front(store: object) -> None:
    sde, score, x = _problem()
    with pytest.raises(TypeError, match="store must be a scoresde.likelihood.runner.ChunkStore"):
        likelihood(sde, score, x, store=store)


def test_an_explicit_grid_with_a_step_count_is_refused() -> None:
    # steps=32 used to be dropped for the grid's 3 intervals (0.33 nats per point off).
    sde, score, x = _problem()
    with pytest.raises(ValueError, match=r"explicit grid sets the steps itself \(3 intervals\); steps=16"):
        likelihood(sde, score, x, integrator="rk4", steps=16, grid=[1e-5, 0.1, 0.5, 1.0])
    r = likelihood(sde, score, x, integrator="rk4", grid=[1e-5, 0.1, 0.5, 1.0])  # the grid alone is fine
    assert r.stats[0]["steps"] == 3


@pytest.mark.parametrize("option", [{"probe": "gaussian"}, {"probe_refresh": "eval"}, {"n_probes": 4}])
def test_probe_options_with_the_exact_divergence_are_refused(option: dict) -> None:
    sde, score, x = _problem()
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"{name}=.* applies to divergence='hutchinson' only"):
        likelihood(sde, score, x, **option)


def test_target_error_without_auto_steps_warns() -> None:
    sde, score, x = _problem()
    with pytest.warns(UserWarning, match="target_error= sets the step count of steps='auto'"):
        likelihood(sde, score, x, target_error=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        likelihood(sde, score, x, integrator="rk4_simpson", steps="auto", target_error=1e-3)


def test_a_small_pilot_for_auto_steps_warns_unless_it_is_the_whole_batch() -> None:
    sde, score, x = _problem(40)
    with pytest.warns(RuntimeWarning, match="pilot_size=16 is too few"):
        likelihood(sde, score, x, integrator="rk4_simpson", steps="auto", pilot_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the pilot solves every point: its answers are kept
        likelihood(sde, score, x[:16], integrator="rk4_simpson", steps="auto", pilot_size=16)
