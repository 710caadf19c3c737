"""Options of the wrong type are refused up front, naming the option.

Python reads the string ``"no"`` as true, so an unchecked flag did the opposite of what was
written (``lower_order_final="no"`` turned on ``gaussian_2m``'s first-order last step); other
values failed inside torch with messages that named nothing (``eta="a"``, a 2-D grid).
"""

from __future__ import annotations

import pytest
import torch

import scoresde as sd
import solvers

SDE = sd.VPSDE()
SCORE = sd.targets.eight_gaussians().score_fn(SDE)


def _sample(**kw: object) -> solvers.Solution:
    kw.setdefault("steps", 8)
    return solvers.sample(SDE, SCORE, shape=(16, 2), seed=0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("solver, flag", [
    ("dpmpp_2m", "lower_order_final"), ("dpmpp_3m", "lower_order_final"), ("unipc", "lower_order_final"),
    ("sde_dpmpp_2m", "lower_order_final"), ("gaussian_2m", "lower_order_final"),
    ("euler_maruyama", "final_noise"), ("ode_dopri5", "per_sample"), ("adaptive_sde", "per_sample"),
    ("adaptive_sde", "extrapolate"), ("adaptive_sde", "noise_tolerance"), ("ddim", "check_finite"),
    ("ddim", "progress"), ("ddim", "keep_trajectory"),
])
def test_a_flag_given_as_a_string_is_refused(solver: str, flag: str) -> None:
    with pytest.raises(TypeError, match=f"{flag} must be True or False, got str 'no'"):
        _sample(solver=solver, **{flag: "no"})


def test_flags_still_take_bools() -> None:
    a = _sample(solver="gaussian_2m", lower_order_final=False).samples
    b = _sample(solver="gaussian_2m").samples  # its default is False
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw, match", [
    ({"solver": "ddim", "eta": "a"}, "eta must be a real number"),
    ({"solver": "edm_heun", "s_churn": "1"}, "s_churn must be a real number"),
    ({"solver": "adaptive_sde", "h_init": "x"}, "h_init must be a real number"),
    ({"solver": "ode_rk45", "max_step": "1"}, "max_step must be a real number"),
    ({"solver": "ddim", "keep_trajectory": True, "max_frames": 2.5}, "max_frames must be an integer"),
    ({"solver": "ddim", "after_step": 3}, "after_step must be a callable"),
])
def test_a_value_of_the_wrong_type_names_its_option(kw: dict, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        _sample(**kw)


def test_a_hook_that_is_not_callable_is_refused_before_any_evaluation() -> None:
    calls = []

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return SCORE(x, t)

    with pytest.raises(TypeError, match="after_step"):
        solvers.sample(SDE, score, shape=(4, 2), solver="ddim", steps=4, seed=0, after_step=3)  # type: ignore[arg-type]
    assert not calls


def test_a_grid_tensor_must_be_one_dimensional() -> None:
    with pytest.raises(ValueError, match=r"time grid must be 1-D with at least 2 points, got shape \(1, 9\)"):
        _sample(solver="ddim", grid=torch.linspace(1.0, 1e-3, 9)[None])


def test_a_grid_tensor_and_another_step_count_are_refused() -> None:
    grid = torch.linspace(1.0, 1e-3, 21, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"grid tensor sets the steps itself \(20 intervals\); steps=8"):
        _sample(solver="ddim", grid=grid, steps=8)
    # the default count, given explicitly, is another count too (it was once taken for "not given")
    with pytest.raises(ValueError, match=r"grid tensor sets the steps itself \(20 intervals\); steps=500"):
        _sample(solver="ddim", grid=grid, steps=solvers.api.STEPS_DEFAULT)
    # the grid alone, or with its own count, runs its 20 steps (+1 for the end step)
    alone = solvers.sample(SDE, SCORE, shape=(16, 2), solver="ddim", grid=grid, seed=0)
    assert alone.nfe == _sample(solver="ddim", grid=grid, steps=20).nfe == 21


@pytest.mark.parametrize("make, match", [
    (lambda: sd.VPSDE(T="1"), "T must be a real number"),
    (lambda: sd.VPSDE(beta_min="0.1"), "beta_min must be a real number"),
    (lambda: sd.VESDE(sigma_max="50"), "sigma_max must be a real number"),
    (lambda: sd.VESDE(exact_sigma="no"), "exact_sigma must be True or False"),
])
def test_sde_parameters_of_the_wrong_type_are_refused(make: object, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        make()  # type: ignore[operator]


def test_the_overshoot_warning_reads_well_when_alpha_underflows() -> None:
    with pytest.warns(UserWarning, match=r"alpha\(T\) = 0 underflows") as caught:
        sd.VPSDE(beta_max=1e6)
    assert not any("nan" in str(w.message) for w in caught)


def test_an_unseeded_run_follows_torch_manual_seed() -> None:
    # seed=None draws its seed from torch's global generator, as torch.randn does.
    torch.manual_seed(123)
    a = solvers.sample(SDE, SCORE, shape=(16, 2), solver="euler_maruyama", steps=8).samples
    b = solvers.sample(SDE, SCORE, shape=(16, 2), solver="euler_maruyama", steps=8).samples
    torch.manual_seed(123)
    c = solvers.sample(SDE, SCORE, shape=(16, 2), solver="euler_maruyama", steps=8).samples
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_a_first_step_longer_than_the_interval_is_the_interval_for_scipy_too() -> None:
    # SciPy raised its own "first_step exceeds bounds"; the torch integrators clip it
    whole = SDE.T - SDE.eps
    a = _sample(solver="ode_rk45", first_step=10.0).samples
    b = _sample(solver="ode_rk45", first_step=whole).samples
    assert torch.equal(a, b)
