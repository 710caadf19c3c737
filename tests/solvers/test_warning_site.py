"""The solvers' warnings name the caller's line, with and without chunks, and Euler-Maruyama's
stability warning says how wide unit-scale modes come out, not only that narrow ones blow up."""

from __future__ import annotations

import warnings

import pytest
import torch

import scoresde as sd
import solvers


@pytest.mark.parametrize("batch_size", [None, 32])
@pytest.mark.parametrize(("name", "steps"), [("euler_maruyama", 10), ("annealed_langevin", 50), ("torchsde_srk", 5)])
def test_warnings_raised_inside_the_run_name_the_callers_line(name: str, steps: int, batch_size: int | None) -> None:
    # They named solvers/api.py (the line that calls the solver), a stack level set for one depth.
    sde, target = sd.SubVPSDE(), sd.GaussianMixture(torch.zeros(1, 2), 0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        solvers.sample(sde, target.score_fn(sde), (64, 2), solver=name, steps=steps, seed=0, batch_size=batch_size)
    assert caught and all(w.filename == __file__ for w in caught), [(w.filename, str(w.message)[:60]) for w in caught]


VP = sd.VPSDE()


def _warning_score(text: str) -> solvers.protocol.ScoreFn:
    """The exact score of eight Gaussians under VP, warning ``text`` at every call (from this file)."""
    exact = sd.targets.eight_gaussians().score_fn(VP)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        warnings.warn(text, UserWarning, stacklevel=1)
        return exact(x, t)

    return score


def test_a_users_own_warning_keeps_its_place() -> None:
    sde, score = VP, _warning_score("from the score")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        solvers.sample(sde, score, (64, 2), solver="ddim", steps=3, seed=0)
    mine = [w for w in caught if str(w.message) == "from the score"]
    assert mine and all(w.filename == __file__ for w in mine)
    with pytest.raises(UserWarning, match="from the score"):  # an "error" filter still raises
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            solvers.sample(sde, score, (64, 2), solver="ddim", steps=3, seed=0)


def test_the_stability_warning_says_how_wide_unit_scale_modes_come_out() -> None:
    # Sub-VP, 10 steps: it said "modes narrower than about 0.025", while a Gaussian of std 0.3
    # came out 2.0x and one of std 1 1.3x as wide as it should (the recursion predicts both).
    sde = sd.SubVPSDE()
    for std, predicted in ((0.3, "2.01x"), (1.0, "1.31x")):
        target = sd.GaussianMixture(torch.zeros(1, 8), std)
        with pytest.warns(UserWarning, match=r"wider modes come out too wide as well \(std 0.3 2.01x, std 1 1.31x"):
            r = solvers.sample(sde, target.score_fn(sde), (4000, 8), solver="euler_maruyama", steps=10, seed=0,
                               dtype=torch.float64)
        assert f"{float(r.samples.std()) / std:.2f}x" == predicted


def test_a_score_that_warns_at_every_call_is_shown_once() -> None:
    # Re-issued where it was raised, it must keep the once-per-location default: not once per step.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        solvers.sample(VP, _warning_score("every call"), (64, 2), solver="ddim", steps=20, seed=0)
    assert sum(str(w.message) == "every call" for w in caught) == 1
